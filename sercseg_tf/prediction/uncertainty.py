"""How sure the model is of a frame: a per-frame confidence from its class probabilities.

For class probabilities ``p`` (K classes) at every pixel::

    H(x)       = -sum_k p_k(x) log p_k(x) / log K       normalised entropy, in [0, 1]
    R          = predicted foreground (oocyte, sERC, needle), dilated by BAND_PX pixels
    confidence = 1 - mean_{x in R} H(x)                 (R empty: mean over the frame)

The region R keeps the large, easy background from diluting the measure: what matters
for the features is the objects and their outlines, where a model hesitates first. A
frame below ``--min_confidence`` is flagged ``low_confidence`` in ``features.csv``;
``--select N`` picks the N least confident frames to annotate next (uncertainty
sampling, Settles 2009, "Active Learning Literature Survey", §3.1).

Reference points: confidence 1 is a model certain everywhere; a pixel at p = 0.9 for
one class (the rest split evenly) has H = 0.31, at p = 0.99 H = 0.05; an untrained
model is near 0. `DEFAULT_MIN_CONFIDENCE` is a starting point, not a calibrated
threshold: look at the frames it flags and adjust it to your data.
"""

from __future__ import annotations

import cv2
import numpy as np

from sercseg_tf import labels

BAND_PX = 3
DEFAULT_MIN_CONFIDENCE = 0.8


def normalized_entropy(probs: np.ndarray) -> np.ndarray:
    """``-sum p log p / log K`` per pixel of ``probs [H, W, K]``, in [0, 1] (0 log 0 = 0)."""
    p = np.clip(np.asarray(probs, np.float32), 0.0, 1.0)
    k = p.shape[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return np.clip(-terms.sum(axis=-1) / np.log(k), 0.0, 1.0)


def confidence(probs: np.ndarray, label_map: np.ndarray, band_px: int = BAND_PX) -> float:
    """The frame's confidence (module docstring) from probabilities and its label map."""
    entropy = normalized_entropy(probs)
    foreground = (np.asarray(label_map) != labels.BACKGROUND).astype(np.uint8)
    if band_px > 0 and foreground.any():
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band_px + 1,) * 2)
        foreground = cv2.dilate(foreground, kernel)
    region = foreground.astype(bool)
    values = entropy[region] if region.any() else entropy
    return float(1.0 - values.mean()) if values.size else float("nan")
