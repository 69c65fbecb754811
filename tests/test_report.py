"""Tests of sercseg_tf.report and sercseg_tf.reporting from hand-made CSV fixtures."""

from __future__ import annotations

import json
import math
import pathlib
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sercseg_tf import features, labels, layout, model_card, paper_values, report

H, W = 48, 64


def _label(shift: int, tip_x: int) -> np.ndarray:
    lab = np.zeros((H, W), np.uint8)
    lab[8:40, 10 + shift:46 + shift] = labels.OOCYTE
    lab[16:26, 20 + shift:30 + shift] = labels.SERC
    lab[22:26, tip_x:] = labels.NEEDLE
    return lab


def _write_fold(root: pathlib.Path, fold: int, rows: list[dict],
                source: str = model_card.SYNTHETIC) -> None:
    model_card.write_json(layout.training_data_json(root, fold), {"data_source": source})
    pdir = layout.predict_dir(root, fold)
    for sub in ("image", "manual", "auto"):
        (pdir / sub).mkdir(parents=True, exist_ok=True)
    out = []
    for r in rows:
        fr = r["frame"]
        Image.fromarray(np.full((H, W, 3), 90 + fr, np.uint8)).save(pdir / f"image/{fr:04d}.jpg")
        Image.fromarray(_label(0, 50)).save(pdir / f"manual/{fr:04d}.png")
        Image.fromarray(_label(1, 52)).save(pdir / f"auto/{fr:04d}.png")
        out.append({"case": fold, "filename": f"case{fold:02d}/frame_{fr:04d}.png",
                    "image_file": f"image/{fr:04d}.jpg", "manual_file": f"manual/{fr:04d}.png",
                    "auto_file": f"auto/{fr:04d}.png", **r})
    pd.DataFrame(out).to_csv(layout.frames_csv(root, fold), index=False)
    for split in ("train", "eval"):
        d = layout.fold_dir(root, fold) / split
        d.mkdir(parents=True, exist_ok=True)
        steps = [0, 10, 20] if split == "train" else [20]
        df = pd.DataFrame({"step": steps,
                           "loss": [2.0 + fold, 1.0 + fold, 0.5 + fold][-len(steps):]})
        if split == "eval":
            df["miou"] = 0.1 * fold
        df.to_csv(d / "history.csv", index=False)


def _row(frame, iou, man, aut, tip_err):
    r = {"frame": frame, "iou_oocyte": iou[0], "iou_serc": iou[1], "iou_needle": iou[2],
         "tip_error_px": tip_err}
    for i, f in enumerate(features.FEATURES):
        r[f"manual_{f}"] = man[i]
        r[f"auto_{f}"] = aut[i]
    r.update({"manual_tip_x": 50.0, "manual_tip_y": 24.0, "auto_tip_x": 50.0 + tip_err,
              "auto_tip_y": 24.0})
    return r


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("report") / "runs"
    # Fold 1 (case 1): a NaN sERC IoU (absent from both), a NaN manual f1, an f4 under the floor.
    _write_fold(root, 1, [
        _row(0, (0.9, 0.8, 0.7), (0.8, 0.10, 20.0, 10.0), (0.72, 0.11, 22.0, 11.0), 2.0),
        _row(1, (0.95, math.nan, 0.6), (math.nan, 0.20, -40.0, 0.5), (0.7, 0.18, -38.0, 3.0), 4.0),
        _row(2, (0.85, 0.7, 0.9), (0.6, 0.05, 30.0, -20.0), (0.66, 0.06, 27.0, -25.0), 1.0),
    ])
    # Fold 3 (case 3).
    _write_fold(root, 3, [
        _row(0, (0.99, 0.9, 0.8), (0.7, 0.12, 15.0, 5.0), (0.63, 0.12, 15.0, 4.0), 3.0),
        _row(1, (0.97, 0.92, 0.85), (0.75, 0.14, 12.0, 8.0), (0.75, 0.10, 10.0, 6.0), 5.0),
    ])
    layout.write_status(root, {1: {"status": "done", "held_out_case": 1},
                               2: {"status": "failed", "held_out_case": 2,
                                   "error": "RuntimeError: boom in training"},
                               3: {"status": "done", "held_out_case": 3}})
    return root


@pytest.fixture(scope="module")
def built(run_dir):
    return report.build_report(run_dir)


def test_table2_matches_independent_means(built):
    t2 = built.tables["table2_iou"]
    case1 = np.array([[0.9, 0.8, 0.7], [0.95, np.nan, 0.6], [0.85, 0.7, 0.9]])
    case3 = np.array([[0.99, 0.9, 0.8], [0.97, 0.92, 0.85]])
    m1, m3 = np.nanmean(case1, axis=0), np.nanmean(case3, axis=0)
    np.testing.assert_allclose(t2.loc[1, ["oocyte", "serc", "needle"]].astype(float), m1)
    np.testing.assert_allclose(t2.loc[3, ["oocyte", "serc", "needle"]].astype(float), m3)
    assert float(t2.loc[1, "average"]) == pytest.approx(m1.mean())
    assert float(t2.loc["AVG", "average"]) == pytest.approx((m1.mean() + m3.mean()) / 2)
    assert float(t2.loc["AVG", "serc"]) == pytest.approx((m1[1] + m3[1]) / 2)
    assert int(t2.loc[1, "n_frames"]) == 3
    csv = pd.read_csv(built.output_dir / "table2_iou.csv", index_col=0)
    assert float(csv.loc["1", "serc"]) == pytest.approx(0.75)


def test_table3_matches_independent_relative_errors(built):
    t3 = built.tables["table3_relative_error"]
    # Case 1, f1: frame 1 has a NaN manual value -> left out.
    re_f1 = np.array([abs(0.72 - 0.8) / 0.8, abs(0.66 - 0.6) / 0.6]) * 100
    assert float(t3.loc[1, "f1_avg"]) == pytest.approx(re_f1.mean())
    assert float(t3.loc[1, "f1_sd"]) == pytest.approx(re_f1.std(ddof=1))
    # Case 1, f4: frame 1 has |M| = 0.5 px < 1 px floor -> excluded and counted.
    re_f4 = np.array([1 / 10, 5 / 20]) * 100
    assert float(t3.loc[1, "f4_avg"]) == pytest.approx(re_f4.mean())
    assert int(t3.loc[1, "f4_excluded"]) == 1
    assert int(t3.loc[1, "f4_n"]) == 2
    # Case 3, f3 and the AVG row = mean of the case rows.
    re3 = np.array([0.0, 2 / 12]) * 100
    assert float(t3.loc[3, "f3_avg"]) == pytest.approx(re3.mean())
    re1 = np.array([2 / 20, 2 / 40, 3 / 30]) * 100
    assert float(t3.loc["AVG", "f3_avg"]) == pytest.approx((re1.mean() + re3.mean()) / 2)
    assert float(t3.loc["AVG", "f3_sd"]) == pytest.approx(
        (re1.std(ddof=1) + re3.std(ddof=1)) / 2)


def test_agreement_matches_independent_formulas(built):
    ag = built.tables["agreement"]
    m = np.array([0.10, 0.20, 0.05, 0.12, 0.14])
    a = np.array([0.11, 0.18, 0.06, 0.12, 0.10])
    d = a - m
    assert int(ag.loc["f2", "n"]) == 5
    assert float(ag.loc["f2", "bias"]) == pytest.approx(d.mean())
    assert float(ag.loc["f2", "loa_high"]) == pytest.approx(d.mean() + 1.96 * d.std(ddof=1))
    assert float(ag.loc["f2", "mae"]) == pytest.approx(np.abs(d).mean())
    cov = np.cov(a, m, bias=True)
    ccc = 2 * cov[0, 1] / (cov[0, 0] + cov[1, 1] + (a.mean() - m.mean()) ** 2)
    assert float(ag.loc["f2", "lins_ccc"]) == pytest.approx(ccc)
    assert int(ag.loc["f1", "n_nan_manual"]) == 1
    assert float(ag.loc["tip_px", "mae"]) == pytest.approx(np.mean([2, 4, 1, 3, 5]))


def test_markdown_has_paper_values_side_by_side(built):
    md2 = (built.output_dir / "table2_iou.md").read_text()
    assert "Oocyte (ours)" in md2 and "Oocyte (paper)" in md2
    assert "paper = clinical data" in md2 and "ours = synthetic data" in md2
    case1 = next(line for line in md2.splitlines() if line.startswith("| Case1 |"))
    cells = [c.strip() for c in case1.strip("|").split("|")]
    # ours oocyte mean 0.90, paper 0.99; ours sERC 0.75, paper 0.94.
    assert cells[1:5] == ["0.90", "0.99", "0.75", "0.94"]
    case11 = next(line for line in md2.splitlines() if line.startswith("| Case11 |"))
    assert "0.96 | 0.95" not in case11 and "— | 0.96" in case11  # no ours for case 11
    avg = next(line for line in md2.splitlines() if line.startswith("| AVG |"))
    assert "0.93" in avg
    md3 = (built.output_dir / "table3_relative_error.md").read_text()
    row8 = next(line for line in md3.splitlines() if line.startswith("| Case8 |"))
    assert "71.59" in row8 and "49.97" in row8
    assert "f4 AVG (ours)" in md3 and "f4 AVG (paper)" in md3
    assert "floor" in md3


def test_figures_written_and_index_links_everything(built):
    out = built.output_dir
    pngs = sorted((out / "figures").glob("*.png"))
    names = {p.name for p in pngs}
    assert {"figure3_learning_curve.png", "figure4_case01.png", "figure4_case03.png",
            "figure6_case01.png", "bland_altman.png"} <= names
    for p in pngs:
        assert p.stat().st_size > 1000
        with Image.open(p) as im:
            assert im.size[0] > 100
    page = (out / "index.html").read_text()
    refs = set(re.findall(r'(?:src|href)="([^"#]+)"', page))
    for p in pngs:
        assert f"figures/{p.name}" in refs
    for stem in ("table1", "table2_iou", "table3_relative_error", "agreement",
                 "absolute_error"):
        assert f"{stem}.csv" in refs and f"{stem}.md" in refs
    for ref in refs:
        assert (out / ref).exists(), ref
    assert "<script" not in page and "http" not in page
    # Failed fold listed with its reason.
    assert "Fold 02 failed: RuntimeError: boom in training" in page
    assert built.folds_failed == {2: "RuntimeError: boom in training"}
    assert built.folds_reported == [1, 3]


def test_figure6_without_automatic_tip(run_dir, tmp_path):
    from sercseg_tf.reporting import figures

    frames = pd.read_csv(layout.frames_csv(run_dir, 1))
    frames["case"] = 1
    frames[["auto_tip_x", "auto_tip_y", "tip_error_px"]] = np.nan
    out = figures.figure6_case(frames, layout.predict_dir(run_dir, 1), tmp_path / "f6.png")
    assert out is not None and out.stat().st_size > 1000
    frames[["manual_tip_x", "manual_tip_y"]] = np.nan
    assert figures.figure6_case(frames, layout.predict_dir(run_dir, 1),
                                tmp_path / "none.png") is None


def test_learning_curve_averages_folds(built):
    curve = pd.read_csv(built.output_dir / "learning_curve.csv", index_col=0)
    # Fold 1 losses 3, 2, 1.5 and fold 3 losses 5, 4, 3.5 at steps 0, 10, 20.
    np.testing.assert_allclose(curve["train_loss_mean"].to_numpy(), [4.0, 3.0, 2.5])
    assert curve.loc[20, "eval_loss_mean"] == pytest.approx((1.5 + 3.5) / 2)
    assert curve.loc[20, "eval_miou_mean"] == pytest.approx((0.1 + 0.3) / 2)
    assert curve.loc[20, "eval_miou_n_folds"] == 2


def test_empty_run_still_writes_index(tmp_path):
    root = tmp_path / "runs"
    layout.write_status(root, {4: {"status": "failed", "error": "ValueError: bad"}})
    res = report.build_report(root)
    page = res.index_html.read_text()
    assert "No fold has predictions yet" in page and "Fold 04 failed" in page
    # It names the command that makes the predictions, for this model_dir.
    assert f"python tools/run_loocv.py --model_dir {root}" in page
    assert json.loads((root / layout.STATUS_JSON).read_text())["folds"]["04"]


def test_report_says_your_data_from_the_training_record(tmp_path):
    root = tmp_path / "runs"
    _write_fold(root, 1, [_row(0, (0.9, 0.8, 0.7), (0.8, 0.1, 20.0, 10.0),
                               (0.7, 0.1, 22.0, 11.0), 2.0)], source=model_card.USER_DATA)
    md = (report.build_report(root).output_dir / "table2_iou.md").read_text()
    assert "ours = your data" in md and "synthetic" not in md
    (root / "fold_01" / layout.TRAINING_DATA_JSON).unlink()  # trained before records
    md = (report.build_report(root).output_dir / "table2_iou.md").read_text()
    assert "ours = data of unknown source" in md


def test_paper_values_average_rows_match_case_rows():
    t2 = pd.DataFrame(paper_values.TABLE2_IOU).T.mean(axis=0)
    for k, v in paper_values.TABLE2_AVERAGE.items():
        assert t2[k] == pytest.approx(v, abs=0.006)
    assert paper_values.TABLE2_IOU[10]["serc"] == 0.78
    t3 = pd.DataFrame(paper_values.TABLE3_RELATIVE_ERROR).T.mean(axis=0)
    for k, v in paper_values.TABLE3_AVERAGE.items():
        assert t3[k] == pytest.approx(v, abs=0.006)
    assert paper_values.TABLE3_RELATIVE_ERROR[8]["f4_avg"] == 71.59
    assert sum(paper_values.TABLE1_FRAMES.values()) == 579


def test_report_cli(run_dir, tmp_path, capsys):
    assert report.run(["--model_dir", str(run_dir), "--output_dir", str(tmp_path / "r"),
                        "--folds", "1"]) == 0
    t2 = pd.read_csv(tmp_path / "r" / "table2_iou.csv", index_col=0)
    assert list(t2.index) == ["1", "AVG"]
    assert report.run(["--model_dir", str(tmp_path / "missing")]) == 1
    assert "not a directory" in capsys.readouterr().err


def test_table1_counts_frames(built):
    t1 = built.tables["table1"]
    assert int(t1.loc[1, "frames_ours"]) == 3 and int(t1.loc[3, "frames_ours"]) == 2
    assert math.isnan(t1.loc[2, "frames_ours"]) and t1.loc[2, "frames_paper"] == 50
    assert t1.loc["Total", "frames_ours"] == 5 and t1.loc["Total", "frames_paper"] == 579
    md1 = (built.output_dir / "table1.md").read_text()
    assert "| Total | 5 | 579 |" in md1
