"""Predicted LabelMe files: labelme's own rasteriser repaints the prediction; the review loop.

labelme 6.3.1 (a test dependency) is the reference: ``labelme.utils.shapes_to_label``
paints the written shapes in file order, exactly as the labelme app and labelme2voc do.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import cv2
import numpy as np
import pytest
import tiny_models
from PIL import Image

from sercseg_tf import labels, predict
from sercseg_tf.data import labelme as lm
from sercseg_tf.data import tfrecord
from sercseg_tf.prediction import to_labelme

labelme_utils = pytest.importorskip("labelme.utils")
LABEL_VALUES = {name: c for c, name in labels.LABELME_LABELS.items()}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def _labelme_paint(shapes: list[dict], shape_hw: tuple[int, int]) -> np.ndarray:
    cls, _ = labelme_utils.shapes_to_label(shape_hw, shapes, LABEL_VALUES)
    return cls


def _hard_map() -> np.ndarray:
    """Holes of every kind, several components, thin and touching regions."""
    yy, xx = np.mgrid[:200, :300]
    lab = np.zeros((200, 300), np.uint8)
    lab[(xx - 120) ** 2 + (yy - 100) ** 2 < 80 ** 2] = labels.OOCYTE
    lab[(xx - 95) ** 2 + (yy - 75) ** 2 < 14 ** 2] = 0  # a background hole in the oocyte
    ring = (xx - 150) ** 2 + (yy - 125) ** 2
    lab[(ring < 26 ** 2) & (ring > 11 ** 2)] = labels.SERC  # an sERC ring around oocyte
    lab[(xx - 60) ** 2 + (yy - 140) ** 2 < 7 ** 2] = labels.SERC  # a second cluster
    lab[(xx - 160) ** 2 + (yy - 60) ** 2 < 12 ** 2] = labels.SERC
    lab[(xx - 160) ** 2 + (yy - 60) ** 2 < 4 ** 2] = labels.NEEDLE  # needle in an sERC hole
    lab[96:101, 175:300] = labels.NEEDLE  # needle entering the oocyte
    lab[20:23, 190:300] = labels.NEEDLE  # a second, 3 px thin needle
    rows = np.arange(200)
    lab[rows, np.clip(250 - rows // 3, 0, 299)] = labels.NEEDLE  # a 1 px diagonal line
    lab[150:170, 240:265] = labels.OOCYTE  # another oocyte component
    return lab


def _synthetic_maps(root: pathlib.Path) -> list[np.ndarray]:
    return [lm.load_annotation(p).label for p in sorted(root.glob("case*/frame_*.json"))]


@pytest.mark.parametrize("which", ["hard", "synthetic"])
def test_labelme_repaints_the_prediction(which, synthetic_dir):
    maps = [_hard_map()] if which == "hard" else _synthetic_maps(synthetic_dir)
    for lab in maps:
        doc = to_labelme.labelme_document(lab, "frame.png")
        painted = _labelme_paint(doc["shapes"], lab.shape)
        for c in labels.EVAL_CLASSES:
            if (lab == c).any():
                assert _iou(painted == c, lab == c) >= 0.98, (which, c)
        # The project's reader paints the same file identically (ICSI paint order).
        ours = lm.rasterize_shapes(doc["shapes"], *lab.shape)
        np.testing.assert_array_equal(ours, painted)


def test_hard_map_uses_bridges_and_few_vertices():
    lab = _hard_map()
    doc = to_labelme.labelme_document(lab, "frame.png")
    kinds = [s["label"] for s in doc["shapes"]]
    assert kinds == sorted(kinds, key=["oocyte", "sERC", "needle"].index)  # paint order
    assert kinds.count("oocyte") == 2 and kinds.count("sERC") == 3
    # The 1 px diagonal line and the background hole survive the round trip.
    painted = _labelme_paint(doc["shapes"], lab.shape)
    assert painted[75, 95] == 0 and painted[125, 150] == labels.OOCYTE
    boundary = sum(np.count_nonzero(cv2.Canny((lab == c).astype(np.uint8) * 255, 1, 1))
                   for c in labels.EVAL_CLASSES)
    vertices = sum(len(s["points"]) for s in doc["shapes"])
    assert vertices < 0.5 * boundary  # simplified, not every boundary pixel


def test_vertices_stay_within_one_pixel_of_the_region_outline():
    lab = _hard_map()
    for s in to_labelme.labelme_document(lab, "frame.png")["shapes"]:
        c = LABEL_VALUES[s["label"]]
        mask = to_labelme.paint_mask(lab, c).astype(np.uint8)
        outline = mask - cv2.erode(mask, np.ones((3, 3), np.uint8),
                                   borderType=cv2.BORDER_CONSTANT, borderValue=0)
        ys, xs = np.nonzero(outline)
        poly = np.asarray(s["points"], np.float32)
        # Each polygon edge runs within 1 px of the outline pixel centres it replaces:
        # sample every edge and measure the distance to the nearest outline pixel (1.5:
        # the distance transform's 5x5 mask and rounding to the pixel grid).
        dist = cv2.distanceTransform((outline == 0).astype(np.uint8), cv2.DIST_L2, 5)
        edges = list(zip(map(tuple, poly), map(tuple, np.roll(poly, -1, axis=0)), strict=True))
        for a, b in edges:
            if (b, a) in edges:  # a bridge slit, walked both ways: inside by design
                continue
            a, b = np.asarray(a), np.asarray(b)
            for t in np.linspace(0, 1, 8):
                x, y = a + t * (b - a)
                assert dist[int(round(y)), int(round(x))] <= 1.5, (s["label"], a, b)
        assert len(xs) > 0


def test_document_is_marked_predicted_and_opens_in_labelme(tmp_path):
    lab = _hard_map()
    image = np.full((*lab.shape, 3), 128, np.uint8)
    path = to_labelme.write_labelme(tmp_path, "frame_0003", image, lab)
    doc = json.loads(path.read_text())
    assert doc["flags"] == {"predicted": True} and doc["imageData"] is None
    assert doc["imagePath"] == "frame_0003.png" and (tmp_path / doc["imagePath"]).is_file()
    assert (doc["imageHeight"], doc["imageWidth"]) == lab.shape
    from labelme import LabelFile

    loaded = LabelFile(str(path))  # labelme's own loader (reads the PNG via imagePath)
    assert len(loaded.shapes) == len(doc["shapes"]) and loaded.flags == {"predicted": True}
    with pytest.raises(FileExistsError):  # never overwrites an annotation
        to_labelme.write_labelme(tmp_path, "frame_0003", image, lab)


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory) -> pathlib.Path:
    return tiny_models.export_tiny(tmp_path_factory.mktemp("tiny") / "export")


@pytest.fixture
def frames_dir(tmp_path) -> pathlib.Path:
    folder = tmp_path / "frames" / "case07"
    folder.mkdir(parents=True)
    for i in range(4):
        img = np.roll(tiny_models.scene(), 5 * i, axis=1)
        img = np.clip(img.astype(int) + 30 * (i == 2) * (img < 120), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"frame_{i:04d}.png")
    return folder


def test_predict_labelme_writes_reviewable_files_beside_nothing_of_yours(tiny_export,
                                                                         frames_dir, tmp_path):
    before = sorted(p.name for p in frames_dir.iterdir())
    out = tmp_path / "out"
    assert predict.run([str(frames_dir), "--saved_model", str(tiny_export), "--output_dir",
                        str(out), "--labelme", "--noprogress"]) == 0
    assert sorted(p.name for p in frames_dir.iterdir()) == before  # inputs untouched
    folder = out / "case07" / "labelme"
    assert sorted(p.name for p in folder.glob("*.json")) == [f"frame_{i:04d}.json"
                                                            for i in range(4)]
    for i in range(4):
        stem = f"frame_{i:04d}"
        doc = json.loads((folder / f"{stem}.json").read_text())
        np.testing.assert_array_equal(np.asarray(Image.open(folder / doc["imagePath"])),
                                      np.asarray(Image.open(frames_dir / f"{stem}.png")))
        pred = np.asarray(Image.open(out / "case07" / "labels" / f"{stem}.png"))
        painted = _labelme_paint(doc["shapes"], pred.shape)
        for c in labels.EVAL_CLASSES:
            assert _iou(painted == c, pred == c) >= 0.98, (stem, c)


def test_build_refuses_predictions_until_reviewed(tiny_export, frames_dir, tmp_path, capsys):
    from sercseg_tf import build_tfrecords

    out = tmp_path / "out"
    predict.run_predict(tiny_export, [frames_dir], out,
                        options=predict.PredictOptions(progress=False, labelme=True))
    annotations = tmp_path / "annotations" / "case07"
    shutil.copytree(out / "case07" / "labelme", annotations)
    with pytest.raises(tfrecord.TFRecordBuildError) as err:
        tfrecord.build_tfrecords(annotations.parent, tmp_path / "tf", progress=False)
    assert len(err.value.problems) == 4
    assert all("still marked as a prediction" in p and "--allow_predicted" in p
               for p in err.value.problems)
    capsys.readouterr()
    assert build_tfrecords.run([f"--labelme_dir={annotations.parent}",
                                f"--output_dir={tmp_path / 'tf'}", "--noprogress"]) == 1
    err_lines = capsys.readouterr().err.splitlines()
    assert sum(ln.startswith(str(annotations)) for ln in err_lines) == 4
    manifest = tfrecord.build_tfrecords(annotations.parent, tmp_path / "tf", progress=False,
                                        allow_predicted=True)
    assert manifest["total_frames"] == 4 and manifest["data_source"] == "user"
    # A reviewer unticks the flag in LabelMe and saves: the frame is accepted.
    first = annotations / "frame_0000.json"
    doc = json.loads(first.read_text())
    doc["flags"]["predicted"] = False
    first.write_text(json.dumps(doc))
    with pytest.raises(tfrecord.TFRecordBuildError) as err:
        tfrecord.build_tfrecords(annotations.parent, tmp_path / "tf", progress=False)
    assert len(err.value.problems) == 3 and str(first) not in " ".join(err.value.problems)


def test_select_copies_the_least_confident_frames(tiny_export, frames_dir, tmp_path):
    import pandas as pd

    out = tmp_path / "out"
    res = predict.run_predict(tiny_export, [frames_dir], out,
                              options=predict.PredictOptions(progress=False, select=2))
    rows = pd.read_csv(out / "features.csv")
    expected = rows.sort_values("confidence", kind="stable")["frame"].head(2).tolist()
    lines = [ln for ln in (out / "to_annotate.txt").read_text().splitlines()
             if not ln.startswith("#")]
    assert [pathlib.Path(ln.split("\t")[0]).name for ln in lines] == [
        f"case07_frame_{f:04d}.json" for f in expected]
    assert [p.name for p in res.to_annotate] == [f"case07_frame_{f:04d}.json" for f in expected]
    confs = [float(ln.split("\t")[1]) for ln in lines]
    assert confs == sorted(confs)
    copy = res.to_annotate[0]
    doc = json.loads(copy.read_text())
    assert (copy.parent / doc["imagePath"]).is_file() and doc["flags"]["predicted"] is True
    # A correction made in to_annotate/ survives the next run's selection.
    doc["shapes"] = doc["shapes"][:1]
    copy.write_text(json.dumps(doc))
    extra = frames_dir.parent / "case08"
    shutil.copytree(frames_dir, extra)
    predict.run_predict(tiny_export, [extra], out,
                        options=predict.PredictOptions(progress=False, select=3))
    assert len(json.loads(copy.read_text())["shapes"]) == 1


def test_overwrite_never_destroys_a_review(tiny_export, frames_dir, tmp_path, capsys):
    out = tmp_path / "out"
    args = [str(frames_dir), "--saved_model", str(tiny_export), "--output_dir", str(out),
            "--labelme", "--noprogress"]
    assert predict.run(args) == 0
    reviewed = out / "case07" / "labelme" / "frame_0001.json"
    doc = json.loads(reviewed.read_text())
    doc["flags"] = {"predicted": False}
    reviewed.write_text(json.dumps(doc))
    capsys.readouterr()
    assert predict.run([*args, "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert f"{out / 'case07'}: holds 1 reviewed LabelMe file(s) (e.g. labelme/frame_0001.json)" \
        in err
    assert json.loads(reviewed.read_text())["flags"] == {"predicted": False}
