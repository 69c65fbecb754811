"""Tests of sercseg_tf.predict with a tiny exported DeepLab SavedModel (random weights)."""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sercseg_tf import formats, labels, predict

H, W = 48, 64


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> pathlib.Path:
    from sercseg_tf.model import deeplab, inference

    model = deeplab.build_deeplab(output_stride=16)
    return inference.export_saved_model(
        model, tmp_path_factory.mktemp("model") / "export", image_scale=1.0, output_stride=16)


@pytest.fixture(scope="module")
def serving_fn(saved_model):
    from sercseg_tf.model import inference

    return inference.load_serving_fn(saved_model)


def _frame(seed: int, h: int = H, w: int = W) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    img[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 200
    return img


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, pathlib.Path]:
    from sercseg_tf.data import video

    root = tmp_path_factory.mktemp("inputs")
    (root / "case7").mkdir()
    vid = root / "case7" / "video.avi"
    # 2.5 s at 8 fps -> frames at t = 0, 1, 2 s with --every_seconds 1.
    video.write_video(vid, (_frame(i) for i in range(20)), fps=8, size_hw=(H, W))
    folder = root / "stills"
    folder.mkdir()
    Image.fromarray(_frame(100)).save(folder / "a.png")
    Image.fromarray(_frame(101, 40, 56)).save(folder / "b.png")  # another size
    (folder / "c.png").write_bytes(b"not a png at all")  # corrupt image inside a folder
    (folder / "notes.txt").write_text("ignored")
    bad_video = root / "broken.mp4"
    bad_video.write_bytes(b"\x00\x01garbage" * 100)
    return {"video": vid, "folder": folder, "bad_video": bad_video}


def test_cli_processes_good_inputs_and_reports_corrupt_one(saved_model, inputs, tmp_path,
                                                           capsys):
    out = tmp_path / "out"
    rc = predict.run([str(inputs["video"]), str(inputs["bad_video"]), str(inputs["folder"]),
                       "--saved_model", str(saved_model), "--output_dir", str(out),
                       "--predict_batch_size", "2", "--noprogress"])
    err = capsys.readouterr().err
    assert rc == 0
    bad_lines = [line for line in err.splitlines() if line.startswith(str(inputs["bad_video"]))]
    assert len(bad_lines) == 1 and "cannot open" in bad_lines[0]
    assert any(line.startswith(str(inputs["folder"] / "c.png")) for line in err.splitlines())
    df = pd.read_csv(out / "features.csv")
    assert len(df) == 3 + 2  # 3 video frames + 2 readable images
    vid = df[df["video"] == str(inputs["video"])]
    assert list(vid["frame"]) == [0, 1, 2]
    np.testing.assert_allclose(vid["time_s"], [0.0, 1.0, 2.0])
    for col in ("f1", "f2", "f3", "f4", "S_s", "S_o", "tip_x", "tip_y", "area_oocyte",
                "area_serc", "area_needle", "nan_reasons"):
        assert col in df.columns
    for i in range(3):
        assert (out / "case07" / "labels" / f"frame_{i:04d}.png").is_file()
    assert (out / "case07" / "overlay.mp4").stat().st_size > 0
    assert (out / "stills" / "labels" / "a.png").is_file()
    assert (out / "stills" / "labels" / "b.png").is_file()
    assert (out / "stills" / "overlay.mp4").stat().st_size > 0
    assert not (out / "broken").exists()
    assert not list(out.glob(".*partial*"))
    failures = (out / "failures.txt").read_text().splitlines()
    assert len(failures) == 2
    # Areas in the CSV are the pixel counts of the label PNG written for that frame.
    lab = np.asarray(Image.open(out / "stills" / "labels" / "b.png"))
    assert lab.shape == (40, 56)
    row = df[df["source"] == str(inputs["folder"] / "b.png")].iloc[0]
    assert row["area_needle"] == np.count_nonzero(lab == labels.NEEDLE)


def test_labels_equal_direct_model_output(serving_fn, inputs, tmp_path):
    res = predict.run_predict(None, [inputs["folder"]], tmp_path, batch_size=4,
                              progress=False, serving_fn=serving_fn)
    assert res.processed == [str(inputs["folder"])] and res.num_frames == 2
    img = np.asarray(Image.open(inputs["folder"] / "a.png"))
    direct = np.asarray(serving_fn(img[None])[formats.SERVING_PRED])[0]
    saved = np.asarray(Image.open(tmp_path / "stills" / "labels" / "a.png"))
    np.testing.assert_array_equal(saved, direct)


def test_all_failed_or_strict_gives_exit_1(saved_model, serving_fn, inputs, tmp_path, capsys,
                                           monkeypatch):
    from sercseg_tf.model import inference

    real_load = inference.load_serving_fn
    assert predict.run([str(inputs["video"]), "--saved_model", str(tmp_path),
                         "--output_dir", str(tmp_path / "x")]) == 1
    assert "cannot load the model" in capsys.readouterr().err
    monkeypatch.setattr(inference, "load_serving_fn",
                        lambda path: serving_fn if path == str(saved_model) else real_load(path))
    rc = predict.run([str(inputs["bad_video"]), str(tmp_path / "missing.avi"),
                       "--saved_model", str(saved_model), "--output_dir", str(tmp_path / "o"),
                       "--noprogress"])
    assert rc == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'missing.avi'}: no such file" in err
    assert not (tmp_path / "o" / "features.csv").exists()
    rc = predict.run([str(inputs["folder"]), "--saved_model", str(saved_model),
                       "--output_dir", str(tmp_path / "s"), "--strict", "--noprogress"])
    assert rc == 1  # c.png is corrupt


def test_batching_groups_same_size_frames():
    calls = []

    def fake_fn(images):
        calls.append(images.shape)
        return {formats.SERVING_PRED: np.ones(images.shape[:3], np.int32)}

    sizes = [(8, 8), (8, 8), (8, 8), (6, 8), (6, 8)]
    frames = [predict.Frame(i, math.nan, "x", str(i), np.zeros((*s, 3), np.uint8))
              for i, s in enumerate(sizes)]
    out = list(predict.batched_predictions(fake_fn, frames, batch_size=2))
    assert [f.index for f, _ in out] == [0, 1, 2, 3, 4]
    assert calls == [(2, 8, 8, 3), (1, 8, 8, 3), (2, 6, 8, 3)]
    assert all(p.shape == f.image.shape[:2] for f, p in out)


def test_feature_row_on_known_mask():
    lab = np.zeros((40, 60), np.uint8)
    lab[5:35, 5:35] = labels.OOCYTE
    lab[15:25, 15:25] = labels.SERC
    lab[18:22, 40:] = labels.NEEDLE
    row = predict.feature_row(lab)
    assert row["area_serc"] == 100 and row["area_needle"] == 80
    assert row["f2"] == pytest.approx(100 / 900)
    assert row["oocyte_cx"] == pytest.approx(19.5)
    assert row["tip_x"] < 41 and row["f3"] == pytest.approx(row["oocyte_cx"] - row["tip_x"])
