"""Tests of sercseg_tf.predict with a tiny exported DeepLab SavedModel (random weights)."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sercseg_tf import formats, labels, predict
from sercseg_tf.data import video

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
    # The overlays play in a browser (H.264 MP4 or VP8 WebM) and read back frame by frame.
    ext, _ = video.browser_video_format()
    assert ext in (".mp4", ".webm")
    assert _count_video_frames(out / "case07" / f"overlay{ext}") == 3
    assert _count_video_frames(out / "stills" / f"overlay{ext}") == 2
    assert (out / "stills" / "labels" / "a.png").is_file()
    assert (out / "stills" / "labels" / "b.png").is_file()
    assert not (out / "broken").exists()
    assert not list(out.glob(".*partial*"))
    failures = (out / "failures.txt").read_text().splitlines()
    assert len(failures) == 2
    # Areas in the CSV are the pixel counts of the label PNG written for that frame.
    lab = np.asarray(Image.open(out / "stills" / "labels" / "b.png"))
    assert lab.shape == (40, 56)
    row = df[df["source"] == str(inputs["folder"] / "b.png")].iloc[0]
    assert row["area_needle"] == np.count_nonzero(lab == labels.NEEDLE)


def _count_video_frames(path: pathlib.Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_labels_equal_direct_model_output(serving_fn, inputs, tmp_path):
    res = predict.run_predict(None, [inputs["folder"]], tmp_path, batch_size=4,
                              progress=False, serving_fn=serving_fn)
    assert res.processed == [str(inputs["folder"])] and res.num_frames == 2
    img = np.asarray(Image.open(inputs["folder"] / "a.png"))
    direct = np.asarray(serving_fn(img[None])[formats.SERVING_PRED])[0]
    saved = np.asarray(Image.open(tmp_path / "stills" / "labels" / "a.png"))
    np.testing.assert_array_equal(saved, direct)
    # A palette PNG: the values are class ids, the palette the overlay colours.
    with Image.open(tmp_path / "stills" / "labels" / "a.png") as im:
        assert im.mode == "P"
        pal = np.asarray(im.getpalette()[: 3 * labels.NUM_CLASSES]).reshape(-1, 3)
    np.testing.assert_array_equal(pal, np.asarray(labels.CLASS_COLOURS))


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
    # The tip (x ~ 40) is right of the oocyte square [5, 34]: it has not entered.
    assert row["tip_depth_px"] == 0.0
    assert row["f2"] == pytest.approx(100 / 900)
    assert row["oocyte_cx"] == pytest.approx(19.5)
    assert row["tip_x"] < 41 and row["f3"] == pytest.approx(row["oocyte_cx"] - row["tip_x"])


def test_tip_depth_is_distance_inside_the_oocyte_hull():
    lab = np.zeros((40, 60), np.uint8)
    lab[5:35, 5:35] = labels.OOCYTE
    lab[18:22, 25:] = labels.NEEDLE  # cuts a notch: the tip is at x ~ 24.5, y 19.5
    row = predict.feature_row(lab)
    # The hull closes the notch: the nearest side of the square [5, 34] is x = 34.
    assert row["tip_depth_px"] == pytest.approx(34 - row["tip_x"], abs=1e-6)
    assert 8.0 < row["tip_depth_px"] < 11.0
    lab[lab == labels.OOCYTE] = 0
    assert math.isnan(predict.feature_row(lab)["tip_depth_px"])  # no oocyte


# --- With the tiny local-contrast model (tests/tiny_models.py): fast, meaningful labels.

@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory) -> pathlib.Path:
    import tiny_models

    return tiny_models.export_tiny(tmp_path_factory.mktemp("tiny") / "export")


def _scene(shift: int = 0) -> np.ndarray:
    import tiny_models

    return np.roll(tiny_models.scene(), shift, axis=1)


@pytest.fixture
def stills(tmp_path) -> pathlib.Path:
    folder = tmp_path / "inputs" / "stills"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(_scene(4 * i)).save(folder / f"f{i}.png")
    Image.fromarray(_scene(-6)).save(tmp_path / "inputs" / "single.png")
    return folder


def test_rerun_keeps_earlier_inputs_and_replaces_only_with_overwrite(tiny_export, stills,
                                                                      tmp_path, capsys):
    out = tmp_path / "out"
    single = stills.parent / "single.png"
    common = ["--saved_model", str(tiny_export), "--output_dir", str(out), "--noprogress"]
    assert predict.run([str(single), *common]) == 0
    assert predict.run([str(stills), *common]) == 0
    df = pd.read_csv(out / "features.csv")
    assert sorted(df["name"].unique()) == ["single", "stills"]  # the first run's rows stay
    assert len(df) == 1 + 3
    assert len(pd.read_csv(out / "summary.csv")) == 2
    runs = json.loads((out / "run_info.json").read_text())["runs"]
    assert len(runs) == 2 and runs[0]["model"]["model_card"] is True
    assert runs[1]["inputs"][str(stills)]["status"] == "ok"
    info = json.loads((out / "stills" / "run_info.json").read_text())
    assert info["package_version"] and info["date"] and info["frames"] == 3
    assert info["arguments"]["every_seconds"] == 1.0
    before = (out / "single" / "features.csv").read_bytes()
    capsys.readouterr()
    assert predict.run([str(single), *common]) == 1  # its only input refused
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith(str(single))]
    assert len(err) == 1 and str(out / "single") in err[0] and "--overwrite" in err[0]
    assert (out / "single" / "features.csv").read_bytes() == before
    assert predict.run([str(single), *common, "--overwrite"]) == 0
    assert len(pd.read_csv(out / "features.csv")) == 4


def test_summary_matches_the_frames(tiny_export, stills, tmp_path):
    out = tmp_path / "out"
    res = predict.run_predict(tiny_export, [stills], out,
                              options=predict.PredictOptions(progress=False))
    assert res.num_frames == 3
    rows = pd.read_csv(out / "stills" / "features.csv")
    summ = pd.read_csv(out / "stills" / "summary.csv").iloc[0]
    assert summ["frames"] == 3 and summ["frames_serc"] == (rows["area_serc"] > 0).sum()
    for f in ("f1", "f2", "f3", "f4"):
        v = rows[f].dropna()
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        assert summ[f"{f}_n"] == len(v)
        assert summ[f"{f}_median"] == pytest.approx(med, rel=1e-5)
        assert summ[f"{f}_iqr"] == pytest.approx(q3 - q1, abs=1e-4)
    assert summ["tip_depth_max_px"] == pytest.approx(rows["tip_depth_px"].max(), rel=1e-5)
    assert summ["low_confidence_frames"] == rows["low_confidence"].sum()
    assert 0.0 < rows["confidence"].min() <= rows["confidence"].max() <= 1.0
    with Image.open(out / "stills" / "features_over_time.png") as im:
        assert im.size[0] > 300 and im.size[1] > 300
    combined = pd.read_csv(out / "summary.csv")
    assert list(combined["name"]) == ["stills"]


def test_calibration_adds_micrometre_columns(tiny_export, stills, tmp_path):
    out = tmp_path / "out"
    predict.run_predict(tiny_export, [stills], out,
                        options=predict.PredictOptions(progress=False, um_per_px=0.5))
    rows = pd.read_csv(out / "stills" / "features.csv")
    np.testing.assert_allclose(rows["f3_um"], rows["f3"] * 0.5)
    np.testing.assert_allclose(rows["area_serc_um2"], rows["area_serc"] * 0.25)
    summ = pd.read_csv(out / "stills" / "summary.csv").iloc[0]
    assert summ["f3_median_um"] == pytest.approx(summ["f3_median"] * 0.5)


def test_sixteen_bit_and_grey_images_are_scaled_not_white(tiny_export, tmp_path):
    from sercseg_tf.prediction import inputs

    grey8 = _scene()[..., 0]
    grey = grey8.astype(np.uint16) * 200  # 3000..36000
    path16 = tmp_path / "g16.png"
    Image.fromarray(grey).save(path16)
    with Image.open(path16) as im:
        assert im.mode.startswith("I")  # really a 16-bit grey PNG
    rgb = inputs.read_image(path16)
    lo, hi = grey.min(), grey.max()
    expected = ((grey.astype(float) - lo) / (hi - lo) * 255).astype(np.uint8)
    np.testing.assert_array_equal(rgb[..., 0], expected)  # min-max, as labelme reads it
    assert rgb.min() == 0 and rgb.max() == 255 and len(np.unique(rgb)) > 2
    Image.fromarray(grey8).save(tmp_path / "g8.png")  # 8-bit grey: kept as it is
    assert np.array_equal(inputs.read_image(tmp_path / "g8.png")[..., 1], grey8)
    res = predict.run_predict(tiny_export, [path16], tmp_path / "out",
                              options=predict.PredictOptions(progress=False))
    lab = np.asarray(Image.open(tmp_path / "out" / "g16" / "labels" / "g16.png"))
    assert res.processed and len(np.unique(lab)) >= 3  # oocyte, sERC, needle, not one blob


@pytest.mark.parametrize("ext", [".avi", ".wmv"])
def test_truncated_video_is_reported_and_strict_fails(tiny_export, tmp_path, capsys, ext):
    vid = tmp_path / f"clip{ext}"
    # 40 frames at 4 fps = 10 s, then cut to 40% of its bytes.
    video.write_video(vid, (_scene(i) for i in range(40)), fps=4, size_hw=_scene().shape[:2])
    data = vid.read_bytes()
    vid.write_bytes(data[: int(len(data) * 0.4)])
    common = ["--saved_model", str(tiny_export), "--noprogress"]
    capsys.readouterr()
    assert predict.run([str(vid), "--output_dir", str(tmp_path / "a"), *common]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "truncated" in ln]
    assert len(lines) == 1 and lines[0].startswith(f"{vid}: truncated: read ")
    summ = pd.read_csv(tmp_path / "a" / "summary.csv").iloc[0]
    assert bool(summ["truncated"]) and summ["seconds_declared"] == pytest.approx(10.0)
    assert summ["seconds_read"] < 8.0 and f"of {summ['seconds_declared']:.1f} s" in lines[0]
    runs = json.loads((tmp_path / "a" / "run_info.json").read_text())["runs"]
    assert runs[-1]["inputs"][str(vid)]["status"] == "truncated"
    assert predict.run([str(vid), "--output_dir", str(tmp_path / "b"), "--strict",
                        *common]) == 1


def test_complete_video_is_not_called_truncated(tiny_export, tmp_path, capsys):
    vid = tmp_path / "case3" / "video.wmv"
    vid.parent.mkdir()
    video.write_video(vid, (_scene(i) for i in range(22)), fps=4, size_hw=_scene().shape[:2])
    res = predict.run_predict(tiny_export, [vid], tmp_path / "out",
                              options=predict.PredictOptions(progress=False))
    assert res.truncated == {} and res.num_frames == 6  # t = 0..5 s of 5.5 s
    assert "truncated" not in capsys.readouterr().err


def test_overlay_video_has_legend_and_plays_back(tiny_export, stills, tmp_path):
    import cv2

    predict.run_predict(tiny_export, [stills], tmp_path / "out",
                        options=predict.PredictOptions(progress=False))
    ext, _ = video.browser_video_format()
    cap = cv2.VideoCapture(str(tmp_path / "out" / "stills" / f"overlay{ext}"))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    assert len(frames) == 3 and frames[0].shape == _scene().shape
    # The legend's first swatch (top left) is drawn in the oocyte colour over grey.
    swatch = frames[0][8:12, 8:12].reshape(-1, 3).mean(axis=0)
    assert np.abs(swatch - np.asarray(labels.CLASS_COLOURS[labels.OOCYTE])).max() < 40
    plain = _scene()[8:12, 8:12].reshape(-1, 3).mean(axis=0)
    assert np.abs(swatch - plain).max() > 60
