"""Faults survived: SIGKILL at named points of every command, locks, interrupts, litter.

A command is killed with ``SERCSEG_KILL_AT=POINT`` (`sercseg_tf.fault_points`: the
process SIGKILLs itself there, as ``kill -9`` from outside would) and the test checks
that its previous result is intact (byte for byte) or, after the swap, the new one is
complete, and that the next run completes and leaves no temporary folder behind.
Sized to seconds: tiny LabelMe cases, a 1x1-conv SavedModel, short videos.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from sercseg_tf import atomic_io, cli, fault_points, layout, run_lock

REPO = pathlib.Path(__file__).resolve().parents[1]
# Without PYTHONUNBUFFERED (set on some machines): stdout to a pipe is block-buffered, as
# under most CI runners and shells, so a command that loses unflushed output fails here.
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
       "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
HOST = socket.gethostname()


def run_py(args: list[str], kill_at: str | None = None, timeout: int = 300,
           temp_dir: pathlib.Path | None = None) -> subprocess.CompletedProcess:
    """Runs ``python ARGS`` from the repository, optionally killed at a fault point.

    ``temp_dir`` becomes the process's TMPDIR (to see what it leaves there).
    """
    env = dict(ENV)
    if kill_at:
        env[fault_points.ENV_VAR] = kill_at
    if temp_dir is not None:
        env["TMPDIR"] = str(temp_dir)
    return subprocess.run([sys.executable, *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def snapshot(folder: pathlib.Path) -> dict[str, str]:
    """``{relative path: sha1}`` of every file under ``folder``."""
    return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def dead_pid() -> int:
    """The pid of a process that has finished (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)
    return int(proc.stdout)


# ------------------------------------------------------------------ atomic_io itself

_SWAP_SCRIPT = textwrap.dedent("""
    import sys
    from sercseg_tf import atomic_io
    if sys.argv[2] == "two-renames":
        atomic_io._exchange = lambda a, b: False  # as on a system without renameat2
    with atomic_io.atomic_dir(sys.argv[1]) as tmp:
        (tmp / "result.txt").write_text("new")
""")


@pytest.mark.parametrize("mode, point, visible", [
    ("exchange", "atomic_dir.new_in_place", "new"),
    ("two-renames", "atomic_dir.old_moved_aside", None),
    ("two-renames", "atomic_dir.new_in_place", "new"),
])
def test_atomic_dir_killed_mid_swap_leaves_the_old_or_the_new(tmp_path, mode, point, visible):
    final = tmp_path / "out"
    final.mkdir()
    (final / "result.txt").write_text("old")
    assert run_py(["-c", _SWAP_SCRIPT, str(final), mode], kill_at=point).returncode == -9
    if visible:
        assert (final / "result.txt").read_text() == visible
    else:  # between the two renames: the old result waits under its hidden name
        assert not final.exists() and len(list(tmp_path.iterdir())) == 2
    atomic_io.recover_dir(final)  # what the next run of any command does first
    assert (final / "result.txt").read_text() == (visible or "old")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    proc = run_py(["-c", _SWAP_SCRIPT, str(final), mode])
    assert proc.returncode == 0, proc.stderr
    assert (final / "result.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_result_set_aside_by_a_killed_swap_still_counts_as_existing(tmp_path):
    final = tmp_path / "export"
    final.mkdir()
    (final / "result.txt").write_text("old")
    proc = run_py(["-c", _SWAP_SCRIPT, str(final), "two-renames"],
                  kill_at="atomic_dir.old_moved_aside")
    assert proc.returncode == -9 and not final.exists()
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith(".export.old-")]
    with pytest.raises(FileExistsError) as err:
        atomic_io.refuse_existing([final], overwrite=False)
    assert str(err.value) == (f"{final}: an earlier run's, set aside as {aside.name} by an "
                              "interrupted replacement; pass --overwrite to replace it")
    atomic_io.refuse_existing([final], overwrite=True)
    assert (aside / "result.txt").read_text() == "old"  # the check moved nothing


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux-only")
def test_exchange_swaps_two_folders_in_one_step(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    assert atomic_io._exchange(a, b)
    assert ((a / "x").read_text(), (b / "x").read_text()) == ("b", "a")


def test_recover_dir_removes_only_litter_of_dead_processes(tmp_path):
    final = tmp_path / "export"
    final.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {f".export.partial-{HOST}-{dead_pid()}": False,  # dead here: removed
                 f".export.old-{HOST}-{dead_pid()}": False,  # a finished swap's old copy
                 ".export.tmp-abc_12xy": False,  # an older version's mkdtemp name
                 f".export.partial-{HOST}-{sleeper.pid}": True,  # still writing: kept
                 f".export.partial-otherhost-{dead_pid()}": True}  # cannot check: kept
        for name in names:
            (tmp_path / name).mkdir()
        notes = atomic_io.recover_dir(final)
        assert len(notes) == len(names)
        left = {p.name for p in tmp_path.iterdir()}
        assert left == {"export", *(n for n, kept in names.items() if kept)}
    finally:
        sleeper.kill()
        sleeper.wait()


def test_owned_temp_dir_replaces_those_of_dead_owners(tmp_path):
    stale = tmp_path / f"scratch-{HOST}-{dead_pid()}"
    stale.mkdir()
    path = atomic_io.owned_temp_dir(tmp_path, "scratch")
    assert path.name == f"scratch-{HOST}-{os.getpid()}" and path.is_dir()
    assert not stale.exists()


def test_check_writable_is_one_line_naming_the_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match=r"^.*file/eval: cannot write there \(.+\)$"):
        atomic_io.check_writable(tmp_path / "file" / "eval")


# -------------------------------------------------------------------- build_tfrecords

@pytest.fixture
def labelme_dirs(tmp_path, make_labelme_case):
    """``lm_old`` (cases 1, 2) and ``lm_new`` (cases 1, 2, 3), 2 frames each."""
    for root, cases in (("lm_old", (1, 2)), ("lm_new", (1, 2, 3))):
        for c in cases:
            make_labelme_case(tmp_path / root, f"case{c:02d}", 2, seed=c)
    return tmp_path / "lm_old", tmp_path / "lm_new"


@pytest.mark.parametrize("point", ["build_tfrecords.shard_written:2",
                                   "build_tfrecords.manifest_written",
                                   "atomic_dir.new_in_place"])
def test_build_killed_leaves_a_complete_build(tmp_path, labelme_dirs, point):
    from sercseg_tf.data import tfrecord

    lm_old, lm_new = labelme_dirs
    out = tmp_path / "out"
    tfrecord.build_tfrecords(lm_old, out, progress=False)
    (out / ".build_tfrecords-x1y2").mkdir()  # litter of an older version's killed build
    before = snapshot(out)
    proc = run_py(["tools/build_tfrecords.py", f"--labelme_dir={lm_new}",
                   f"--output_dir={out}"], kill_at=point)
    assert proc.returncode == -9, proc.stderr[-2000:]
    cases = tfrecord.case_ids(out)
    tfrecord.verify_shards(out, cases)  # whatever is there is complete
    if point == "atomic_dir.new_in_place":
        assert cases == [1, 2, 3]
    else:
        assert snapshot(out) == before  # the old build, byte for byte
    manifest = tfrecord.build_tfrecords(lm_new, out, progress=False)  # the re-run
    assert sorted(manifest["cases"]) == ["case01", "case02", "case03"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lm_new", "lm_old", "out"]
    assert sorted(p.name for p in out.iterdir()) == [
        "case01-00000-of-00001.tfrecord", "case02-00000-of-00001.tfrecord",
        "case03-00000-of-00001.tfrecord", "manifest.json"]


def _break(kind: str, root: pathlib.Path, make_case) -> None:
    """Applies one of the probe's bad inputs to the LabelMe folder ``root``."""
    case = root / "case02"
    doc = json.loads((case / "frame_0001.json").read_text())
    if kind == "missing image":
        (case / "frame_0001.png").unlink()
    elif kind == "size mismatch":
        doc["imageHeight"] += 8
    elif kind == "2-point polygon":
        doc["shapes"][0]["points"] = doc["shapes"][0]["points"][:2]
    elif kind == "unknown label":
        doc["shapes"][0]["label"] = "zona"
    elif kind == "folder without number":
        make_case(root, "patient", 1)
    elif kind == "case5 + case05":
        make_case(root, "case5", 1)
        make_case(root, "case05", 1)
    (case / "frame_0001.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("kind", ["missing image", "size mismatch", "2-point polygon",
                                  "unknown label", "folder without number",
                                  "case5 + case05"])
def test_bad_input_keeps_the_previous_build(tmp_path, labelme_dirs, make_labelme_case, kind):
    from sercseg_tf.data import tfrecord

    lm_old, lm_new = labelme_dirs
    out = tmp_path / "out"
    tfrecord.build_tfrecords(lm_old, out, progress=False)
    before = snapshot(out)
    _break(kind, lm_new, make_labelme_case)
    with pytest.raises(ValueError):
        tfrecord.build_tfrecords(lm_new, out, progress=False)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lm_new", "lm_old", "out"]


def test_cli_suggests_skip_invalid_only_where_it_helps(tmp_path, make_labelme_case):
    make_labelme_case(tmp_path / "lm", "case01", 1)
    make_labelme_case(tmp_path / "lm", "patient", 1)
    proc = run_py(["tools/build_tfrecords.py", f"--labelme_dir={tmp_path / 'lm'}",
                   f"--output_dir={tmp_path / 'out'}"])
    assert proc.returncode == 1
    assert "patient: case folder name has no" in proc.stderr
    assert "--skip_invalid" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: 1 problem(s); no TFRecords written, {tmp_path / 'out'} unchanged (fix them)")


# ---------------------------------------------------------------------- extract_frames

def _video(path: pathlib.Path, seconds: int, shade: int) -> list[np.ndarray]:
    """Writes a 24 fps video whose frame i is uniformly (shade + 10 * i // 24); returns
    the frames expected at 0, 1, 2, ... s."""
    from sercseg_tf.data import video

    frames = [np.full((48, 64, 3), shade + 10 * (i // 24), np.uint8) for i in range(24 * seconds)]
    path.parent.mkdir(parents=True, exist_ok=True)
    video.write_video(path, frames, 24, (48, 64))
    return frames[::24]


def test_extract_frames_replaces_a_case_folder_whole(tmp_path):
    from sercseg_tf.data import video

    old = tmp_path / "old" / "case05" / "video.avi"
    new = tmp_path / "new" / "case05" / "video.avi"
    _video(old, 4, 20)
    _video(new, 2, 150)
    out = tmp_path / "out"
    video.extract_frames(old, out)
    before = snapshot(out / "case05")
    assert sorted(before) == [f"frame_{k:04d}.png" for k in range(4)]
    for point in ("extract_frames.frame_written:1", "atomic_dir.new_in_place"):
        proc = run_py(["tools/extract_frames.py", str(new), f"--output_dir={out}",
                       "--overwrite"], kill_at=point)
        assert proc.returncode == -9, proc.stderr
        if point.startswith("extract"):  # the partial folder waits beside it, hidden
            assert snapshot(out / "case05") == before
    before = snapshot(out / "case05")
    proc = run_py(["tools/extract_frames.py", str(old), f"--output_dir={out}"])
    assert proc.returncode == 1  # an earlier run's folder: refused without --overwrite
    assert f"extract_frames: {out / 'case05'}: exists (an earlier run); pass --overwrite " \
        "to replace it" in proc.stderr
    assert snapshot(out / "case05") == before
    proc = run_py(["tools/extract_frames.py", str(new), f"--output_dir={out}", "--overwrite"])
    assert proc.returncode == 0, proc.stderr
    # Exactly the new video's 2 frames: none of the 4 old ones left beside them.
    assert sorted(snapshot(out)) == ["case05/frame_0000.png", "case05/frame_0001.png"]
    assert [p.name for p in out.iterdir()] == ["case05"]
    import cv2

    assert cv2.imread(str(out / "case05" / "frame_0001.png"))[0, 0, 0] in range(158, 163)
    # Annotations beside the frames are never deleted, not even with --overwrite.
    (out / "case05" / "frame_0001.json").write_text("{}")
    before = snapshot(out / "case05")
    proc = run_py(["tools/extract_frames.py", str(old), f"--output_dir={out}", "--overwrite"])
    assert proc.returncode == 1
    assert f"extract_frames: {out / 'case05'}: holds 1 LabelMe file(s) (e.g. " \
        "frame_0001.json); move them out before extracting again" in proc.stderr
    assert snapshot(out / "case05") == before


@pytest.mark.parametrize("ext", [".wmv", ".avi"])
def test_truncated_video_is_reported_with_the_seconds_read(tmp_path, capsys, ext):
    from sercseg_tf.data import video

    full = tmp_path / "case07" / f"video{ext}"
    _video(full, 10, 0)
    assert len(list(video.iter_frames(full))) == 10  # complete: no error
    cut = tmp_path / "cut" / "case07" / f"video{ext}"
    cut.parent.mkdir(parents=True)
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) * 4 // 10])
    with pytest.raises(video.VideoTruncatedError) as err:
        video.extract_frames(cut, tmp_path / "lib")
    assert err.value.seconds_declared == pytest.approx(10.0, abs=0.1)
    assert 1.0 <= err.value.seconds_read < 7.0
    assert not (tmp_path / "lib" / "case07").exists()  # nothing half-written
    tool = _extract_tool()
    out = tmp_path / "out"
    assert tool.run([str(cut), "--output_dir", str(out), "--strict"]) == 1
    line = capsys.readouterr().err.strip().splitlines()[0]
    assert line.startswith(f"extract_frames: {cut}: truncated: read ")
    assert "of 10.0 s" in line and "left as it was" in line
    assert not (out / "case07").exists()
    assert tool.run([str(cut), "--output_dir", str(out)]) == 0  # a warning, frames written
    assert "warning" in capsys.readouterr().err
    assert len(list((out / "case07").iterdir())) == err.value.frames_read >= 1


def _extract_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("extract_frames_tool",
                                                  REPO / "tools" / "extract_frames.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ synthetic generator

_GENERATE = ("from sercseg_tf.synthetic.generator import generate_dataset; import sys; "
             "generate_dataset(sys.argv[1], num_cases=1, frames_per_case=1, "
             "write_video=False, seed=int(sys.argv[2]))")


def test_generator_killed_keeps_the_old_case(tmp_path):
    root = tmp_path / "syn"
    assert run_py(["-c", _GENERATE, str(root), "1"]).returncode == 0
    before = snapshot(root / "case01")
    assert run_py(["-c", _GENERATE, str(root), "2"], kill_at="generator.case_written"
                  ).returncode == -9
    assert snapshot(root / "case01") == before
    assert run_py(["-c", _GENERATE, str(root), "2"]).returncode == 0
    after = snapshot(root / "case01")
    assert sorted(after) == sorted(before) and after != before
    assert [p.name for p in root.iterdir()] == ["case01"]


# ------------------------------------------------------------------ export and predict

_EXPORT_SCRIPT = textwrap.dedent("""
    import os, sys
    os.umask(0o022)
    import keras
    from sercseg_tf.model import inference
    keras.utils.set_random_seed(int(sys.argv[2]))
    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, keras.layers.Conv2D(4, 1)(inp))
    inference.export_saved_model(model, sys.argv[1], image_scale=1.0, output_stride=16)
""")


@pytest.fixture(scope="module")
def tiny_exports(tmp_path_factory):
    """Two exports of a 1x1-conv model with different weights (seeds 1 and 2)."""
    root = tmp_path_factory.mktemp("exports")
    for seed in (1, 2):
        proc = run_py(["-c", _EXPORT_SCRIPT, str(root / f"seed{seed}"), str(seed)])
        assert proc.returncode == 0, proc.stderr[-2000:]
    return root / "seed1", root / "seed2"


def test_export_killed_keeps_the_previous_export(tmp_path, tiny_exports):
    import shutil

    export_dir = layout.export_dir(tmp_path / "runs", 1)
    shutil.copytree(tiny_exports[0], export_dir)
    before = snapshot(export_dir)
    (export_dir.parent / ".export.tmp-abc_12xy").mkdir()  # an older version's litter
    for point in ("export.saved", "atomic_dir.new_in_place"):
        proc = run_py(["-c", _EXPORT_SCRIPT, str(export_dir), "2"], kill_at=point)
        assert proc.returncode == -9, proc.stderr[-2000:]
        if point == "export.saved":
            assert snapshot(export_dir) == before
        else:  # swapped in: the seed-2 weights (fingerprint.pb differs from run to run)
            assert _content(export_dir) == _content(tiny_exports[1])
    proc = run_py(["-c", _EXPORT_SCRIPT, str(export_dir), "1"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _content(export_dir) == _content(tiny_exports[0])
    assert [p.name for p in export_dir.parent.iterdir()] == ["export"]


def _content(export_dir: pathlib.Path) -> dict[str, str]:
    return {k: v for k, v in snapshot(export_dir).items() if k != "fingerprint.pb"}


def test_export_has_the_usual_permissions(tiny_exports):
    modes = {p.relative_to(tiny_exports[0]).as_posix() or ".": p.stat().st_mode & 0o777
             for p in [tiny_exports[0], *tiny_exports[0].rglob("*")]}
    assert modes["."] == modes["variables"] == 0o755  # not mkdtemp's 0700
    assert modes["saved_model.pb"] == 0o644
    assert all(m in (0o755, 0o644) for m in modes.values()), modes


_PREDICT_SCRIPT = textwrap.dedent("""
    import sys
    from sercseg_tf import loocv
    loocv.predict_fold(sys.argv[1], sys.argv[2], sys.argv[3], 2, batch_size=1)
""")


def test_loocv_predict_killed_keeps_the_previous_predictions(tmp_path, tiny_exports,
                                                             tiny_tfrecord_dir):
    from sercseg_tf import loocv

    runs = tmp_path / "runs"
    loocv.predict_fold(tiny_exports[0], tiny_tfrecord_dir, runs, 2, batch_size=1)
    pdir = layout.predict_dir(runs, 2)
    before = snapshot(pdir)
    assert "frames.csv" in before
    proc = run_py(["-c", _PREDICT_SCRIPT, str(tiny_exports[1]), str(tiny_tfrecord_dir),
                   str(runs)], kill_at="loocv.frame_predicted:1")
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert snapshot(pdir) == before
    loocv.predict_fold(tiny_exports[1], tiny_tfrecord_dir, runs, 2, batch_size=1)
    assert sorted(snapshot(pdir)) == sorted(before)
    assert [p.name for p in pdir.parent.iterdir()] == ["predict"]


# --------------------------------------------------------------------- locks, signals

def test_run_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    path = tmp_path / "fold_01" / ".lock"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path.parent.mkdir()
        path.write_text(json.dumps({"pid": sleeper.pid, "host": HOST, "command": "train",
                                    "started": "2026-11-26 10:00:00"}))
        with pytest.raises(run_lock.RunLockedError) as err:
            run_lock.acquire(path, "train")
        assert str(err.value) == (
            f"{path.parent}: in use by train (pid {sleeper.pid} on {HOST}, since "
            f"2026-11-26 10:00:00); wait for it to finish or stop it (if that process no "
            f"longer runs, delete {path})")
        # Another host's lock cannot be checked from here: never taken over.
        path.write_text(json.dumps({"pid": dead_pid(), "host": "elsewhere"}))
        with pytest.raises(run_lock.RunLockedError, match="on elsewhere"):
            run_lock.acquire(path, "train")
    finally:
        sleeper.kill()
        sleeper.wait()
    # A dead process's lock (kill -9) is stale: taken over; re-entrant in one process.
    path.write_text(json.dumps({"pid": dead_pid(), "host": HOST, "command": "train"}))
    with run_lock.hold(path, "run_loocv"), run_lock.hold(path, "train"):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()


def test_second_train_on_a_fold_is_refused_in_one_line(tmp_path, tiny_tfrecord_dir, capsys):
    from sercseg_tf import train

    runs = tmp_path / "runs"
    lock = layout.lock_path(runs, 2)
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": os.getppid(), "host": HOST, "command": "train",
                                "started": "now"}))
    status = cli.run(train.main, ["--fold=2", f"--model_dir={runs}", "--strategy=one_device",
                                  f"--tfrecord_dir={tiny_tfrecord_dir}",
                                  "--init_checkpoint=none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert err[-1].startswith(f"train: {lock.parent}: in use by train (pid {os.getppid()} ")
    assert sorted(p.name for p in lock.parent.iterdir()) == [".lock"]  # nothing written


def test_interrupts_wait_for_the_checkpoint(tmp_path):
    import types

    import tensorflow as tf

    from sercseg_tf.training import loop

    ckpt = tf.train.Checkpoint(v=tf.Variable(np.ones(1000, np.float32)))
    manager = tf.train.CheckpointManager(ckpt, str(tmp_path), max_to_keep=5)
    real_save = manager.save

    def save_hit_by_ctrl_c(**kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives while the file is written
        return real_save(**kwargs)

    manager.save = save_hit_by_ctrl_c
    run = types.SimpleNamespace(manager=manager, train_history=None, last_saved=-1)
    # A periodic save: the Ctrl-C takes effect once the checkpoint is complete.
    with pytest.raises(KeyboardInterrupt):
        loop._save(run, 1)
    # The save that a first Ctrl-C started: a second Ctrl-C is ignored.
    assert loop._save(run, 2, reraise_interrupt=False).endswith("ckpt-2")
    assert run.last_saved == 2
    assert manager.checkpoints == [str(tmp_path / "ckpt-1"), str(tmp_path / "ckpt-2")]
    assert not list(tmp_path.glob("*_temp"))
    with cli.deferred_interrupts():  # nothing pending: no interrupt
        pass


def test_a_held_back_interrupt_says_what_it_waits_for(caplog):
    with pytest.raises(KeyboardInterrupt), caplog.at_level("WARNING"):
        with cli.deferred_interrupts(doing="the statistics are being recomputed"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs between bytecodes, inside the block
            assert "the statistics are being recomputed; stopping after it" in caplog.text


def _tiny_train_cmd(tfrecord_dir, runs, num_steps):
    return ["-m", "sercseg_tf.train", "--fold=2", f"--tfrecord_dir={tfrecord_dir}",
            f"--model_dir={runs}", "--strategy=one_device", "--output_stride=32",
            "--image_scale=0.125", "--crop_height=33", "--crop_width=49", "--batch_size=2",
            f"--num_steps={num_steps}", "--init_checkpoint=none", "--learning_rate=1e-3",
            "--min_scale=0.75", "--max_scale=1.25", "--shuffle_buffer=8",
            "--log_every_steps=1", "--save_checkpoints_steps=1", "--keep_checkpoint_max=5",
            "--eval_every_steps=0", "--num_summary_images=0", "--bn_momentum=0.9"]


def test_train_killed_during_a_checkpoint_write_resumes(tmp_path, tiny_tfrecord_dir):
    import tensorflow as tf

    runs = tmp_path / "runs"
    ckpt_dir = layout.checkpoint_dir(runs, 2)
    proc = subprocess.Popen([sys.executable, *_tiny_train_cmd(tiny_tfrecord_dir, runs, 3)],
                            env=ENV, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    # kill -9 the moment the second checkpoint's temporary folder appears (mid-write).
    deadline = time.monotonic() + 300
    while not (ckpt_dir / "ckpt-2_temp").exists() and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.kill()
    proc.wait()
    assert (ckpt_dir / "ckpt-2_temp").is_dir()  # caught mid-write
    latest = tf.train.latest_checkpoint(str(ckpt_dir))
    assert latest.endswith("ckpt-1")  # the last complete checkpoint, listed and readable
    assert tf.train.load_checkpoint(latest).get_tensor("optimizer/_iterations/.ATTRIBUTES/"
                                                       "VARIABLE_VALUE") == 1
    assert json.loads(layout.lock_path(runs, 2).read_text())["pid"] == proc.pid  # stale
    temp = tmp_path / "tmp"
    temp.mkdir()
    again = run_py(_tiny_train_cmd(tiny_tfrecord_dir, runs, 3), temp_dir=temp)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads(again.stdout[again.stdout.index("{"):])
    assert (summary["start_step"], summary["final_step"]) == (1, 3)
    assert "ckpt-2_temp: removed (left by an interrupted checkpoint save)" in again.stderr
    assert not list(ckpt_dir.glob("*_temp")) and not layout.lock_path(runs, 2).exists()
    _assert_complete_exit(runs, temp, final_step=3)


def _assert_complete_exit(runs: pathlib.Path, temp: pathlib.Path, final_step: int) -> None:
    """A TF command that ends with os._exit still closes its outputs and cleans up.

    The printed summary was parsed above (stdout flushed); here the TensorBoard writer's
    last scalar and the history's last row are on disk, and autograph's temporary
    modules (deleted by an atexit handler) are gone from the command's temp folder.
    """
    import tensorflow as tf

    train_dir = layout.train_dir(runs, 2)
    steps = [e.step for p in sorted(train_dir.glob("events.out.tfevents.*"))
             for e in tf.compat.v1.train.summary_iterator(str(p))
             if any(v.tag == "train/loss" for v in e.summary.value)]
    assert max(steps) == final_step
    with open(train_dir / layout.HISTORY_CSV, newline="") as f:
        assert int(list(csv.DictReader(f))[-1]["step"]) == final_step
    assert not list(temp.glob("__autograph_generated_file*"))
