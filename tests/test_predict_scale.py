"""predict brings frames to the scale the model learned (model card), and warns when unsure.

Uses `tiny_models.LocalContrastModel`, whose sERC detection depends on object size like
a CNN's, so a frame enlarged 2x gives a different answer unless predict rescales it.
"""

from __future__ import annotations

import json
import pathlib

import cv2
import numpy as np
import pytest
import tiny_models
from PIL import Image

from sercseg_tf import labels, model_card, predict


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, pathlib.Path]:
    root = tmp_path_factory.mktemp("exports")
    return {"card": tiny_models.export_tiny(root / "card"),
            "no_size": tiny_models.export_tiny(root / "no_size", frame_hw=None)}


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> dict[str, pathlib.Path]:
    root = tmp_path_factory.mktemp("frames")
    one = tiny_models.scene()
    two = cv2.resize(one, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    out = {}
    for name, img in (("x1", one), ("x2", two)):
        out[name] = root / f"{name}.png"
        Image.fromarray(img).save(out[name])
    return out


def _labels(export: pathlib.Path, image: pathlib.Path, out: pathlib.Path,
            **options) -> tuple[np.ndarray, predict.PredictResult]:
    res = predict.run_predict(None, [image], out, model=predict.load_model(export),
                              options=predict.PredictOptions(progress=False, **options))
    assert res.processed == [str(image)], res.failures
    return np.asarray(Image.open(out / image.stem / "labels" / f"{image.stem}.png")), res


def _iou_back_at_1x(pred_1x: np.ndarray, pred_2x: np.ndarray) -> dict[int, float]:
    """Per-class IoU after resizing the 2x prediction back to 1x (nearest)."""
    back = cv2.resize(pred_2x, pred_1x.shape[::-1], interpolation=cv2.INTER_NEAREST)
    out = {}
    for c in labels.EVAL_CLASSES:
        a, b = pred_1x == c, back == c
        out[c] = (a & b).sum() / (a | b).sum()
    return out


def test_same_frame_at_1x_and_2x_gives_the_same_prediction(exports, frames, tmp_path):
    p1, r1 = _labels(exports["card"], frames["x1"], tmp_path / "a")
    p2, r2 = _labels(exports["card"], frames["x2"], tmp_path / "a")
    assert {c: (p1 == c).sum() > 100 for c in labels.EVAL_CLASSES} == {1: True, 2: True, 3: True}
    ious = _iou_back_at_1x(p1, p2)
    assert min(ious.values()) >= 0.95, ious
    assert p2.shape == (2 * p1.shape[0], 2 * p1.shape[1])  # labels at the input's size
    info = json.loads((tmp_path / "a" / "x2" / "run_info.json").read_text())
    assert info["input_scale"] == pytest.approx(2.0) and info["scale_source"] == "model card"
    # 2x lies outside the 0.75-1.25x the model saw in training: one warning line.
    assert str(frames["x2"]) in r2.warnings and "2.00x" in r2.warnings[str(frames["x2"])]
    assert not r1.warnings


def test_without_the_training_frame_size_the_2x_frame_goes_wrong(exports, frames, tmp_path):
    """The control: the same model used at the frame's own size loses the sERC at 2x."""
    p1, _ = _labels(exports["no_size"], frames["x1"], tmp_path / "b")
    p2, r2 = _labels(exports["no_size"], frames["x2"], tmp_path / "b")
    ious = _iou_back_at_1x(p1, p2)
    assert ious[labels.SERC] < 0.6, ious
    assert not r2.warnings  # nothing to compare with: no warning
    # --input_scale tells predict what the card could not.
    p2, _ = _labels(exports["no_size"], frames["x2"], tmp_path / "c", input_scale=2.0)
    assert min(_iou_back_at_1x(p1, p2).values()) >= 0.95


def test_input_scale_overrides_the_card(exports, frames, tmp_path):
    p1, _ = _labels(exports["card"], frames["x1"], tmp_path / "d")
    p2, res = _labels(exports["card"], frames["x2"], tmp_path / "d", input_scale=1.0)
    assert _iou_back_at_1x(p1, p2)[labels.SERC] < 0.6
    assert not res.warnings


def test_scale_policy_reads_the_card(exports):
    from sercseg_tf.prediction.scale import ScalePolicy

    policy = ScalePolicy.from_card(model_card.read_card(exports["card"]))
    assert policy.training_size == tiny_models.SCENE_HW
    assert policy.tolerated == (0.75, 1.25)
    h, w = tiny_models.SCENE_HW
    assert policy.input_scale((2 * h, 2 * w)) == pytest.approx(2.0)
    assert policy.warning((h, w)) is None and policy.warning((h + 10, w + 13)) is None
    assert "aspect ratio" in policy.warning((h, 2 * w))
    assert ScalePolicy.from_card(None).input_scale((5 * h, 5 * w)) == 1.0


def test_a_rescaled_frame_keeps_the_exported_post_processing(tmp_path):
    """The 2x path argmaxes the SavedModel's probabilities: stray oocyte stays removed."""
    frame, big, small = tiny_models.two_cells()
    frame_x2, big_x2, small_x2 = (a.repeat(2, axis=0).repeat(2, axis=1)  # 2x, nearest
                                  for a in (frame, big, small))
    image = tmp_path / "x2.png"
    Image.fromarray(frame_x2).save(image)
    for keep in (False, True):
        export = tiny_models.export_tiny(tmp_path / f"export_{keep}", frame_hw=frame.shape[:2],
                                         keep_largest_oocyte=keep)
        pred, _ = _labels(export, image, tmp_path / f"out_{keep}")
        info = json.loads((tmp_path / f"out_{keep}" / "x2" / "run_info.json").read_text())
        assert info["input_scale"] == pytest.approx(2.0)
        oocyte = pred == labels.OOCYTE
        assert (oocyte[small_x2].mean() == 0.0) == keep
        assert oocyte[big_x2].mean() > 0.95
