"""Segmentation and agreement metrics for the paper's Tables 2 and 3 (NumPy/pandas).

* `per_class_iou`, `case_iou_table`: IoU per class per image, averaged per case
  (Table 2).
* `relative_error` (eq. 5), `relative_error_table` (Table 3), `absolute_error_table`.
* Agreement of automatic with manual values, for features that cross zero (f3, f4)
  where eq. 5 is unstable: `bland_altman`, `icc_2_1`, `lins_ccc`, `agreement_table`.

No TensorFlow import.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from sercseg_tf.features import FEATURES
from sercseg_tf.labels import CLASS_DISPLAY_NAMES, CLASS_NAMES, EVAL_CLASSES, IGNORE_LABEL

# |M| floor of the relative error: pairs with |M| <= floor give NaN (left out of the
# means and counted). f1 and f2 are positive ratios, so only M = 0 is excluded; f3 and
# f4 are pixel distances that cross zero, and below one pixel eq. 5 measures the
# rounding of the centroid and the tip rather than the segmentation.
DEFAULT_MIN_ABS_MANUAL: dict[str, float] = {"f1": 0.0, "f2": 0.0, "f3": 1.0, "f4": 1.0}
AVG_ROW = "AVG"


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
        out of means by the table builders).

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


def case_iou_table(
    df: pd.DataFrame,
    classes: Sequence[int] = EVAL_CLASSES,
    case_column: str = "case",
) -> pd.DataFrame:
    """Table 2: mean IoU per case and class, plus an "Average" column and an AVG row.

    Args:
        df: one row per image with a case column and one IoU column per class named
            by `sercseg_tf.labels.CLASS_NAMES` ("oocyte", "serc", "needle"; the
            evaluate step's iou.csv). NaN entries (class absent) are skipped.
        classes: class ids, in column order.
        case_column: name of the case column.

    Returns:
        DataFrame indexed by case (sorted) then "AVG", columns the display names
        ("Oocyte", "sERC", "Needle") and "Average" (mean over the classes of that row).
        The AVG row is the mean over cases of the case rows, as in the paper.
    """
    names = [CLASS_NAMES[c] for c in classes]
    missing = [n for n in [case_column, *names] if n not in df.columns]
    if missing:
        raise ValueError(f"IoU table is missing columns {missing}")
    per_case = df.groupby(case_column, sort=True)[names].mean()
    per_case.columns = [CLASS_DISPLAY_NAMES[c] for c in classes]
    per_case["Average"] = per_case.mean(axis=1)
    return _with_avg_row(per_case)


def _with_avg_row(table: pd.DataFrame) -> pd.DataFrame:
    avg = table.mean(axis=0).to_frame().T
    avg.index = [AVG_ROW]
    out = pd.concat([table, avg])
    out.index.name = table.index.name
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


def paired_features(features_df: pd.DataFrame, features: Sequence[str] = FEATURES) -> pd.DataFrame:
    """Pairs manual and automatic rows of a long feature table by (case, frame).

    Args:
        features_df: columns case, frame, source ('manual' or 'auto') and the features.
        features: feature columns.

    Returns:
        DataFrame with columns case, frame, then ``<f>_manual`` and ``<f>_auto`` for
        every feature; frames lacking either source are dropped.

    Raises:
        ValueError: on missing columns, unknown sources or duplicated rows.
    """
    need = ["case", "frame", "source", *features]
    missing = [c for c in need if c not in features_df.columns]
    if missing:
        raise ValueError(f"feature table is missing columns {missing}")
    sources = set(features_df["source"].unique())
    if not sources <= {"manual", "auto"}:
        raise ValueError(f"source must be 'manual' or 'auto', got {sorted(map(str, sources))}")
    dup = features_df.duplicated(["case", "frame", "source"])
    if dup.any():
        row = features_df.loc[dup, ["case", "frame", "source"]].iloc[0].tolist()
        raise ValueError(f"duplicated feature row (case, frame, source) = {row}")
    cols = ["case", "frame", *features]
    man = features_df.loc[features_df["source"] == "manual", cols]
    aut = features_df.loc[features_df["source"] == "auto", cols]
    joined = man.merge(aut, on=["case", "frame"], how="inner", suffixes=("_manual", "_auto"))
    return joined.sort_values(["case", "frame"], kind="stable").reset_index(drop=True)


def _floors(min_abs_manual: float | Mapping[str, float] | None, features: Iterable[str]):
    if min_abs_manual is None:
        min_abs_manual = DEFAULT_MIN_ABS_MANUAL
    if isinstance(min_abs_manual, Mapping):
        return {f: float(min_abs_manual.get(f, 0.0)) for f in features}
    return {f: float(min_abs_manual) for f in features}


def _avg_sd_table(values: pd.DataFrame, features: Sequence[str], with_counts: bool) -> pd.DataFrame:
    grouped = values.groupby("case", sort=True)
    cols = {}
    for f in features:
        cols[(f, "AVG")] = grouped[f].mean()
        cols[(f, "SD")] = grouped[f].std(ddof=1)
        if with_counts:
            cols[(f, "N")] = grouped[f].count().astype(float)
    table = pd.DataFrame(cols)
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    table.index.name = "case"
    return _with_avg_row(table)


def relative_error_table(
    features_df: pd.DataFrame,
    features: Sequence[str] = FEATURES,
    min_abs_manual: float | Mapping[str, float] | None = None,
    with_counts: bool = False,
) -> pd.DataFrame:
    """Table 3: per case, AVG and SD of the relative error (eq. 5, %) of each feature.

    SD is the sample standard deviation (ddof=1) over the frames of the case. The AVG
    row is the mean over cases of the case rows (it reproduces the paper's AVG row
    from its case rows). Frames where either value is NaN, or |M| <= the floor, are
    left out; ``with_counts`` adds an "N" column with the frames used.

    Args:
        features_df: long table with columns case, frame, source ('manual'/'auto'),
            f1..f4 (e.g. `FeatureResult.as_dict` rows).
        features: feature columns.
        min_abs_manual: |M| floor, one number or {feature: floor}; None means
            `DEFAULT_MIN_ABS_MANUAL` (0 for f1, f2; 1 px for f3, f4).
        with_counts: add the N columns.

    Returns:
        DataFrame indexed by case then "AVG", columns MultiIndex (feature, AVG|SD[|N]).
    """
    pairs = paired_features(features_df, features)
    floors = _floors(min_abs_manual, features)
    errors = pd.DataFrame({"case": pairs["case"].to_numpy()})
    for f in features:
        errors[f] = relative_error(pairs[f + "_auto"], pairs[f + "_manual"], floors[f])
    return _avg_sd_table(errors, features, with_counts)


def absolute_error_table(
    features_df: pd.DataFrame,
    features: Sequence[str] = FEATURES,
    with_counts: bool = False,
) -> pd.DataFrame:
    """Per case AVG and SD of |A − M| (feature units; px for f3, f4), like Table 3.

    Args:
        features_df: long table as for `relative_error_table`.
        features: feature columns.
        with_counts: add the N columns.

    Returns:
        DataFrame indexed by case then "AVG", columns MultiIndex (feature, AVG|SD[|N]).
    """
    pairs = paired_features(features_df, features)
    errors = pd.DataFrame({"case": pairs["case"].to_numpy()})
    for f in features:
        errors[f] = (pairs[f + "_auto"] - pairs[f + "_manual"]).abs().to_numpy()
    return _avg_sd_table(errors, features, with_counts)


@dataclasses.dataclass(frozen=True)
class BlandAltman:
    """Bland–Altman agreement of A with M (differences d = A − M).

    Attributes:
        bias: mean difference.
        sd: sample standard deviation of the differences (ddof=1).
        loa_lower: bias − 1.96·sd (lower 95 % limit of agreement).
        loa_upper: bias + 1.96·sd.
        n: number of finite pairs.
    """

    bias: float
    sd: float
    loa_lower: float
    loa_upper: float
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


def agreement_table(features_df: pd.DataFrame, features: Sequence[str] = FEATURES) -> pd.DataFrame:
    """Agreement of automatic with manual values per feature, over all paired frames.

    Args:
        features_df: long table as for `relative_error_table`.
        features: feature columns.

    Returns:
        DataFrame indexed by feature with columns n, mean_abs_error, bias, sd,
        loa_lower, loa_upper (Bland–Altman, A − M), icc_2_1, lins_ccc.
    """
    pairs = paired_features(features_df, features)
    rows = {}
    for f in features:
        a = pairs[f + "_auto"].to_numpy(dtype=np.float64)
        m = pairs[f + "_manual"].to_numpy(dtype=np.float64)
        ba = bland_altman(a, m)
        fa, fm = _finite_pairs(a, m)
        rows[f] = {
            "n": ba.n,
            "mean_abs_error": float(np.mean(np.abs(fa - fm))) if fa.size else math.nan,
            "bias": ba.bias,
            "sd": ba.sd,
            "loa_lower": ba.loa_lower,
            "loa_upper": ba.loa_upper,
            "icc_2_1": icc_2_1(np.column_stack([fm, fa])) if fa.size else math.nan,
            "lins_ccc": lins_ccc(fa, fm),
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "feature"
    return out
