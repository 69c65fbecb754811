"""One frame's row of ``features.csv``: f1-f4, areas, needle depth, calibrated columns.

`feature_row` is f1-f4 and their ingredients (`sercseg_tf.features.compute_features`,
eq. 1-4) plus ``area_<class>`` pixel counts and ``tip_depth_px``:

    tip_depth_px = max(0, distance from the needle tip (T_nx, T_ny) to the boundary of
                   the convex hull of the largest oocyte region component)

i.e. how far the tip has gone into the oocyte, 0 while outside, NaN without an oocyte
or a needle. The convex hull closes the notch the needle cuts into the oocyte's mask
(the needle is painted on top), so the tip lies inside the oocyte it has entered.

`calibrated` adds micrometre columns for a known ``um_per_px``: ``f3_um, f4_um,
tip_depth_um`` (= px * um_per_px) and ``S_o_um2, S_s_um2, area_<class>_um2``
(= px * um_per_px^2). Both are NumPy/SciPy/OpenCV; no TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
from scipy import ndimage as ndi

from sercseg_tf import features as features_lib
from sercseg_tf import labels

# FeatureResult.as_dict() keys renamed for the CSV (the paper's symbols -> plain names).
RENAMED_FEATURE_KEYS: dict[str, str] = {
    "C_ox": "oocyte_cx", "C_oy": "oocyte_cy", "T_nx": "tip_x", "T_ny": "tip_y",
}
LENGTH_COLUMNS: tuple[str, ...] = ("f3", "f4", "tip_depth")
AREA_COLUMNS: tuple[str, ...] = ("S_o", "S_s", *(f"area_{labels.CLASS_NAMES[c]}"
                                                 for c in labels.EVAL_CLASSES))


def tip_depth_px(label_map: np.ndarray, tip_xy: tuple[float, float]) -> float:
    """Distance (px) the needle tip lies inside the oocyte's convex hull; 0 outside.

    NaN when the tip is NaN or there are no oocyte / sERC pixels.
    """
    if not all(math.isfinite(v) for v in tip_xy):
        return math.nan
    region = ndi.binary_fill_holes((label_map == labels.OOCYTE) | (label_map == labels.SERC))
    comps, n = ndi.label(region, structure=np.ones((3, 3), bool))
    if n == 0:
        return math.nan
    largest = 1 + int(np.argmax(np.bincount(comps.ravel())[1:]))
    ys, xs = np.nonzero(comps == largest)
    hull = cv2.convexHull(np.stack([xs, ys], axis=1).astype(np.float32))
    return max(0.0, float(cv2.pointPolygonTest(hull, (float(tip_xy[0]), float(tip_xy[1])),
                                               True)))


def feature_row(label_map: np.ndarray) -> dict[str, Any]:
    """Features (eq. 1-4, `sercseg_tf.features.compute_features`) of one label map as a row.

    Adds ``area_<class>`` pixel counts for oocyte, sERC and needle and ``tip_depth_px``;
    renames the centroid and tip coordinates to ``oocyte_cx, oocyte_cy, tip_x, tip_y``.
    """
    lab = np.asarray(label_map)
    if lab.ndim == 3:
        lab = lab[..., 0]
    row = {RENAMED_FEATURE_KEYS.get(k, k): v
           for k, v in features_lib.compute_features(lab).as_dict().items()}
    for c in labels.EVAL_CLASSES:
        row[f"area_{labels.CLASS_NAMES[c]}"] = int(np.count_nonzero(lab == c))
    row["tip_depth_px"] = tip_depth_px(lab, (row["tip_x"], row["tip_y"]))
    return row


def calibrated(row: Mapping[str, Any], um_per_px: float) -> dict[str, float]:
    """Micrometre columns of a `feature_row` (see the module docstring)."""
    out = {}
    for name in LENGTH_COLUMNS:
        key = "tip_depth_px" if name == "tip_depth" else name
        out[f"{name}_um"] = float(row[key]) * um_per_px
    for name in AREA_COLUMNS:
        out[f"{name}_um2"] = float(row[name]) * um_per_px ** 2
    return out
