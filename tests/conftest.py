"""Shared test fixtures.

Session fixtures used across the suite:

* ``synthetic_dir``: a tiny synthetic LabelMe set, 3 cases x 2 frames, no videos
  (``generate_dataset(tmp, num_cases=3, frames_per_case=2, write_video=False, seed=1)``).
* ``tiny_tfrecord_dir``: ``build_tfrecords`` of ``synthetic_dir`` (one shard per case,
  ``manifest.json``).

Function fixture ``make_labelme_case``: writes hand-made LabelMe frames (PNG + JSON)
for tests that need exact, small or deliberately broken input.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable, Sequence

import numpy as np
import PIL.Image
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """3 synthetic cases x 2 frames (LabelMe JSON + PNG, no video), seed 1."""
    from sercseg_tf.synthetic.generator import generate_dataset

    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, num_cases=3, frames_per_case=2, write_video=False, seed=1)
    return root


@pytest.fixture(scope="session")
def tiny_tfrecord_dir(
    synthetic_dir: pathlib.Path, tmp_path_factory: pytest.TempPathFactory
) -> pathlib.Path:
    """TFRecord shards + manifest.json of ``synthetic_dir`` (1 shard per case)."""
    from sercseg_tf.data.tfrecord import build_tfrecords

    out = tmp_path_factory.mktemp("tfrecords")
    build_tfrecords(synthetic_dir, out, progress=False)
    return out


def polygon(label: str, points: Sequence[Sequence[float]]) -> dict:
    """One LabelMe 5.x polygon shape."""
    return {
        "label": label,
        "points": [list(map(float, p)) for p in points],
        "group_id": None,
        "shape_type": "polygon",
        "flags": {},
        "description": "",
    }


def default_shapes(height: int, width: int) -> list[dict]:
    """An oocyte, an sERC inside it and a needle from the right border."""
    return [
        polygon("oocyte", [[4, 4], [width // 2, 4], [width // 2, height - 4], [4, height - 4]]),
        polygon("sERC", [[8, 8], [16, 8], [16, 16]]),
        polygon("Needle", [[width - 1, height // 2 - 3], [width // 2 + 4, height // 2],
                           [width - 1, height // 2 + 3]]),
    ]


@pytest.fixture
def make_labelme_case() -> Callable[..., pathlib.Path]:
    """Returns ``make(root, case_folder, num_frames, size=(24, 40), shapes=None, seed=0)``.

    Writes ``root/case_folder/frame_NNNN.{png,json}`` with random RGB pixels and
    ``shapes`` (list of shape dicts, or a function ``frame_index -> shapes``; default
    `default_shapes`). Returns the case folder.
    """

    def make(
        root: pathlib.Path,
        case_folder: str,
        num_frames: int,
        size: tuple[int, int] = (24, 40),
        shapes: list[dict] | Callable[[int], list[dict]] | None = None,
        seed: int = 0,
    ) -> pathlib.Path:
        folder = pathlib.Path(root) / case_folder
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        height, width = size
        for i in range(num_frames):
            name = f"frame_{i:04d}"
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            PIL.Image.fromarray(pixels).save(folder / f"{name}.png")
            if shapes is None:
                frame_shapes = default_shapes(height, width)
            elif callable(shapes):
                frame_shapes = shapes(i)
            else:
                frame_shapes = shapes
            doc = {
                "version": "5.4.1",
                "flags": {},
                "shapes": frame_shapes,
                "imagePath": f"{name}.png",
                "imageData": None,
                "imageHeight": height,
                "imageWidth": width,
            }
            (folder / f"{name}.json").write_text(json.dumps(doc), encoding="utf-8")
        return folder

    return make
