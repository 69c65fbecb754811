"""Held-out IoU of a finished checkpoint before and after PreciseBN.

Usage:
  python bench/bench_precise_bn.py --fold 5 --config configs/demo.yaml \
      --tfrecord_dir data/tfrecords --model_dir runs/demo [--batches 50,100] [--stream_seed 12345]

Restores the fold's latest checkpoint, evaluates the held-out case as
`sercseg_tf.evaluate` does (`training.evaluator.evaluate_heldout`), then for each
``--batches`` K restores it again, replaces the BatchNorm moving statistics by their
mean over K training batches (`training.precise_bn`; the training loop's stream,
`loop.train_batches`, seeded with ``--stream_seed``) and evaluates again. Prints
per-class IoU for each and the seconds the recomputation took. Writes nothing into the
run folder. On a checkpoint trained with ``bn_recompute_batches > 0`` the "before" row
already has PreciseBN.
"""

from __future__ import annotations

import time

from absl import app, flags

from sercseg_tf import config as config_lib

config_lib.define_flags()
FLAGS = flags.FLAGS
flags.DEFINE_list("batches", ["50", "100"], "Numbers of batches K to recompute over.")
flags.DEFINE_integer("stream_seed", 12345, "Seed of the training stream the moments come from.")


def evaluate(config, num_batches: int) -> tuple[dict, float]:
    """(class means, seconds of the recomputation) with K = ``num_batches`` (0: none)."""
    import tensorflow as tf

    from sercseg_tf.data import dataset as dataset_lib
    from sercseg_tf.training import checkpoints, evaluator, loop, precise_bn

    train_cases, held_out = dataset_lib.fold_cases(FLAGS.tfrecord_dir, FLAGS.fold)
    model, _ = checkpoints.restore_model(config, FLAGS.model_dir, FLAGS.fold)
    seconds = 0.0
    if num_batches:
        stream = loop.train_batches(config, FLAGS.tfrecord_dir, train_cases, FLAGS.stream_seed)
        start = time.perf_counter()
        precise_bn.recompute_statistics(tf.distribute.get_strategy(), model, iter(stream),
                                        num_batches)
        seconds = time.perf_counter() - start
    result = evaluator.evaluate_heldout(model, config,
                                        evaluator.heldout_dataset(FLAGS.tfrecord_dir, held_out))
    return result.class_means(), seconds


def main(argv: list[str]) -> int:
    """Command-line entry point (absl)."""
    del argv
    if config_lib.fold_from_flags("bench_precise_bn") is None:
        return 2
    config = config_lib.config_from_flags()
    for k in [0, *(int(b) for b in FLAGS.batches)]:
        means, seconds = evaluate(config, k)
        label = "checkpoint as saved" if k == 0 else f"PreciseBN K={k} ({seconds:.1f} s)"
        print(f"{label:28s} " + "  ".join(f"{name} {v:.4f}" for name, v in means.items()))
    return 0


if __name__ == "__main__":
    app.run(main)
