"""Class colours over frames: one overlay for TensorBoard, the report, predict and examples.

TensorBoard panels, the report's figures, predict's overlay videos and the synthetic
examples all call `overlay`, so they look alike.

``overlay`` implements ``out = (1 - a) * image + a * colour(label)`` on every pixel whose
label is not background (background keeps the frame untouched), rounded to uint8, with
``a = OVERLAY_ALPHA`` and the colours of `sercseg_tf.labels.CLASS_COLOURS` (the ignore
label drawn in `labels.IGNORE_COLOUR`). Pure NumPy.
"""

from __future__ import annotations

import numpy as np

from sercseg_tf import labels

OVERLAY_ALPHA = 0.45


def palette() -> np.ndarray:
    """Returns the uint8 ``[256, 3]`` lookup table class id -> RGB (unknown ids black)."""
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(labels.CLASS_COLOURS)] = np.asarray(labels.CLASS_COLOURS, np.uint8)
    lut[labels.IGNORE_LABEL] = labels.IGNORE_COLOUR
    return lut


def colourize(label_map: np.ndarray) -> np.ndarray:
    """Class-id map ``[H, W]`` (or ``[H, W, 1]``) -> RGB ``[H, W, 3]`` uint8."""
    label_map = np.asarray(label_map)
    if label_map.ndim == 3:
        label_map = label_map[..., 0]
    return palette()[np.clip(label_map, 0, 255).astype(np.uint8)]


def overlay(image: np.ndarray, label_map: np.ndarray,
            alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Blends class colours over a frame where the label is not background.

    Args:
      image: uint8 ``[H, W, 3]`` RGB, or ``[H, W]`` grey (repeated to RGB).
      label_map: ``[H, W]`` (or ``[H, W, 1]``) class ids of the same height and width.
      alpha: opacity of the class colour.

    Returns:
      uint8 ``[H, W, 3]``.

    Raises:
      ValueError: the label map's size differs from the image's.
    """
    img = np.asarray(image, np.float32)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    lab = np.asarray(label_map)
    if lab.ndim == 3:
        lab = lab[..., 0]
    if lab.shape != img.shape[:2]:
        raise ValueError(f"label map {lab.shape} does not match image {img.shape[:2]}")
    colours = colourize(lab).astype(np.float32)
    blend = (1.0 - alpha) * img + alpha * colours
    out = np.where((lab != labels.BACKGROUND)[..., None], blend, img)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def overlay_panel(image: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """``[input | ground-truth overlay | prediction overlay]`` side by side, uint8."""
    image = np.asarray(image, np.uint8)
    return np.concatenate([image, overlay(image, gt), overlay(image, pred)], axis=1)
