"""Segmentation and agreement metrics of the report: Tables 2 and 3 and agreement.

This module computes; `sercseg_tf.reporting.tables` only formats what it returns. The
table functions take the per-frame table of a run (``frames.csv``: one row per held-out
frame, columns named in `sercseg_tf.layout`) and return the DataFrames that the report
writes to ``MODEL_DIR/report/*.csv``. Pure NumPy/pandas: no TensorFlow, no matplotlib.

Definitions (paper §2.4, §3). A = automatic value, M = manual value of a feature.

- IoU (`per_class_iou`): ``IoU_c = |P_c ∩ G_c| / |P_c ∪ G_c|`` per class and frame over
  the pixels not labelled ignore (Jaccard index; Everingham et al. 2010, PASCAL VOC); a
  class absent from both maps is NaN.
- Table 2 (`case_iou_table`): per case, the mean over its frames of each class's IoU,
  NaN left out; the "average" column is the mean of the class means of that case; the
  AVG row is the mean of the per-case rows (the paper's Table 2 AVG row equals the mean
  of its case rows).
- Table 3 (`relative_error_table`): relative error, eq. 5, ``RE = |A − M| / |M| · 100``
  per frame and feature (`relative_error`, `relative_error_frames`). Frames where A or M
  is NaN, or where ``|M| <= floor`` (`DEFAULT_MIN_ABS_MANUAL`: 0 for f1, f2; 1 px for
  f3, f4), are left out; those under the floor are counted (``fK_excluded``). Per case
  AVG = mean and SD = sample standard deviation (ddof=1) over the frames; the AVG row is
  the mean of the per-case AVG and SD (as the paper's).
- Absolute error (`absolute_error_table`): per case mean and sample SD of ``|A − M|``
  (feature units; px for f3, f4) and of the needle-tip distance; AVG row = mean of the
  case rows.
- Agreement (`agreement_table`), pooled over the frames of all cases where both values
  are finite; it matters most for f3 and f4, which cross zero and make eq. 5 unstable:
  Bland–Altman bias ``mean(A − M)`` and 95 % limits ``bias ± 1.96·SD(A − M)``
  (`bland_altman`; Bland & Altman 1986, Lancet 327:307–310); ICC(2,1), two-way random
  effects, absolute agreement, single measurement (`icc_2_1`; Shrout & Fleiss 1979,
  Psychol. Bull. 86:420–428); Lin's concordance correlation coefficient
  ``2·s_AM / (s_A² + s_M² + (Ā − M̄)²)`` with 1/n moments (`lins_ccc`; Lin 1989,
  Biometrics 45:255–268); mean and median absolute error.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from sercseg_tf import layout
from sercseg_tf.features import FEATURES
from sercseg_tf.labels import CLASS_NAMES, EVAL_CLASSES, IGNORE_LABEL

# |M| floor of the relative error: pairs with |M| <= floor give NaN (left out of the
# means and counted). f1 and f2 are positive ratios, so only M = 0 is excluded; f3 and
# f4 are pixel distances that cross zero, and below one pixel eq. 5 measures the
# rounding of the centroid and the tip rather than the segmentation.
DEFAULT_MIN_ABS_MANUAL: dict[str, float] = {"f1": 0.0, "f2": 0.0, "f3": 1.0, "f4": 1.0}
# Label of the last row of the per-case tables (mean over cases).
AVG_ROW = "AVG"
# Table 2 class columns, in the order of `layout.IOU_COLUMNS` (labels.EVAL_CLASSES).
IOU_CLASS_NAMES: tuple[str, ...] = tuple(CLASS_NAMES[c] for c in EVAL_CLASSES)
# Index label of the needle-tip row of `agreement_table`.
TIP_ROW = "tip_px"

_CASE = layout.CASE_COLUMN
_FRAME = layout.FRAME_COLUMN
_TIP = layout.TIP_ERROR_COLUMN


# ---------------------------------------------------------------------------------------
# Per image and per pair of values.


def per_class_iou(
    pred: np.ndarray,
    gt: np.ndarray,
    classes: Sequence[int] = EVAL_CLASSES,
    ignore_label: int | None = IGNORE_LABEL,
) -> dict[int, float]:
    """Intersection over union per class of one image.

    IoU_c = |P_c ∩ G_c| / |P_c ∪ G_c| over the pixels where ``gt != ignore_label``
    (Jaccard index; Everingham et al. 2010, PASCAL VOC).

    Args:
        pred: predicted class map, any integer dtype.
        gt: ground-truth class map of the same shape.
        classes: class ids to report.
        ignore_label: gt value whose pixels are excluded; None excludes nothing.

    Returns:
        {class id: IoU}; NaN where the class is absent from both maps (these are left
        out of the means of `case_iou_table`).

    Raises:
        ValueError: if the shapes differ.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
    valid = np.ones(gt.shape, dtype=bool) if ignore_label is None else gt != ignore_label
    out: dict[int, float] = {}
    for c in classes:
        p = (pred == c) & valid
        g = (gt == c) & valid
        union = np.count_nonzero(p | g)
        out[int(c)] = float(np.count_nonzero(p & g)) / union if union else math.nan
    return out


def relative_error(
    auto: np.ndarray | Sequence[float] | float,
    manual: np.ndarray | Sequence[float] | float,
    min_abs_manual: float = 0.0,
) -> np.ndarray:
    """Relative error in percent, eq. 5: |A − M| / |M| × 100.

    Args:
        auto: automatic values A.
        manual: manual values M (same shape).
        min_abs_manual: floor on |M|; where |M| <= floor (or A or M is NaN) the
            result is NaN. The default 0 only excludes M = 0.

    Returns:
        float64 array of relative errors (%).
    """
    a = np.asarray(auto, dtype=np.float64)
    m = np.asarray(manual, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(m) & (np.abs(m) > min_abs_manual)
    out = np.full(np.broadcast(a, m).shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(ok, np.abs(a - m) / np.abs(m) * 100.0, out)
    return out


@dataclasses.dataclass(frozen=True)
class BlandAltman:
    """Bland–Altman agreement of A with M (differences d = A − M).

    The field names are the columns of `agreement_table` (and of ``agreement.csv``).

    Attributes:
        bias: mean difference.
        sd_diff: sample standard deviation of the differences (ddof=1).
        loa_low: bias − 1.96·sd_diff (lower 95 % limit of agreement).
        loa_high: bias + 1.96·sd_diff.
        n: number of finite pairs.
    """

    bias: float
    sd_diff: float
    loa_low: float
    loa_high: float
    n: int


def _finite_pairs(a, b) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in length: {a.size} != {b.size}")
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


def bland_altman(auto, manual) -> BlandAltman:
    """Bias and 95 % limits of agreement (Bland & Altman 1986, Lancet 327:307–310).

    bias = mean(A − M); limits = bias ± 1.96·SD(A − M) with the sample SD. Pairs with
    a NaN are dropped. Fewer than two pairs give NaN SD and limits.

    Args:
        auto: automatic values A.
        manual: manual values M.

    Returns:
        `BlandAltman`.
    """
    a, m = _finite_pairs(auto, manual)
    d = a - m
    n = int(d.size)
    bias = float(d.mean()) if n else math.nan
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    return BlandAltman(bias, sd, bias - 1.96 * sd, bias + 1.96 * sd, n)


def icc_2_1(ratings) -> float:
    """ICC(2,1): two-way random effects, absolute agreement, single measures.

    Shrout & Fleiss (1979), Psychol. Bull. 86:420–428, Case 2 (McGraw & Wong 1996
    ICC(A,1)). For n targets rated by k raters, from the two-way ANOVA mean squares
    BMS (targets), JMS (raters) and EMS (residual):

        ICC(2,1) = (BMS − EMS) / (BMS + (k − 1)·EMS + k·(JMS − EMS) / n).

    Args:
        ratings: array (n targets, k raters), e.g. ``np.column_stack([manual, auto])``.
            Rows with any NaN are dropped.

    Returns:
        The ICC; NaN with fewer than two complete rows or a zero denominator (e.g.
        all ratings equal).

    Raises:
        ValueError: if ``ratings`` is not 2-D with at least two columns.
    """
    x = np.asarray(ratings, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"ratings must be (n targets, k >= 2 raters), got shape {x.shape}")
    x = x[np.all(np.isfinite(x), axis=1)]
    n, k = x.shape
    if n < 2:
        return math.nan
    grand = x.mean()
    ss_rows = k * np.sum((x.mean(axis=1) - grand) ** 2)
    ss_cols = n * np.sum((x.mean(axis=0) - grand) ** 2)
    ss_err = np.sum((x - grand) ** 2) - ss_rows - ss_cols
    bms = ss_rows / (n - 1)
    jms = ss_cols / (k - 1)
    ems = ss_err / ((n - 1) * (k - 1))
    den = bms + (k - 1) * ems + k * (jms - ems) / n
    if den == 0:
        return math.nan
    return float((bms - ems) / den)


def lins_ccc(auto, manual) -> float:
    """Lin's concordance correlation coefficient (Lin 1989, Biometrics 45:255–268).

        ρ_c = 2·s_am / (s_a² + s_m² + (ā − m̄)²)

    with population (1/n) variances and covariance, as in Lin's estimator. Identical
    non-constant data give 1. Pairs with a NaN are dropped.

    Args:
        auto: values A.
        manual: values M.

    Returns:
        ρ_c; NaN with no pairs or a zero denominator (both constant and equal).
    """
    a, m = _finite_pairs(auto, manual)
    if a.size == 0:
        return math.nan
    da, dm = a - a.mean(), m - m.mean()
    den = np.mean(da**2) + np.mean(dm**2) + (a.mean() - m.mean()) ** 2
    if den == 0:
        return math.nan
    return float(2.0 * np.mean(da * dm) / den)


# ---------------------------------------------------------------------------------------
# Tables from the per-frame table (frames.csv layout).


def _require_columns(frames: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frames.columns]
    if missing:
        raise ValueError(f"{what}: the frame table is missing columns {missing}")


def _feature_columns(features: Iterable[str] = FEATURES) -> list[str]:
    return [layout.feature_column(s, f) for f in features for s in layout.SOURCES]


def _auto_manual(frames: pd.DataFrame, feature: str) -> tuple[np.ndarray, np.ndarray]:
    """One feature's automatic and manual values (float64, NaN where missing)."""
    a = frames[layout.feature_column("auto", feature)].to_numpy(dtype=np.float64)
    m = frames[layout.feature_column("manual", feature)].to_numpy(dtype=np.float64)
    return a, m


def _finite(values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return v[np.isfinite(v)]


def _mean(v: np.ndarray) -> float:
    return float(v.mean()) if v.size else math.nan


def _sample_sd(v: np.ndarray) -> float:
    return float(v.std(ddof=1)) if v.size > 1 else math.nan


def _floors(min_abs_manual: float | Mapping[str, float] | None) -> dict[str, float]:
    if min_abs_manual is None:
        min_abs_manual = DEFAULT_MIN_ABS_MANUAL
    if isinstance(min_abs_manual, Mapping):
        return {f: float(min_abs_manual.get(f, 0.0)) for f in FEATURES}
    return {f: float(min_abs_manual) for f in FEATURES}


def case_iou_table(frames: pd.DataFrame) -> pd.DataFrame:
    """Table 2: mean IoU per case and class, the class average, and an AVG row.

    Args:
        frames: per-frame table with columns case and `layout.IOU_COLUMNS` (NaN where
            the class is absent from both masks; skipped by the means).

    Returns:
        DataFrame indexed by case id (int, sorted) then `AVG_ROW`, columns
        `IOU_CLASS_NAMES` ("oocyte", "serc", "needle"), "average" (mean of the class
        means of the row) and "n_frames". The AVG row is the mean of the case rows, its
        n_frames the total. Object dtype, so that case rows keep integer counts.

    Raises:
        ValueError: if a needed column is missing.
    """
    cols = list(layout.IOU_COLUMNS)
    _require_columns(frames, [_CASE, *cols], "Table 2")
    per_case = frames.groupby(_CASE)[cols].mean()  # pandas mean skips NaN
    per_case.columns = list(IOU_CLASS_NAMES)
    per_case["average"] = per_case[list(IOU_CLASS_NAMES)].mean(axis=1)
    per_case["n_frames"] = frames.groupby(_CASE).size()
    per_case.index = per_case.index.astype(int)
    avg = per_case[[*IOU_CLASS_NAMES, "average"]].mean(axis=0)
    avg["n_frames"] = per_case["n_frames"].sum()
    out = pd.concat([per_case.astype(object), avg.to_frame(AVG_ROW).T.astype(object)])
    out.index.name = _CASE
    return out


def relative_error_frames(frames: pd.DataFrame,
                          min_abs_manual: float | Mapping[str, float] | None = None,
                          ) -> pd.DataFrame:
    """Relative error (eq. 5, %) of every frame and feature.

    Args:
        frames: per-frame table with columns case, frame and ``{manual,auto}_fK``.
        min_abs_manual: |M| floor, one number or {feature: floor}; None means
            `DEFAULT_MIN_ABS_MANUAL`. Frames under the floor, or with a NaN, get NaN.

    Returns:
        DataFrame with the index of ``frames`` and columns case, frame, f1..f4.

    Raises:
        ValueError: if a needed column is missing.
    """
    _require_columns(frames, [_CASE, _FRAME, *_feature_columns()], "relative error")
    floors = _floors(min_abs_manual)
    out = frames[[_CASE, _FRAME]].copy()
    for f in FEATURES:
        a, m = _auto_manual(frames, f)
        out[f] = relative_error(a, m, floors[f])
    return out


def _relative_error_cells(case_frames: pd.DataFrame, errors: pd.DataFrame, feature: str,
                          floor: float) -> dict[str, float | int]:
    """Table 3 cells of one case and feature: avg, sd, n (frames used), excluded."""
    v = _finite(errors[feature])
    a, m = _auto_manual(case_frames, feature)
    under_floor = np.isfinite(a) & np.isfinite(m) & (np.abs(m) <= floor)
    return {f"{feature}_avg": _mean(v), f"{feature}_sd": _sample_sd(v),
            f"{feature}_n": int(v.size), f"{feature}_excluded": int(under_floor.sum())}


def relative_error_table(frames: pd.DataFrame,
                         min_abs_manual: float | Mapping[str, float] | None = None,
                         ) -> pd.DataFrame:
    """Table 3: per case mean and sample SD of the relative error (eq. 5, %) per feature.

    Args:
        frames: per-frame table with columns case, frame and ``{manual,auto}_fK``.
        min_abs_manual: |M| floor as for `relative_error_frames`.

    Returns:
        DataFrame indexed by case id (int, sorted) then `AVG_ROW`, columns ``fK_avg``
        (mean), ``fK_sd`` (sample SD, ddof=1), ``fK_n`` (frames used) and
        ``fK_excluded`` (frames with both values but |M| <= floor) for f1..f4. The AVG
        row holds the mean of the case rows' avg and sd and the totals of n and
        excluded. Object dtype, so that counts stay integers. Empty without frames.

    Raises:
        ValueError: if a needed column is missing.
    """
    frames = frames.reset_index(drop=True)  # errors.loc[grp.index] needs a unique index
    floors = _floors(min_abs_manual)
    errors = relative_error_frames(frames, floors)
    rows = {}
    for case, grp in frames.groupby(_CASE):
        row: dict[str, float | int] = {}
        for f in FEATURES:
            row.update(_relative_error_cells(grp, errors.loc[grp.index], f, floors[f]))
        rows[int(case)] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    if out.empty:
        return out
    avg = {c: (out[c].mean() if c.endswith(("_avg", "_sd")) else out[c].sum())
           for c in out.columns}
    out = pd.concat([out.astype(object), pd.DataFrame([avg], index=[AVG_ROW])])
    out.index.name = _CASE
    return out


def absolute_error_table(frames: pd.DataFrame) -> pd.DataFrame:
    """Per case mean and sample SD of |A − M| per feature and of the needle-tip distance.

    Args:
        frames: per-frame table with columns case, ``{manual,auto}_fK`` and, optionally,
            ``tip_error_px`` (`layout.TIP_ERROR_COLUMN`).

    Returns:
        DataFrame indexed by case id (int, sorted) then `AVG_ROW` (mean of the case
        rows), columns ``fK_mae``, ``fK_sd`` for f1..f4 (feature units; px for f3, f4)
        and ``tip_mae``, ``tip_sd`` (px) when the tip column is present. Pairs with a
        NaN are left out. Empty without frames.

    Raises:
        ValueError: if a needed column is missing.
    """
    _require_columns(frames, [_CASE, *_feature_columns()], "absolute error")
    rows = {}
    for case, grp in frames.groupby(_CASE):
        row = {}
        for f in FEATURES:
            a, m = _auto_manual(grp, f)
            ae = _finite(np.abs(a - m))
            row[f"{f}_mae"], row[f"{f}_sd"] = _mean(ae), _sample_sd(ae)
        if _TIP in grp:
            t = _finite(grp[_TIP])
            row["tip_mae"], row["tip_sd"] = _mean(t), _sample_sd(t)
        rows[int(case)] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    if out.empty:
        return out
    out = pd.concat([out, out.mean(axis=0).to_frame(AVG_ROW).T])
    out.index.name = _CASE
    return out


def _agreement_row(auto: np.ndarray, manual: np.ndarray) -> dict[str, float | int]:
    """The `agreement_table` row of one feature (all frames pooled)."""
    a, m = _finite_pairs(auto, manual)
    ba = bland_altman(a, m)
    ae = np.abs(a - m)
    return {
        "n": ba.n,
        "n_nan_manual": int((~np.isfinite(manual)).sum()),
        "n_nan_auto": int((~np.isfinite(auto)).sum()),
        "mean_manual": _mean(m), "mean_auto": _mean(a),
        "bias": ba.bias, "sd_diff": ba.sd_diff, "loa_low": ba.loa_low, "loa_high": ba.loa_high,
        "icc_2_1": icc_2_1(np.column_stack([m, a])), "lins_ccc": lins_ccc(a, m),
        "mae": _mean(ae), "median_ae": float(np.median(ae)) if ae.size else math.nan,
    }


def agreement_table(frames: pd.DataFrame) -> pd.DataFrame:
    """Agreement of automatic with manual values per feature, pooled over all frames.

    Args:
        frames: per-frame table with columns ``{manual,auto}_fK`` and, optionally,
            ``tip_error_px`` (`layout.TIP_ERROR_COLUMN`).

    Returns:
        DataFrame indexed by feature (f1..f4, then `TIP_ROW` when the tip column is
        present), columns n (finite pairs), n_nan_manual, n_nan_auto, mean_manual,
        mean_auto, bias, sd_diff, loa_low, loa_high (`bland_altman`, A − M), icc_2_1,
        lins_ccc, mae (mean |A − M|) and median_ae. The tip row holds the Euclidean
        manual-to-automatic tip distance: only n, mae and median_ae apply there.

    Raises:
        ValueError: if a needed column is missing.
    """
    _require_columns(frames, _feature_columns(), "agreement")
    rows = {f: _agreement_row(*_auto_manual(frames, f)) for f in FEATURES}
    if _TIP in frames:
        t = _finite(frames[_TIP])
        rows[TIP_ROW] = {"n": int(t.size), "mae": _mean(t),
                         "median_ae": float(np.median(t)) if t.size else math.nan}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "feature"
    return out
