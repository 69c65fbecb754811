"""Every command lists its flags in --help, has a console script, and starts quietly."""

from __future__ import annotations

import importlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# command module -> flags its --help must show (its own and the shared config keys).
KEY_FLAGS = {
    "train": ["--fold", "--all_cases", "--config", "--tfrecord_dir", "--model_dir",
              "--strategy", "--num_steps", "--learning_rate", "--image_scale", "--verbose"],
    "evaluate": ["--fold", "--config", "--model_dir", "--output_stride", "--overwrite",
                 "--verbose"],
    "export": ["--fold", "--all_cases", "--um_per_px", "--model_dir", "--image_scale",
               "--overwrite"],
    "predict": ["--saved_model", "--output_dir", "--labelme", "--select", "--input_scale",
                "--um_per_px", "--min_confidence", "--overwrite", "--strict",
                "--every_seconds", "--predict_batch_size", "--progress", "--verbose"],
    "report": ["--model_dir", "--output_dir", "--folds", "--verbose"],
    "build_tfrecords": ["--labelme_dir", "--output_dir", "--allow_predicted",
                        "--skip_invalid", "--label_map", "--num_workers", "--progress"],
    "extract_frames": ["--output_dir", "--every_seconds", "--strict", "--progress",
                       "--overwrite"],
}
ENV = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


@pytest.mark.parametrize("command", sorted(KEY_FLAGS))
def test_help_lists_the_command_flags_with_help_text(command):
    proc = subprocess.run([sys.executable, "-m", f"sercseg_tf.{command}", "--help"],
                          capture_output=True, text=True, cwd=REPO, timeout=120, env=ENV)
    assert proc.returncode in (0, 1), proc.stderr  # absl's --help exits 1 after printing
    lines = proc.stdout.splitlines()
    for flag in KEY_FLAGS[command]:
        name = flag[2:]
        hit = [ln for ln in lines if ln.strip().startswith((f"--{name}:", f"--[no]{name}:"))]
        assert hit, f"{command} --help lacks {flag}"
        assert len(hit[0].split(":", 1)[1].strip()) > 3, f"{flag} has no help text"


def test_console_scripts_point_at_entry_functions():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert {f"sercseg-{c.replace('_', '-')}" for c in KEY_FLAGS} <= set(scripts)
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), target


def test_tensorflow_commands_start_without_log_noise(tmp_path):
    """Only the command's own error line: TensorFlow's C++ start-up lines are hidden."""
    proc = subprocess.run([sys.executable, "-m", "sercseg_tf.evaluate", "--fold=1",
                           f"--tfrecord_dir={tmp_path / 'none'}",
                           f"--model_dir={tmp_path / 'runs'}"],
                          capture_output=True, text=True, cwd=REPO, timeout=300, env=ENV)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"evaluate: {tmp_path / 'none' / 'manifest.json'}: no TFRecord manifest; build it "
        f"with `python tools/build_tfrecords.py --output_dir {tmp_path / 'none'}`"]


_DEMO_STAGES = """
import importlib.util, json, os, pathlib, sys
spec = importlib.util.spec_from_file_location("run_demo", "tools/run_demo.py")
demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo)
calls = []
demo._run = calls.append
root = pathlib.Path(sys.argv[1])
ckpt, out = root / "checkpoints", root / "eval" / "iou_mean.csv"
demo._run_unless_current("m", ["--fold=5"], out, ckpt)  # no output yet: run
out.parent.mkdir()
out.write_text("earlier")
os.utime(ckpt / "ckpt-1.index", (100, 100))
os.utime(out, (200, 200))
demo._run_unless_current("m", ["--fold=5"], out, ckpt)  # newer than the checkpoints: kept
os.utime(ckpt / "ckpt-1.index", (300, 300))
demo._run_unless_current("m", ["--fold=5"], out, ckpt)  # older: made again, --overwrite
print(json.dumps(calls))
"""


def test_demo_redoes_evaluate_and_export_only_when_older_than_the_checkpoints(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "ckpt-1.index").write_text("")
    proc = subprocess.run([sys.executable, "-c", _DEMO_STAGES, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={**ENV, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    calls = json.loads(proc.stdout.strip().splitlines()[-1])
    assert calls == [["-m", "m", "--fold=5", "--overwrite"]] * 2
    assert "iou_mean.csv is newer than the checkpoints; reusing it." in proc.stdout
