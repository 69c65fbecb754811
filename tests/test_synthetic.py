"""Tests of the synthetic ICSI generator (layout, determinism, geometry, annotations)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sercseg_tf import labels, paper_values
from sercseg_tf.synthetic import generator as synthetic
from sercseg_tf.synthetic.scene import frame_geometry

SEED = 3
H, W = 480, 640


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """2 cases x 3 frames with videos, seed 3."""
    root = tmp_path_factory.mktemp("syn")
    paths = synthetic.generate_dataset(root, num_cases=2, frames_per_case=3, seed=SEED)
    assert [p.name for p in paths] == ["case01", "case02"]
    return root


def _files(case_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(case_dir.iterdir())}


def _shoelace(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)))


def _perimeter(p: np.ndarray) -> float:
    return float(np.sum(np.hypot(*(np.roll(p, -1, axis=0) - p).T)))


def _mask(points, h=H, w=W) -> np.ndarray:
    img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(img).polygon([tuple(map(float, p)) for p in points], fill=1, outline=1)
    return np.asarray(img, dtype=bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


def _shapes_by_class(doc: dict) -> dict[int, list[np.ndarray]]:
    out: dict[int, list[np.ndarray]] = {labels.OOCYTE: [], labels.SERC: [], labels.NEEDLE: []}
    for shape in doc["shapes"]:
        cls = labels.DEFAULT_LABEL_MAP[labels.normalize_label_name(shape["label"])]
        out[cls].append(np.asarray(shape["points"], dtype=np.float64))
    return out


def test_layout_and_labelme_json(tiny: Path):
    for case in ("case01", "case02"):
        d = tiny / case
        names = sorted(p.name for p in d.iterdir())
        assert names == [
            "frame_0000.json", "frame_0000.png", "frame_0001.json", "frame_0001.png",
            "frame_0002.json", "frame_0002.png", "ground_truth.json", "video.wmv",
        ]  # fmt: skip
        for k in range(3):
            doc = json.loads((d / f"frame_{k:04d}.json").read_text())
            assert set(doc) == {
                "version", "flags", "shapes", "imagePath", "imageData", "imageHeight",
                "imageWidth",
            }  # fmt: skip
            assert doc["imagePath"] == f"frame_{k:04d}.png" and doc["imageData"] is None
            assert (doc["imageHeight"], doc["imageWidth"]) == (H, W)
            assert doc["version"].startswith("5.")
            with Image.open(d / doc["imagePath"]) as img:
                assert img.size == (W, H) and img.mode == "RGB"
            for shape in doc["shapes"]:
                assert shape["shape_type"] == "polygon"
                assert set(shape) >= {"label", "points", "group_id", "flags", "description"}
                assert labels.normalize_label_name(shape["label"]) in {"oocyte", "serc", "needle"}
                pts = np.asarray(shape["points"])
                assert pts.ndim == 2 and pts.shape[1] == 2 and len(pts) >= 3
                assert pts[:, 0].min() >= 0 and pts[:, 0].max() <= W - 1
                assert pts[:, 1].min() >= 0 and pts[:, 1].max() <= H - 1
        gt = json.loads((d / "ground_truth.json").read_text())
        assert gt["case"] == int(case[4:]) and gt["seed"] == SEED
        assert gt["image_size"] == [H, W] and gt["fps"] == 24
        assert [f["file"] for f in gt["frames"]] == [f"frame_{k:04d}.png" for k in range(3)]
        assert [f["time_s"] for f in gt["frames"]] == [0.0, 1.0, 2.0]


def test_same_seed_identical_bytes_and_cases_independent(tiny: Path, tmp_path: Path):
    # Only case01, with the video: identical to case01 of the 2-case run (bytes, WMV too).
    synthetic.generate_dataset(tmp_path / "a", num_cases=1, frames_per_case=3, seed=SEED)
    assert _files(tmp_path / "a" / "case01") == _files(tiny / "case01")
    # PNG/JSON do not depend on whether the video is written.
    synthetic.generate_dataset(
        tmp_path / "b", num_cases=1, frames_per_case=3, seed=SEED, write_video=False
    )
    no_video = _files(tmp_path / "b" / "case01")
    with_video = _files(tiny / "case01")
    with_video.pop("video.wmv")
    assert no_video == with_video


def test_different_seed_or_case_differs(tiny: Path, tmp_path: Path):
    synthetic.generate_dataset(
        tmp_path, num_cases=1, frames_per_case=1, seed=SEED + 1, write_video=False
    )
    other = (tmp_path / "case01" / "frame_0000.png").read_bytes()
    assert other != (tiny / "case01" / "frame_0000.png").read_bytes()
    assert (tiny / "case02" / "frame_0000.png").read_bytes() != (
        tiny / "case01" / "frame_0000.png"
    ).read_bytes()
    gt_a = json.loads((tmp_path / "case01" / "ground_truth.json").read_text())
    gt_b = json.loads((tiny / "case01" / "ground_truth.json").read_text())
    assert gt_a["frames"][0]["oocyte"]["center"] != gt_b["frames"][0]["oocyte"]["center"]


def test_ground_truth_ranges_in_written_files(tiny: Path):
    for case in ("case01", "case02"):
        gt = json.loads((tiny / case / "ground_truth.json").read_text())
        for frame in gt["frames"]:
            oocyte = np.asarray(frame["oocyte"]["outline"])
            assert len(oocyte) >= 100
            assert math.isclose(_shoelace(oocyte), frame["oocyte"]["area"], rel_tol=1e-4)
            total = 0.0
            assert 1 <= len(frame["serc"]) <= 2
            for serc in frame["serc"]:
                outline = np.asarray(serc["outline"])
                area = _shoelace(outline)
                circ = 4 * math.pi * area / _perimeter(outline) ** 2
                assert 0.6 <= circ <= 0.9
                assert math.isclose(circ, serc["circularity"], abs_tol=1e-3)
                assert serc["semi_axes"][0] >= serc["semi_axes"][1] > 0
                total += area
                # The exact sERC lies inside the exact oocyte.
                assert _mask(outline)[_mask(oocyte)].sum() == _mask(outline).sum()
            ratio = total / _shoelace(oocyte)
            assert 0.025 <= ratio <= 0.2
            assert math.isclose(ratio, frame["serc_area_ratio"], rel_tol=1e-3)
            # Oocyte cytoplasm diameter 40-50 % of the frame height (zoom range).
            d_eq = 2 * math.sqrt(frame["oocyte"]["area"] / math.pi)
            assert 0.33 * H <= d_eq <= 0.52 * H


def test_paper_ranges_over_all_default_cases():
    """Every annotated frame of the default 11 cases keeps the paper's sERC ranges."""
    sides = set()
    for case_id, n in enumerate(paper_values.FRAMES_PER_CASE, start=1):
        scene = synthetic.make_scene(0, case_id, n)
        sides.add(scene.needle.entry_side)
        depths = []
        for tau in synthetic.annotated_taus(n, 24):
            geo = frame_geometry(scene, float(tau))
            oocyte_area = _shoelace(geo.oocyte_outline)
            areas = [_shoelace(o) for o in geo.serc_outlines]
            circ = [
                4 * math.pi * a / _perimeter(o) ** 2
                for a, o in zip(areas, geo.serc_outlines, strict=True)
            ]
            assert all(0.6 <= c <= 0.9 for c in circ), (case_id, tau, circ)
            assert 0.025 <= sum(areas) / oocyte_area <= 0.2, (case_id, tau)
            depths.append(geo.deformation.depth)
        # The needle indents the oocyte in some frames and not in others.
        assert max(depths) > 5.0 and min(depths) == 0.0, case_id
    assert sides == {"left", "right"}


def test_needle_tip_polygon_and_border(tiny: Path):
    checked = 0
    for case in ("case01", "case02"):
        gt = json.loads((tiny / case / "ground_truth.json").read_text())
        for frame in gt["frames"]:
            doc = json.loads((tiny / case / frame["file"].replace(".png", ".json")).read_text())
            needles = _shapes_by_class(doc)[labels.NEEDLE]
            if frame["needle_tip"] is None:
                assert not needles
                continue
            (poly,) = needles
            tip = np.asarray(frame["needle_tip"])
            side = frame["needle_entry_side"]
            border_x = W - 1 if side == "right" else 0
            # Touches its entry border (two clicks on the border line).
            assert np.sum(np.abs(poly[:, 0] - border_x) < 1e-6) >= 2
            # Needle axis by PCA of the exact mask, oriented from the entry border inwards.
            exact = _mask(frame["needle_outline"])
            ys, xs = np.nonzero(exact)
            pix = np.stack([xs, ys], 1).astype(float)
            _, _, vt = np.linalg.svd(pix - pix.mean(0), full_matrices=False)
            axis = vt[0] * (1 if (vt[0][0] > 0) == (side == "left") else -1)
            # The tip-side end of the human polygon is at the true tip.
            assert abs((poly @ axis).max() - tip @ axis) <= 2.0
            assert np.min(np.hypot(*(poly - tip).T)) <= 2.0
            # The true tip is the extreme point of the exact needle along its axis.
            assert abs((pix @ axis).max() - tip @ axis) <= 1.0
            checked += 1
    assert checked >= 3


def test_human_polygons_have_tens_of_vertices_and_match_exact_shapes(tiny: Path):
    for case in ("case01", "case02"):
        gt = json.loads((tiny / case / "ground_truth.json").read_text())
        for frame in gt["frames"]:
            doc = json.loads((tiny / case / frame["file"].replace(".png", ".json")).read_text())
            shapes = _shapes_by_class(doc)
            (oocyte,) = shapes[labels.OOCYTE]
            assert 20 <= len(oocyte) <= 99
            assert _iou(_mask(oocyte), _mask(frame["oocyte"]["outline"])) > 0.95
            # Not pixel-exact: a person's clicks are off the true boundary.
            dense = np.asarray(frame["oocyte"]["outline"])
            assert not any(np.min(np.hypot(*(dense - p).T)) < 1e-3 for p in oocyte[:5])
            assert len(shapes[labels.SERC]) == len(frame["serc"])
            for poly, serc in zip(shapes[labels.SERC], frame["serc"], strict=True):
                assert 10 <= len(poly) <= 99
                assert _iou(_mask(poly), _mask(serc["outline"])) > 0.9
                # sERC polygons lie inside the oocyte polygon.
                inside = _mask(oocyte)
                assert inside[_mask(poly)].mean() > 0.999
            if frame["needle_outline"] is not None:
                (needle,) = shapes[labels.NEEDLE]
                assert len(needle) >= 6
                assert _iou(_mask(needle), _mask(frame["needle_outline"])) > 0.85


def test_images_look_like_microscope_frames(tiny: Path):
    """Grey, not saturated, noisy, with a darker-textured oocyte than the background."""
    gt = json.loads((tiny / "case01" / "ground_truth.json").read_text())
    frame = gt["frames"][0]
    img = np.asarray(Image.open(tiny / "case01" / frame["file"])).astype(float)
    spread = np.abs(img - img.mean(axis=2, keepdims=True)).mean()
    assert spread < 8.0  # near grey
    grey = img.mean(axis=2)
    assert 60 < grey.mean() < 200 and (grey >= 254).mean() < 0.01
    oocyte = _mask(frame["oocyte"]["outline"])
    far = np.zeros_like(oocyte)
    far[:40, :] = True
    assert grey[oocyte].std() > grey[far].std() * 1.5  # granular cytoplasm


def test_bad_frame_count_is_an_error(tmp_path: Path):
    with pytest.raises(ValueError, match="frames_per_case"):
        synthetic.generate_dataset(tmp_path, num_cases=1, frames_per_case=0, write_video=False)


def test_examples_written_small(tiny: Path, tmp_path: Path):
    paths = synthetic.save_examples(tiny, tmp_path, case_ids=(1,))
    assert [p.name for p in paths] == ["example_case01.png"]
    with Image.open(paths[0]) as img:
        assert img.size[0] > 2 * img.size[1]  # frame | overlay side by side
    assert paths[0].stat().st_size < 300_000


def test_labelme_itself_reads_the_files(tiny: Path):
    """The reference tool (labelme, pinned in requirements-dev) opens our annotations."""
    label_file = pytest.importorskip("labelme._label_file")
    path = tiny / "case02" / "frame_0001.json"
    doc = json.loads(path.read_text())
    lf = label_file.LabelFile(str(path))
    assert len(lf.shapes) == len(doc["shapes"]) >= 3
    assert lf.image_data  # loaded from the relative imagePath
