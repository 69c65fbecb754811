"""Tests for sercseg_tf.metrics (Tables 2 and 3, eq. 5, agreement statistics)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

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
            "case": [1, 1, 2, 2],
            "frame": [0, 1, 0, 1],
            "oocyte": [0.9, 1.0, 0.8, 0.6],
            "serc": [0.5, np.nan, 0.7, 0.9],
            "needle": [0.4, 0.6, np.nan, np.nan],
        }
    )
    t = M.case_iou_table(df)
    assert list(t.columns) == ["Oocyte", "sERC", "Needle", "Average"]
    assert list(t.index) == [1, 2, "AVG"]
    assert t.loc[1, "Oocyte"] == pytest.approx(0.95)
    assert t.loc[1, "sERC"] == pytest.approx(0.5)
    assert math.isnan(t.loc[2, "Needle"])
    assert t.loc[2, "Average"] == pytest.approx((0.7 + 0.8) / 2)
    assert t.loc["AVG", "Oocyte"] == pytest.approx((0.95 + 0.7) / 2)
    assert t.loc["AVG", "Needle"] == pytest.approx(0.5)


def test_avg_row_convention_reproduces_paper_table3():
    # Paper Table 3, f1 columns: the AVG row (5.53, 6.14) is the mean of the case rows.
    f1_avg = [4.56, 4.29, 3.00, 7.18, 2.62, 3.63, 10.36, 8.21, 7.63, 5.14, 4.20]
    f1_sd = [4.38, 5.48, 4.44, 9.00, 4.03, 7.04, 5.15, 8.30, 9.51, 6.10, 4.08]
    table = pd.DataFrame({"AVG": f1_avg, "SD": f1_sd}, index=range(1, 12))
    avg = M._with_avg_row(table).loc["AVG"]
    assert avg["AVG"] == pytest.approx(5.53, abs=0.005)
    assert avg["SD"] == pytest.approx(6.14, abs=0.005)


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


def long_table(manual, auto, cases):
    rows = []
    for i, (mv, av, c) in enumerate(zip(manual, auto, cases, strict=True)):
        for source, vals in (("manual", mv), ("auto", av)):
            rows.append(
                {
                    "case": c,
                    "frame": i,
                    "source": source,
                    **dict(zip(M.FEATURES, vals, strict=True)),
                }
            )
    return pd.DataFrame(rows)


def test_relative_error_table():
    manual = [(0.8, 0.1, 10.0, 20.0), (0.6, 0.2, -5.0, 0.5), (0.7, 0.05, 4.0, -8.0)]
    auto = [(0.88, 0.11, 12.0, 18.0), (0.66, 0.3, -4.0, 1.0), (0.7, 0.06, 5.0, -6.0)]
    df = long_table(manual, auto, [1, 1, 2])
    df = df.sample(frac=1.0, random_state=0)  # order must not matter
    t = M.relative_error_table(df, with_counts=True)
    assert list(t.index) == [1, 2, "AVG"]
    assert t.loc[1, ("f1", "AVG")] == pytest.approx(10.0)
    assert t.loc[1, ("f1", "SD")] == pytest.approx(0.0)
    assert t.loc[1, ("f2", "AVG")] == pytest.approx((10.0 + 50.0) / 2)
    assert t.loc[1, ("f2", "SD")] == pytest.approx(np.std([10.0, 50.0], ddof=1))
    assert t.loc[1, ("f3", "AVG")] == pytest.approx((20.0 + 20.0) / 2)
    # f4 frame 1 has |M| = 0.5 <= the default 1 px floor: left out and counted.
    assert t.loc[1, ("f4", "AVG")] == pytest.approx(10.0)
    assert t.loc[1, ("f4", "N")] == 1
    assert math.isnan(t.loc[2, ("f1", "SD")])  # one frame: no sample SD
    assert t.loc["AVG", ("f3", "AVG")] == pytest.approx((20.0 + 25.0) / 2)
    no_floor = M.relative_error_table(df, min_abs_manual=0.0)
    assert no_floor.loc[1, ("f4", "AVG")] == pytest.approx((10.0 + 100.0) / 2)

    ab = M.absolute_error_table(df)
    assert ab.loc[1, ("f3", "AVG")] == pytest.approx(1.5)
    assert ab.loc[2, ("f4", "AVG")] == pytest.approx(2.0)


def test_feature_table_validation():
    df = long_table([(1, 1, 1, 1)], [(1, 1, 1, 1)], [1])
    with pytest.raises(ValueError, match="duplicated"):
        M.relative_error_table(pd.concat([df, df]))
    with pytest.raises(ValueError, match="missing columns"):
        M.relative_error_table(df.drop(columns="f3"))
    bad = df.assign(source=["manual", "model"])
    with pytest.raises(ValueError, match="source"):
        M.relative_error_table(bad)
    # A frame without its automatic row is dropped, not an error.
    assert M.paired_features(df[df.source == "manual"]).empty


# --- agreement ---------------------------------------------------------------------


def test_bland_altman():
    a = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    m = np.array([0.5, 2.5, 2.0, 3.0, 1.0])
    ba = M.bland_altman(a, m)
    d = np.array([0.5, -0.5, 1.0, 1.0])
    assert ba.n == 4
    assert ba.bias == pytest.approx(d.mean())
    sd = math.sqrt(sum((x - d.mean()) ** 2 for x in d) / 3)
    assert ba.sd == pytest.approx(sd)
    assert ba.loa_lower == pytest.approx(d.mean() - 1.96 * sd)
    assert ba.loa_upper == pytest.approx(d.mean() + 1.96 * sd)
    assert math.isnan(M.bland_altman([1.0], [2.0]).sd)


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
    df = long_table(manual.tolist(), auto.tolist(), [1] * 15 + [2] * 15)
    t = M.agreement_table(df)
    assert list(t.index) == list(M.FEATURES)
    assert t.loc["f3", "n"] == 30
    d = auto[:, 2] - manual[:, 2]
    assert t.loc["f3", "bias"] == pytest.approx(d.mean())
    assert t.loc["f3", "mean_abs_error"] == pytest.approx(np.abs(d).mean())
    assert t.loc["f3", "lins_ccc"] == pytest.approx(M.lins_ccc(auto[:, 2], manual[:, 2]))
    assert 0.9 < t.loc["f3", "icc_2_1"] <= 1.0
