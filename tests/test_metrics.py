"""Tests for sercseg_tf.metrics: the Tables 2, 3, eq. 5 and agreement the report writes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sercseg_tf import layout
from sercseg_tf import metrics as M
from sercseg_tf.labels import EVAL_CLASSES, IGNORE_LABEL, NUM_CLASSES

# --- IoU ---------------------------------------------------------------------------


def confusion_iou(pred, gt, num_classes, ignore):
    """Reference: IoU from a bincount confusion matrix, TP / (row + col − TP)."""
    keep = gt.ravel() != ignore
    p = pred.ravel()[keep].astype(np.int64)
    g = gt.ravel()[keep].astype(np.int64)
    p = np.where(p < num_classes, p, num_classes)  # unknown predictions: extra bin
    cm = np.bincount(g * (num_classes + 1) + p, minlength=(num_classes + 1) ** 2)
    cm = cm.reshape(num_classes + 1, num_classes + 1)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / union


def test_per_class_iou_matches_confusion_matrix():
    rng = np.random.default_rng(0)
    for _ in range(20):
        gt = rng.choice([0, 1, 2, 3, IGNORE_LABEL], size=(37, 41), p=[0.3, 0.3, 0.1, 0.2, 0.1])
        pred = np.where(rng.random(gt.shape) < 0.7, gt, rng.integers(0, 4, gt.shape))
        pred = np.where(pred == IGNORE_LABEL, 0, pred).astype(np.uint8)
        ours = M.per_class_iou(pred, gt.astype(np.uint8))
        ref = confusion_iou(pred, gt, NUM_CLASSES, IGNORE_LABEL)
        assert list(ours) == list(EVAL_CLASSES)
        for c in EVAL_CLASSES:
            assert ours[c] == pytest.approx(ref[c])


def test_per_class_iou_hand_example_and_absent_class():
    gt = np.array([[1, 1, 0], [3, 3, IGNORE_LABEL]], np.uint8)
    pred = np.array([[1, 0, 1], [3, 1, 3]], np.uint8)
    iou = M.per_class_iou(pred, gt)
    assert iou[1] == pytest.approx(1 / 4)  # inter 1; union {(0,0),(0,1),(0,2),(1,1)}
    assert math.isnan(iou[2])  # sERC in neither map
    assert iou[3] == pytest.approx(1 / 2)  # the ignore pixel (1,2) does not count
    with pytest.raises(ValueError, match="shape"):
        M.per_class_iou(pred, gt[:, :2])


def test_case_iou_table_means_skip_nan_and_avg_row():
    df = pd.DataFrame(
        {
            "case": [2, 1, 2, 1],
            "frame": [0, 0, 1, 1],
            "iou_oocyte": [0.8, 0.9, 0.6, 1.0],
            "iou_serc": [0.7, 0.5, 0.9, np.nan],
            "iou_needle": [np.nan, 0.4, np.nan, 0.6],
        }
    )
    t = M.case_iou_table(df)
    assert list(t.columns) == ["oocyte", "serc", "needle", "average", "n_frames"]
    assert list(t.index) == [1, 2, "AVG"]
    assert t.loc[1, "oocyte"] == pytest.approx(0.95)
    assert t.loc[1, "serc"] == pytest.approx(0.5)
    assert math.isnan(t.loc[2, "needle"])
    assert t.loc[2, "average"] == pytest.approx((0.7 + 0.8) / 2)
    assert t.loc[1, "n_frames"] == 2
    assert t.loc["AVG", "oocyte"] == pytest.approx((0.95 + 0.7) / 2)
    assert t.loc["AVG", "needle"] == pytest.approx(0.5)
    assert t.loc["AVG", "average"] == pytest.approx(((0.95 + 0.5 + 0.5) / 3 + 0.75) / 2)
    assert t.loc["AVG", "n_frames"] == 4
    with pytest.raises(ValueError, match="missing columns"):
        M.case_iou_table(df.drop(columns="iou_serc"))


# --- relative / absolute error ------------------------------------------------------


def test_relative_error_eq5_and_floor():
    a = np.array([1.1, 0.9, -12.0, 0.4, np.nan, 5.0])
    m = np.array([1.0, 1.0, -10.0, 0.0, 1.0, 0.5])
    out = M.relative_error(a, m)
    assert out[:3] == pytest.approx([10.0, 10.0, 20.0])
    assert math.isnan(out[3]) and math.isnan(out[4])
    assert out[5] == pytest.approx(900.0)
    floored = M.relative_error(a, m, min_abs_manual=1.0)
    assert math.isnan(floored[0]) and math.isnan(floored[5])  # |M| <= 1
    assert floored[2] == pytest.approx(20.0)
    assert M.relative_error(3.0, 2.0) == pytest.approx(50.0)


def frame_table(manual, auto, cases, tip=None):
    """A frames.csv-layout table, column names spelled out (independent of layout)."""
    rows = []
    for i, (mv, av, c) in enumerate(zip(manual, auto, cases, strict=True)):
        row = {"case": c, "frame": i}
        for f, x, y in zip(("f1", "f2", "f3", "f4"), mv, av, strict=True):
            row[f"manual_{f}"] = x
            row[f"auto_{f}"] = y
        if tip is not None:
            row["tip_error_px"] = tip[i]
        rows.append(row)
    return pd.DataFrame(rows)


MANUAL = [(0.8, 0.1, 10.0, 20.0), (0.6, 0.2, -5.0, 0.5), (0.7, 0.05, 4.0, -8.0)]
AUTO = [(0.88, 0.11, 12.0, 18.0), (0.66, 0.3, -4.0, 1.0), (0.7, 0.06, 5.0, -6.0)]


def test_relative_error_frames():
    df = frame_table(MANUAL, AUTO, [1, 1, 2]).set_index(pd.Index([7, 3, 5]))
    re = M.relative_error_frames(df)
    assert list(re.columns) == ["case", "frame", "f1", "f2", "f3", "f4"]
    assert list(re.index) == [7, 3, 5]
    assert re.loc[3, "f2"] == pytest.approx(50.0)
    assert math.isnan(re.loc[3, "f4"])  # |M| = 0.5 <= the default 1 px floor
    assert M.relative_error_frames(df, 0.0).loc[3, "f4"] == pytest.approx(100.0)
    assert math.isnan(M.relative_error_frames(df, {"f1": 10.0}).loc[7, "f1"])


def test_relative_error_table():
    df = frame_table(MANUAL, AUTO, [1, 1, 2])
    df = df.sample(frac=1.0, random_state=0)  # order must not matter
    t = M.relative_error_table(df)
    assert list(t.index) == [1, 2, "AVG"]
    assert list(t.columns) == [f"f{k}_{s}" for k in range(1, 5)
                               for s in ("avg", "sd", "n", "excluded")]
    assert t.loc[1, "f1_avg"] == pytest.approx(10.0)
    assert t.loc[1, "f1_sd"] == pytest.approx(0.0)
    assert t.loc[1, "f2_avg"] == pytest.approx((10.0 + 50.0) / 2)
    assert t.loc[1, "f2_sd"] == pytest.approx(math.sqrt(((10 - 30) ** 2 + (50 - 30) ** 2) / 1))
    assert t.loc[1, "f3_avg"] == pytest.approx((20.0 + 20.0) / 2)
    # f4 frame 1 has |M| = 0.5 <= the default 1 px floor: left out and counted.
    assert t.loc[1, "f4_avg"] == pytest.approx(10.0)
    assert (t.loc[1, "f4_n"], t.loc[1, "f4_excluded"]) == (1, 1)
    assert math.isnan(t.loc[2, "f1_sd"])  # one frame: no sample SD
    assert t.loc["AVG", "f3_avg"] == pytest.approx((20.0 + 25.0) / 2)
    assert t.loc["AVG", "f2_sd"] == pytest.approx(t.loc[1, "f2_sd"])  # case 2: NaN skipped
    assert (t.loc["AVG", "f4_n"], t.loc["AVG", "f4_excluded"]) == (2, 1)
    no_floor = M.relative_error_table(df, min_abs_manual=0.0)
    assert no_floor.loc[1, "f4_avg"] == pytest.approx((10.0 + 100.0) / 2)
    assert no_floor.loc["AVG", "f4_excluded"] == 0
    at_floor = M.relative_error_table(df, min_abs_manual={"f4": 0.5})  # |M| = floor: out
    assert (at_floor.loc[1, "f4_n"], at_floor.loc[1, "f4_excluded"]) == (1, 1)
    # A frame index that repeats (e.g. concatenated folds) must not mix frames up.
    dup = pd.concat([frame_table(MANUAL[:2], AUTO[:2], [1, 1]),
                     frame_table(MANUAL[2:], AUTO[2:], [2])])
    pd.testing.assert_frame_equal(M.relative_error_table(dup),
                                  M.relative_error_table(frame_table(MANUAL, AUTO, [1, 1, 2])))


def test_absolute_error_table():
    df = frame_table(MANUAL, AUTO, [1, 1, 2], tip=[2.0, np.nan, 5.0])
    t = M.absolute_error_table(df)
    assert list(t.index) == [1, 2, "AVG"]
    assert list(t.columns) == [*[f"f{k}_{s}" for k in range(1, 5) for s in ("mae", "sd")],
                               "tip_mae", "tip_sd"]
    assert t.loc[1, "f3_mae"] == pytest.approx(1.5)
    assert t.loc[1, "f3_sd"] == pytest.approx(math.sqrt(0.5))  # |d| = 2, 1
    assert t.loc[2, "f4_mae"] == pytest.approx(2.0)
    assert t.loc[1, "tip_mae"] == pytest.approx(2.0) and math.isnan(t.loc[1, "tip_sd"])
    assert t.loc["AVG", "f3_mae"] == pytest.approx((1.5 + 1.0) / 2)
    assert "tip_mae" not in M.absolute_error_table(df.drop(columns="tip_error_px"))


def test_tables_validate_columns_and_accept_no_frames():
    df = frame_table(MANUAL, AUTO, [1, 1, 2])
    for table in (M.relative_error_table, M.absolute_error_table, M.agreement_table):
        with pytest.raises(ValueError, match=r"missing columns \['auto_f3'\]"):
            table(df.drop(columns="auto_f3"))
    assert layout.feature_column("auto", "f3") == "auto_f3"
    with pytest.raises(ValueError, match="source"):
        layout.feature_column("model", "f3")
    empty = df.iloc[:0]
    assert M.relative_error_table(empty).empty and M.absolute_error_table(empty).empty
    ag = M.agreement_table(empty)
    assert list(ag["n"]) == [0, 0, 0, 0] and ag["bias"].isna().all()


# --- agreement ---------------------------------------------------------------------


def test_bland_altman():
    a = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    m = np.array([0.5, 2.5, 2.0, 3.0, 1.0])
    ba = M.bland_altman(a, m)
    d = np.array([0.5, -0.5, 1.0, 1.0])
    assert ba.n == 4
    assert ba.bias == pytest.approx(d.mean())
    sd = math.sqrt(sum((x - d.mean()) ** 2 for x in d) / 3)
    assert ba.sd_diff == pytest.approx(sd)
    assert ba.loa_low == pytest.approx(d.mean() - 1.96 * sd)
    assert ba.loa_high == pytest.approx(d.mean() + 1.96 * sd)
    assert math.isnan(M.bland_altman([1.0], [2.0]).sd_diff)


# Shrout & Fleiss (1979) Table 2: 6 targets rated by 4 judges. Published:
# ICC(1,1) = .17, ICC(2,1) = .29, ICC(3,1) = .71.
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]],
    dtype=float,
)


def anova_loops(x):
    """Two-way ANOVA mean squares with explicit loops (independent of the module)."""
    n, k = len(x), len(x[0])
    grand = sum(sum(r) for r in x) / (n * k)
    row_mean = [sum(r) / k for r in x]
    col_mean = [sum(x[i][j] for i in range(n)) / n for j in range(k)]
    bms = k * sum((r - grand) ** 2 for r in row_mean) / (n - 1)
    jms = n * sum((c - grand) ** 2 for c in col_mean) / (k - 1)
    resid = [x[i][j] - row_mean[i] - col_mean[j] + grand for i in range(n) for j in range(k)]
    ems = sum(e * e for e in resid) / ((n - 1) * (k - 1))
    wms = sum((x[i][j] - row_mean[i]) ** 2 for i in range(n) for j in range(k)) / (n * (k - 1))
    return bms, jms, ems, wms


def test_icc_2_1_shrout_fleiss_example():
    bms, jms, ems, wms = anova_loops(SHROUT_FLEISS.tolist())
    n, k = SHROUT_FLEISS.shape
    # The reference ANOVA reproduces the three published coefficients...
    assert (bms - wms) / (bms + (k - 1) * wms) == pytest.approx(0.17, abs=0.005)
    assert (bms - ems) / (bms + (k - 1) * ems) == pytest.approx(0.71, abs=0.005)
    expected = (bms - ems) / (bms + (k - 1) * ems + k * (jms - ems) / n)
    assert expected == pytest.approx(0.29, abs=0.005)
    # ...and the module agrees with it.
    assert M.icc_2_1(SHROUT_FLEISS) == pytest.approx(expected, rel=1e-12)


def test_icc_2_1_edge_cases():
    x = np.arange(10.0)
    assert M.icc_2_1(np.column_stack([x, x])) == pytest.approx(1.0)
    # A constant offset lowers absolute agreement (unlike consistency ICC(3,1)).
    assert M.icc_2_1(np.column_stack([x, x + 3.0])) < 0.9
    with_nan = np.column_stack([np.append(x, np.nan), np.append(x, 1.0)])
    assert M.icc_2_1(with_nan) == pytest.approx(1.0)
    assert math.isnan(M.icc_2_1(np.ones((5, 2))))
    assert math.isnan(M.icc_2_1(np.ones((1, 2))))
    # Absolute agreement falls as the offset between the raters grows.
    v = np.array([1.0, 2.0, 3.0, 5.0])
    assert M.icc_2_1(np.column_stack([v, v + 1.0])) < M.icc_2_1(np.column_stack([v, v + 0.1]))
    assert M.icc_2_1(np.column_stack([v, v + 0.1])) < 1.0
    with pytest.raises(ValueError):
        M.icc_2_1(x)


def test_lins_ccc_against_pearson_times_bias_factor():
    rng = np.random.default_rng(1)
    a = rng.normal(5.0, 2.0, 50)
    m = 0.8 * a + rng.normal(1.0, 0.7, 50)
    # Lin (1989): ρ_c = ρ · C_b, C_b = 2 / (v + 1/v + u²), v = σ_a/σ_m,
    # u = (μ_a − μ_m)/sqrt(σ_a σ_m), population σ.
    rho = np.corrcoef(a, m)[0, 1]
    sa, sm = a.std(), m.std()
    v = sa / sm
    u = (a.mean() - m.mean()) / math.sqrt(sa * sm)
    assert M.lins_ccc(a, m) == pytest.approx(rho * 2 / (v + 1 / v + u * u), rel=1e-12)


def test_lins_ccc_edge_cases():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    assert M.lins_ccc(x, x) == pytest.approx(1.0)
    assert M.lins_ccc(x - x.mean(), -(x - x.mean())) == pytest.approx(-1.0)
    assert M.lins_ccc(x, x + 1.0) < 1.0
    assert math.isnan(M.lins_ccc([2.0, 2.0], [2.0, 2.0]))
    assert math.isnan(M.lins_ccc([], []))


def test_agreement_table():
    rng = np.random.default_rng(2)
    manual = rng.normal(0, 10, size=(30, 4))
    auto = manual + rng.normal(0.5, 1.0, size=(30, 4))
    manual[3, 2], auto[4, 2], auto[5, 2] = np.nan, np.nan, np.nan
    tip = np.append(rng.random(29) * 5, np.nan)
    df = frame_table(manual.tolist(), auto.tolist(), [1] * 15 + [2] * 15, tip=tip)
    t = M.agreement_table(df)
    assert list(t.index) == ["f1", "f2", "f3", "f4", "tip_px"]
    assert list(t.columns) == ["n", "n_nan_manual", "n_nan_auto", "mean_manual",
                               "mean_auto", "bias", "sd_diff", "loa_low", "loa_high",
                               "icc_2_1", "lins_ccc", "mae", "median_ae"]
    ok = np.isfinite(manual[:, 2]) & np.isfinite(auto[:, 2])
    a, m = auto[ok, 2], manual[ok, 2]
    d = a - m
    assert (t.loc["f3", "n"], t.loc["f3", "n_nan_manual"], t.loc["f3", "n_nan_auto"]) == (
        27, 1, 2)
    assert t.loc["f3", "mean_manual"] == pytest.approx(m.mean())
    assert t.loc["f3", "mean_auto"] == pytest.approx(a.mean())
    assert t.loc["f3", "bias"] == pytest.approx(d.mean())
    assert t.loc["f3", "sd_diff"] == pytest.approx(np.std(d, ddof=1))
    assert t.loc["f3", "loa_low"] == pytest.approx(d.mean() - 1.96 * np.std(d, ddof=1))
    assert t.loc["f3", "loa_high"] == pytest.approx(d.mean() + 1.96 * np.std(d, ddof=1))
    bms, jms, ems, _ = anova_loops(np.column_stack([m, a]).tolist())
    n = len(m)
    icc = (bms - ems) / (bms + ems + 2 * (jms - ems) / n)
    assert t.loc["f3", "icc_2_1"] == pytest.approx(icc, rel=1e-10)
    cov = np.cov(a, m, bias=True)
    ccc = 2 * cov[0, 1] / (cov[0, 0] + cov[1, 1] + (a.mean() - m.mean()) ** 2)
    assert t.loc["f3", "lins_ccc"] == pytest.approx(ccc)
    assert t.loc["f3", "mae"] == pytest.approx(np.abs(d).mean())
    assert t.loc["f3", "median_ae"] == pytest.approx(np.median(np.abs(d)))
    assert t.loc["f1", "n"] == 30
    assert t.loc["tip_px", "n"] == 29
    assert t.loc["tip_px", "mae"] == pytest.approx(tip[:29].mean())
    assert t.loc["tip_px", "median_ae"] == pytest.approx(np.median(tip[:29]))
    assert math.isnan(t.loc["tip_px", "bias"])
    assert "tip_px" not in M.agreement_table(df.drop(columns="tip_error_px")).index
