"""Objective ICSI shape features f1–f4 from a class label map (the paper's eq. 1–4).

All features come from one function, `compute_features`, so manual and automatic label
maps go through identical code. Pure NumPy/SciPy; no TensorFlow.

Conventions:
    * Image coordinates: x = column index (right), y = row index (down), in pixels; a
      pixel's centre is at integer (x, y).
    * Class ids from `sercseg_tf.labels` (0 background, 1 oocyte, 2 sERC, 3 needle, 255
      ignore). Ignore pixels and unknown ids count as no class.
    * Connected components use 8-connectivity.

The four features (Shimotsu, Mori et al., "An automated segmentation system for oocytes
with smooth endoplasmic reticulum clusters based on DeepLab", §2.3):

    f1 = 4π · S_s / L_s²          (eq. 1, circularity of the sERC)
    f2 = S_s / S_o                (eq. 2, sERC area over oocyte area)
    f3 = C_ox − T_nx              (eq. 3, x distance oocyte centroid → needle tip)
    f4 = C_oy − T_ny              (eq. 4, y distance oocyte centroid → needle tip)

A missing region gives NaN with a reason in `FeatureResult.nan_reasons`; nothing raises
for a 2-D integer label map of any content or size (including 0×0).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from sercseg_tf.labels import NEEDLE, OOCYTE, SERC

# The feature names, in the paper's order (eq. 1-4).
FEATURES: tuple[str, ...] = ("f1", "f2", "f3", "f4")

# Standard deviation (px) of the Gaussian applied to a binary mask before its 0.5
# iso-contour is traced for the perimeter. Chosen on digitised ellipses (semi-axes
# >= 10 px, circularity 0.62–1.0): 1.5 px gives a circularity error within ±0.8 %
# (mean −0.2 %); 1.0 px leaves staircase residue (−1 %), 2.0 px rounds thin ellipses
# (+1.3 %). See bench/bench_circularity.py.
DEFAULT_PERIMETER_SIGMA = 1.5
# Pixels whose projection on the needle axis is within this distance (px) of the
# maximum are averaged to give the tip. A narrow band: on bevelled needles a wider band
# pulls the tip sideways along the bevel (max error 1.7 px with 0.5 px, 1.3 px with
# 0.25 px, with the offset below).
DEFAULT_TIP_BAND_PX = 0.25
# Distance (px) the averaged pixel centres are moved outwards along the needle axis.
# Half a pixel is where the digital boundary lies (the 0.5 iso-contour convention of
# the perimeter estimator); the first pixel centre inside a sharp apex of angle β lies
# a further ~0.5 px behind it on average (a triangle of area ~1 px² is needed to
# contain one centre). Calibrated on rasterised bevelled needles (bevel 35–60°, tilt
# ±30°, all entry sides): 1.0 px gives mean 0.62 px and max 1.34 px error, 0.5 px gives
# mean 0.74 px and max 1.65 px. On a blunt end the tip lands ~0.5 px outside the mask.
TIP_EDGE_OFFSET_PX = 1.0

SIDES: tuple[str, ...] = ("left", "top", "right", "bottom")
_EIGHT = np.ones((3, 3), dtype=bool)

# Corner offsets of a marching-squares cell, clockwise on screen from top-left:
# corner k = (x, y); edge k joins corner k and corner k+1 (mod 4).
_CX = np.array([0.0, 1.0, 1.0, 0.0])
_CY = np.array([0.0, 0.0, 1.0, 1.0])


@dataclasses.dataclass
class FeatureResult:
    """Features of one label map and the quantities behind them.

    Attributes:
        f1: sERC circularity 4π·S/L² (eq. 1); area-weighted mean over sERC clusters.
        f2: S_s / S_o (eq. 2).
        f3: C_ox − T_nx in px (eq. 3).
        f4: C_oy − T_ny in px (eq. 4).
        S_s: sERC area, pixel count of all sERC pixels (used in f2).
        L_s: sERC perimeter, summed sub-pixel contour length of all clusters (px).
        S_s_contour: area enclosed by the same contours as L_s (px²; used in f1).
        S_o: oocyte area, pixel count of (oocyte ∪ sERC) with holes filled.
        oocyte_centroid: (C_ox, C_oy), centre of mass of that oocyte region.
        needle_tip: (T_nx, T_ny).
        needle_entry_side: "left", "top", "right" or "bottom" (None without needle).
        n_serc_clusters: number of 8-connected sERC components.
        n_oocyte_components: number of 8-connected components of the oocyte region.
        n_needle_components: number of 8-connected needle components.
        serc_circularities: per-cluster circularity, largest cluster first.
        nan_reasons: feature or quantity name -> why it is NaN.
    """

    f1: float = math.nan
    f2: float = math.nan
    f3: float = math.nan
    f4: float = math.nan
    S_s: float = 0.0
    L_s: float = math.nan
    S_s_contour: float = math.nan
    S_o: float = 0.0
    oocyte_centroid: tuple[float, float] = (math.nan, math.nan)
    needle_tip: tuple[float, float] = (math.nan, math.nan)
    needle_entry_side: str | None = None
    n_serc_clusters: int = 0
    n_oocyte_components: int = 0
    n_needle_components: int = 0
    serc_circularities: tuple[float, ...] = ()
    nan_reasons: dict[str, str] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Returns a flat dict for one CSV row (tuples split, reasons joined by '; ')."""
        return {
            "f1": self.f1,
            "f2": self.f2,
            "f3": self.f3,
            "f4": self.f4,
            "S_s": self.S_s,
            "L_s": self.L_s,
            "S_s_contour": self.S_s_contour,
            "S_o": self.S_o,
            "C_ox": self.oocyte_centroid[0],
            "C_oy": self.oocyte_centroid[1],
            "T_nx": self.needle_tip[0],
            "T_ny": self.needle_tip[1],
            "needle_entry_side": self.needle_entry_side or "",
            "n_serc_clusters": self.n_serc_clusters,
            "n_oocyte_components": self.n_oocyte_components,
            "n_needle_components": self.n_needle_components,
            "nan_reasons": "; ".join(f"{k}: {v}" for k, v in self.nan_reasons.items()),
        }


def contour_area_length(values: np.ndarray, level: float = 0.5) -> tuple[float, float]:
    """Area and length of the iso-contour ``values == level`` (marching squares).

    The grid point of ``values[i, j]`` is at (x=j, y=i). Each 2×2 cell contributes one
    or two straight segments whose end points are linearly interpolated on the cell
    edges (Lorensen & Cline 1987; the 2-D case as in skimage.measure.find_contours).
    Saddle cells are resolved by the cell-centre mean. The array is padded with a
    value below ``level`` so that every contour is closed. Segments are oriented with
    the region ``values > level`` on one side, so the enclosed area is the shoelace sum
    over all segments (holes subtract) without linking them into chains:

        A = ½ Σ (x_p y_q − x_q y_p),     L = Σ |q − p|.

    Args:
        values: 2-D float array.
        level: iso-value.

    Returns:
        (area, length) in pixel units; (0.0, 0.0) when no cell crosses ``level``.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.size == 0:
        return 0.0, 0.0
    v = np.pad(v, 1, constant_values=min(float(v.min()), level) - 1.0)
    corners = np.stack([v[:-1, :-1], v[:-1, 1:], v[1:, 1:], v[1:, :-1]], axis=-1)
    inside = corners > level
    n_cross = np.zeros(inside.shape[:2], dtype=np.int64)
    for k in range(4):
        n_cross += inside[..., k] != inside[..., (k + 1) % 4]
    rows, cols = np.nonzero(n_cross)
    if rows.size == 0:
        return 0.0, 0.0
    s = inside[rows, cols]
    c = corners[rows, cols]
    nc = n_cross[rows, cols]
    # Crossing point on every edge (only used where that edge crosses).
    pts = np.empty((rows.size, 4, 2))
    for k in range(4):
        k1 = (k + 1) % 4
        den = c[:, k1] - c[:, k]
        safe = np.where(den == 0, 1.0, den)
        t = np.clip(np.where(den == 0, 0.5, (level - c[:, k]) / safe), 0.0, 1.0)
        pts[:, k, 0] = cols + _CX[k] + t * (_CX[k1] - _CX[k])
        pts[:, k, 1] = rows + _CY[k] + t * (_CY[k1] - _CY[k])

    starts, ends, normals = [], [], []
    two = nc == 2
    if two.any():
        st, pt = s[two], pts[two]
        crossing = np.stack([st[:, k] != st[:, (k + 1) % 4] for k in range(4)], axis=-1)
        edge = np.argsort(~crossing, axis=1, kind="stable")[:, :2]
        starts.append(np.take_along_axis(pt, edge[:, :1, None], axis=1)[:, 0])
        ends.append(np.take_along_axis(pt, edge[:, 1:2, None], axis=1)[:, 0])
        w_in = st / st.sum(axis=1, keepdims=True)
        w_out = ~st / (~st).sum(axis=1, keepdims=True)
        # Vector from the outside corners' mean to the inside corners' mean.
        normals.append(np.stack([(w_in - w_out) @ _CX, (w_in - w_out) @ _CY], axis=-1))
    four = nc == 4
    if four.any():
        st, pt, cf = s[four], pts[four], c[four]
        # Centre inside like corner 0 -> corners 0 and 2 joined -> cut off 1 and 3.
        cut_13 = (cf.mean(axis=1) > level) == st[:, 0]
        for sel, cut in ((cut_13, (1, 3)), (~cut_13, (0, 2))):
            for k in cut:
                sign = np.where(st[sel, k], 1.0, -1.0)
                starts.append(pt[sel, (k - 1) % 4])
                ends.append(pt[sel, k])
                normals.append(sign[:, None] * np.array([_CX[k] - 0.5, _CY[k] - 0.5]))
    p = np.concatenate(starts)
    q = np.concatenate(ends)
    m = np.concatenate(normals)
    d = q - p
    # Orient so that the inside lies on the same side of every segment.
    flip = (d[:, 0] * m[:, 1] - d[:, 1] * m[:, 0]) < 0
    p, q = np.where(flip[:, None], q, p), np.where(flip[:, None], p, q)
    area = 0.5 * float(np.sum(p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1]))
    length = float(np.hypot(q[:, 0] - p[:, 0], q[:, 1] - p[:, 1]).sum())
    return area, length


def smoothed_contour_area_length(
    mask: np.ndarray, sigma: float = DEFAULT_PERIMETER_SIGMA
) -> tuple[float, float]:
    """Area and length of the sub-pixel boundary of a binary mask.

    The mask (cropped to its bounding box with a zero margin) is blurred with a
    Gaussian of standard deviation ``sigma`` px (zero outside the image) and the 0.5
    iso-contour is traced with `contour_area_length`. The blur removes the staircase
    of the digitisation, whose length is ~5 % too long at most orientations (Dorst &
    Smeulders 1987), so a digital disc no longer reads 0.90. Area and length come from
    the same contour; the contour shrinks by about σ²κ/2 where the curvature κ is high,
    which changes both consistently (a circle stays a circle). If the blurred mask never
    reaches 0.5 (a blob of a few pixels), the unblurred mask is traced instead.

    Args:
        mask: 2-D boolean mask.
        sigma: Gaussian standard deviation in px; 0 traces the binary mask directly.

    Returns:
        (area, length); (0.0, 0.0) for an empty mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or not mask.any():
        return 0.0, 0.0
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    margin = int(math.ceil(4.0 * sigma)) + 2
    crop = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float64)
    crop = np.pad(crop, margin)
    if sigma > 0:
        blurred = ndi.gaussian_filter(crop, sigma, mode="constant", cval=0.0)
        area, length = contour_area_length(blurred, 0.5)
        if area > 0 and length > 0:
            return area, length
    return contour_area_length(crop, 0.5)


def circularity(mask: np.ndarray, sigma: float = DEFAULT_PERIMETER_SIGMA) -> float:
    """Circularity 4π·A/L² of a binary mask (eq. 1), A and L from one sub-pixel contour.

    See `smoothed_contour_area_length` for the estimator. On digitised ellipses with
    semi-axes >= 10 px the result is within 1 % of 4πab/P² (P by Ramanujan).

    Args:
        mask: 2-D boolean mask (all of it is measured, whatever its components).
        sigma: Gaussian standard deviation in px.

    Returns:
        The circularity, NaN for an empty mask.
    """
    area, length = smoothed_contour_area_length(mask, sigma)
    if length <= 0:
        return math.nan
    return 4.0 * math.pi * area / length**2


def _components(mask: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """Returns (labels, count, pixel count per component indexed 1..count)."""
    labels, count = ndi.label(mask, structure=_EIGHT)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    return labels, int(count), sizes


def _entry_side(comp: np.ndarray) -> tuple[str | None, np.ndarray | None]:
    """Border side the component touches with most pixels, and those pixels' mean (x, y).

    Ties are broken in the order left, top, right, bottom. Returns (None, None) if the
    component touches no border.
    """
    h, w = comp.shape
    border = {
        "left": comp[:, 0],
        "top": comp[0, :],
        "right": comp[:, w - 1],
        "bottom": comp[h - 1, :],
    }
    counts = {side: int(np.count_nonzero(px)) for side, px in border.items()}
    side = max(SIDES, key=lambda sd: counts[sd])
    if counts[side] == 0:
        return None, None
    idx = np.flatnonzero(border[side])
    coord = {"left": 0.0, "top": 0.0, "right": float(w - 1), "bottom": float(h - 1)}[side]
    if side in ("left", "right"):
        return side, np.array([coord, float(idx.mean())])
    return side, np.array([float(idx.mean()), coord])


def _nearest_side(point: np.ndarray, shape: tuple[int, int]) -> str:
    """Image border nearest to ``point`` (x, y); ties in the order of `SIDES`."""
    h, w = shape
    x, y = float(point[0]), float(point[1])
    dist = {"left": x, "top": y, "right": (w - 1) - x, "bottom": (h - 1) - y}
    return min(SIDES, key=lambda sd: dist[sd])


_INWARD = {
    "left": np.array([1.0, 0.0]),
    "top": np.array([0.0, 1.0]),
    "right": np.array([-1.0, 0.0]),
    "bottom": np.array([0.0, -1.0]),
}


def needle_tip(
    needle_mask: np.ndarray, band_px: float = DEFAULT_TIP_BAND_PX
) -> tuple[tuple[float, float], str | None]:
    """Needle tip (T_nx, T_ny) and entry side of the largest needle component.

    1. Largest 8-connected component of the mask.
    2. Entry side: the image border with most component pixels on it (ties: left, top,
       right, bottom). If it touches no border, PCA gives its two ends (extreme
       projections); the end nearer to an image border is the base and that border
       is the entry side.
    3. Axis: first principal component of the pixel coordinates, oriented from the
       entry point (mean of its border pixels, or the base end) towards the component
       centroid; if those coincide, along the entry side's inward normal.
    4. Tip: mean of the pixels whose projection on the axis lies within ``band_px``
       of the maximum projection, moved `TIP_EDGE_OFFSET_PX` (1.0 px) outwards along
       the axis (half a pixel to the digital boundary plus the mean sampling lag of
       a sharp apex).

    On crisp rasterised bevelled needles (bevel 35–60°, any entry side, axis tilted
    up to ±30°) the tip is within 1.5 px of the true apex (mean ~0.6 px, see
    tests/test_features.py).

    Args:
        needle_mask: 2-D boolean mask of needle pixels.
        band_px: width of the projection band averaged at the tip (px).

    Returns:
        ((x, y), side); ((nan, nan), None) for an empty mask.
    """
    mask = np.asarray(needle_mask, dtype=bool)
    if mask.ndim != 2 or not mask.any():
        return (math.nan, math.nan), None
    labels, count, sizes = _components(mask)
    comp = labels == (int(np.argmax(sizes[1:])) + 1)
    ys, xs = np.nonzero(comp)
    pts = np.stack([xs, ys], axis=1).astype(np.float64)
    centroid = pts.mean(axis=0)
    centred = pts - centroid
    cov = centred.T @ centred / len(pts)
    _, vecs = np.linalg.eigh(cov)
    axis = vecs[:, -1]
    side, entry = _entry_side(comp)
    if side is None:
        proj = centred @ axis
        end_a = pts[np.argmin(proj)]
        end_b = pts[np.argmax(proj)]
        dist = [
            min(e[0], e[1], comp.shape[1] - 1 - e[0], comp.shape[0] - 1 - e[1])
            for e in (end_a, end_b)
        ]
        entry = end_a if dist[0] <= dist[1] else end_b
        side = _nearest_side(entry, comp.shape)
    direction = centroid - entry
    dot = float(direction @ axis)
    if abs(dot) < 1e-9:
        dot = float(_INWARD[side] @ axis)
    if dot < 0:
        axis = -axis
    proj = pts @ axis
    near = proj >= proj.max() - band_px
    tip = pts[near].mean(axis=0) + TIP_EDGE_OFFSET_PX * axis
    return (float(tip[0]), float(tip[1])), side


def _checked_label_map(label_map: np.ndarray) -> np.ndarray:
    """``label_map`` as a 2-D integer array (a trailing axis of size 1 squeezed).

    Raises:
        ValueError: if it is not 2-D (after squeezing) or not integer.
    """
    lab = np.asarray(label_map)
    if lab.ndim == 3 and lab.shape[-1] == 1:
        lab = lab[..., 0]
    if lab.ndim != 2:
        raise ValueError(f"label map must be 2-D, got shape {lab.shape}")
    if not (np.issubdtype(lab.dtype, np.integer) or lab.dtype == bool):
        raise ValueError(f"label map must have an integer dtype, got {lab.dtype}")
    return lab


def _serc_circularity(res: FeatureResult, serc: np.ndarray, perimeter_sigma: float) -> None:
    """Sets f1 (eq. 1) and the per-cluster sERC contour sums on ``res``.

    f1 = sum_k w_k 4 pi A_k / L_k^2 / sum_k w_k over the 8-connected clusters k, with
    A_k and L_k the area and length of one sub-pixel contour
    (`smoothed_contour_area_length`) and w_k the cluster's pixel count; clusters whose
    contour has zero length are left out (f1 NaN with a reason if all are).
    """
    labels, count, sizes = _components(serc)
    res.n_serc_clusters = count
    total_area = total_length = 0.0
    circ, weights = [], []
    for k in np.argsort(-sizes[1:], kind="stable") + 1:
        area, length = smoothed_contour_area_length(labels == k, perimeter_sigma)
        total_area += area
        total_length += length
        circ.append(4.0 * math.pi * area / length**2 if length > 0 else math.nan)
        weights.append(float(sizes[k]))
    res.serc_circularities = tuple(circ)
    res.S_s_contour = total_area
    res.L_s = total_length
    c, w = np.array(circ), np.array(weights)
    ok = np.isfinite(c)
    if ok.any():
        res.f1 = float(np.sum(c[ok] * w[ok]) / np.sum(w[ok]))
    else:
        res.nan_reasons["f1"] = "sERC contour has zero length"


def compute_features(
    label_map: np.ndarray,
    *,
    perimeter_sigma: float = DEFAULT_PERIMETER_SIGMA,
    tip_band_px: float = DEFAULT_TIP_BAND_PX,
) -> FeatureResult:
    """Computes f1–f4 (eq. 1–4) and their ingredients from one class label map.

    Definitions:
        * Oocyte region: (oocyte ∪ sERC) pixels with holes filled (all components);
          S_o its pixel count, (C_ox, C_oy) its centre of mass.
        * sERC: pixels labelled sERC; S_s their count (f2 = S_s / S_o, eq. 2).
        * f1 (eq. 1) per 8-connected sERC cluster as 4π·A/L² with A and L the area and
          length of the same sub-pixel contour (`smoothed_contour_area_length`).
          Several clusters: f1 is the area-weighted mean of the cluster circularities
          (weights = pixel counts), which equals eq. 1 for a single cluster and is not
          pulled by a few stray pixels; L_s and S_s_contour are summed over clusters
          and `n_serc_clusters` reports the count.
        * Needle tip (T_nx, T_ny) and entry side: `needle_tip`.
        * f3 = C_ox − T_nx, f4 = C_oy − T_ny (eq. 3–4), px, x right and y down.

    Args:
        label_map: 2-D integer array (a trailing axis of size 1 is squeezed); 255 and
            other ids count as no class.
        perimeter_sigma: Gaussian sigma (px) of the perimeter estimator.
        tip_band_px: projection band (px) averaged at the needle tip.

    Returns:
        A `FeatureResult`; missing regions give NaN with a reason in ``nan_reasons``.

    Raises:
        ValueError: if ``label_map`` is not 2-D (after squeezing) or not integer.
    """
    lab = _checked_label_map(label_map)
    res = FeatureResult()
    reasons = res.nan_reasons

    # Oocyte.
    oocyte = ndi.binary_fill_holes((lab == OOCYTE) | (lab == SERC)) if lab.size else lab == 1
    res.S_o = float(np.count_nonzero(oocyte))
    if res.S_o > 0:
        res.n_oocyte_components = _components(oocyte)[1]
        ys, xs = np.nonzero(oocyte)
        res.oocyte_centroid = (float(xs.mean()), float(ys.mean()))
    else:
        reasons["oocyte_centroid"] = "no oocyte or sERC pixels"

    # sERC.
    serc = lab == SERC
    res.S_s = float(np.count_nonzero(serc))
    if res.S_s > 0:
        _serc_circularity(res, serc, perimeter_sigma)
    else:
        reasons["f1"] = reasons["f2"] = reasons["L_s"] = "no sERC pixels"

    if res.S_s > 0:
        if res.S_o > 0:
            res.f2 = res.S_s / res.S_o
        else:  # Unreachable (sERC belongs to the oocyte region), kept for safety.
            reasons["f2"] = "no oocyte pixels"

    # Needle.
    needle = lab == NEEDLE
    if needle.any():
        res.n_needle_components = _components(needle)[1]
        res.needle_tip, res.needle_entry_side = needle_tip(needle, tip_band_px)
    else:
        reasons["needle_tip"] = "no needle pixels"

    for name, axis in (("f3", 0), ("f4", 1)):
        missing = []
        if res.S_o == 0:
            missing.append("no oocyte or sERC pixels")
        if not needle.any():
            missing.append("no needle pixels")
        if missing:
            reasons[name] = " and ".join(missing)
        else:
            value = res.oocyte_centroid[axis] - res.needle_tip[axis]
            setattr(res, name, float(value))
    return res
