"""TFRecord codec, shard naming, manifest, atomicity and invalid input."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from sercseg_tf import formats, labels
from sercseg_tf.data import labelme, tfrecord

REPO = pathlib.Path(__file__).resolve().parents[1]
DEEPLAB2_KEYS = {
    "image/encoded",
    "image/filename",
    "image/format",
    "image/height",
    "image/width",
    "image/channels",
    "image/segmentation/class/encoded",
    "image/segmentation/class/format",
    "video/sequence_id",
    "video/frame_id",
}


def _records(path) -> list[dict]:
    return [tfrecord.decode_example(r) for r in tf.data.TFRecordDataset(str(path))]


def _tfrecords_under(path: pathlib.Path) -> list[pathlib.Path]:
    return sorted(path.rglob("*.tfrecord"))


def test_encode_decode_round_trip_with_deeplab2_keys():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    label = rng.choice(np.array([0, 1, 2, 3, 255], np.uint8), size=(37, 53))
    serialized = tfrecord.encode_example(image, label, "case05/frame_0007.png", 5, 7)

    feature = tf.train.Example.FromString(serialized).features.feature
    assert set(feature) == DEEPLAB2_KEYS
    assert feature["image/format"].bytes_list.value == [b"png"]
    assert feature["image/segmentation/class/format"].bytes_list.value == [b"png"]
    assert feature["video/sequence_id"].bytes_list.value == [b"case05"]
    assert feature["video/frame_id"].bytes_list.value == [b"7"]
    assert feature["image/height"].int64_list.value == [37]
    assert feature["image/width"].int64_list.value == [53]
    assert feature["image/channels"].int64_list.value == [3]
    assert tf.io.decode_png(feature["image/segmentation/class/encoded"].bytes_list.value[0]
                            ).shape == (37, 53, 1)

    sample = tfrecord.decode_example(tf.constant(serialized))
    np.testing.assert_array_equal(sample[formats.SAMPLE_IMAGE].numpy(), image)
    np.testing.assert_array_equal(sample[formats.SAMPLE_LABEL].numpy()[..., 0], label)
    assert sample[formats.SAMPLE_IMAGE].dtype == tf.uint8
    assert sample[formats.SAMPLE_FILENAME].numpy() == b"case05/frame_0007.png"
    assert int(sample[formats.SAMPLE_CASE_ID]) == 5
    assert int(sample[formats.SAMPLE_FRAME_ID]) == 7


def test_encode_rejects_mismatched_label():
    with pytest.raises(ValueError, match="label shape"):
        tfrecord.encode_example(np.zeros((4, 5, 3), np.uint8), np.zeros((4, 6), np.uint8),
                                "x.png", 1, 0)


def test_tiny_build_shards_manifest_and_exact_content(synthetic_dir, tiny_tfrecord_dir):
    manifest = tfrecord.read_manifest(tiny_tfrecord_dir)
    case_dirs = sorted(p for p in synthetic_dir.iterdir() if p.is_dir())
    case_ids = [int(re.search(r"\d+", p.name).group()) for p in case_dirs]
    assert len(case_ids) == 3
    names = sorted(p.name for p in tiny_tfrecord_dir.iterdir())
    assert names == sorted(
        [f"{labels.case_name(c)}-00000-of-00001.tfrecord" for c in case_ids] + ["manifest.json"]
    )
    assert manifest["classes"] == {n: i for i, n in enumerate(labels.CLASS_NAMES)}
    assert manifest["ignore_label"] == 255
    height, width = manifest["image_size"]
    for case_id in case_ids:
        entry = manifest["cases"][labels.case_name(case_id)]
        assert entry["case_id"] == case_id and entry["frames"] == 2
        assert sum(entry["pixels_per_class"].values()) == 2 * height * width
        assert entry["pixels_per_class"]["oocyte"] > 0

    # Every record of one case equals what the LabelMe loader produces, in frame order.
    case_dir = case_dirs[0]
    records = _records(tiny_tfrecord_dir / f"{labels.case_name(case_ids[0])}-00000-of-00001"
                                            ".tfrecord")
    jsons = sorted(p for p in case_dir.glob("*.json") if p.name != "ground_truth.json")
    assert [int(r["frame_id"]) for r in records] == list(range(len(jsons)))
    for record, json_path in zip(records, jsons, strict=True):
        ann = labelme.load_annotation(json_path)
        np.testing.assert_array_equal(record["image"].numpy(), ann.image)
        np.testing.assert_array_equal(record["label"].numpy()[..., 0], ann.label)
        assert int(record["case_id"]) == case_ids[0]
        assert record["filename"].numpy().decode() == f"{case_dir.name}/{json_path.stem}.png"

    table = tfrecord.format_table1(manifest)
    assert table.splitlines()[-1].split() == ["Total", "6"]


def test_shards_per_case_and_rebuild_removes_old_shards(tmp_path, make_labelme_case):
    make_labelme_case(tmp_path / "lm", "case07", 3)
    out = tmp_path / "out"
    manifest = tfrecord.build_tfrecords(tmp_path / "lm", out, shards_per_case=2, progress=False)
    assert manifest["cases"]["case07"]["shards"] == [
        "case07-00000-of-00002.tfrecord", "case07-00001-of-00002.tfrecord"]
    frame_ids = [[int(r["frame_id"]) for r in _records(out / name)]
                 for name in manifest["cases"]["case07"]["shards"]]
    assert frame_ids == [[0, 1], [2]]

    tfrecord.build_tfrecords(tmp_path / "lm", out, shards_per_case=1, progress=False)
    assert [p.name for p in _tfrecords_under(out)] == ["case07-00000-of-00001.tfrecord"]


def test_failed_build_keeps_the_previous_build(tmp_path, make_labelme_case, monkeypatch):
    make_labelme_case(tmp_path / "lm", "case01", 2)
    make_labelme_case(tmp_path / "lm", "case02", 2)
    out = tmp_path / "out"
    tfrecord.build_tfrecords(tmp_path / "lm", out, progress=False)  # an earlier good build
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(_tfrecords_under(out)) == 2

    real_encode = tfrecord.encode_example
    calls = []

    def failing_encode(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(tfrecord, "encode_example", failing_encode)
    with pytest.raises(RuntimeError, match="disk full"):
        tfrecord.build_tfrecords(tmp_path / "lm", out, num_workers=1, progress=False)
    assert len(calls) == 3  # the first case was already written when it failed
    # The earlier build is there, byte for byte; no temporary folder beside it.
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lm", "out"]


def test_output_dir_with_foreign_files_is_refused(tmp_path, make_labelme_case):
    make_labelme_case(tmp_path / "lm", "case01", 1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"out: holds files that are not a TFRecord build "
                                         r"\(notes.txt\)"):
        tfrecord.build_tfrecords(tmp_path / "lm", out, progress=False)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.fixture
def invalid_labelme_dir(tmp_path, make_labelme_case) -> pathlib.Path:
    root = tmp_path / "lm"
    make_labelme_case(root, "case01", 2)
    bad = make_labelme_case(root, "case02", 2)
    doc = json.loads((bad / "frame_0001.json").read_text())
    doc["shapes"][1]["label"] = "zona"
    doc["shapes"][2]["points"] = [[1, 1], [2, 2]]
    (bad / "frame_0001.json").write_text(json.dumps(doc))
    (bad / "frame_0002.json").write_text("{not json")
    return root


def test_cli_invalid_input_exits_nonzero_with_one_line_per_problem(tmp_path,
                                                                   invalid_labelme_dir):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "build_tfrecords.py"),
         f"--labelme_dir={invalid_labelme_dir}", f"--output_dir={out}"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 1, proc.stderr
    bad = invalid_labelme_dir / "case02"
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(str(bad))]
    assert any(ln.startswith(f"{bad / 'frame_0001.json'}: shape 1:") and "zona" in ln
               for ln in lines), proc.stderr
    assert any(ln.startswith(f"{bad / 'frame_0001.json'}: shape 2:") for ln in lines)
    assert any(ln.startswith(f"{bad / 'frame_0002.json'}:") for ln in lines)
    assert "no TFRecords written" in proc.stderr and "--skip_invalid" in proc.stderr
    assert _tfrecords_under(out) == [] and not (out / "manifest.json").exists()


def test_skip_invalid_writes_valid_frames_and_lists_skipped(tmp_path, invalid_labelme_dir):
    out = tmp_path / "out"
    with pytest.raises(tfrecord.TFRecordBuildError) as err:
        tfrecord.build_tfrecords(invalid_labelme_dir, out, progress=False)
    assert len(err.value.problems) == 3
    assert _tfrecords_under(out) == []

    manifest = tfrecord.build_tfrecords(invalid_labelme_dir, out, skip_invalid=True,
                                        progress=False)
    assert {c: e["frames"] for c, e in manifest["cases"].items()} == {"case01": 2, "case02": 1}
    skipped = sorted(pathlib.Path(s["file"]).name for s in manifest["skipped"])
    assert skipped == ["frame_0001.json", "frame_0002.json"]
    assert json.loads((out / "manifest.json").read_text())["skipped"] == manifest["skipped"]
    assert [int(r["frame_id"]) for r in _records(out / "case02-00000-of-00001.tfrecord")] == [0]


def test_case_folder_without_number_is_a_clear_error(tmp_path, make_labelme_case):
    make_labelme_case(tmp_path / "lm", "case01", 1)
    make_labelme_case(tmp_path / "lm", "patient", 1)
    with pytest.raises(tfrecord.TFRecordBuildError, match=r"patient: case folder name has no"):
        tfrecord.build_tfrecords(tmp_path / "lm", tmp_path / "out", progress=False)
    assert _tfrecords_under(tmp_path / "out") == []
