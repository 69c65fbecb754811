"""Throughput of the input pipeline (examples/s) with ``tfds.benchmark``.

Usage (after ``python tools/build_tfrecords.py``):
  python bench/bench_dataset.py [--tfrecord_dir data/tfrecords] [--fold 1]
      [--batch_size 4] [--num_batches 100] [--crop_height 481 --crop_width 641]
      [--image_scale 1.0] [--min_scale 0.5 --max_scale 2.0 --scale_step 0.25]
      [--mode train|eval] [--config configs/demo.yaml]

CPU demo settings (configs/demo.yaml):
  python bench/bench_dataset.py --image_scale 0.5 --crop_height 225 --crop_width 289 \
      --min_scale 0.75 --max_scale 1.25

``--config`` times a config's own training stream instead (every data key of the file,
the ``aug_*`` randomisation included; the size flags are then ignored) and also reports
the process's CPU time per example, the cost the input pipeline takes from training
on a small machine.

``train`` times the augmented leave-one-case-out training stream of ``--fold`` (the
paper's settings by default: batch 4, crop 481x641, scales 0.5-2.0 step 0.25, flip);
``eval`` times one pass over the held-out case. ``tfds.benchmark`` reports the
first batch (pipeline warm-up) separately from the steady state ("lasts").

``--teardown_rounds R`` (train mode) times instead, in R interleaved rounds, the stream
as built (tf.data's autotuning model off, see `sercseg_tf.data.dataset.build_dataset`)
against the same stream with the model on: after ``--num_batches`` warm-up batches
(which fill the frame cache), batches/s over the next ``--num_batches`` and the seconds
``del iterator`` takes. Prints the CPU flags with the figures.
"""

from __future__ import annotations

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("tfrecord_dir", "data/tfrecords", "Shards + manifest.json.")
flags.DEFINE_integer("fold", 1, "Held-out case id.")
flags.DEFINE_integer("batch_size", 4, "Examples per batch.")
flags.DEFINE_integer("num_batches", 100, "Batches to time (train mode).")
flags.DEFINE_integer("crop_height", 481, "Training crop height.")
flags.DEFINE_integer("crop_width", 641, "Training crop width.")
flags.DEFINE_float("image_scale", 1.0, "Frames resized by this factor first.")
flags.DEFINE_float("min_scale", 0.5, "Random scale: smallest factor.")
flags.DEFINE_float("max_scale", 2.0, "Random scale: largest factor.")
flags.DEFINE_float("scale_step", 0.25, "Random scale: step.")
flags.DEFINE_enum("mode", "train", ["train", "eval"], "Which stream to time.")
flags.DEFINE_string("config", None, "Experiment config whose data keys define the stream.")
flags.DEFINE_integer("teardown_rounds", 0,
                     "Train mode: time batches/s and iterator deletion with the autotuning "
                     "model off (as built) and on, in this many rounds; 0 = tfds.benchmark.")


def _teardown_round(train_ds, autotune: bool) -> tuple[float, float]:
    """(batches/s, seconds to delete the iterator) of ``train_ds`` with autotune on/off."""
    import gc
    import time

    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = autotune
    iterator = iter(train_ds.with_options(options))
    for _ in range(FLAGS.num_batches):  # warm-up: the frame cache fills here
        next(iterator)
    start = time.perf_counter()
    for _ in range(FLAGS.num_batches):
        next(iterator)
    rate = FLAGS.num_batches / (time.perf_counter() - start)
    start = time.perf_counter()
    del iterator
    gc.collect()
    return rate, time.perf_counter() - start


def _teardown(train_ds) -> None:
    """Prints each round's rate and deletion time for autotune off (as built) and on."""
    from sercseg_tf.training import precision

    flags_seen = sorted(precision.cpu_flags() & {"amx_bf16", "avx512_bf16", "avx512f"})
    print(f"CPU: {precision.cpu_model()}; flags: "
          f"{', '.join(flags_seen) or 'none of amx_bf16/avx512_bf16/avx512f'}")
    for r in range(FLAGS.teardown_rounds):
        for autotune in (False, True):
            rate, seconds = _teardown_round(train_ds, autotune)
            print(f"round {r + 1}  autotune {'on ' if autotune else 'off'}  "
                  f"{rate:6.1f} batches/s  iterator deleted in {seconds:6.2f} s", flush=True)


def main(argv: list[str]) -> None:
    del argv
    import resource

    import tensorflow_datasets as tfds

    from sercseg_tf import config as config_lib
    from sercseg_tf.data import dataset

    config = config_lib.load_config(FLAGS.config) if FLAGS.config else {
        "batch_size": FLAGS.batch_size,
        "eval_batch_size": FLAGS.batch_size,
        "crop_size": (FLAGS.crop_height, FLAGS.crop_width),
        "image_scale": FLAGS.image_scale,
        "min_scale": FLAGS.min_scale,
        "max_scale": FLAGS.max_scale,
        "scale_step": FLAGS.scale_step,
    }
    train_ds, eval_ds = dataset.build_fold_datasets(FLAGS.tfrecord_dir, FLAGS.fold, config)
    if FLAGS.teardown_rounds and FLAGS.mode == "train":
        _teardown(train_ds)
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_start = usage.ru_utime + usage.ru_stime
    if FLAGS.mode == "train":
        result = tfds.benchmark(train_ds, num_iter=FLAGS.num_batches,
                                batch_size=FLAGS.batch_size)
    else:
        result = tfds.benchmark(eval_ds, batch_size=FLAGS.batch_size)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = usage.ru_utime + usage.ru_stime - cpu_start
    stats = result.stats
    print(stats.to_string())
    examples = stats.loc["first+lasts", "num_examples"]
    print(f"process CPU time: {1000 * cpu_s / examples:.1f} ms per example")
    print(f"{FLAGS.mode} pipeline, fold {FLAGS.fold}, batch {FLAGS.batch_size}: "
          f"{stats.loc['lasts', 'avg']:.1f} examples/s steady state "
          f"({stats.loc['first+lasts', 'avg']:.1f} including the first batch)")


if __name__ == "__main__":
    app.run(main)
