"""Class colours over frames: one overlay for TensorBoard, the report, predict and examples.

TensorBoard panels, the report's figures, predict's overlay videos and the synthetic
examples all call `overlay`, so they look alike. `annotate` adds what a reader of
predict's overlay video needs: a colour legend, the time, the oocyte centroid and
needle tip markers and the frame's f1-f4 (OpenCV drawing). `label_image` is a label map
as a palette image (value = class id, the colours below), so saved label PNGs show
their classes in any viewer.

``overlay`` implements ``out = (1 - a) * image + a * colour(label)`` on every pixel whose
label is not background (background keeps the frame untouched), rounded to uint8, with
``a = OVERLAY_ALPHA`` and the colours of `sercseg_tf.labels.CLASS_COLOURS` (the ignore
label drawn in `labels.IGNORE_COLOUR`). NumPy, Pillow and OpenCV; no TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import PIL.Image

from sercseg_tf import labels

OVERLAY_ALPHA = 0.45
# Marker colours (RGB): oocyte centroid white, needle tip the needle colour ringed white.
CENTROID_COLOUR = (255, 255, 255)
TEXT_COLOUR = (255, 255, 255)
SHADOW_COLOUR = (0, 0, 0)


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


def label_image(label_map: np.ndarray) -> PIL.Image.Image:
    """A class-id map as a palette ("P") image: pixel value = class id, colours of `palette`.

    Saved as PNG it reads back (``np.asarray(Image.open(path))``) as the class ids, and
    any image viewer shows the class colours.
    """
    lab = np.asarray(label_map)
    if lab.ndim == 3:
        lab = lab[..., 0]
    image = PIL.Image.fromarray(lab.astype(np.uint8))  # "L"; putpalette makes it "P"
    image.putpalette(palette().reshape(-1).tolist())
    return image


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float) -> None:
    """White text on a half-transparent black box, so it reads on any background."""
    thick = max(1, int(round(scale * 1.5)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x0, y0 = max(org[0] - 3, 0), max(org[1] - th - 3, 0)
    x1, y1 = min(org[0] + tw + 3, img.shape[1]), min(org[1] + base + 2, img.shape[0])
    box = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = np.rint(box * 0.45 + np.asarray(SHADOW_COLOUR) * 0.55).astype(np.uint8)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_COLOUR, thick,
                cv2.LINE_AA)


def _finite_point(point: Sequence[float] | None) -> tuple[int, int] | None:
    if point is None or not all(math.isfinite(float(v)) for v in point):
        return None
    return int(round(float(point[0]))), int(round(float(point[1])))


def annotate(image: np.ndarray, *, time_s: float | None = None,
             centroid: Sequence[float] | None = None, tip: Sequence[float] | None = None,
             lines: Sequence[str] = (), legend: bool = True) -> np.ndarray:
    """Draws the legend, time, markers and text lines on a copy of an (overlay) frame.

    Args:
      image: uint8 RGB ``[H, W, 3]``, e.g. `overlay`'s output.
      time_s: shown top right as ``t = 12.0 s`` (None or NaN: not shown).
      centroid: oocyte centroid ``(x, y)`` in px, drawn as a white cross (NaN: none).
      tip: needle tip ``(x, y)``, drawn as a ring in the needle colour (NaN: none).
      lines: text lines drawn bottom left, e.g. the frame's f1-f4.
      legend: the class colour legend top left.

    Returns:
      The annotated uint8 ``[H, W, 3]`` frame.
    """
    out = np.ascontiguousarray(np.asarray(image, np.uint8).copy())
    h, w = out.shape[:2]
    scale = max(0.3, min(h, w) / 900.0)
    step = int(round(28 * scale)) + 4
    if legend:
        for i, c in enumerate(labels.EVAL_CLASSES):
            y = 6 + i * step
            cv2.rectangle(out, (6, y), (6 + step - 6, y + step - 6), labels.CLASS_COLOURS[c], -1)
            _text(out, labels.CLASS_DISPLAY_NAMES[c], (6 + step, y + step - 8), scale)
    if time_s is not None and math.isfinite(time_s):
        label = f"t = {time_s:.1f} s"
        (tw, _), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        _text(out, label, (w - tw - 8, step - 4), scale)
    arm = max(4, int(round(10 * scale)))
    c = _finite_point(centroid)
    if c is not None:
        cv2.drawMarker(out, c, SHADOW_COLOUR, cv2.MARKER_CROSS, 2 * arm + 2, 4)
        cv2.drawMarker(out, c, CENTROID_COLOUR, cv2.MARKER_CROSS, 2 * arm, 2)
    t = _finite_point(tip)
    if t is not None:
        cv2.circle(out, t, arm, CENTROID_COLOUR, 3, cv2.LINE_AA)
        cv2.circle(out, t, arm, labels.CLASS_COLOURS[labels.NEEDLE], 2, cv2.LINE_AA)
    for i, line in enumerate(reversed(list(lines))):
        _text(out, line, (6, h - 8 - i * step), scale)
    return out
