"""TensorBoard summaries (scalars, overlay images) and the history CSVs of a run.

`write_scalar` and `write_images` emit exactly what ``tensorboard.summary.v2.scalar`` /
``image`` emit (plugin ``scalars`` / ``images`` metadata on ``tf.summary.write``), but
need only TensorFlow: TF 2.21 no longer installs the ``tensorboard`` package, which is
only needed to *view* the logs (``pip install tensorboard``).
"""

from __future__ import annotations

import csv
import io
import math
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from sercseg_tf import atomic_io


def _metadata(plugin: str, data_class: int, description: str = "") -> bytes:
    meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin, content=b""),
        summary_description=description, data_class=data_class)
    return meta.SerializeToString()


def write_scalar(tag: str, value: float, step: int) -> None:
    """Scalar summary to the default writer (TensorBoard "scalars" plugin)."""
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step,
                     metadata=_metadata("scalars", summary_pb2.DATA_CLASS_SCALAR))


def write_images(tag: str, images: np.ndarray, step: int, description: str = "") -> None:
    """Image summary of uint8 ``[N, H, W, 3]`` to the default writer ("images" plugin).

    The tensor is ``[width, height, png_1, ..., png_N]`` (strings), TensorBoard's layout.
    """
    images = np.asarray(images, np.uint8)
    height, width = images.shape[1:3]
    encoded = [tf.io.encode_png(im).numpy() for im in images]
    tensor = tf.constant([str(width).encode(), str(height).encode(), *encoded])
    tf.summary.write(tag, tensor, step=step,
                     metadata=_metadata("images", summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
                                        description))


class HistoryCsv:
    """Appends rows to a CSV (header once); on resume drops rows after ``resume_step``.

    Used for ``fold_NN/train/history.csv`` (step, loss) and ``fold_NN/eval/history.csv``
    (step, loss, iou_oocyte, iou_serc, iou_needle, miou): the learning-curve data.
    """

    def __init__(self, path: str | os.PathLike, columns: Sequence[str], resume_step: int = 0):
        self.path = pathlib.Path(path)
        self.columns = list(columns)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[dict[str, str]] = []
        if self.path.exists() and resume_step > 0:
            with open(self.path, newline="") as f:
                kept = [r for r in csv.DictReader(f) if int(float(r["step"])) <= resume_step]
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(kept)
        atomic_io.atomic_write_text(self.path, buffer.getvalue())
        self._file = open(self.path, "a", newline="")  # noqa: SIM115 (closed in close())
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")

    def write(self, row: Mapping[str, float | int | str]) -> None:
        """Appends one row (missing columns empty)."""
        self._writer.writerow({k: _fmt(v) for k, v in row.items()})

    def write_many(self, rows: Iterable[Mapping[str, float | int | str]]) -> None:
        """Appends several rows."""
        for row in rows:
            self.write(row)

    def flush(self) -> None:
        """Flushes to disk (called at each log step and checkpoint)."""
        self._file.flush()

    def close(self) -> None:
        """Flushes and closes the file."""
        if not self._file.closed:
            self._file.close()


def _fmt(value: float | int | str) -> str | int:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return value
