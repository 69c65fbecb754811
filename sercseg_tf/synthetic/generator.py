"""Synthetic ICSI dataset: videos, 1-per-second frames, LabelMe polygons, ground truth.

The project's embedded default data (clinical videos are private). Each case is
drawn from ``np.random.default_rng([seed, case, stream])`` so cases are independent and
the same seed gives byte-identical PNG and JSON files (and WMV with OpenCV 5.0's
bundled FFmpeg, which writes no timestamps into the file). What a case draws (zoom,
injection, optics, surroundings) and the label rules are listed in `scene`. Layout per
case::

    DIR/caseNN/video.wmv          480x640, 24 fps, N seconds (N = frames of the case)
    DIR/caseNN/frame_NNNN.png     video frame at t = NNNN seconds (index NNNN * fps)
    DIR/caseNN/frame_NNNN.json    LabelMe 5.x polygons drawn "by a person"
    DIR/caseNN/ground_truth.json  exact geometry (`case_ground_truth`, `ground_truth_frame`)

Annotated frames are exactly the video frames at whole seconds (before encoding). Every
case is 480x640 (the paper's videos) unless ``vary_size`` is set: then each case draws
its stored size from `FRAME_SIZES` (clinics record and resize footage differently).
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import multiprocessing
import os
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

import numpy as np
from absl import logging

from sercseg_tf import atomic_io, labels, paper_values
from sercseg_tf.data import video
from sercseg_tf.fault_points import fault_point
from sercseg_tf.synthetic.geometry import (
    clip_polygon_to_rect,
    human_polygon,
    polygon_area,
    polygon_circularity,
)
from sercseg_tf.synthetic.render import CaseRenderer
from sercseg_tf.synthetic.scene import (
    CaseScene,
    FrameGeometry,
    draw_scene,
    frame_geometry,
    scene_is_valid,
)

LABELME_VERSION = "5.4.1"
VIDEO_NAME = "video.wmv"
GROUND_TRUTH_NAME = "ground_truth.json"
_STREAM_SCENE, _STREAM_RENDER, _STREAM_ANNOTATE, _STREAM_SIZE, _STREAM_EXTRA = 0, 1, 2, 3, 4
_MAX_REDRAWS = 50
# Stored (height, width) drawn per case with vary_size: 4:3, square crops, 16:9, 3:2, PAL.
FRAME_SIZES = (
    (480, 640), (384, 384), (512, 512), (360, 640), (432, 768), (576, 720), (600, 800),
    (480, 720),
)  # fmt: skip
_FRAME_SIZE_P = (0.3,) + (0.1,) * 7


def frame_name(index: int) -> str:
    """Returns the file stem of annotated frame `index`, e.g. ``frame_0007``."""
    return f"frame_{index:04d}"


def case_rng(seed: int, case_id: int, stream: int) -> np.random.Generator:
    """Returns the generator of one random stream of one case, independent of others."""
    return np.random.default_rng([int(seed), int(case_id), int(stream)])


def frame_size(seed: int, case_id: int) -> tuple[int, int]:
    """The stored frame size a case draws with ``vary_size`` (own stream, from `FRAME_SIZES`)."""
    rng = case_rng(seed, case_id, _STREAM_SIZE)
    return FRAME_SIZES[int(rng.choice(len(FRAME_SIZES), p=_FRAME_SIZE_P))]


def make_scene(
    seed: int,
    case_id: int,
    num_frames: int,
    image_size: tuple[int, int] = (480, 640),
    fps: int = 24,
) -> CaseScene:
    """Draws a case whose sERCs stay in the paper's ranges in every annotated frame."""
    rng = case_rng(seed, case_id, _STREAM_SCENE)
    rng_extra = case_rng(seed, case_id, _STREAM_EXTRA)
    taus = annotated_taus(num_frames, fps)
    for _ in range(_MAX_REDRAWS):
        scene = draw_scene(rng, case_id, image_size, rng_extra)
        if scene_is_valid(scene, taus):
            return scene
    raise RuntimeError(f"case {case_id}: no valid scene in {_MAX_REDRAWS} draws (seed {seed})")


def annotated_taus(num_frames: int, fps: int) -> np.ndarray:
    """Normalised times tau = j / (J - 1) of the annotated frames j = k * fps."""
    total = num_frames * fps
    return np.array([k * fps / max(total - 1, 1) for k in range(num_frames)])


def _round_points(points: np.ndarray, ndigits: int) -> list[list[float]]:
    return [[round(float(x), ndigits), round(float(y), ndigits)] for x, y in points]


def ground_truth_frame(scene: CaseScene, geo: FrameGeometry, index: int, fps: int) -> dict:
    """Returns one `frames[]` entry of ground_truth.json.

    Keys: `frame`, `file`, `time_s`, `video_frame` (index in the video), `needle_tip`
    ([x, y] or null), `needle_entry_side`, `needle_outline` (exact needle polygon clipped
    to the image, or null), `needle_indentation_px` (depth D of the dent the needle pushes
    into the zona or oolemma, 0 when none), `indented_surface` ("zona", "oolemma" or
    null), `oocyte` {center, outline (exact, may leave the frame), area}, `serc` (list of
    {center, semi_axes, angle_deg, outline, area, circularity}) and `serc_area_ratio`.
    Coordinates are pixels, x right, y down.
    """
    sercs = []
    for serc, outline, center in zip(scene.sercs, geo.serc_outlines, geo.serc_centers, strict=True):
        sercs.append(
            {
                "center": _round_points(center[None], 3)[0],
                "semi_axes": [
                    round(float(serc.semi_axes[0]), 3),
                    round(float(serc.semi_axes[1]), 3),
                ],
                "angle_deg": round(math.degrees(serc.angle) % 180.0, 3),
                "outline": _round_points(outline, 3),
                "area": round(polygon_area(outline), 3),
                "circularity": round(polygon_circularity(outline), 5),
            }
        )
    return {
        "frame": index,
        "file": f"{frame_name(index)}.png",
        "time_s": float(index),
        "video_frame": index * fps,
        "needle_tip": None if geo.tip is None else _round_points(geo.tip[None], 3)[0],
        "needle_entry_side": scene.needle.entry_side,
        "needle_outline": None
        if geo.needle_polygon is None
        else _round_points(geo.needle_polygon, 3),
        "needle_indentation_px": round(float(geo.deformation.depth), 3),
        "indented_surface": _surface_name(scene, geo),
        "oocyte": {
            "center": _round_points(geo.oocyte_center[None], 3)[0],
            "outline": _round_points(geo.oocyte_outline, 3),
            "area": round(geo.oocyte_area, 3),
        },
        "serc": sercs,
        "serc_area_ratio": round(geo.serc_area_ratio, 6),
    }


def _surface_name(scene: CaseScene, geo: FrameGeometry) -> str | None:
    if not geo.deformation.active:
        return None
    return "zona" if geo.deformation.table is scene.zona_table else "oolemma"


def case_ground_truth(scene: CaseScene) -> dict:
    """Returns the case-level, unlabelled geometry of ground_truth.json (rest frame).

    Keys: `optics`, `zona_inner` and `zona_outer` (outlines), `polar_body` {center,
    semi_axes}, `holding_pipette` {end, direction, radius, lumen}, `cumulus` ([x, y,
    radius] per cell), `second_oocyte` (ooplasm outline or null), `dish_edge` ([cx, cy,
    radius] of the drop, or null). All of it is background in the labels.
    """
    sur = scene.surroundings
    second = sur.second_oocyte
    return {
        "optics": scene.look.optics,
        "zona_inner": _round_points(scene.zona_inner.outline(180), 2),
        "zona_outer": _round_points(scene.zona_outer.outline(180), 2),
        "polar_body": {
            "center": _round_points(np.asarray([scene.polar_body.center]), 3)[0],
            "semi_axes": [round(float(v), 3) for v in scene.polar_body.semi_axes],
        },
        "holding_pipette": {
            "end": _round_points(np.asarray([scene.holding_end]), 3)[0],
            "direction": [round(-float(v), 6) for v in scene.needle.direction],
            "radius": round(scene.holding_radius, 3),
            "lumen": round(scene.holding_lumen, 3),
        },
        "cumulus": [[round(x, 2), round(y, 2), round(r, 2)] for x, y, r, _ in sur.cumulus],
        "second_oocyte": None if second is None else _round_points(second[0].outline(180), 2),
        "dish_edge": None if sur.dish_edge is None else [round(v, 2) for v in sur.dish_edge[:3]],
    }


def _needle_human_polygon(
    scene: CaseScene, geo: FrameGeometry, rng: np.random.Generator
) -> np.ndarray | None:
    """A person's needle polygon: the visible tip, a few points per edge, the border.

    Walks the exact (clipped) outline from the tip, adds a click every 20-35 px along
    each edge (at least one per edge), pulls the tip click back by 0-1.5 px (the faded
    end), and jitters clicks across the needle by N(0, 0.3) px; clicks on the entry
    border stay on it.
    """
    poly = geo.needle_polygon
    if poly is None or geo.tip is None:
        return None
    h, w = scene.image_size
    border_x = w - 1.0 if scene.needle.entry_side == "right" else 0.0
    a = np.asarray(scene.needle.direction)
    n = len(poly)
    start = int(np.argmin(np.linalg.norm(poly - geo.tip, axis=1)))
    verts = [poly[(start + i) % n] for i in range(n)]
    verts[0] = geo.tip - a * rng.uniform(0.0, 1.5)
    on_border = [abs(v[0] - border_x) < 1e-6 for v in verts]
    pts: list[np.ndarray] = []
    border: list[bool] = []
    for i in range(n):
        p, q = verts[i], verts[(i + 1) % n]
        pts.append(p)
        border.append(on_border[i])
        if on_border[i] and on_border[(i + 1) % n]:
            continue
        k = max(1, int(np.linalg.norm(q - p) // rng.uniform(20, 35)))
        for m in range(1, k + 1):
            pts.append(p + (q - p) * m / (k + 1))
            border.append(False)
    out = np.asarray(pts)
    jitter = rng.normal(0.0, 0.3, size=len(out))
    moved = out + scene.needle.normal[None] * jitter[:, None]
    is_border = np.asarray(border)
    out[~is_border] = moved[~is_border]
    out[is_border, 1] = moved[is_border, 1]
    out[is_border, 0] = border_x
    out[:, 0] = np.clip(out[:, 0], 0.0, w - 1.0)
    out[:, 1] = np.clip(out[:, 1], 0.0, h - 1.0)
    return out


def labelme_shapes(scene: CaseScene, geo: FrameGeometry, rng: np.random.Generator) -> list[dict]:
    """Returns the LabelMe shapes a person would draw for this frame.

    The oocyte polygon follows the (deformed) oolemma, clipped to the frame where the cell
    leaves it; one polygon per sERC; the needle polygon runs from the visible tip to the
    entry border, over the ooplasm where the needle is inside it.
    """
    name_oocyte, name_serc, name_needle = scene.label_names
    groups: list[list[dict]] = [[], [], []]
    perim = np.sum(np.linalg.norm(np.diff(geo.oocyte_outline, axis=0), axis=1))
    n_oo = int(np.clip(perim / rng.uniform(14, 22), 28, 90))
    oocyte = human_polygon(geo.oocyte_outline, n_oo, 0.7, rng.uniform(-0.4, 0.4), rng)
    h, w = scene.image_size
    oocyte = clip_polygon_to_rect(oocyte, 0.0, 0.0, w - 1.0, h - 1.0)  # drawn along the border
    groups[0].append(_shape(name_oocyte, oocyte))
    for outline in geo.serc_outlines:
        perim = float(np.sum(np.linalg.norm(np.diff(outline, axis=0), axis=1)))
        r_eq = math.sqrt(polygon_area(outline) / math.pi)
        n_s = int(np.clip(perim / rng.uniform(5, 8), 12, 40))
        jitter = min(0.5, 0.03 * r_eq)
        groups[1].append(_shape(name_serc, human_polygon(outline, n_s, jitter, 0.0, rng)))
    needle = _needle_human_polygon(scene, geo, rng)
    if needle is not None:
        groups[2].append(_shape(name_needle, needle))
    return [shape for g in scene.shape_order for shape in groups[g]]


def _shape(label: str, points: np.ndarray) -> dict:
    return {
        "label": label,
        "points": _round_points(points, 2),
        "group_id": None,
        "description": "",
        "shape_type": "polygon",
        "flags": {},
    }


def labelme_document(shapes: list[dict], image_name: str, image_size: tuple[int, int]) -> dict:
    """Returns a LabelMe 5.x annotation dict (imageData null, imagePath relative)."""
    return {
        "version": LABELME_VERSION,
        "flags": {},
        "shapes": shapes,
        "imagePath": image_name,
        "imageData": None,
        "imageHeight": int(image_size[0]),
        "imageWidth": int(image_size[1]),
    }


def write_json(path: Path, obj: dict, indent: int | None = 2) -> None:
    """Writes JSON atomically (temp name, then rename)."""
    atomic_io.atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def generate_case(
    case_dir: Path,
    case_id: int,
    num_frames: int,
    seed: int = 0,
    write_video: bool = True,
    image_size: tuple[int, int] = (480, 640),
    fps: int = 24,
) -> dict:
    """Generates one case into `case_dir` (which must exist and be empty).

    Returns:
      The ground-truth dict written to ground_truth.json.
    """
    scene = make_scene(seed, case_id, num_frames, image_size, fps)
    total = num_frames * fps
    renderer = CaseRenderer(scene, case_rng(seed, case_id, _STREAM_RENDER), total)
    ann_rng = case_rng(seed, case_id, _STREAM_ANNOTATE)
    frames_gt: list[dict] = []

    def annotate(index: int, geo: FrameGeometry, rgb: np.ndarray) -> None:
        name = frame_name(index)
        video.write_png(case_dir / f"{name}.png", rgb)
        doc = labelme_document(labelme_shapes(scene, geo, ann_rng), f"{name}.png", image_size)
        write_json(case_dir / f"{name}.json", doc)
        frames_gt.append(ground_truth_frame(scene, geo, index, fps))

    def tau_of(j: int) -> float:
        return j / max(total - 1, 1)

    if write_video:

        def frames() -> Iterator[np.ndarray]:
            for j in range(total):
                geo = frame_geometry(scene, tau_of(j))
                rgb = renderer.render(geo, j)
                if j % fps == 0:
                    annotate(j // fps, geo, rgb)
                yield rgb

        video.write_video(case_dir / VIDEO_NAME, frames(), fps, image_size)
    else:
        for k in range(num_frames):
            geo = frame_geometry(scene, tau_of(k * fps))
            annotate(k, geo, renderer.render(geo, k * fps))

    gt = {
        "case": case_id,
        "seed": seed,
        "image_size": [int(image_size[0]), int(image_size[1])],
        "fps": fps,
        **case_ground_truth(scene),
        "frames": frames_gt,
    }
    write_json(case_dir / GROUND_TRUTH_NAME, gt, indent=None)
    return gt


def table1_frames(case_id: int) -> int:
    """Annotated frames of case `case_id` by the paper's Table 1, cycled beyond case 11."""
    table = paper_values.FRAMES_PER_CASE
    return table[(case_id - 1) % len(table)]


def table1_then(extra_frames: int, num_cases: int) -> list[int]:
    """Frame counts: Table 1's for cases 1-11, then `extra_frames` for each further case.

    Extra cases widen the training set's range of looks (each case draws one look) at a
    small cost per case, while cases 1-11 keep the paper's counts.
    """
    table = len(paper_values.FRAMES_PER_CASE)
    return [table1_frames(c) if c <= table else int(extra_frames)
            for c in range(1, num_cases + 1)]


def generate_dataset(
    output_dir: os.PathLike | str,
    num_cases: int = 11,
    frames_per_case: int | Sequence[int] | None = None,
    seed: int = 0,
    write_video: bool = True,
    image_size: tuple[int, int] = (480, 640),
    fps: int = 24,
    workers: int = 1,
    vary_size: bool = False,
    video_cases: Collection[int] | None = None,
) -> list[Path]:
    """Generates `num_cases` synthetic ICSI cases under `output_dir`.

    Each case is written to a hidden temporary folder and renamed to caseNN when
    complete, replacing an older caseNN, so an interrupted run leaves no half case.

    Args:
      output_dir: root folder (created).
      num_cases: cases 1..num_cases.
      frames_per_case: annotated frames (= video seconds) per case; None uses the
        paper's Table 1 (paper_values.FRAMES_PER_CASE, cycled beyond 11 cases); an int
        applies to every case; a sequence gives one count per case.
      seed: dataset seed; case c uses default_rng([seed, c, stream]).
      write_video: also write caseNN/video.wmv (24 fps x N seconds).
      image_size: (height, width) of every case.
      fps: video frame rate.
      workers: cases generated in parallel processes (output identical for any value).
      vary_size: each case draws its own stored size from `FRAME_SIZES` instead.
      video_cases: with `write_video`, only these case ids get a video (None: all). A
        case's frames and annotations are the same bytes with or without its video.

    Returns:
      The case folders, in case order.
    """
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    tasks = []
    for case_id in range(1, num_cases + 1):
        if frames_per_case is None:
            n = table1_frames(case_id)
        elif isinstance(frames_per_case, int):
            n = frames_per_case
        else:
            n = int(frames_per_case[case_id - 1])
        if n < 1:
            raise ValueError(f"frames_per_case must be >= 1, got {n} for case {case_id}")
        size = frame_size(seed, case_id) if vary_size else tuple(image_size)
        with_video = write_video and (video_cases is None or case_id in video_cases)
        tasks.append((str(root), case_id, n, seed, with_video, size, fps))
    paths = []

    def report(path: Path, elapsed: float, n: int, with_video: bool) -> None:
        rendered = n * fps if with_video else n
        logging.info(
            "%s: %d frames, %d rendered in %.1f s (%.0f frames/s)",
            path.name, n, rendered, elapsed, rendered / max(elapsed, 1e-9),
        )  # fmt: skip
        paths.append(path)

    if workers > 1 and len(tasks) > 1:
        # Cases are independent (own generators), so the output does not depend on workers.
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx) as ex:
            for (path, elapsed), task in zip(
                ex.map(_generate_one, *zip(*tasks, strict=True)), tasks, strict=True
            ):
                report(path, elapsed, task[2], task[4])
    else:
        for task in tasks:
            report(*_generate_one(*task), task[2], task[4])
    return paths


def _generate_one(
    root: str,
    case_id: int,
    n: int,
    seed: int,
    write_video: bool,
    image_size: tuple[int, int],
    fps: int,
) -> tuple[Path, float]:
    """Generates one case in a hidden temp folder, then swaps it in as caseNN.

    `atomic_io.atomic_dir`: a kill at any moment leaves the old caseNN or the new one.
    """
    final = Path(root) / labels.case_name(case_id)
    start = time.perf_counter()
    with atomic_io.atomic_dir(final) as tmp:
        generate_case(tmp, case_id, n, seed, write_video, image_size, fps)
        fault_point("generator.case_written")
    return final, time.perf_counter() - start


def render_overlay(image_rgb: np.ndarray, shapes: list[dict]) -> np.ndarray:
    """Returns the image with its LabelMe shapes rasterised and overlaid (ICSI order)."""
    from sercseg_tf import visualize
    from sercseg_tf.data import labelme

    label = labelme.rasterize_shapes(shapes, image_rgb.shape[0], image_rgb.shape[1])
    return visualize.overlay(image_rgb, label)


def save_examples(
    dataset_dir: os.PathLike | str,
    examples_dir: os.PathLike | str,
    case_ids: Sequence[int] = (1, 3, 5, 7),
    scale: float = 0.5,
) -> list[Path]:
    """Writes docs-style examples: frame | label overlay side by side, per case.

    Shows a different moment per example (deepest indentation, needle deepest inside,
    approach, in turn), marks the true needle tip with a cross, scales by `scale`, and writes
    `examples_dir/example_caseNN.png`.
    """
    import cv2

    out_paths = []
    root = Path(dataset_dir)
    out_dir = Path(examples_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for case_id in case_ids:
        case_dir = root / labels.case_name(case_id)
        gt = json.loads((case_dir / GROUND_TRUTH_NAME).read_text())
        frames = gt["frames"]
        pick = _example_frame(frames, len(out_paths))
        stem = Path(pick["file"]).stem
        bgr = cv2.imread(str(case_dir / pick["file"]), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        doc = json.loads((case_dir / f"{stem}.json").read_text())
        over = render_overlay(rgb, doc["shapes"])
        if pick["needle_tip"] is not None:
            x, y = (int(round(v)) for v in pick["needle_tip"])
            cv2.drawMarker(over, (x, y), (0, 255, 0), cv2.MARKER_CROSS, 12, 1)
        panel = np.concatenate([rgb, np.full((rgb.shape[0], 8, 3), 255, np.uint8), over], axis=1)
        size = (int(panel.shape[1] * scale), int(panel.shape[0] * scale))
        panel = cv2.resize(panel, size, interpolation=cv2.INTER_AREA)
        path = out_dir / f"example_{labels.case_name(case_id)}.png"
        video.write_png(path, panel)
        out_paths.append(path)
    return out_paths


def _example_frame(frames: list[dict], i: int) -> dict:
    """Picks the i-th example's moment: deepest dent, deepest needle, or approach."""
    with_needle = [f for f in frames if f["needle_tip"] is not None] or frames
    if i % 3 == 0:
        return max(with_needle, key=lambda f: f.get("needle_indentation_px", 0.0))
    if i % 3 == 1:
        return min(
            with_needle,
            key=lambda f: math.dist(f["needle_tip"] or [0, 0], f["oocyte"]["center"]),
        )
    return with_needle[0]


GRID_NAME = "synthetic_grid.png"


def _grid_moment(scene: CaseScene, taus: np.ndarray, i: int) -> int:
    """Index of the annotated frame shown for the i-th grid case (a different moment each)."""
    geos = [frame_geometry(scene, float(t)) for t in taus]
    with_tip = [k for k, g in enumerate(geos) if g.tip is not None] or list(range(len(geos)))
    center = np.asarray(scene.oocyte.center)
    if i % 3 == 0:  # deepest funnel
        return max(with_tip, key=lambda k: geos[k].deformation.depth)
    if i % 3 == 1:  # tip deepest towards the centre
        return min(with_tip, key=lambda k: float(np.linalg.norm(geos[k].tip - center)))
    return with_tip[len(with_tip) // 2]


def example_grid(
    seed: int = 0,
    case_ids: Sequence[int] = tuple(range(1, 13)),
    columns: int = 4,
    tile: tuple[int, int] = (168, 224),
    vary_size: bool = False,
) -> np.ndarray:
    """Returns a grid (RGB uint8) of one annotated frame from each of `case_ids`.

    Each case is drawn exactly as `generate_dataset` draws it (Table 1 frame counts, same
    seed), and the tile is that case's PNG, scaled into a `tile` (height, width) box
    (letterboxed when its aspect differs). Moments alternate: deepest funnel, tip nearest
    the centre, mid-injection.
    """
    import cv2

    th, tw = tile
    tiles = []
    for i, case_id in enumerate(case_ids):
        n = table1_frames(case_id)
        size = frame_size(seed, case_id) if vary_size else (480, 640)
        scene = make_scene(seed, case_id, n, size)
        taus = annotated_taus(n, 24)
        k = _grid_moment(scene, taus, i)
        renderer = CaseRenderer(scene, case_rng(seed, case_id, _STREAM_RENDER), n * 24)
        rgb = renderer.render(frame_geometry(scene, float(taus[k])), k * 24)
        f = min(th / rgb.shape[0], tw / rgb.shape[1])
        small = cv2.resize(rgb, (round(rgb.shape[1] * f), round(rgb.shape[0] * f)),
                           interpolation=cv2.INTER_AREA)  # fmt: skip
        box = np.full((th, tw, 3), 255, np.uint8)
        y0, x0 = (th - small.shape[0]) // 2, (tw - small.shape[1]) // 2
        box[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
        tiles.append(np.pad(box, ((2, 2), (2, 2), (0, 0)), constant_values=255))
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate(tiles[r : r + columns], axis=1) for r in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


def save_grid(path: os.PathLike | str, seed: int = 0, **kwargs) -> Path:
    """Writes `example_grid` as a PNG (the README's range of synthetic cases)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    video.write_png(out, example_grid(seed, **kwargs))
    return out
