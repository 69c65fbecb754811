"""Every command lists its flags in --help, has a console script, and starts quietly."""

from __future__ import annotations

import importlib
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
    "evaluate": ["--fold", "--config", "--model_dir", "--output_stride", "--verbose"],
    "export": ["--fold", "--all_cases", "--um_per_px", "--model_dir", "--image_scale"],
    "predict": ["--saved_model", "--output_dir", "--labelme", "--select", "--input_scale",
                "--um_per_px", "--min_confidence", "--overwrite", "--strict",
                "--every_seconds", "--predict_batch_size", "--progress", "--verbose"],
    "report": ["--model_dir", "--output_dir", "--folds", "--verbose"],
    "build_tfrecords": ["--labelme_dir", "--output_dir", "--allow_predicted",
                        "--skip_invalid", "--label_map", "--num_workers", "--progress"],
    "extract_frames": ["--output_dir", "--every_seconds", "--strict", "--progress"],
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
