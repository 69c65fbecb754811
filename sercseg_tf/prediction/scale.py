"""Frames to the scale the model learned, and its answer back to the frame's size.

A model learns objects at the pixel size they had in its training frames (after its
``image_scale``, which the SavedModel applies itself). A frame of another size, e.g. the
same microscope recorded at 1280x960 instead of 640x480, shows every object twice as
large, and a segmentation model does not generalise across such a factor. So every
frame is first resized by ``1 / input_scale``::

    input_scale = sqrt((H * W) / (H_train * W_train))     (automatic, from the model card)
    input_scale = --input_scale                           (given: the frames' object size
                                                           relative to the training frames)
    frame'  = resize(frame, 1 / input_scale)              area-averaging when shrinking,
                                                           bilinear when enlarging
    probs   = model(frame')                               class probabilities
    probs   = resize(probs, (H, W))                       bilinear, back to the frame
    label   = argmax(probs)

With ``input_scale = 1`` nothing is resized. The automatic rule assumes the optics are
the training ones and only the recorded frame size differs; `ScalePolicy` warns (one
line per input) when the factor lies outside ``[min_scale, max_scale]`` of the training
config, the range of object sizes the random-scale augmentation showed the model, or
when the aspect ratio differs from the training frames'. Without a model card (an old
export) frames are used at their own size.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

# Relative aspect-ratio difference (w/h) above which the automatic scale warns.
ASPECT_TOLERANCE = 0.05


@dataclasses.dataclass
class ScalePolicy:
    """Chooses ``input_scale`` per frame size from a model card or an override.

    Attributes:
      training_size: ``(height, width)`` of the training frames, None if unknown.
      tolerated: ``(min_scale, max_scale)`` of the training config.
      override: the ``--input_scale`` value, None for automatic.
    """

    training_size: tuple[int, int] | None = None
    tolerated: tuple[float, float] = (0.5, 2.0)
    override: float | None = None

    @classmethod
    def from_card(cls, card: Mapping[str, Any] | None,
                  override: float | None = None) -> ScalePolicy:
        """The policy of a model card (`sercseg_tf.model_card`; None: no card)."""
        training = (card or {}).get("training") or {}
        size = training.get("frame_size")
        tolerated = (float(training.get("min_scale", 0.5)), float(training.get("max_scale", 2.0)))
        return cls(tuple(int(v) for v in size) if size else None, tolerated, override)

    def input_scale(self, frame_hw: tuple[int, int]) -> float:
        """Object size in the frame relative to the training frames (1 = as in training)."""
        if self.override is not None:
            return float(self.override)
        if self.training_size is None:
            return 1.0
        (h, w), (th, tw) = frame_hw, self.training_size
        return math.sqrt((h * w) / (th * tw))

    def warning(self, frame_hw: tuple[int, int]) -> str | None:
        """Why the automatic scale may be wrong for this frame size, or None."""
        if self.override is not None or self.training_size is None:
            return None
        s = self.input_scale(frame_hw)
        (h, w), (th, tw) = frame_hw, self.training_size
        lo, hi = self.tolerated
        reasons = []
        if not lo - 1e-9 <= s <= hi + 1e-9:
            reasons.append(f"{s:.2f}x the training frames' size, outside the {lo:g}-{hi:g}x "
                           "seen in training")
        if abs((w / h) / (tw / th) - 1.0) > ASPECT_TOLERANCE:
            reasons.append(f"aspect ratio {w / h:.2f} vs {tw / th:.2f}")
        if not reasons:
            return None
        return (f"frames are {w}x{h}, the model learned {tw}x{th} ({'; '.join(reasons)}): "
                f"resized by 1/{s:.2f}; if objects in these frames are not {s:.2f}x their "
                "size in the training frames, give --input_scale")


def resize_image(image: np.ndarray, factor: float) -> np.ndarray:
    """Resizes a uint8 frame by ``factor`` (area-averaging down, bilinear up)."""
    h, w = image.shape[:2]
    size = (max(1, int(round(w * factor))), max(1, int(round(h * factor))))
    method = cv2.INTER_AREA if factor < 1.0 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=method)


def resize_probs(probs: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of class probabilities ``[h, w, K]`` to ``[H, W, K]`` (float32)."""
    out = cv2.resize(np.asarray(probs, np.float32), (size_hw[1], size_hw[0]),
                     interpolation=cv2.INTER_LINEAR)
    return out.reshape(size_hw[0], size_hw[1], -1)
