"""Tests of the synthetic ICSI generator (layout, determinism, geometry, annotations,
the drawn ranges and the paper's label rules)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sercseg_tf import labels, paper_values
from sercseg_tf.data import labelme
from sercseg_tf.synthetic import generator as synthetic
from sercseg_tf.synthetic import scene as scene_lib
from sercseg_tf.synthetic.geometry import Indentation, StarShape, surface_table
from sercseg_tf.synthetic.render import CaseRenderer
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


def test_video_cases_write_only_their_videos_and_the_same_frames(tiny: Path, tmp_path: Path):
    # What make demo asks for: every case's frames, a video only for the held-out case.
    synthetic.generate_dataset(
        tmp_path, num_cases=2, frames_per_case=3, seed=SEED, video_cases={2}
    )
    assert _files(tmp_path / "case02") == _files(tiny / "case02")
    without = _files(tmp_path / "case01")
    assert "video.wmv" not in without
    with_video = _files(tiny / "case01")
    with_video.pop("video.wmv")
    assert without == with_video


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
            # Ooplasm diameter 50-90 % of the frame height at rest; dents take some away.
            d_eq = 2 * math.sqrt(frame["oocyte"]["area"] / math.pi)
            assert 0.4 * H <= d_eq <= 0.91 * H


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
    """Grey, not saturated, with granular ooplasm: more fine texture than empty medium."""
    import cv2

    gt = json.loads((tiny / "case01" / "ground_truth.json").read_text())
    frame = gt["frames"][0]
    img = np.asarray(Image.open(tiny / "case01" / frame["file"])).astype(np.float32)
    grey = img.mean(axis=2)
    spread = np.abs(img - grey[..., None]).mean()
    assert spread < 0.1 * grey.mean()  # near grey: tints of at most 10 %
    assert 30 < grey.mean() < 230 and (grey >= 254).mean() < 0.01
    fine = grey - cv2.GaussianBlur(grey, (0, 0), 3.0)
    oocyte = _mask(frame["oocyte"]["outline"])
    if frame["needle_outline"] is not None:
        oocyte &= ~_mask(frame["needle_outline"])
    # Empty medium: well outside the zona, away from the pipette and cumulus.
    zona = cv2.dilate(_mask(gt["zona_outer"]).astype(np.uint8), np.ones((41, 41), np.uint8))
    ys, xs = np.mgrid[0:H, 0:W]
    hp = gt["holding_pipette"]
    d, end = -np.asarray(hp["direction"]), np.asarray(hp["end"])
    u = (xs - end[0]) * d[0] + (ys - end[1]) * d[1]
    v = (ys - end[1]) * d[0] - (xs - end[0]) * d[1]
    medium = (zona == 0) & ~((u > -10) & (np.abs(v) < hp["radius"] + 10))
    for x, y, r in gt["cumulus"]:
        medium &= (xs - x) ** 2 + (ys - y) ** 2 > (3 * r + 10) ** 2
    assert medium.sum() > 2000
    assert fine[oocyte].std() > 1.3 * fine[medium].std()


def test_bad_frame_count_is_an_error(tmp_path: Path):
    with pytest.raises(ValueError, match="frames_per_case"):
        synthetic.generate_dataset(tmp_path, num_cases=1, frames_per_case=0, write_video=False)


def _make_synthetic_data(out: Path, *flags: str):
    """Runs tools/make_synthetic_data.py into ``out`` with ``flags``; the finished process."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    return subprocess.run(
        [sys.executable, str(repo / "tools" / "make_synthetic_data.py"), f"--output_dir={out}",
         *flags], capture_output=True, text=True, timeout=120)  # fmt: skip


def test_cli_rejects_both_frame_count_flags(tmp_path: Path):
    # --frames_per_case sets every case, so --extra_case_frames beside it would be ignored.
    proc = _make_synthetic_data(tmp_path / "out", "--num_cases=12", "--frames_per_case=2",
                                "--extra_case_frames=3", "--nowrite_video")  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "make_synthetic_data: give --frames_per_case (every case) or --extra_case_frames "
        "(cases beyond Table 1's), not both")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("value", "reason"),
    [("13", "--video_cases [13] outside cases 1..12"),
     ("5,x", "--video_cases must be case numbers, got 5,x")],
)  # fmt: skip
def test_cli_rejects_bad_video_cases(tmp_path: Path, value: str, reason: str):
    proc = _make_synthetic_data(tmp_path / "out", "--num_cases=12", f"--video_cases={value}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"make_synthetic_data: {reason}"
    assert not (tmp_path / "out").exists()


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


# --------------------------------------------------------------------------- drawn ranges
SMALL = (240, 320)


def _tip_progress(scene, taus) -> float:
    """Largest (tip - ooplasm centre) . a over the times: >= 0 means at or past the centre."""
    a = np.asarray(scene.needle.direction)
    center = np.asarray(scene.oocyte.center)
    best = -np.inf
    for tau in taus:
        depth, _, _, offset = scene.motion.at(float(tau))
        best = max(best, float((scene.needle.tip(depth, offset) - center) @ a))
    return best


def test_drawn_ranges_over_many_cases():
    """Zoom, injection depth, funnel depth and optics cover their documented ranges."""
    taus = np.linspace(0.0, 1.0, 400)
    diameters, past, funnels, optics, cumulus, sperm = [], [], [], set(), [], []
    for case_id in range(1, 31):
        scene = synthetic.make_scene(SEED, case_id, 3, SMALL)
        h = scene.image_size[0]
        rest = scene.oocyte.outline(720)
        diameters.append(2 * math.sqrt(_shoelace(rest) / math.pi) / h)
        past.append(_tip_progress(scene, taus) >= 0.0)
        funnels.append(max(k[2] for k in scene.motion.keys) / scene.radius)
        optics.add(scene.look.optics)
        cumulus.append(bool(scene.surroundings.cumulus))
        sperm.append(scene.sperm is not None)
    lo, hi = scene_lib.OOPLASM_DIAMETER_RANGE
    assert all(lo - 0.02 <= d <= hi + 0.01 for d in diameters), diameters
    assert min(diameters) < 0.6 and max(diameters) > 0.8  # the range is used
    assert 0.2 <= np.mean(past) <= 0.8  # to or past the centre in some cases, not all
    assert max(funnels) > 0.6 and min(funnels) < 0.3 and max(funnels) <= 0.86
    assert optics == set(scene_lib.OPTICS)
    assert any(cumulus) and not all(cumulus) and any(sperm)


def test_look_stream_ranges_and_earlier_draws_kept():
    """Zona shape and texture, pale needles and swollen cumulus cover their ranges, drawn
    from their own stream (the ooplasm's from the scene stream)."""
    zona, contrast, swollen, granular, pvs = {}, [], [], [], []
    phi = np.linspace(0.0, 2 * np.pi, 720, endpoint=False)
    for case_id in range(1, 41):
        scene = synthetic.make_scene(SEED, case_id, 3, SMALL)
        look, sur = scene.look, scene.surroundings
        gap = (scene.zona_inner.radius(phi) - scene.oocyte.radius(phi)) / scene.radius
        assert gap.min() > 0.0  # the ooplasm at rest lies inside the zona
        pvs.append(gap.max())
        zona.setdefault(look.optics == "brightfield", []).append(look.zona_texture)
        contrast.append(look.needle_contrast)
        radius = scene.radius
        if sur.cumulus and sur.cumulus_texture < 3.0:
            assert 0.3 <= sur.cumulus_texture <= 1.2
            swollen.append(max(c[2] for c in sur.cumulus) / radius)
        elif sur.cumulus:
            granular.append(max(c[2] for c in sur.cumulus) / radius)
    assert all(0.01 <= z <= 0.06 for z in zona[True]) and len(zona[True]) >= 3
    hoff = zona[False]
    assert all(0.05 <= z <= 0.35 for z in hoff) and min(hoff) < 0.12 and max(hoff) > 0.28
    assert all(0.6 * 0.55 <= c <= 1.3 for c in contrast)
    assert min(contrast) < 0.5 and np.mean(np.asarray(contrast) < 0.6) < 0.5  # pale: some
    assert swollen and granular and max(granular) <= 0.11 + 1e-9 and max(swollen) > 0.15
    assert min(pvs) < 0.15 and max(pvs) > 0.3  # narrow and wide perivitelline spaces
    a, b = (scene_lib.draw_scene(synthetic.case_rng(SEED, 7, 0), 7, SMALL,
                                 np.random.default_rng(k)) for k in (1, 2))  # fmt: skip
    assert a.look.zona_texture != b.look.zona_texture  # the look stream is used
    for key in ("center", "semi_axes", "angle", "harmonics"):
        assert getattr(a.oocyte, key) == getattr(b.oocyte, key)
    assert a.zona_inner != b.zona_inner


def test_indentation_deep_narrow_funnel_is_one_to_one():
    """A funnel far deeper than wide moves the membrane by D and keeps the far side."""
    cell = StarShape((200.0, 150.0), (100.0, 100.0))
    a = np.array([-1.0, 0.0])  # needle from the right
    table = surface_table(cell.outline(1440), np.array([399.0, 150.0]), a)
    ind = Indentation(table, offset=0.0, depth=80.0, core=5.0, funnel=6.0, broad=60.0,
                      broadness=0.0)  # fmt: skip
    near, far, side = [300.0, 150.0], [100.0, 150.0], [200.0, 50.0]
    moved = ind.forward(np.array([near, far, side]))
    assert moved[0, 0] == pytest.approx(300.0 - 80.0, abs=3.6)  # within the band b
    np.testing.assert_allclose(moved[1:], [far, side], atol=1e-9)
    # Lateral: 30 px off the axis (4 funnel widths beyond the core) hardly moves.
    assert abs(ind.forward(np.array([[295.5, 180.0]]))[0, 0] - 295.5) < 0.5
    # forward and backward are inverse for rest points inside the cell.
    rng = np.random.default_rng(0)
    pts = cell.center + rng.uniform(-70, 70, size=(500, 2))
    shown = ind.forward(pts)
    qx, qy = ind.backward(shown[:, 0], shown[:, 1])
    np.testing.assert_allclose(np.stack([qx, qy], 1), pts, atol=1e-6)
    # Along the axis, shown order keeps rest order (no fold).
    xs = np.linspace(120.0, 299.0, 400)
    qx, _ = ind.backward(xs, np.full_like(xs, 150.0))
    inside = xs < 300.0 - 80.0
    assert np.all(np.diff(qx[inside]) > 0)


def _pick_case(pred, frames: int, limit: int = 40):
    for case_id in range(1, limit + 1):
        scene = synthetic.make_scene(SEED, case_id, frames, SMALL)
        if pred(scene, synthetic.annotated_taus(frames, 24)):
            return case_id
    raise AssertionError("no case matches")


def _tip_inside_often(scene, taus) -> bool:
    inside = 0
    for tau in taus:
        geo = frame_geometry(scene, float(tau))
        if geo.tip is not None:
            mask = _mask(geo.oocyte_outline, *SMALL)
            x, y = np.round(geo.tip).astype(int)
            inside += bool(mask[y, x])
    return inside >= 2 and bool(scene.surroundings.cumulus)


@pytest.fixture(scope="module")
def rich(tmp_path_factory) -> tuple[Path, dict]:
    """A 240x320 case with cumulus and the needle tip inside the ooplasm in >= 2 frames."""
    frames = 8
    case_id = _pick_case(_tip_inside_often, frames)
    case_dir = tmp_path_factory.mktemp("rich")
    gt = synthetic.generate_case(case_dir, case_id, frames, SEED, write_video=False,
                                 image_size=SMALL)  # fmt: skip
    return case_dir, gt


def _label(case_dir: Path, frame: dict) -> np.ndarray:
    doc = json.loads((case_dir / frame["file"].replace(".png", ".json")).read_text())
    return labelme.rasterize_shapes(doc["shapes"], *SMALL)


def test_needle_inside_the_ooplasm_is_labelled_needle(rich):
    import cv2

    case_dir, gt = rich
    checked = 0
    for frame in gt["frames"]:
        oocyte = _mask(frame["oocyte"]["outline"], *SMALL)
        if frame["needle_tip"] is None:
            continue
        x, y = np.round(frame["needle_tip"]).astype(int)
        if not oocyte[y, x]:
            continue
        needle = _mask(frame["needle_outline"], *SMALL)
        inside = needle & oocyte
        assert inside.sum() > 30  # the exact needle reaches into the ooplasm
        label = _label(case_dir, frame)
        # Painted over the oocyte: the needle's core (1 px in from the exact edge, where the
        # annotator's clicks may stray by a fraction of a pixel) is labelled needle.
        core = cv2.erode(needle.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        assert (label[core & oocyte] == labels.NEEDLE).mean() > 0.97
        assert (label[inside] == labels.NEEDLE).mean() > 0.8
        # The rest of the ooplasm stays oocyte or sERC.
        rest = oocyte & ~_mask(frame["needle_outline"], *SMALL)
        assert np.isin(label[rest], [labels.OOCYTE, labels.SERC]).mean() > 0.97
        checked += 1
    assert checked >= 2


def test_zona_pipette_cumulus_polar_body_are_background(rich):
    case_dir, gt = rich
    h, w = SMALL
    zin, zout = np.asarray(gt["zona_inner"]), np.asarray(gt["zona_outer"])
    center = zin.mean(axis=0)
    ring = 0.5 * (zin + zout)  # middle of the zona, all around
    needle_side = np.asarray([1.0, 0.0]) * (1 if gt["frames"][0]["needle_entry_side"] == "right"
                                            else -1)  # fmt: skip
    away = (ring - center) @ needle_side < 0.6 * np.linalg.norm(ring - center, axis=1)
    hp = gt["holding_pipette"]
    d = -np.asarray(hp["direction"])  # from the end face back along the pipette
    n = np.array([-d[1], d[0]])
    wall = 0.5 * (hp["radius"] + hp["lumen"])
    glass = [np.asarray(hp["end"]) + d * k + n * sgn * wall for k in (4, 12, 30)
             for sgn in (-1, 1)]  # fmt: skip
    points = {
        "zona": ring[away],
        "pipette": np.asarray(glass),
        "cumulus": np.asarray([c[:2] for c in gt["cumulus"]]).reshape(-1, 2),
        "polar body": np.asarray([gt["polar_body"]["center"]]),
    }
    assert len(points["cumulus"]) > 0
    for frame in gt["frames"]:
        if frame["indented_surface"] == "zona":
            continue
        label = _label(case_dir, frame)
        for name, pts in points.items():
            xy = np.round(pts).astype(int)
            ok = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
            values = label[xy[ok, 1], xy[ok, 0]]
            assert np.all(values == labels.BACKGROUND), (name, frame["frame"], values)


def test_vary_size_draws_stored_frame_sizes(tmp_path: Path):
    seed = next(s for s in range(50) if synthetic.frame_size(s, 1) != (480, 640))
    size = synthetic.frame_size(seed, 1)
    assert size in synthetic.FRAME_SIZES and synthetic.frame_size(seed, 1) == size
    (case_dir,) = synthetic.generate_dataset(
        tmp_path, num_cases=1, frames_per_case=1, seed=seed, write_video=False, vary_size=True
    )
    with Image.open(case_dir / "frame_0000.png") as img:
        assert img.size == (size[1], size[0])
    doc = json.loads((case_dir / "frame_0000.json").read_text())
    assert (doc["imageHeight"], doc["imageWidth"]) == size
    for shape in doc["shapes"]:
        pts = np.asarray(shape["points"])
        assert pts[:, 0].max() <= size[1] - 1 and pts[:, 1].max() <= size[0] - 1


def test_example_grid_shows_one_tile_per_case():
    grid = synthetic.example_grid(SEED, case_ids=(1, 2, 3), columns=2, tile=(60, 80))
    assert grid.shape == (2 * 64, 2 * 84, 3) and grid.dtype == np.uint8
    tiles = [grid[2:62, 2:82], grid[2:62, 86:166], grid[66:126, 2:82]]
    assert all(t.std() > 3 for t in tiles)  # frames, not blank
    assert np.all(grid[66:126, 86:166] == 255)  # the fourth place is empty


def _region_stats(img: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    """(mean grey level, robust spread of the fine texture: grey minus its 3 px blur).

    The spread is 1.4826 x the median absolute deviation (a Gaussian's sigma), so a few
    pipette or debris edges in a region do not count as texture.
    """
    import cv2

    fine = (img - cv2.GaussianBlur(img, (0, 0), 3.0))[region]
    return float(img[region].mean()), 1.4826 * float(np.median(np.abs(fine - np.median(fine))))


def test_each_optics_shows_a_granular_ooplasm():
    """The ooplasm is granular (not smooth) in every optics and, in brightfield, darker
    and more granular than the zona around it, as in real footage.

    Regression: brightfield once rendered a smooth ooplasm inside a granular zona.
    """
    import cv2

    seen: dict[str, int] = {}
    for case_id in range(1, 40):
        scene = synthetic.make_scene(SEED, case_id, 3, (480, 640))
        optics = scene.look.optics
        if seen.get(optics, 0) >= 2:
            continue
        seen[optics] = seen.get(optics, 0) + 1
        renderer = CaseRenderer(scene, np.random.default_rng(case_id), 3)
        rgb = renderer.render(frame_geometry(scene, 0.0), 0)
        img = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
        ys, xs = np.mgrid[0:480, 0:640].astype(np.float32)
        ooplasm = scene.oocyte.rho(xs, ys) < 0.85
        zona = (scene.zona_inner.rho(xs, ys) > 1.05) & (scene.zona_outer.rho(xs, ys) < 0.97)
        medium = scene.zona_outer.rho(xs, ys) > 1.3
        oo_mean, oo_tex = _region_stats(img, ooplasm)
        _, zona_tex = _region_stats(img, zona)
        medium_tex = _region_stats(img, medium)[1]
        assert oo_tex > 1.3 * medium_tex, (case_id, optics, oo_tex, medium_tex)
        if optics == "brightfield":
            zona_mean = _region_stats(img, zona)[0]  # beside it: about the same light
            assert oo_mean < 0.96 * zona_mean, (case_id, oo_mean, zona_mean)
            assert oo_tex > 1.3 * zona_tex, (case_id, oo_tex, zona_tex)
    assert set(seen) == set(scene_lib.OPTICS)


def test_extra_cases_follow_table1():
    """Cases 1-11 keep Table 1's counts; the extra cases get the requested count."""
    counts = synthetic.table1_then(12, 14)
    assert counts[:11] == list(paper_values.FRAMES_PER_CASE) and counts[11:] == [12, 12, 12]
    assert synthetic.table1_then(5, 3) == list(paper_values.FRAMES_PER_CASE[:3])
