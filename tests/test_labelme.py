"""LabelMe reader: pixel-exact agreement with labelme 6.3.1, images, label maps, errors."""

from __future__ import annotations

import base64
import copy
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from sercseg_tf import labels
from sercseg_tf.data import labelme as lm
from sercseg_tf.data.labelme_shapes import SHAPE_TYPES, parse_shape, shape_to_mask

# Test-only reference implementation (imports without a display).
labelme_shape = pytest.importorskip("labelme.utils.shape")
labelme_utils = pytest.importorskip("labelme.utils")

FIXTURES = Path(__file__).parent / "fixtures" / "labelme"
ALL_SHAPES = FIXTURES / "all_shapes.json"
CUSTOM = FIXTURES / "custom_map.json"


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _labelme_shapes(raw_shapes: list[dict]) -> list[dict]:
    """The shapes as labelme holds them in memory: mask decoded by labelme's own utils."""
    out = []
    for s in copy.deepcopy(raw_shapes):
        s.setdefault("shape_type", None)
        if s.get("shape_type") == "mask":
            s["mask"] = labelme_utils.img_b64_to_arr(s["mask"]).astype(bool)
        out.append(s)
    return out


def _labelme_mask(shape: dict, h: int, w: int) -> np.ndarray:
    """One shape's mask drawn by labelme (mask shapes pasted with labelme's slicing)."""
    if shape.get("shape_type") == "mask":
        mask = np.zeros((h, w), dtype=bool)
        (x1, y1), (x2, y2) = np.asarray(shape["points"]).astype(int)
        mask[y1 : y2 + 1, x1 : x2 + 1] = shape["mask"]
        return mask
    return labelme_shape.shape_to_mask((h, w), shape["points"], shape.get("shape_type"))


def _labelme_icsi_label(raw_shapes: list[dict], h: int, w: int) -> np.ndarray:
    """labelme's masks painted oocyte, sERC, needle (JSON order within a class)."""
    shapes = _labelme_shapes(raw_shapes)
    out = np.zeros((h, w), dtype=np.int32)
    for cls in labels.ICSI_PAINT_ORDER:
        for s in shapes:
            if labels.DEFAULT_LABEL_MAP[labels.normalize_label_name(s["label"])] == cls:
                out[_labelme_mask(s, h, w)] = cls
    return out


# ------------------------------------------------------------------ agreement with labelme


def test_fixture_covers_every_shape_type():
    types = {s["shape_type"] for s in _read(ALL_SHAPES)["shapes"]}
    types |= {s["shape_type"] for s in _read(CUSTOM)["shapes"]}
    assert types == set(SHAPE_TYPES)


def test_icsi_order_matches_labelme_masks_painted_in_icsi_order():
    raw = _read(ALL_SHAPES)
    ann = lm.load_annotation(ALL_SHAPES)
    expected = _labelme_icsi_label(raw["shapes"], raw["imageHeight"], raw["imageWidth"])
    np.testing.assert_array_equal(ann.label, expected)
    # Every class is present, and the JSON order alone would give another answer.
    assert set(np.unique(ann.label)) == {0, 1, 2, 3}
    json_order, _ = labelme_shape.shapes_to_label(
        (48, 64),
        _labelme_shapes(raw["shapes"]),
        {
            s["label"]: labels.DEFAULT_LABEL_MAP[labels.normalize_label_name(s["label"])]
            for s in raw["shapes"]
        },
    )
    assert (json_order != expected).any()


def test_each_shape_matches_labelme_shape_to_mask():
    mapping, _ = lm.resolve_label_map(FIXTURES / "labels.txt")
    for path, lmap in ((ALL_SHAPES, None), (CUSTOM, mapping)):
        raw = _read(path)
        ref_shapes = _labelme_shapes(raw["shapes"])
        lmap = lmap or lm.resolve_label_map(None)[0]
        for i, (obj, ref) in enumerate(zip(raw["shapes"], ref_shapes, strict=True)):
            shape, reasons = parse_shape(obj, i, lmap)
            assert not reasons
            ours = shape_to_mask(shape, 48, 64)
            np.testing.assert_array_equal(ours, _labelme_mask(ref, 48, 64), err_msg=f"{path} {i}")
            assert ours.any()


def test_custom_map_matches_labelme_shapes_to_label():
    raw = _read(CUSTOM)
    mapping = lm.read_label_map(FIXTURES / "labels.txt")
    name_to_value = {
        s["label"]: mapping[labels.normalize_label_name(s["label"])] for s in raw["shapes"]
    }
    expected, _ = labelme_shape.shapes_to_label(
        (48, 64), _labelme_shapes(raw["shapes"]), name_to_value
    )
    for label_map in (FIXTURES / "labels.txt", FIXTURES / "label_map.yaml", mapping):
        ann = lm.load_annotation(CUSTOM, label_map)
        np.testing.assert_array_equal(ann.label, expected)
    assert set(np.unique(expected)) == {0, 1, 2, 3, 255}


def test_random_shapes_match_labelme():
    """Seeded random fractional/integer shapes, many overhanging the 23x31 canvas."""
    rng = np.random.default_rng(0)
    h, w = 23, 31
    counts = {
        "polygon": None,
        "rectangle": 2,
        "circle": 2,
        "line": 2,
        "linestrip": None,
        "point": 1,
        "oriented_rectangle": 4,
    }
    shapes = []
    for shape_type, n in counts.items():
        for k in range(40):
            m = n or int(rng.integers(3 if shape_type == "polygon" else 2, 8))
            pts = rng.uniform(-6, [w + 6, h + 6], size=(m, 2))
            if k % 2:
                pts = np.round(pts * 2) / 2  # half-pixel and integer coordinates
            if k % 4 == 1:
                pts = np.round(pts).astype(int)
            shapes.append({"label": "needle", "points": pts.tolist(), "shape_type": shape_type})
    for i, s in enumerate(shapes):
        shape, reasons = parse_shape(s, i, {"needle": 3})
        assert not reasons, reasons
        ref = labelme_shape.shape_to_mask((h, w), s["points"], s["shape_type"])
        np.testing.assert_array_equal(shape_to_mask(shape, h, w), ref, err_msg=str(s))
    # All at once, JSON order: same as labelme's shapes_to_label with two classes.
    for i, s in enumerate(shapes):
        s["label"] = "a" if i % 3 else "b"
    expected, _ = labelme_shape.shapes_to_label((h, w), copy.deepcopy(shapes), {"a": 1, "b": 2})
    np.testing.assert_array_equal(lm.rasterize_shapes(shapes, h, w, {"a": 1, "b": 2}), expected)


def test_old_labelme3_file_defaults_and_windows_path():
    raw = _read(FIXTURES / "old_v3.json")
    ann = lm.load_annotation(FIXTURES / "old_v3.json")
    assert ann.image.shape == (30, 40, 3) and ann.image.dtype == np.uint8
    assert ann.image_path == FIXTURES / "images" / "old_frame.png"
    grey = np.asarray(PIL.Image.open(FIXTURES / "images" / "old_frame.png"))
    np.testing.assert_array_equal(ann.image, np.repeat(grey[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(ann.label, _labelme_icsi_label(raw["shapes"], 30, 40))


def test_windows_absolute_image_path_falls_back_to_json_folder(tmp_path):
    path = _write_case(tmp_path, lambda r: r.update(imagePath="C:\\Users\\me\\all_shapes.png"))
    ann = lm.load_annotation(path)
    assert ann.image_path == tmp_path / "all_shapes.png"
    np.testing.assert_array_equal(ann.label, lm.load_annotation(ALL_SHAPES).label)


def test_rasterize_shapes_accepts_decoded_mask_and_normalises_labels():
    raw = _read(ALL_SHAPES)
    decoded = _labelme_shapes(raw["shapes"])
    out = lm.rasterize_shapes(decoded, 48, 64)
    np.testing.assert_array_equal(out, lm.load_annotation(ALL_SHAPES).label)
    assert out.dtype == np.uint8


def test_mask_box_overhanging_border_is_clipped():
    mask = np.ones((4, 5), dtype=bool)
    mask[0, 0] = False
    shape = {"label": "serc", "points": [[-2, 8], [2, 11]], "shape_type": "mask", "mask": mask}
    out = lm.rasterize_shapes([shape], 10, 6)
    expected = np.zeros((10, 6), dtype=np.uint8)
    expected[8:10, 0:3] = 2  # rows 8..9 of the box, columns 0..2 (box columns 2..4)
    np.testing.assert_array_equal(out, expected)


# ------------------------------------------------------------------ images


def test_image_data_and_image_path_give_the_same_image():
    from_path = lm.load_annotation(ALL_SHAPES)
    embedded = lm.load_annotation(FIXTURES / "embedded.json")  # its imagePath is missing
    assert embedded.image_path is None
    np.testing.assert_array_equal(embedded.image, from_path.image)
    np.testing.assert_array_equal(embedded.label, from_path.label)
    np.testing.assert_array_equal(
        from_path.image, np.asarray(PIL.Image.open(FIXTURES / "all_shapes.png"))
    )


def _exif_image(path: Path, orientation: int, fmt: str) -> None:
    arr = np.zeros((6, 10, 3), dtype=np.uint8)
    arr[:, :, 0] = np.arange(10) * 25
    arr[:, :, 1] = np.arange(6)[:, None] * 40
    exif = PIL.Image.Exif()
    exif[0x0112] = orientation
    PIL.Image.fromarray(arr).save(path, format=fmt, exif=exif, quality=95)


@pytest.mark.parametrize("fmt,ext", [("JPEG", "jpg"), ("PNG", "png")])
def test_exif_orientation_applied_like_labelme(tmp_path, fmt, ext):
    for orientation in range(1, 9):
        img = tmp_path / f"o{orientation}.{ext}"
        _exif_image(img, orientation, fmt)
        with PIL.Image.open(img) as pil:
            expected = np.asarray(labelme_utils.apply_exif_orientation(pil).convert("RGB"))
        (h, w) = expected.shape[:2]
        js = tmp_path / f"o{orientation}.json"
        js.write_text(
            json.dumps(
                {
                    "shapes": [],
                    "imagePath": img.name,
                    "imageData": None,
                    "imageHeight": h,
                    "imageWidth": w,
                }
            )
        )
        ann = lm.load_annotation(js)
        np.testing.assert_array_equal(ann.image, expected, err_msg=f"orientation {orientation}")
        assert ann.label.shape == (h, w)
        assert (h, w) == ((6, 10) if orientation < 5 else (10, 6))
        # imageData is decoded as is (labelme stores it already oriented).
        js.write_text(
            json.dumps(
                {
                    "shapes": [],
                    "imagePath": img.name,
                    "imageData": base64.b64encode(img.read_bytes()).decode(),
                }
            )
        )
        assert lm.load_annotation(js).image.shape == (6, 10, 3)


def test_rgba_palette_and_16bit_images_become_rgb_uint8(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 256, size=(5, 7, 4), dtype=np.uint8)
    PIL.Image.fromarray(rgba).save(tmp_path / "a.png")
    deep = np.arange(35, dtype=np.uint16).reshape(5, 7) * 1000
    PIL.Image.fromarray(deep).save(tmp_path / "b.png")
    for name in ("a", "b"):
        (tmp_path / f"{name}.json").write_text(
            json.dumps({"shapes": [], "imagePath": f"{name}.png", "imageData": None})
        )
    a = lm.load_annotation(tmp_path / "a.json").image
    np.testing.assert_array_equal(a, rgba[:, :, :3])
    b = lm.load_annotation(tmp_path / "b.json").image
    assert b.dtype == np.uint8 and b.shape == (5, 7, 3)
    assert b.min() == 0 and b.max() == 255 and (np.diff(b[..., 0].ravel().astype(int)) >= 0).all()


# ------------------------------------------------------------------ label maps


def test_read_label_map_labelme2voc_ids(tmp_path):
    # labelme2voc: class_id = i - 1, __ignore__ (-1) -> 255.
    lines = (FIXTURES / "labels.txt").read_text().splitlines()
    expected = {n: (i - 1 if i else 255) for i, n in enumerate(lines)}
    assert lm.read_label_map(FIXTURES / "labels.txt") == expected
    (tmp_path / "plain.txt").write_text("_background_\nOocyte\n\n s ERC\nneedle\n")
    assert lm.read_label_map(tmp_path / "plain.txt") == {
        "_background_": 0,
        "oocyte": 1,
        "serc": 2,
        "needle": 3,
    }
    (tmp_path / "m.json").write_text('{"Oocyte ": 1, "NEEDLE": 3}')
    assert lm.read_label_map(tmp_path / "m.json") == {"oocyte": 1, "needle": 3}


@pytest.mark.parametrize(
    "name,text,reason",
    [
        ("bad.yaml", "cell: 300\n", "id must be an integer 0..255"),
        ("bad2.yaml", "cell: 1\nCELL: 2\n", "is given ids 1 and 2"),
        ("bad.json", "{cell: 1", "broken JSON"),
        ("empty.yaml", "", "non-empty mapping"),
        ("dup.txt", "a\nA\n", "listed twice"),
    ],
)
def test_read_label_map_errors(tmp_path, name, text, reason):
    (tmp_path / name).write_text(text)
    with pytest.raises(lm.LabelMeError, match=reason) as info:
        lm.read_label_map(tmp_path / name)
    assert str(tmp_path / name) in str(info.value)


def test_labels_are_case_and_whitespace_insensitive():
    shape = {"points": [[1, 1], [5, 1], [3, 4]], "shape_type": "polygon"}
    for name in ("SERC", "serc ", " sERC", "s ERC"):
        out = lm.rasterize_shapes([dict(shape, label=name)], 6, 6)
        assert set(np.unique(out)) == {0, labels.SERC}


# ------------------------------------------------------------------ invalid input


def _write_case(tmp_path: Path, mutate) -> Path:
    shutil.copy(FIXTURES / "all_shapes.png", tmp_path / "all_shapes.png")
    raw = _read(ALL_SHAPES)
    mutate(raw)
    path = tmp_path / "frame.json"
    path.write_text(json.dumps(raw))
    return path


def _set_shape(i, **kw):
    def mutate(raw):
        raw["shapes"][i].update(kw)

    return mutate


INVALID = {
    "unknown_label": (_set_shape(2, label="zona"), 2, "unknown label 'zona'"),
    "polygon_2_points": (
        _set_shape(2, points=[[1, 1], [5, 5]]),
        2,
        "polygon needs at least 3 points, got 2",
    ),
    "rectangle_points": (
        _set_shape(3, points=[[1, 1], [5, 5], [6, 6]]),
        3,
        "rectangle needs 2 points, got 3",
    ),
    "circle_points": (_set_shape(1, points=[[1, 1]]), 1, "circle needs 2 points, got 1"),
    "line_points": (
        _set_shape(5, points=[[1, 1], [2, 2], [3, 3]]),
        5,
        "line needs 2 points, got 3",
    ),
    "linestrip_points": (
        _set_shape(0, points=[[1, 1]]),
        0,
        "linestrip needs at least 2 points, got 1",
    ),
    "point_points": (_set_shape(4, points=[[1, 1], [2, 2]]), 4, "point needs 1 points, got 2"),
    "oriented_rectangle_points": (
        _set_shape(6, points=[[1, 1], [2, 2], [3, 1]]),
        6,
        "oriented_rectangle needs 4 points, got 3",
    ),
    "points_not_numbers": (
        _set_shape(2, points=[[1, 1], ["a", 2], [3, 3]]),
        2,
        "point 1 is not a pair of finite numbers",
    ),
    "points_bool": (
        _set_shape(2, points=[[1, 1], [True, 2], [3, 3]]),
        2,
        "point 1 is not a pair of finite numbers",
    ),
    "points_wrong_arity": (
        _set_shape(2, points=[[1, 1, 0], [2, 2], [3, 3]]),
        2,
        "point 0 is not a pair of finite numbers",
    ),
    "unsupported_type": (_set_shape(2, shape_type="spline"), 2, "unsupported shape_type"),
    "shape_type_not_string": (_set_shape(2, shape_type=["polygon"]), 2, "unsupported shape_type"),
    "shape_not_object": (lambda r: r["shapes"].insert(1, [1, 2]), 1, "shape is not a JSON object"),
    "mask_box_mismatch": (
        _set_shape(7, points=[[52, 38], [60, 47]]),
        7,
        "mask image is 10x12 but its box",
    ),
    "mask_not_png": (_set_shape(7, mask="bm90IGEgcG5n"), 7, "mask is not a base64-encoded image"),
    "label_not_string": (_set_shape(2, label=3), 2, "label must be a string"),
}


@pytest.mark.parametrize("kind", sorted(INVALID))
def test_invalid_shape_message_names_file_and_shape(tmp_path, kind):
    mutate, index, reason = INVALID[kind]
    path = _write_case(tmp_path, mutate)
    problems = lm.validate_annotation(path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}: shape {index}: {reason}")
    with pytest.raises(lm.LabelMeError) as info:
        lm.load_annotation(path)
    assert str(info.value) == problems[0]


def test_nan_point_is_rejected(tmp_path):
    path = tmp_path / "nan.json"
    shutil.copy(FIXTURES / "all_shapes.png", tmp_path / "all_shapes.png")
    text = ALL_SHAPES.read_text().replace(
        "[\n          60,\n          47\n        ]", "[\n          NaN,\n          47\n        ]"
    )
    assert "NaN" in text
    path.write_text(text)
    assert lm.validate_annotation(path) == [
        f"{path}: shape 3: point 0 is not a pair of finite numbers: [nan, 47]"
    ]


def _write_raw(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "frame.json"
    path.write_text(text)
    return path


def test_broken_json(tmp_path):
    path = _write_raw(tmp_path, ALL_SHAPES.read_text()[:-40])
    (problem,) = lm.validate_annotation(path)
    assert problem.startswith(f"{path}: broken JSON: ")
    with pytest.raises(lm.LabelMeError, match="broken JSON"):
        lm.load_annotation(path)


def test_missing_annotation_file(tmp_path):
    (problem,) = lm.validate_annotation(tmp_path / "nope.json")
    assert problem.startswith(f"{tmp_path / 'nope.json'}: cannot read annotation")


def test_size_mismatch(tmp_path):
    path = _write_case(tmp_path, lambda raw: raw.update(imageHeight=50))
    assert lm.validate_annotation(path) == [
        f"{path}: size mismatch: imageHeight x imageWidth = 50 x 64 but the image is 48 x 64"
    ]
    with pytest.raises(lm.LabelMeError, match="size mismatch"):
        lm.load_annotation(path)


def test_image_missing(tmp_path):
    path = _write_case(tmp_path, lambda raw: raw.update(imagePath="..\\frames\\gone.png"))
    (problem,) = lm.validate_annotation(path)
    assert problem.startswith(f"{path}: image missing: '..\\\\frames\\\\gone.png'")
    path = _write_case(tmp_path, lambda raw: raw.update(imagePath=None))
    assert lm.validate_annotation(path) == [
        f"{path}: no image: imageData is empty and imagePath is None"
    ]


def test_image_unreadable(tmp_path):
    path = _write_case(tmp_path, lambda raw: None)
    (tmp_path / "all_shapes.png").write_bytes(b"not an image")
    (problem,) = lm.validate_annotation(path)
    assert problem.startswith(f"{path}: image unreadable: {tmp_path / 'all_shapes.png'}")
    path = _write_case(tmp_path, lambda raw: raw.update(imageData="aGVsbG8="))
    (problem,) = lm.validate_annotation(path)
    assert problem.startswith(f"{path}: imageData is not a readable image")


def test_all_problems_listed_and_joined(tmp_path):
    def mutate(raw):
        raw["imageWidth"] = 60
        raw["shapes"][2]["label"] = "zona"
        raw["shapes"][4]["points"] = []

    path = _write_case(tmp_path, mutate)
    problems = lm.validate_annotation(path)
    assert [p.split(": ")[1] for p in problems] == ["size mismatch", "shape 2", "shape 4"]
    assert all(p.startswith(f"{path}: ") for p in problems)
    with pytest.raises(lm.LabelMeError) as info:
        lm.load_annotation(path)
    assert str(info.value) == "; ".join(problems)


def test_non_strict_skips_bad_shapes_only(tmp_path):
    path = _write_case(tmp_path, _set_shape(0, label="zona"))  # the needle linestrip
    ann = lm.load_annotation(path, strict=False)
    assert ann.errors == tuple(lm.validate_annotation(path))
    assert len(ann.errors) == 1 and ann.errors[0].startswith(f"{path}: shape 0: unknown label")
    raw = _read(ALL_SHAPES)
    expected = _labelme_icsi_label(raw["shapes"][1:], 48, 64)
    np.testing.assert_array_equal(ann.label, expected)
    bad = _write_case(tmp_path, lambda r: r.update(imageHeight=1))
    with pytest.raises(lm.LabelMeError, match="size mismatch"):
        lm.load_annotation(bad, strict=False)


def test_rasterize_shapes_error_names_shape():
    with pytest.raises(lm.LabelMeError, match=r"shape 1: unknown label 'x'"):
        lm.rasterize_shapes(
            [
                {"label": "needle", "points": [[0, 0]], "shape_type": "point"},
                {"label": "x", "points": [[0, 0]], "shape_type": "point"},
            ],
            4,
            4,
        )


def test_production_module_imports_neither_labelme_nor_qt_nor_tensorflow():
    code = (
        "import sys, sercseg_tf.data.labelme, sercseg_tf.data.labelme_shapes;"
        "bad = [m for m in ('labelme', 'PyQt5', 'tensorflow', 'qtpy') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_png_written_by_pillow_round_trips_through_image_data(tmp_path):
    arr = np.random.default_rng(3).integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PIL.Image.fromarray(arr).save(buf, format="PNG")
    path = _write_raw(
        tmp_path,
        json.dumps(
            {
                "version": "7.0.0",
                "shapes": [],
                "imagePath": "x.png",
                "imageData": base64.b64encode(buf.getvalue()).decode(),
            }
        ),
    )
    ann = lm.load_annotation(path)
    np.testing.assert_array_equal(ann.image, arr)
    assert ann.label.shape == (4, 6) and not ann.label.any()
