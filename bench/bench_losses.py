"""Cost of the cell's border band (`losses.boundary_weights`) against two peers.

Usage:
  python bench/bench_losses.py [--tfrecord_dir data/tfrecords] [--crop 193x257]
      [--batch_size 4] [--radius 6] [--repeats 30]

On ``--batch_size`` label maps (cut at ``--crop`` from the frames of ``--tfrecord_dir``
when it exists, else a drawn cell with a needle), times per batch, median and range
over ``--repeats`` calls:

* ``boundary_weights`` as a graph function (a column then a row max-pool);
* the same band from one square ``(2r+1)^2`` max-pool (graph function);
* ``scipy.ndimage.binary_dilation`` of the cell and of the other classes (NumPy).

Checks that the three agree, and prints the share of band pixels. Prints the CPU model
and flags; compare figures from one run only.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("tfrecord_dir", "data/tfrecords", "TFRecords to cut label maps from.")
flags.DEFINE_string("crop", "193x257", "Label map size HxW (the demo's training crop).")
flags.DEFINE_integer("batch_size", 4, "Label maps per batch.")
flags.DEFINE_integer("radius", 6, "The band's radius, pixels.")
flags.DEFINE_integer("repeats", 30, "Timed calls per method.")


def _labels(h: int, w: int, n: int):
    """``n`` label maps: crops of the TFRecord frames' labels, or a drawn cell."""
    import numpy as np

    files = sorted(Path(FLAGS.tfrecord_dir).glob("*.tfrecord"))
    if not files:
        yy, xx = np.mgrid[0:h, 0:w]
        one = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (0.4 * h) ** 2).astype(np.int32)
        one[h // 2 - 4:h // 2 + 4, w // 2:] = 3
        return np.stack([one] * n), "a drawn cell with a needle"
    import tensorflow as tf

    from sercseg_tf import formats
    from sercseg_tf.data import tfrecord

    maps = []
    for record in tf.data.TFRecordDataset([str(f) for f in files]).take(n):
        label = tfrecord.decode_example(record)[formats.SAMPLE_LABEL].numpy()[..., 0]
        y0, x0 = (label.shape[0] - h) // 2, (label.shape[1] - w) // 2
        maps.append(label[max(y0, 0):max(y0, 0) + h, max(x0, 0):max(x0, 0) + w])
    return np.stack(maps).astype(np.int32), f"{n} frames of {FLAGS.tfrecord_dir}"


def _timed(fn, arg) -> tuple[float, float, float]:
    """(median, min, max) ms of ``fn(arg)`` over ``--repeats`` calls after one warm-up."""
    fn(arg)
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        fn(arg)
        times.append(1000.0 * (time.perf_counter() - start))
    return statistics.median(times), min(times), max(times)


def main(argv: list[str]) -> None:
    del argv
    import numpy as np
    import tensorflow as tf
    from scipy import ndimage

    from sercseg_tf import labels as lab
    from sercseg_tf.training import losses, precision

    print(f"CPU: {precision.cpu_model()}; flags: "
          + " ".join(sorted(f for f in precision.cpu_flags() if "avx512" in f or "amx" in f)))
    h, w = (int(v) for v in FLAGS.crop.lower().split("x"))
    maps, source = _labels(h, w, FLAGS.batch_size)
    size = 2 * FLAGS.radius + 1

    def square(label):
        cell = tf.cast((label == lab.OOCYTE) | (label == lab.SERC), tf.float32)
        other = tf.cast(label != lab.IGNORE_LABEL, tf.float32) * (1.0 - cell)
        near = tf.nn.max_pool2d(tf.stack([cell, other], -1), size, 1, "SAME")
        return 1.0 + 2.0 * near[..., 0] * near[..., 1]

    def scipy_band(label):
        cell = np.isin(label, [lab.OOCYTE, lab.SERC])
        other = (label != lab.IGNORE_LABEL) & ~cell
        window = np.ones((1, size, size), bool)
        near = ndimage.binary_dilation(cell, window) & ndimage.binary_dilation(other, window)
        return 1.0 + 2.0 * near

    graph = tf.function(lambda x: losses.boundary_weights(x, 3.0, FLAGS.radius))
    square_fn = tf.function(square)
    tensor = tf.constant(maps)
    ours = graph(tensor).numpy()
    assert np.array_equal(ours, square_fn(tensor).numpy())
    assert np.array_equal(ours, scipy_band(maps))
    print(f"{source}, {maps.shape[0]}x{h}x{w}, radius {FLAGS.radius}: band "
          f"{100.0 * np.mean(ours > 1):.1f} % of the pixels; the three agree")
    for name, fn, arg in (("boundary_weights (column + row)", lambda x: graph(x).numpy(), tensor),
                          ("square max-pool", lambda x: square_fn(x).numpy(), tensor),
                          ("scipy binary_dilation", scipy_band, maps)):
        med, lo, hi = _timed(fn, arg)
        print(f"{name:<32} {med:7.2f} ms per batch (range {lo:.2f}-{hi:.2f})")


if __name__ == "__main__":
    app.run(main)
