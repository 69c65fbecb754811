"""Segments new ICSI videos / images with an exported model and computes f1-f4 per frame.

Usage::

  python -m sercseg_tf.predict --saved_model runs/fold_05/export INPUT... --output_dir DIR \
      [--every_seconds 1] [--predict_batch_size 4] [--strict] [--noprogress]

INPUT is a video (.wmv, .avi, .mp4), an image (.png, .jpg, .jpeg, .bmp, .tif, .tiff) or a
folder of images (not recursive, sorted by name). For every input ``NAME`` (its file or
folder name without extension, or ``caseNN`` for a video inside a ``caseNN`` folder;
``_2``, ``_3`` ... appended on clashes) it writes::

  DIR/NAME/labels/frame_NNNN.png   class label map per frame (0 background, 1 oocyte,
                                   2 sERC, 3 needle); image inputs keep the image's stem
  DIR/NAME/overlay.mp4             label colours over the frames (1 / every_seconds fps;
                                   a single image gets overlay.png instead)
  DIR/features.csv                 one row per frame of every input processed
  DIR/failures.txt                 one line per input that failed (only if any)

Videos are sampled one frame every ``--every_seconds`` by timestamp (as the paper took
one frame per second). Frames go through the SavedModel's ``serving_default`` in batches
of ``--predict_batch_size`` (consecutive frames of the same size). ``features.csv`` columns: video
(the INPUT as given: video, image or folder), source (the file the frame came from),
frame, time_s (NaN for images), f1..f4, S_s, L_s, S_s_contour, S_o, oocyte_cx, oocyte_cy, tip_x,
tip_y, needle_entry_side, n_serc_clusters, ..., area_oocyte, area_serc, area_needle
(pixel counts per class), nan_reasons (why a feature is NaN).

A corrupt or unreadable input is reported on stderr as one line ``PATH: reason``, its
partial outputs are removed, and the other inputs are processed. Exit status: 0 when at
least one input was processed (failures, if any, are listed), 1 when none was or the
arguments are wrong; with ``--strict`` any failed input gives 1.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
from absl import app
from PIL import Image, UnidentifiedImageError

from sercseg_tf import atomic_io, cli, formats, labels, visualize
from sercseg_tf import features as features_lib

FLAGS = cli.FLAGS
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VIDEO_EXTENSIONS: tuple[str, ...] = (".wmv", ".avi", ".mp4")
LABELS_SUBDIR = "labels"
OVERLAY_VIDEO = "overlay.mp4"
OVERLAY_IMAGE = "overlay.png"
FEATURES_CSV = "features.csv"
FAILURES_TXT = "failures.txt"
# FeatureResult.as_dict() keys renamed for the CSV (the paper's symbols -> plain names).
RENAMED_FEATURE_KEYS: dict[str, str] = {
    "C_ox": "oocyte_cx", "C_oy": "oocyte_cy", "T_nx": "tip_x", "T_ny": "tip_y",
}


class InputError(Exception):
    """An input cannot be read; str() is ``"<path>: <reason>"``."""


@dataclasses.dataclass
class Frame:
    """One frame to segment: where it came from and its RGB pixels."""

    index: int
    time_s: float
    source: str
    name: str  # file stem of its label PNG
    image: np.ndarray  # uint8 [H, W, 3]


@dataclasses.dataclass
class PredictResult:
    """Outcome of `run_predict`."""

    processed: list[str]
    failures: dict[str, str]  # input path -> one-line reason
    features_csv: pathlib.Path | None
    num_frames: int


def feature_row(label_map: np.ndarray) -> dict:
    """Features (eq. 1-4, `sercseg_tf.features.compute_features`) of one label map as a row.

    Adds ``area_<class>`` pixel counts for oocyte, sERC and needle; renames the centroid
    and tip coordinates to ``oocyte_cx, oocyte_cy, tip_x, tip_y``.
    """
    lab = np.asarray(label_map)
    if lab.ndim == 3:
        lab = lab[..., 0]
    row = {RENAMED_FEATURE_KEYS.get(k, k): v
           for k, v in features_lib.compute_features(lab).as_dict().items()}
    for c in labels.EVAL_CLASSES:
        row[f"area_{labels.CLASS_NAMES[c]}"] = int(np.count_nonzero(lab == c))
    return row


def _read_image(path: pathlib.Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read as an image ({type(e).__name__}: {e})") from e


def _image_frames(paths: Sequence[pathlib.Path],
                  on_skip: Callable[[str, str], None] | None = None) -> Iterator[Frame]:
    """Yields images as frames; with ``on_skip`` unreadable ones are reported and skipped."""
    for i, p in enumerate(paths):
        try:
            image = _read_image(p)
        except InputError as e:
            if on_skip is None:
                raise
            on_skip(str(p), str(e))
            continue
        yield Frame(i, math.nan, str(p), p.stem, image)


def _video_frames(path: pathlib.Path, every_seconds: float) -> Iterator[Frame]:
    """Yields sampled frames of a video; decoding problems become `InputError`."""
    from sercseg_tf.data import video

    try:
        for index, time_s, rgb in video.iter_frames(path, every_seconds):
            yield Frame(index, time_s, str(path), f"frame_{index:04d}", rgb)
    except video.VideoError as e:
        raise InputError(str(e)) from e


def expand_input(path: str | os.PathLike, every_seconds: float,
                 on_skip: Callable[[str, str], None] | None = None,
                 ) -> tuple[str, Iterator[Frame]]:
    """Returns (kind, frame iterator) of one INPUT; kind is "video", "image" or "folder".

    In a folder, an unreadable image is passed to ``on_skip(path, reason)`` and skipped
    (the rest of the folder is processed); without ``on_skip`` it raises.

    Raises:
      InputError: missing path, unsupported extension, or a folder without images.
    """
    p = pathlib.Path(path)
    if p.is_dir():
        images = sorted(q for q in p.iterdir()
                        if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            raise InputError(f"{p}: folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
        return "folder", _image_frames(images, on_skip)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    ext = p.suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        return "video", _video_frames(p, every_seconds)
    if ext in IMAGE_EXTENSIONS:
        return "image", _image_frames([p])
    raise InputError(f"{p}: unsupported file type {ext!r} (videos {VIDEO_EXTENSIONS}, "
                     f"images {IMAGE_EXTENSIONS})")


def batched_predictions(serving_fn: Callable, frames: Iterable[Frame],
                        batch_size: int) -> Iterator[tuple[Frame, np.ndarray]]:
    """Runs ``serving_fn`` on batches of consecutive same-size frames.

    Yields:
      (frame, label map uint8 [H, W]) in input order.
    """
    batch: list[Frame] = []

    def flush():
        images = np.stack([f.image for f in batch])
        pred = np.asarray(serving_fn(images)[formats.SERVING_PRED])
        out = list(zip(batch, pred.astype(np.uint8), strict=True))
        batch.clear()
        return out

    for frame in frames:
        if batch and (len(batch) >= batch_size or frame.image.shape != batch[0].image.shape):
            yield from flush()
        batch.append(frame)
    if batch:
        yield from flush()


def _save_png(path: pathlib.Path, array: np.ndarray) -> None:
    with atomic_io.atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp)


def _unique_name(stem: str, used: set[str]) -> str:
    name, k = stem or "input", 2
    while name in used:
        name, k = f"{stem}_{k}", k + 1
    used.add(name)
    return name


def process_input(serving_fn: Callable, path: str | os.PathLike, out_dir: pathlib.Path,
                  name: str, every_seconds: float = 1.0, batch_size: int = 4,
                  progress: bool = True,
                  on_skip: Callable[[str, str], None] | None = None) -> list[dict]:
    """Segments one input into ``out_dir/name`` and returns its feature rows.

    Everything is written to a temporary folder renamed into place at the end, so a
    failed input leaves nothing behind.

    Raises:
      InputError: the input (or one of its frames) cannot be read.
    """
    from tqdm import tqdm

    from sercseg_tf.data import video

    kind, frames = expand_input(path, every_seconds, on_skip)
    final = out_dir / name
    tmp = out_dir / f".{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / LABELS_SUBDIR).mkdir(parents=True)
    rows: list[dict] = []
    size: list[tuple[int, int]] = []

    def overlays() -> Iterator[np.ndarray]:
        for frame, pred in batched_predictions(serving_fn, bar, batch_size):
            _save_png(tmp / LABELS_SUBDIR / f"{frame.name}.png", pred)
            rows.append({"video": str(path), "source": frame.source, "frame": frame.index,
                         "time_s": frame.time_s, **feature_row(pred)})
            ov = visualize.overlay(frame.image, pred)
            if ov.shape[:2] != size[0]:
                ov = np.asarray(Image.fromarray(ov).resize((size[0][1], size[0][0])))
            yield ov

    try:
        first = next(frames, None)
        if first is None:
            raise InputError(f"{path}: no frames")
        size.append(first.image.shape[:2])
        bar = tqdm(_chain(first, frames), desc=name, unit="frame", disable=not progress,
                   leave=False)
        if kind == "image":
            ov = list(overlays())
            _save_png(tmp / OVERLAY_IMAGE, ov[0])
        else:
            try:
                video.write_video(tmp / OVERLAY_VIDEO, overlays(), fps=1.0 / every_seconds
                                  if kind == "video" else 1.0, size_hw=size[0])
            except video.VideoError as e:
                raise InputError(f"{path}: cannot write the overlay video ({e.reason})") from e
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return rows


def _chain(first: Frame, rest: Iterable[Frame]) -> Iterator[Frame]:
    yield first
    yield from rest


def run_predict(saved_model: str | os.PathLike, inputs: Sequence[str | os.PathLike],
                output_dir: str | os.PathLike, every_seconds: float = 1.0,
                batch_size: int = 4, progress: bool = True,
                serving_fn: Callable | None = None) -> PredictResult:
    """Segments every input with the exported model and writes ``features.csv``.

    Args:
      saved_model: directory written by `sercseg_tf.model.inference.export_saved_model`.
      inputs: videos, images or folders of images.
      output_dir: where outputs go (created).
      every_seconds: video sampling period.
      batch_size: frames per model call.
      progress: show tqdm bars.
      serving_fn: an already loaded serving function (skips loading ``saved_model``).

    Returns:
      A `PredictResult`; failed inputs are in ``failures`` (and on stderr).
    """
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if serving_fn is None:
        from sercseg_tf.model import inference

        serving_fn = inference.load_serving_fn(saved_model)
    used: set[str] = set()
    rows: list[dict] = []
    processed: list[str] = []
    failures: dict[str, str] = {}

    def skip(item: str, reason: str) -> None:
        failures[item] = reason
        print(reason, file=sys.stderr, flush=True)

    from sercseg_tf.data import video

    for path in inputs:
        p = pathlib.Path(path)
        if p.is_dir():
            stem = p.name
        elif p.suffix.lower() in VIDEO_EXTENSIONS:
            stem = video.video_case_name(p)  # .../case08/video.wmv -> case08
        else:
            stem = p.stem
        name = _unique_name(stem, used)
        try:
            rows += process_input(serving_fn, path, out, name, every_seconds, batch_size,
                                  progress, on_skip=skip)
            processed.append(str(path))
        except InputError as e:
            failures[str(path)] = str(e)
            print(f"{e}", file=sys.stderr, flush=True)
    csv_path = None
    if rows:
        csv_path = out / FEATURES_CSV
        atomic_io.atomic_write_text(
            csv_path, pd.DataFrame(rows).to_csv(index=False, float_format="%.6g"))
    fail_path = out / FAILURES_TXT
    if failures:
        fail_path.write_text("".join(f"{r}\n" for r in failures.values()), encoding="utf-8")
    else:
        fail_path.unlink(missing_ok=True)
    return PredictResult(processed, failures, csv_path, len(rows))


def define_flags() -> None:
    """Defines predict's flags (idempotent; shared names via `cli.define_flag`)."""
    cli.define_flag("string", "saved_model", None, "Exported SavedModel directory (required).")
    cli.define_flag("string", "output_dir", None, "Output folder (required).")
    cli.define_flag("float", "every_seconds", 1.0,
                    "Video sampling period in seconds (1, as the paper).")
    cli.define_flag("integer", "predict_batch_size", 4,
                    "Frames per call of the exported model.")
    cli.define_flag("boolean", "strict", False,
                    "Exit 1 if any input failed (default: only if all failed).")
    cli.define_flag("boolean", "progress", True, "Show a progress bar (--noprogress: off).")


def main(argv: Sequence[str]) -> int:
    """Absl entry point: ``argv[1:]`` are the inputs; returns the exit status."""
    inputs = list(argv[1:])
    if not inputs or not FLAGS.saved_model or not FLAGS.output_dir:
        print("predict: give INPUT..., --saved_model and --output_dir (see --helpfull)",
              file=sys.stderr)
        return 1
    if FLAGS.every_seconds <= 0 or FLAGS.predict_batch_size < 1:
        print("predict: --every_seconds must be > 0 and --predict_batch_size >= 1",
              file=sys.stderr)
        return 1
    from sercseg_tf.model import inference

    try:
        serving_fn = inference.load_serving_fn(FLAGS.saved_model)
    except Exception as e:  # noqa: BLE001 - any load failure is one line and exit 1
        print(f"{FLAGS.saved_model}: cannot load the model ({type(e).__name__}: {e})",
              file=sys.stderr)
        return 1
    res = run_predict(FLAGS.saved_model, inputs, FLAGS.output_dir, FLAGS.every_seconds,
                      FLAGS.predict_batch_size, progress=FLAGS.progress, serving_fn=serving_fn)
    print(f"processed {len(res.processed)} of {len(inputs)} input(s), {res.num_frames} "
          f"frame(s); features: {res.features_csv}")
    if res.failures:
        listing = pathlib.Path(FLAGS.output_dir) / FAILURES_TXT
        print(f"{len(res.failures)} failed (listed in {listing}):", file=sys.stderr)
        for reason in res.failures.values():
            print(f"  {reason}", file=sys.stderr)
    if not res.processed or (FLAGS.strict and res.failures):
        return 1
    return 0


def run(argv: Sequence[str]) -> int:
    """Runs the command in-process on ``argv`` (flags and inputs); returns the exit status."""
    define_flags()
    return cli.run(main, argv, prog="predict")


define_flags()

if __name__ == "__main__":
    app.run(main)
