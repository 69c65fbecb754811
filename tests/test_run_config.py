"""A run remembers its config; evaluate / export / run_loocv read their inputs honestly.

`sercseg_tf.config.run_config`: without ``--config`` a command on an existing fold uses
the fold's saved ``config.yaml``; a ``--config`` or flag that contradicts one of its
architecture keys is one line naming both values, and nothing is overwritten. Then the
one-line errors: a shard with fewer frames than the manifest, a truncated shard, a
garbled manifest, a manifest entry without ``case_id``, an unwritable output folder, a
checkpoint of another architecture, and Ctrl-C / SIGTERM in ``run_loocv``.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from sercseg_tf import cli, layout
from sercseg_tf import config as config_lib
from sercseg_tf.config import ConfigError, ExperimentConfig

REPO = pathlib.Path(__file__).resolve().parents[1]
FOLD = 2
# The run's config: not the paper's (output stride 32, 1/8 frames), as the demo is not.
CONFIG = ExperimentConfig().replace(output_stride=32, image_scale=0.125,
                                    init_checkpoint="none", batch_size=2)


# --------------------------------------------------------------- config resolution

def test_run_config_prefers_the_saved_config(tmp_path):
    saved = tmp_path / "fold_02" / "config.yaml"
    # A new run: --config, else the paper's file.
    assert config_lib.run_config(saved, None) == config_lib.load_config(
        config_lib.DEFAULT_CONFIG)
    config_lib.save_config(CONFIG, saved)
    # No --config: the saved one, with the flags' non-architecture keys.
    cfg = config_lib.run_config(saved, None, {"num_steps": 7, "eval_max_images": None})
    assert cfg == CONFIG.replace(num_steps=7)
    # A --config that agrees on the architecture is taken as given.
    other = tmp_path / "other.yaml"
    config_lib.save_config(CONFIG.replace(learning_rate=0.5), other)
    assert config_lib.run_config(saved, other).learning_rate == 0.5


@pytest.mark.parametrize("config_file, overrides, message", [
    (None, {"output_stride": 16},
     "the run was trained with output_stride=32, but the command line asks for 16"),
    (None, {"image_scale": 0.5},
     "the run was trained with image_scale=0.125, but the command line asks for 0.5"),
    ("PAPER", {}, "the run was trained with output_stride=32, but {paper} asks for 16"),
    ("PAPER", {"output_stride": 32}, "the run was trained with image_scale=0.125, but "
     "{paper} + command line asks for 1.0"),
])
def test_contradicting_the_saved_architecture_is_one_clear_error(tmp_path, config_file,
                                                                 overrides, message):
    saved = tmp_path / "config.yaml"
    config_lib.save_config(CONFIG, saved)
    paper = config_lib.DEFAULT_CONFIG
    with pytest.raises(ConfigError) as err:
        config_lib.run_config(saved, paper if config_file else None, overrides)
    text = str(err.value)
    assert text.startswith(f"{saved}: {message.format(paper=paper)}; ") and "\n" not in text


# ------------------------------------------------------------ evaluate and export

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A fold-2 run trained with CONFIG: a checkpoint and its config.yaml."""
    import keras
    import tensorflow as tf

    from sercseg_tf.training import checkpoints, modeling

    out = tmp_path_factory.mktemp("runs")
    keras.utils.set_random_seed(0)
    model = modeling.build_model(CONFIG.replace(bn_momentum=0.0))
    model(np.random.default_rng(0).normal(0, 60, (1, 65, 97, 3)).astype("float32"),
          training=True)
    manager = tf.train.CheckpointManager(checkpoints.make_checkpoint(model),
                                         str(layout.checkpoint_dir(out, FOLD)), 1)
    manager.save(checkpoint_number=3)
    config_lib.save_config(CONFIG, layout.config_path(out, FOLD))
    return out


def _cli(module, args, capsys) -> tuple[int, list[str]]:
    status = cli.run(module.main, args, prog=module.__name__)
    return status, capsys.readouterr().err.strip().splitlines()


def test_evaluate_and_export_use_the_runs_config(run_dir, tiny_tfrecord_dir, capsys):
    from sercseg_tf import evaluate, export

    args = [f"--fold={FOLD}", f"--model_dir={run_dir}", f"--tfrecord_dir={tiny_tfrecord_dir}"]
    status, err = _cli(evaluate, args, capsys)
    assert status == 0, err
    iou = layout.eval_dir(run_dir, FOLD) / layout.IOU_CSV
    got = pd.read_csv(iou)
    before = iou.read_bytes()
    # A second evaluation or export is refused (one line, exit 1) without --overwrite.
    status, err = _cli(evaluate, args, capsys)
    assert (status, err) == (1, [f"evaluate: {iou}: exists (an earlier run); pass "
                                 "--overwrite to replace it"])
    os.utime(iou, (1, 1))  # --overwrite writes it anew (the same table: the same checkpoint)
    status, err = _cli(evaluate, [*args, "--overwrite"], capsys)
    assert status == 0, err
    assert iou.stat().st_mtime > 1 and iou.read_bytes() == before
    want = evaluate.run_evaluation(CONFIG, tiny_tfrecord_dir, run_dir, FOLD,
                                   overwrite=True)  # explicit config
    pd.testing.assert_frame_equal(got, want, check_exact=False, atol=1e-6)
    status, err = _cli(export, args[:2], capsys)
    assert status == 0, err
    exported = (layout.export_dir(run_dir, FOLD) / "saved_model.pb").read_bytes()
    status, err = _cli(export, args[:2], capsys)
    assert (status, err) == (1, [f"export: {layout.export_dir(run_dir, FOLD)}: exists (an "
                                 "earlier run); pass --overwrite to replace it"])
    before = iou.read_bytes()

    # The paper's config (stride 16, full frames) contradicts the run: one line, exit 1,
    # and neither the IoU table nor the SavedModel is replaced.
    paper = config_lib.DEFAULT_CONFIG
    for module, extra in ((evaluate, args), (export, args[:2])):
        status, err = _cli(module, [*extra, f"--config={paper}"], capsys)
        assert status == 1
        assert err == [f"{module.__name__.split('.')[-1]}: "
                       f"{layout.config_path(run_dir, FOLD)}: the run was trained with "
                       f"output_stride=32, but {paper} asks for 16; leave out --config and "
                       "the flag (the run's config is used) or use another --model_dir"]
        status, err = _cli(module, [*extra, "--decoder_separable=false"], capsys)
        assert status == 1 and "decoder_separable=True, but the command line asks " \
            "for False" in err[-1]
    assert iou.read_bytes() == before
    assert (layout.export_dir(run_dir, FOLD) / "saved_model.pb").read_bytes() == exported


def test_checkpoint_of_another_architecture_is_one_line(run_dir, tmp_path):
    from sercseg_tf.training import checkpoints

    old_run = tmp_path / "old_run"  # a run from before config.yaml was written
    shutil.copytree(layout.checkpoint_dir(run_dir, FOLD), layout.checkpoint_dir(old_run, FOLD))
    with pytest.raises(ValueError) as err:
        checkpoints.restore_model(CONFIG.replace(decoder_separable=False), old_run, FOLD)
    assert "ckpt-3: the checkpoint does not fit the model built from the config (another " \
        "architecture?): " in str(err.value) and "\n" not in str(err.value)


@pytest.fixture
def tfrecords(tiny_tfrecord_dir, tmp_path):
    """A private copy of the tiny TFRecords to damage."""
    out = tmp_path / "tfrecords"
    shutil.copytree(tiny_tfrecord_dir, out)
    return out


def _shard(tfrecords: pathlib.Path) -> pathlib.Path:
    return tfrecords / "case02-00000-of-00001.tfrecord"


def _keep_first_record(path: pathlib.Path) -> None:
    import tensorflow as tf

    first = next(iter(tf.data.TFRecordDataset(str(path)))).numpy()
    with tf.io.TFRecordWriter(str(path)) as w:
        w.write(first)


@pytest.mark.parametrize("damage, message", [
    ("short shard", "{shard}: case02 has 1 frame(s) (case02-00000-of-00001.tfrecord: 1) but "
     "the manifest says 2; the shard is incomplete, rebuild the TFRecords"),
    ("truncated shard", "{shard}: truncated or corrupt TFRecord file ("),
    ("garbled manifest", "{manifest}: not a valid manifest ("),
    ("no case_id", "{manifest}: case 'case02' has no integer case_id; rebuild the TFRecords"),
    ("unwritable eval folder", "{eval}: cannot write there ("),
])
def test_evaluate_bad_input_is_one_line_and_changes_nothing(run_dir, tfrecords, tmp_path,
                                                            capsys, damage, message):
    from sercseg_tf import evaluate

    runs = tmp_path / "runs"
    shutil.copytree(run_dir, runs, ignore=shutil.ignore_patterns("eval", "export"))
    shard, manifest = _shard(tfrecords), tfrecords / "manifest.json"
    if damage == "short shard":
        _keep_first_record(shard)
    elif damage == "truncated shard":
        shard.write_bytes(shard.read_bytes()[:-5000])
    elif damage == "garbled manifest":
        manifest.write_text(manifest.read_text()[:100])
    elif damage == "no case_id":
        doc = json.loads(manifest.read_text())
        del doc["cases"]["case02"]["case_id"]
        manifest.write_text(json.dumps(doc))
    else:
        layout.fold_dir(runs, FOLD).joinpath("eval").write_text("a file, not a folder")
    status, err = _cli(evaluate, [f"--fold={FOLD}", f"--model_dir={runs}",
                                  f"--tfrecord_dir={tfrecords}"], capsys)
    assert status == 1
    assert len(err) == 1 and "Traceback" not in err[0]
    expected = "evaluate: " + message.format(shard=shard, manifest=manifest,
                                            eval=layout.eval_dir(runs, FOLD))
    assert err[0].startswith(expected), err[0]
    assert not (layout.eval_dir(runs, FOLD) / layout.IOU_CSV).exists()


def test_run_loocv_bad_manifest_is_one_line(tfrecords, tmp_path):
    manifest = tfrecords / "manifest.json"
    doc = json.loads(manifest.read_text())
    del doc["cases"]["case01"]["case_id"]
    manifest.write_text(json.dumps(doc))
    proc = subprocess.run([sys.executable, "tools/run_loocv.py", f"--tfrecord_dir={tfrecords}",
                           f"--model_dir={tmp_path / 'runs'}"], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO),
                                         "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"{manifest}: case 'case01' has no integer case_id; rebuild the TFRecords")
    assert "Traceback" not in proc.stderr and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- run_loocv signals

def test_run_loocv_ctrl_c_is_one_line_and_exit_130(tiny_tfrecord_dir, tmp_path, capsys,
                                                   monkeypatch):
    from sercseg_tf import loocv

    sys.path.insert(0, str(REPO / "tools"))
    try:
        import run_loocv as tool
    finally:
        sys.path.pop(0)

    def interrupted_train(cfg, tfrecord_dir, model_dir, fold):
        raise KeyboardInterrupt  # Ctrl-C during training (train saves, then re-raises)

    stages = loocv.Stages(train=interrupted_train, evaluate=None, export=None, predict=None)
    monkeypatch.setattr(loocv, "default_stages", lambda strategy: stages)
    tool.define_flags()
    runs = tmp_path / "runs"
    status = cli.run(tool.main, [f"--tfrecord_dir={tiny_tfrecord_dir}", f"--model_dir={runs}",
                                 "--folds=2"], prog="run_loocv")
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 130
    assert err == [f"run_loocv: interrupted; the running fold saved its checkpoint (see "
                   f"{layout.status_json(runs)}); run the same command again to resume"]
    assert layout.read_status(runs)[2]["status"] == "interrupted"
    assert not layout.lock_path(runs, 2).exists()


@pytest.mark.skipif(os.environ.get("SERCSEG_SKIP_E2E") == "1",
                    reason="SERCSEG_SKIP_E2E=1: skipping a real run_loocv training (~40 s)")
def test_run_loocv_saves_on_sigterm(tiny_tfrecord_dir, tmp_path):
    runs = tmp_path / "runs"
    log = tmp_path / "stderr.txt"
    cmd = [sys.executable, "tools/run_loocv.py", "--config=configs/demo.yaml",
           f"--tfrecord_dir={tiny_tfrecord_dir}", f"--model_dir={runs}", "--folds=2",
           "--num_steps=1000", "--image_scale=0.125", "--crop_height=33", "--crop_width=49",
           "--batch_size=2", "--eval_every_steps=0", "--save_checkpoints_steps=1000",
           "--log_every_steps=1"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3",
           "CUDA_VISIBLE_DEVICES": ""}
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 400
    while "step 2/1000" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 130
    text = log.read_text()
    assert "Traceback" not in text
    assert text.strip().splitlines()[-1].startswith("run_loocv: interrupted; the running fold "
                                                    "saved its checkpoint")
    saved = sorted(p.name for p in layout.checkpoint_dir(runs, 2).glob("ckpt-*.index"))
    assert len(saved) == 1 and int(saved[0][5:-6]) >= 2  # saved at the step it reached
    assert layout.read_status(runs)[2]["status"] == "interrupted"
    assert not layout.lock_path(runs, 2).exists()
