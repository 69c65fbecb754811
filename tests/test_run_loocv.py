"""Tests of sercseg_tf.loocv and tools/run_loocv.py: fold selection, skipping finished
folds, failing folds, held-out prediction with an exported SavedModel, and one tiny real
end-to-end run of the command."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sercseg_tf import atomic_io, labels, layout
from sercseg_tf import loocv as run_loocv

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("spec, want", [
    ("5", [5]), ("1-3", [1, 2, 3]), ("1,5,7", [1, 5, 7]), ("1-3,8", [1, 2, 3, 8]),
    (" 7 , 2-3 ", [2, 3, 7]), ("3,3", [3]), (None, None), ("", None), ("all", None),
])
def test_parse_folds(spec, want):
    assert layout.parse_folds(spec) == want


@pytest.mark.parametrize("spec", ["x", "3-1", "0", "1,,2", "1-", "-2", "1.5"])
def test_parse_folds_rejects(spec):
    with pytest.raises(ValueError, match="--folds"):
        layout.parse_folds(spec)


def _labels_for(fold: int, frame: int, shift: int) -> np.ndarray:
    lab = np.zeros((40, 60), np.uint8)
    lab[5:35, 5 + shift:35 + shift] = labels.OOCYTE
    lab[12:22, 12:24] = labels.SERC
    lab[18:22, 40 + shift:] = labels.NEEDLE
    return lab


class FakeStages:
    """Stage functions that record calls; fold ``fail`` raises in training."""

    def __init__(self, fail: set[int]):
        self.fail = set(fail)
        self.calls: list[tuple[str, int]] = []

    def stages(self):
        return run_loocv.Stages(train=self.train, evaluate=self.evaluate, export=self.export,
                                predict=self.predict)

    def train(self, cfg, tfrecord_dir, model_dir, fold):
        self.calls.append(("train", fold))
        if fold in self.fail:
            raise RuntimeError(f"simulated failure in fold {fold}\nsecond line")
        return {}

    def evaluate(self, cfg, tfrecord_dir, model_dir, fold):
        self.calls.append(("evaluate", fold))

    def export(self, cfg, model_dir, fold):
        self.calls.append(("export", fold))
        d = layout.export_dir(model_dir, fold)
        d.mkdir(parents=True, exist_ok=True)
        (d / "saved_model.pb").write_bytes(b"fake")
        return d

    def predict(self, export_path, tfrecord_dir, model_dir, fold, batch_size):
        self.calls.append(("predict", fold))
        assert pathlib.Path(export_path) == layout.export_dir(model_dir, fold)
        rows = [run_loocv.frame_row(fold, i, f"f{i}.png", _labels_for(fold, i, 0),
                                    _labels_for(fold, i, i)) for i in range(3)]
        atomic_io.atomic_write_text(layout.frames_csv(model_dir, fold),
                                 pd.DataFrame(rows).to_csv(index=False))


def test_failing_fold_reported_others_continue_then_skip_finished(tmp_path):
    fake = FakeStages(fail={2})
    runs = tmp_path / "runs"
    result = run_loocv.run_loocv(None, tmp_path / "tfr", runs, [1, 2, 3],
                                 stages=fake.stages(), report=True)
    assert [result[f]["status"] for f in (1, 2, 3)] == ["done", "failed", "done"]
    assert result[2]["error"] == "RuntimeError: simulated failure in fold 2"
    assert ("predict", 3) in fake.calls and ("evaluate", 2) not in fake.calls
    status = json.loads((runs / layout.STATUS_JSON).read_text())["folds"]
    assert status["02"]["status"] == "failed"
    page = (runs / "report" / "index.html").read_text()
    assert "Fold 02 failed: RuntimeError: simulated failure in fold 2" in page
    t2 = pd.read_csv(runs / "report" / "table2_iou.csv", index_col=0)
    assert list(t2.index) == ["1", "3", "AVG"]

    # Re-run: finished folds are skipped, the failed one is retried (and now works).
    fake2 = FakeStages(fail=set())
    result = run_loocv.run_loocv(None, tmp_path / "tfr", runs, [1, 2, 3],
                                 stages=fake2.stages(), report=True)
    assert [c for c in fake2.calls if c[1] in (1, 3)] == []
    assert fake2.calls == [("train", 2), ("evaluate", 2), ("export", 2), ("predict", 2)]
    assert result[1]["skipped"] and result[2]["status"] == "done"
    assert "Fold 02 failed" not in (runs / "report" / "index.html").read_text()

    # An export without predictions: only the prediction stage runs.
    layout.frames_csv(runs, 3).unlink()
    fake3 = FakeStages(fail=set())
    run_loocv.run_loocv(None, tmp_path / "tfr", runs, [3], stages=fake3.stages(),
                        report=False)
    assert fake3.calls == [("predict", 3)]
    # --force runs every stage of a finished fold again (training resumes to num_steps).
    fake4 = FakeStages(fail=set())
    run_loocv.run_loocv(None, tmp_path / "tfr", runs, [1], stages=fake4.stages(),
                        force=True, report=False)
    assert fake4.calls == [("train", 1), ("evaluate", 1), ("export", 1), ("predict", 1)]
    assert not layout.lock_path(runs, 1).exists()  # the fold's lock is released


def test_frame_row_tip_error_and_iou():
    man = _labels_for(1, 0, 0)
    aut = _labels_for(1, 0, 3)
    row = run_loocv.frame_row(1, 0, "x.png", man, aut)
    inter = np.count_nonzero((man == labels.NEEDLE) & (aut == labels.NEEDLE))
    union = np.count_nonzero((man == labels.NEEDLE) | (aut == labels.NEEDLE))
    assert row["iou_needle"] == pytest.approx(inter / union)
    assert row["iou_serc"] == pytest.approx(1.0)
    assert row["tip_error_px"] == pytest.approx(
        np.hypot(row["auto_tip_x"] - row["manual_tip_x"], row["auto_tip_y"] - row["manual_tip_y"]))
    assert row["auto_tip_x"] - row["manual_tip_x"] == pytest.approx(3.0, abs=0.5)


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    import keras

    from sercseg_tf.model import inference

    inp = keras.Input((None, None, 3))
    out = keras.layers.Conv2D(labels.NUM_CLASSES, 1, kernel_initializer="glorot_uniform")(inp)
    model = keras.Model(inp, out)
    return inference.export_saved_model(model, tmp_path_factory.mktemp("m") / "export",
                                        image_scale=1.0, output_stride=16)


def test_predict_fold_with_exported_model(tiny_tfrecord_dir, tiny_export, tmp_path):
    from sercseg_tf import metrics
    from sercseg_tf.data import tfrecord

    runs = tmp_path / "runs"
    out = run_loocv.predict_fold(tiny_export, tiny_tfrecord_dir, runs, 2, batch_size=2)
    df = pd.read_csv(out)
    manifest = tfrecord.read_manifest(tiny_tfrecord_dir)
    assert len(df) == manifest["cases"][labels.case_name(2)]["frames"]
    assert set(df["case"]) == {2}
    pdir = layout.predict_dir(runs, 2)
    for _, r in df.iterrows():
        man = np.asarray(Image.open(pdir / r["manual_file"]))
        aut = np.asarray(Image.open(pdir / r["auto_file"]))
        assert (pdir / r["image_file"]).stat().st_size > 0
        iou = metrics.per_class_iou(aut, man)
        for c, col in zip(labels.EVAL_CLASSES, layout.IOU_COLUMNS, strict=True):
            assert r[col] == pytest.approx(iou[c], nan_ok=True, abs=1e-6)
        # Manual features come from the TFRecord label map: the oocyte is there.
        assert np.isfinite(r["manual_f2"]) or "no sERC" in str(r["manual_nan_reasons"])
        assert r["manual_S_o"] > 0
    assert run_loocv.is_fold_finished(runs, 2) is False  # no export in this run dir


def test_cli_rejects_unknown_fold(tiny_tfrecord_dir, tmp_path, capsys):
    cmd = [sys.executable, str(REPO / "tools" / "run_loocv.py"), "--tfrecord_dir",
           str(tiny_tfrecord_dir), "--model_dir", str(tmp_path / "runs"), "--config",
           str(REPO / "configs" / "demo.yaml")]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([*cmd, "--folds", "2,9"], capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    assert "--folds 2,9: no case(s) [9] in the manifest (cases: [1, 2, 3])" in proc.stderr
    proc = subprocess.run([*cmd, "--folds", "1-x"], capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and "'1-x' is not a fold number" in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing started


def test_cli_strategy_flag_is_the_train_flag():
    """One --strategy definition shared by train and run_loocv (not a shadowed copy)."""
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "run_loocv.py"), "--helpfull"],
                          capture_output=True, text=True)
    assert "--strategy: <auto|one_device|mirrored|multi_worker|tpu>" in proc.stdout
    bad = subprocess.run([sys.executable, str(REPO / "tools" / "run_loocv.py"),
                          "--strategy=bogus"], capture_output=True, text=True)
    assert bad.returncode != 0 and "strategy" in bad.stderr


@pytest.mark.skipif(os.environ.get("SERCSEG_SKIP_E2E") == "1",
                    reason="SERCSEG_SKIP_E2E=1: skipping the real 1-fold run (~45 s)")
def test_cli_end_to_end_one_fold(tiny_tfrecord_dir, tmp_path):
    runs = tmp_path / "runs"
    cmd = [sys.executable, str(REPO / "tools" / "run_loocv.py"), "--config",
           str(REPO / "configs" / "demo.yaml"), "--tfrecord_dir", str(tiny_tfrecord_dir),
           "--model_dir", str(runs), "--folds", "3", "--num_steps", "2",
           "--image_scale", "0.125", "--crop_height", "33", "--crop_width", "49",
           "--batch_size", "2", "--eval_every_steps", "0", "--save_checkpoints_steps", "2",
           "--log_every_steps", "1"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert run_loocv.is_fold_finished(runs, 3)
    report = runs / "report"
    for name in ("table1.csv", "table2_iou.md", "table3_relative_error.md", "agreement.csv",
                 "index.html", "figures/figure4_case03.png", "figures/figure3_learning_curve.png"):
        assert (report / name).is_file(), name
    # A re-run skips the finished fold (no training).
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and "finished earlier, skipped" in again.stderr
