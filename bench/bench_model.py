"""Time one DeepLabV3+ training step and whole-frame inference on this machine.

Usage:
  python bench/bench_model.py [--output_stride 16] [--batch_size 4]
      [--crops 481x641,241x321,129x161] [--steps 3] [--warmup 1]
      [--infer_size 480x640] [--infer_frames 5] [--output_json bench_model.json]

A training step is forward + backward + Adam update (lr 1e-5, softmax cross-entropy
with the ignore label excluded, as the paper trains) on random preprocessed crops,
compiled with ``tf.function``; the first ``--warmup`` steps (tracing) are not timed.
Reported: median wall seconds per step per crop, each crop's time relative to the
first (paper) crop, and the same for process CPU seconds (all threads), which moves
less than wall time when other jobs share the cores. Inference: ``predict_logits`` +
argmax on one uint8 frame of ``--infer_size`` (padding to OS*k+1 inside), median
seconds per frame.
Random init; weights do not change the cost.
"""

from __future__ import annotations

import json
import os
import statistics
import time

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_integer("output_stride", 16, "Backbone output stride (8, 16, 32).")
flags.DEFINE_integer("batch_size", 4, "Training batch size.")
flags.DEFINE_list("crops", ["481x641", "241x321", "129x161"], "Training crops HxW.")
flags.DEFINE_integer("steps", 3, "Timed training steps per crop.")
flags.DEFINE_integer("warmup", 1, "Untimed training steps per crop (tracing).")
flags.DEFINE_string("infer_size", "480x640", "Inference frame size HxW.")
flags.DEFINE_integer("infer_frames", 5, "Timed inference frames.")
flags.DEFINE_string("output_json", None, "Optional path for the numbers as JSON.")


def _hw(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def main(argv: list[str]) -> None:
    del argv
    import keras
    import numpy as np
    import tensorflow as tf

    from sercseg_tf.labels import IGNORE_LABEL, NUM_CLASSES
    from sercseg_tf.model.deeplab import build_deeplab
    from sercseg_tf.model.inference import predict_logits

    keras.utils.set_random_seed(0)
    model = build_deeplab(num_classes=NUM_CLASSES, output_stride=FLAGS.output_stride)
    optimizer = keras.optimizers.Adam(learning_rate=1e-5)

    @tf.function(reduce_retracing=True)
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            valid = tf.not_equal(labels, IGNORE_LABEL)
            safe = tf.where(valid, labels, tf.zeros_like(labels))
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
            weights = tf.cast(valid, tf.float32)
            loss = tf.reduce_sum(losses * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    rng = np.random.default_rng(0)
    results = {
        "machine": {"cpu_count": os.cpu_count(), "load_avg_1min": os.getloadavg()[0]},
        "output_stride": FLAGS.output_stride,
        "batch_size": FLAGS.batch_size,
        "parameters": model.count_params(),
        "train": {},
    }
    for crop in FLAGS.crops:
        h, w = _hw(crop)
        images = tf.constant(rng.normal(0, 50, (FLAGS.batch_size, h, w, 3)).astype("float32"))
        labels = tf.constant(rng.integers(0, NUM_CLASSES, (FLAGS.batch_size, h, w)), tf.int32)
        times, cpu_times = [], []
        for step in range(FLAGS.warmup + FLAGS.steps):
            start, cpu_start = time.perf_counter(), time.process_time()
            float(train_step(images, labels))
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            if step >= FLAGS.warmup:
                times.append(elapsed)
                cpu_times.append(cpu)
            logging.info("train %s step %d: %.2f s (%.1f CPU s)", crop, step, elapsed, cpu)
        results["train"][crop] = {
            "s_per_step": statistics.median(times),
            "cpu_s_per_step": statistics.median(cpu_times),
            "times": times,
        }
    base = results["train"][FLAGS.crops[0]]["s_per_step"]
    cpu_base = results["train"][FLAGS.crops[0]]["cpu_s_per_step"]
    for stats in results["train"].values():
        stats["relative_to_first"] = stats["s_per_step"] / base
        stats["cpu_relative_to_first"] = stats["cpu_s_per_step"] / cpu_base

    ih, iw = _hw(FLAGS.infer_size)
    infer = tf.function(
        lambda x: tf.argmax(predict_logits(model, x, 1.0, FLAGS.output_stride), axis=-1),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)],
    )
    frame = tf.constant(rng.integers(0, 256, (1, ih, iw, 3)).astype("uint8"))
    infer(frame)  # trace
    times = []
    for _ in range(FLAGS.infer_frames):
        start = time.perf_counter()
        infer(frame).numpy()
        times.append(time.perf_counter() - start)
    results["inference"] = {
        "size": FLAGS.infer_size,
        "s_per_frame": statistics.median(times),
        "times": times,
    }
    results["machine"]["load_avg_1min_end"] = os.getloadavg()[0]

    print(f"DeepLabV3+ ResNet-50 OS{FLAGS.output_stride}, {results['parameters']:,} parameters, "
          f"{os.cpu_count()} CPU cores (load avg {results['machine']['load_avg_1min']:.1f} -> "
          f"{results['machine']['load_avg_1min_end']:.1f})")
    for crop, stats in results["train"].items():
        print(f"train step batch {FLAGS.batch_size} crop {crop}: {stats['s_per_step']:.2f} s/step "
              f"({stats['relative_to_first']:.3f} x {FLAGS.crops[0]}); "
              f"{stats['cpu_s_per_step']:.1f} CPU s/step "
              f"({stats['cpu_relative_to_first']:.3f} x)")
    print(f"inference {FLAGS.infer_size}: {results['inference']['s_per_frame']:.3f} s/frame")
    if FLAGS.output_json:
        tmp = f"{FLAGS.output_json}.tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=2)
        os.replace(tmp, FLAGS.output_json)


if __name__ == "__main__":
    app.run(main)
