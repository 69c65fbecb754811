"""The held-out evaluator: prediction and per-image IoU of one case (periodic eval and `evaluate`).

Frames are read straight from the case's TFRecord shards at full resolution (uint8),
predicted with `inference.predict_logits` (which applies ``image_scale``, pads to
OS·k+1 and resizes the logits back to the frame; `postprocess.postprocess_logits`
after it, with the rules the config turns on), and scored per image with
`metrics.per_class_iou`, exactly as the paper's Table 2: IoU per class per image, a class
absent from both masks left out (NaN), then averaged per class over the case's frames.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import tensorflow as tf

from sercseg_tf import formats, labels
from sercseg_tf.config import ExperimentConfig

IOU_COLUMNS = tuple(labels.CLASS_NAMES[c] for c in labels.EVAL_CLASSES)  # oocyte, serc, needle


def heldout_dataset(tfrecord_dir: str | os.PathLike, case_id: int,
                    max_images: int = 0) -> tf.data.Dataset:
    """Decoded frames of one case, in file order, batch 1 (full resolution, uint8).

    Raises:
      FileNotFoundError: the case has no shard in ``tfrecord_dir``.
    """
    from sercseg_tf.data import tfrecord

    pattern = tfrecord.case_file_pattern(tfrecord_dir, case_id)
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"{pattern}: no TFRecord shard for held-out case {case_id}")
    ds = tf.data.TFRecordDataset(files).map(tfrecord.decode_example)
    if max_images > 0:
        ds = ds.take(max_images)
    return ds.batch(1)


def make_predict_step(model, config: ExperimentConfig):
    """Returns a tf.function ``(images uint8 [1,H,W,3], labels [1,H,W,1]) -> (pred, ce, n)``.

    ``pred`` int32 [1,H,W] argmax class (after the post-processing the config turns on:
    ``keep_largest_oocyte``, ``needle_hysteresis_weight``); ``ce`` the summed softmax
    cross-entropy of the model's own logits over non-ignore pixels and ``n`` their count
    (held-out loss = sum ce / sum n).
    """
    from sercseg_tf.model import inference, postprocess
    from sercseg_tf.training.losses import masked_cross_entropy_sums

    @tf.function(reduce_retracing=True)
    def step(images, label):
        logits = inference.predict_logits(model, images, image_scale=config.image_scale,
                                          output_stride=config.output_stride,
                                          add_flipped_images=config.add_flipped_images,
                                          eval_scales=config.eval_scale_factors)
        label = tf.cast(label[..., 0], tf.int32)
        ce, count = masked_cross_entropy_sums(label, logits)
        # The class decision only; the loss is the model's own.
        logits = postprocess.postprocess_logits(logits, config.keep_largest_oocyte,
                                                config.needle_hysteresis_weight)
        return tf.argmax(logits, axis=-1, output_type=tf.int32), ce, count

    return step


@dataclasses.dataclass
class HeldoutResult:
    """Per-image IoU rows, the held-out loss and a few overlay panels."""

    rows: list[dict]
    loss: float
    panels: list[np.ndarray]

    def class_means(self) -> dict[str, float]:
        """Mean IoU per class over frames (NaN frames left out) and ``miou`` over classes."""
        means = {}
        for name in IOU_COLUMNS:
            values = np.array([r[name] for r in self.rows], np.float64)
            values = values[~np.isnan(values)]
            means[name] = float(values.mean()) if values.size else math.nan
        finite = [v for v in means.values() if not math.isnan(v)]
        means["miou"] = float(np.mean(finite)) if finite else math.nan
        return means


def evaluate_heldout(model, config: ExperimentConfig, dataset: tf.data.Dataset,
                     num_panels: int = 0, predict_step=None) -> HeldoutResult:
    """Predicts every frame of ``dataset`` and scores it (see the module docstring).

    Args:
      model: the Keras model (inference mode is used).
      config: gives image_scale, output_stride, add_flipped_images, eval_scales and
        the post-processing (keep_largest_oocyte, needle_hysteresis_weight).
      dataset: from `heldout_dataset`.
      num_panels: how many ``[input | gt | pred]`` overlay panels to keep.
      predict_step: a step from `make_predict_step` to reuse (avoids retracing).

    Returns:
      A `HeldoutResult`; rows have keys case, frame, filename, oocyte, serc, needle.
    """
    from sercseg_tf import metrics
    from sercseg_tf.visualize import overlay_panel

    step = predict_step or make_predict_step(model, config)
    rows, panels = [], []
    ce_total, count_total = 0.0, 0.0
    for sample in dataset:
        image = sample[formats.SAMPLE_IMAGE]
        label = sample[formats.SAMPLE_LABEL]
        pred, ce, count = step(image, label)
        ce_total += float(ce)
        count_total += float(count)
        pred_np = pred.numpy()[0]
        gt_np = label.numpy()[0, ..., 0].astype(np.int32)
        ious = metrics.per_class_iou(pred_np, gt_np, classes=labels.EVAL_CLASSES,
                                     ignore_label=labels.IGNORE_LABEL)
        row = {
            "case": int(sample[formats.SAMPLE_CASE_ID].numpy()[0]),
            "frame": int(sample[formats.SAMPLE_FRAME_ID].numpy()[0]),
            "filename": sample[formats.SAMPLE_FILENAME].numpy()[0].decode("utf-8"),
        }
        for class_id, name in zip(labels.EVAL_CLASSES, IOU_COLUMNS, strict=True):
            row[name] = float(ious[class_id])
        rows.append(row)
        if len(panels) < num_panels:
            panels.append(overlay_panel(image.numpy()[0], gt_np, pred_np))
    loss = ce_total / count_total if count_total > 0 else math.nan
    return HeldoutResult(rows=rows, loss=loss, panels=panels)
