"""Same checkpoint, two precisions: held-out IoU per class in float32 and mixed_bfloat16.

Usage:
  python bench/bench_precision_parity.py --fold 5 --config configs/demo.yaml \
      --tfrecord_dir data/tfrecords --model_dir runs/demo [--tolerance 0.005]
      [--precisions float32,mixed_bfloat16] [--output_json FILE]

Restores the fold's latest checkpoint once per precision (the config's other keys
unchanged), predicts every held-out frame exactly as `sercseg_tf.evaluate` does
(`training.evaluator.evaluate_heldout`), and prints per-class mean IoU per precision,
their differences, the share of pixels where the two predictions agree, and the
seconds each evaluation took. Exit status 1 if a class differs by more than
``--tolerance`` from the first precision. Writes nothing into the run folder.
"""

from __future__ import annotations

import json
import time

from absl import app, flags

from sercseg_tf import atomic_io
from sercseg_tf import config as config_lib

config_lib.define_flags()
FLAGS = flags.FLAGS
flags.DEFINE_list("precisions", ["float32", "mixed_bfloat16"], "Precisions to compare.")
flags.DEFINE_float("tolerance", 0.005, "Largest allowed per-class IoU difference.")
flags.DEFINE_string("output_json", None, "Optional path for the numbers as JSON.")


def evaluate_in(config, precision: str) -> tuple[dict, list, float]:
    """(class means, per-frame predictions, seconds) of the fold in one precision."""
    import numpy as np

    from sercseg_tf import formats
    from sercseg_tf.data import dataset as dataset_lib
    from sercseg_tf.training import checkpoints, evaluator

    config = config.replace(precision=precision)
    _, held_out = dataset_lib.fold_cases(FLAGS.tfrecord_dir, FLAGS.fold)
    model, _ = checkpoints.restore_model(config, FLAGS.model_dir, FLAGS.fold)
    dataset = evaluator.heldout_dataset(FLAGS.tfrecord_dir, held_out)
    step = evaluator.make_predict_step(model, config)
    start = time.perf_counter()
    result = evaluator.evaluate_heldout(model, config, dataset, predict_step=step)
    seconds = time.perf_counter() - start
    preds = [step(s[formats.SAMPLE_IMAGE], s[formats.SAMPLE_LABEL])[0].numpy()
             for s in dataset]
    return result.class_means(), [np.asarray(p) for p in preds], seconds


def main(argv: list[str]) -> int:
    """Command-line entry point (absl)."""
    del argv
    if config_lib.fold_from_flags("bench_precision_parity") is None:
        return 2
    config = config_lib.config_from_flags()
    runs = {p: evaluate_in(config, p) for p in FLAGS.precisions}
    first = FLAGS.precisions[0]
    base_means, base_preds, _ = runs[first]
    report, worst = {}, 0.0
    for precision, (means, preds, seconds) in runs.items():
        agree = sum(float((a == b).sum()) for a, b in zip(preds, base_preds, strict=True))
        total = sum(p.size for p in preds)
        diffs = {k: means[k] - base_means[k] for k in means}
        worst = max(worst, *(abs(v) for v in diffs.values()))
        report[precision] = {"iou": means, "diff_vs_" + first: diffs,
                             "pixel_agreement": agree / total, "eval_seconds": seconds}
        print(f"{precision:15s} " + "  ".join(f"{k} {v:.4f} ({diffs[k]:+.4f})"
                                              for k, v in means.items())
              + f"  pixels agreeing {agree / total:.5f}  {seconds:.1f} s")
    ok = worst <= FLAGS.tolerance
    print(f"largest per-class IoU difference {worst:.4f} "
          f"({'within' if ok else 'OVER'} tolerance {FLAGS.tolerance})")
    if FLAGS.output_json:
        atomic_io.atomic_write_text(FLAGS.output_json, json.dumps(
            {"fold": FLAGS.fold, "tolerance": FLAGS.tolerance,
             "largest_difference": worst, "results": report}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    app.run(main)
