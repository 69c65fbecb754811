"""Per-case TFRecord shards with deeplab2's feature keys, and their manifest.

One ``tf.train.Example`` per annotated frame, with the keys of deeplab2's
``data/data_utils.py`` (all taken from `sercseg_tf.labels`):

=====================================  =============================================
``image/encoded``                      RGB frame, PNG (lossless, so decoding is exact)
``image/filename``                     image path relative to the LabelMe folder,
                                       e.g. ``case05/frame_0003.png``
``image/format``                       ``"png"``
``image/height``, ``image/width``,     int64
``image/channels``                     int64, 3
``image/segmentation/class/encoded``   class-id map, single-channel 8-bit PNG
``image/segmentation/class/format``    ``"png"``
``video/sequence_id``                  case name as bytes, ``b"case05"``
``video/frame_id``                     frame index as decimal bytes, ``b"3"`` for
                                       ``frame_0003`` (deeplab2 stores both ids as
                                       bytes; `decode_example` turns them into ints)
=====================================  =============================================

Shards are per case, ``caseNN-SSSSS-of-NNNNN.tfrecord``, so a leave-one-case-out fold
is a choice of file patterns (`case_file_pattern`). ``manifest.json`` beside them
records the classes, frames per case (the paper's Table 1), pixels per class and the
``data_source``: ``"synthetic"`` when every case folder holds the synthetic generator's
``ground_truth.json``, else ``"user"`` (the report says "synthetic data" or "your data").
LabelMe files still marked as predictions (``predict --labelme``) are refused unless
``allow_predicted``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import json
import os
import pathlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import cv2
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from sercseg_tf import atomic_io, formats, labels, model_card
from sercseg_tf.data import cases as cases_lib
from sercseg_tf.data import labelme
from sercseg_tf.fault_points import fault_point
from sercseg_tf.synthetic.generator import GROUND_TRUTH_NAME

MANIFEST_NAME = "manifest.json"
SHARD_SUFFIX = ".tfrecord"
IMAGE_FORMAT = "png"
SHARD_RE = re.compile(r"^case\d+-\d{5}-of-\d{5}\.tfrecord$")

_T = TypeVar("_T")
_R = TypeVar("_R")


class TFRecordBuildError(ValueError):
    """Invalid input for `build_tfrecords`; ``problems`` holds one line per problem.

    ``skippable`` is True when ``skip_invalid`` would write the valid frames (bad
    annotations), False when it cannot help (case folders, nothing valid at all).
    """

    def __init__(self, problems: list[str], skippable: bool = True):
        self.problems = list(problems)
        self.skippable = skippable
        super().__init__(
            f"{len(self.problems)} problem(s) in the input, nothing written:\n"
            + "\n".join(self.problems)
        )


# --------------------------------------------------------------------------- codec


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def encode_png(array: np.ndarray) -> bytes:
    """PNG-encodes an 8-bit RGB ``[H, W, 3]`` or single-channel ``[H, W]`` array."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"expected uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    elif array.ndim != 2:
        raise ValueError(f"expected [H, W, 3] or [H, W], got shape {array.shape}")
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def encode_example(
    image_rgb: np.ndarray,
    label: np.ndarray,
    filename: str,
    case_id: int,
    frame_id: int,
) -> bytes:
    """Serialises one frame as a deeplab2-style ``tf.train.Example``.

    Args:
      image_rgb: uint8 ``[H, W, 3]`` RGB frame.
      label: uint8 ``[H, W]`` (or ``[H, W, 1]``) class-id map, 255 = ignore.
      filename: stored under ``image/filename``.
      case_id: stored as ``video/sequence_id`` = ``case_name(case_id)`` bytes.
      frame_id: stored as ``video/frame_id`` = decimal bytes.

    Returns:
      The serialised Example.

    Raises:
      ValueError: wrong dtype, rank or mismatched image/label sizes.
    """
    image_rgb = np.asarray(image_rgb)
    label = np.asarray(label)
    if label.ndim == 3 and label.shape[2] == 1:
        label = label[..., 0]
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"{filename}: image must be [H, W, 3], got {image_rgb.shape}")
    if label.shape != image_rgb.shape[:2]:
        raise ValueError(
            f"{filename}: label shape {label.shape} != image shape {image_rgb.shape[:2]}"
        )
    height, width = label.shape
    feature = {
        formats.KEY_ENCODED_IMAGE: _bytes_feature(encode_png(image_rgb)),
        formats.KEY_IMAGE_FILENAME: _bytes_feature(filename.encode("utf-8")),
        formats.KEY_IMAGE_FORMAT: _bytes_feature(IMAGE_FORMAT.encode()),
        formats.KEY_IMAGE_HEIGHT: _int_feature(height),
        formats.KEY_IMAGE_WIDTH: _int_feature(width),
        formats.KEY_IMAGE_CHANNELS: _int_feature(3),
        formats.KEY_ENCODED_LABEL: _bytes_feature(encode_png(label)),
        formats.KEY_LABEL_FORMAT: _bytes_feature(IMAGE_FORMAT.encode()),
        formats.KEY_SEQUENCE_ID: _bytes_feature(labels.case_name(case_id).encode()),
        formats.KEY_FRAME_ID: _bytes_feature(str(int(frame_id)).encode()),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString()


FEATURE_SPEC: dict[str, tf.io.FixedLenFeature] = {
    formats.KEY_ENCODED_IMAGE: tf.io.FixedLenFeature([], tf.string),
    formats.KEY_IMAGE_FILENAME: tf.io.FixedLenFeature([], tf.string),
    formats.KEY_IMAGE_FORMAT: tf.io.FixedLenFeature([], tf.string, default_value="png"),
    formats.KEY_IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    formats.KEY_IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64),
    formats.KEY_IMAGE_CHANNELS: tf.io.FixedLenFeature([], tf.int64, default_value=3),
    formats.KEY_ENCODED_LABEL: tf.io.FixedLenFeature([], tf.string),
    formats.KEY_LABEL_FORMAT: tf.io.FixedLenFeature([], tf.string, default_value="png"),
    formats.KEY_SEQUENCE_ID: tf.io.FixedLenFeature([], tf.string),
    formats.KEY_FRAME_ID: tf.io.FixedLenFeature([], tf.string),
}


def _trailing_int(text: tf.Tensor) -> tf.Tensor:
    """``b"case05"`` -> 5, ``b"3"`` -> 3 (digits kept, parsed as int32)."""
    digits = tf.strings.regex_replace(text, r"[^0-9]", "")
    return tf.strings.to_number(digits, out_type=tf.int32)


def decode_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses one serialised Example written by `encode_example` (TF ops, graph-safe).

    Args:
      serialized: scalar string tensor.

    Returns:
      ``{image: uint8 [H, W, 3], label: uint8 [H, W, 1], filename: string,
      case_id: int32, frame_id: int32}`` (keys from `sercseg_tf.formats`).
    """
    parsed = tf.io.parse_single_example(serialized, FEATURE_SPEC)
    image = tf.io.decode_png(parsed[formats.KEY_ENCODED_IMAGE], channels=3)
    label = tf.io.decode_png(parsed[formats.KEY_ENCODED_LABEL], channels=1)
    height = tf.cast(parsed[formats.KEY_IMAGE_HEIGHT], tf.int32)
    width = tf.cast(parsed[formats.KEY_IMAGE_WIDTH], tf.int32)
    image = tf.reshape(image, tf.stack([height, width, 3]))
    label = tf.reshape(label, tf.stack([height, width, 1]))
    return {
        formats.SAMPLE_IMAGE: image,
        formats.SAMPLE_LABEL: label,
        formats.SAMPLE_FILENAME: parsed[formats.KEY_IMAGE_FILENAME],
        formats.SAMPLE_CASE_ID: _trailing_int(parsed[formats.KEY_SEQUENCE_ID]),
        formats.SAMPLE_FRAME_ID: _trailing_int(parsed[formats.KEY_FRAME_ID]),
    }


# ----------------------------------------------------------------- names, manifest


def shard_filename(case_id: int, shard: int, num_shards: int) -> str:
    """``caseNN-SSSSS-of-NNNNN.tfrecord`` (shard index from 0)."""
    return f"{labels.case_name(case_id)}-{shard:05d}-of-{num_shards:05d}{SHARD_SUFFIX}"


def case_file_pattern(tfrecord_dir: str | os.PathLike, case_id: int) -> str:
    """Glob pattern of all shards of one case, e.g. ``DIR/case05-*-of-*.tfrecord``."""
    return os.path.join(os.fspath(tfrecord_dir), f"{labels.case_name(case_id)}-*-of-*.tfrecord")


def read_manifest(tfrecord_dir: str | os.PathLike) -> dict[str, Any]:
    """Reads ``tfrecord_dir/manifest.json``.

    Raises:
      FileNotFoundError: no manifest (the folder was never built, or its last build
        failed); the message says how to build it.
    """
    path = pathlib.Path(tfrecord_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no TFRecord manifest; build it with "
            f"`python tools/build_tfrecords.py --output_dir {tfrecord_dir}`"
        )
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a valid manifest ({e}); rebuild the TFRecords") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("cases", {}), dict):
        raise ValueError(f"{path}: not a valid manifest (no 'cases' mapping); "
                         "rebuild the TFRecords")
    return manifest


def case_ids(tfrecord_dir: str | os.PathLike) -> list[int]:
    """Sorted case ids of the manifest (one leave-one-case-out fold per case).

    Raises:
      FileNotFoundError: no manifest.
      ValueError: a manifest entry has no integer ``case_id`` (names the file).
    """
    manifest = read_manifest(tfrecord_dir)
    ids = []
    for name, entry in manifest.get("cases", {}).items():
        try:
            ids.append(int(entry["case_id"]))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{pathlib.Path(tfrecord_dir) / MANIFEST_NAME}: case {name!r} "
                             "has no integer case_id; rebuild the TFRecords") from None
    return sorted(ids)

def _count_records(path: pathlib.Path) -> int:
    """Records in one TFRecord file; a truncated or corrupt file is a one-line ValueError."""
    try:
        return int(tf.data.TFRecordDataset(str(path)).reduce(
            tf.constant(0, tf.int64), lambda n, _: n + 1))
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        first = (str(e.message).strip().splitlines() or [""])[0]
        raise ValueError(f"{path}: truncated or corrupt TFRecord file ({first}); "
                         "rebuild the TFRecords") from None


def verify_shards(tfrecord_dir: str | os.PathLike, case_ids_: Iterable[int]) -> None:
    """Checks that every shard of the cases is readable and holds the manifest's frames.

    Reads each shard once (records only, nothing decoded), so a shard cut short (a
    copy that stopped, a full disk) is an error naming it before any work starts, not
    a smaller result or a ``DataLossError`` halfway through.

    Raises:
      FileNotFoundError: no manifest, or a shard the manifest lists is missing.
      ValueError: a case is not in the manifest, a shard is truncated or corrupt, or
        the shards of a case hold another number of frames than the manifest says.
    """
    tfrecord_dir = pathlib.Path(tfrecord_dir)
    cases = read_manifest(tfrecord_dir)["cases"]
    for case_id in case_ids_:
        name = labels.case_name(case_id)
        entry = cases.get(name)
        if not isinstance(entry, dict):
            raise ValueError(f"{tfrecord_dir / MANIFEST_NAME}: no entry for {name}")
        shards = [tfrecord_dir / s for s in entry.get("shards", [])] or [
            pathlib.Path(p) for p in sorted(tf.io.gfile.glob(case_file_pattern(tfrecord_dir,
                                                                            case_id)))]
        missing = [str(s) for s in shards if not s.is_file()]
        if missing or not shards:
            raise FileNotFoundError(f"{missing[0] if missing else tfrecord_dir}: shard of "
                                    f"{name} listed in the manifest is missing")
        counts = {s: _count_records(s) for s in shards}
        if sum(counts.values()) != int(entry.get("frames", -1)):
            found = ", ".join(f"{s.name}: {n}" for s, n in counts.items())
            raise ValueError(f"{shards[0] if len(shards) == 1 else tfrecord_dir}: {name} has "
                             f"{sum(counts.values())} frame(s) ({found}) but the manifest "
                             f"says {entry.get('frames')}; the shard is incomplete, rebuild "
                             "the TFRecords")


def _class_names(label_map: Mapping[str, int] | None) -> dict[int, str]:
    """Class id -> name for the manifest: 0 is "background", else an id's first name."""
    if label_map is None:
        return dict(enumerate(labels.CLASS_NAMES))
    names = {labels.BACKGROUND: labels.CLASS_NAMES[labels.BACKGROUND]}
    for name, class_id in label_map.items():
        if int(class_id) != labels.IGNORE_LABEL:
            names.setdefault(int(class_id), labels.normalize_label_name(name))
    return dict(sorted(names.items()))


def _pixels_per_class(counts: np.ndarray, names: Mapping[int, str]) -> dict[str, int]:
    out = {names[i]: int(counts[i]) for i in names}
    out["ignore"] = int(counts[labels.IGNORE_LABEL])
    for i in np.flatnonzero(counts):
        if int(i) not in names and int(i) != labels.IGNORE_LABEL:
            out[str(int(i))] = int(counts[i])
    return out


# Temporary folders of builds before the output folder was replaced as a whole.
_LEGACY_TEMP_PREFIX = ".build_tfrecords-"


def _check_output_dir(output_dir: pathlib.Path) -> None:
    """Refuses an output folder that holds anything but an earlier build.

    A build replaces the whole folder, so other files there would be lost.

    Raises:
      ValueError: naming the folder and up to three foreign entries.
    """
    if not output_dir.is_dir():
        if output_dir.exists():
            raise ValueError(f"{output_dir}: --output_dir exists and is not a folder")
        return
    foreign = sorted(p.name for p in output_dir.iterdir()
                     if not (p.name == MANIFEST_NAME or SHARD_RE.match(p.name)
                             or p.name.startswith(_LEGACY_TEMP_PREFIX)))
    if foreign:
        raise ValueError(f"{output_dir}: holds files that are not a TFRecord build "
                         f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); "
                         "a build replaces the whole folder, so choose an empty or new "
                         "--output_dir")


def _data_source(found: Iterable[cases_lib.Case]) -> str:
    """"synthetic" when every case folder has the generator's ground truth, else "user"."""
    synthetic = all((case.folder / GROUND_TRUTH_NAME).is_file() for case in found)
    return model_card.SYNTHETIC if synthetic else model_card.USER_DATA


def _write_json_atomic(path: pathlib.Path, data: Any) -> None:
    atomic_io.atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def _ordered_map(
    fn: Callable[[_T], _R], items: Iterable[_T], workers: int, window: int = 16
) -> Iterator[_R]:
    """Like ``map(fn, items)`` on a thread pool, in order, with at most ``window`` pending."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending: collections.deque[concurrent.futures.Future[_R]] = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


# --------------------------------------------------------------------------- build


def build_tfrecords(
    labelme_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    label_map: Mapping[str, int] | str | os.PathLike | None = None,
    skip_invalid: bool = False,
    shards_per_case: int = 1,
    *,
    progress: bool = True,
    num_workers: int | None = None,
    allow_predicted: bool = False,
) -> dict[str, Any]:
    """Converts a folder of LabelMe cases into per-case TFRecord shards + manifest.

    Steps: (1) find the cases (`sercseg_tf.data.cases`) and validate every annotation
    (`sercseg_tf.data.labelme.validate_annotation`), (2) rasterise and write each
    case's frames, in frame order, into ``shards_per_case`` contiguous shards, and
    ``manifest.json`` last, all in a hidden sibling of ``output_dir``, (3) swap that
    folder in for ``output_dir`` (`atomic_io.atomic_dir`). A failure or a kill at any
    point leaves the previous build in ``output_dir`` complete and untouched (or, after
    the swap, the new one); the next build removes what a killed one left behind.

    Args:
      labelme_dir: root folder; every sub-folder holding LabelMe JSON is a case.
      output_dir: where shards and ``manifest.json`` go (created if needed).
      label_map: None for `labels.DEFAULT_LABEL_MAP` (ICSI paint order), a
        ``{name: id}`` mapping, or a label-map file for `labelme.read_label_map`.
      skip_invalid: write the valid frames and list the invalid ones in the
        manifest's ``skipped`` instead of failing.
      shards_per_case: number of shards per case (capped at its frame count).
      progress: show tqdm progress bars (only on a terminal).
      num_workers: threads that check, rasterise and encode frames (default: CPU count).
      allow_predicted: accept LabelMe files still marked ``predicted`` (machine-made,
        unreviewed); by default each is a problem line.

    Returns:
      The manifest dict (also written to ``output_dir/manifest.json``).

    Raises:
      TFRecordBuildError: invalid input (one line per problem: file, shape index and
        reason) and ``skip_invalid`` is False, a case folder without a case number,
        or nothing valid to write.
      ValueError: ``output_dir`` holds files that are not a TFRecord build.
    """
    if shards_per_case < 1:
        raise ValueError(f"shards_per_case must be >= 1, got {shards_per_case}")
    labelme_dir = pathlib.Path(labelme_dir)
    output_dir = pathlib.Path(output_dir)
    _check_output_dir(output_dir)
    if label_map is not None and not isinstance(label_map, Mapping):
        label_map = labelme.read_label_map(label_map)
    names = _class_names(label_map)

    found, problems = cases_lib.discover_cases(labelme_dir)
    if problems:
        raise TFRecordBuildError(problems, skippable=False)

    # 1. Validate everything before writing anything.
    workers = num_workers or os.cpu_count() or 1
    quiet = None if progress else True  # tqdm: None = on only when writing to a terminal
    valid, skipped = _validate_frames(found, label_map, allow_predicted, workers, quiet)
    problems = [line for entry in skipped for line in entry["problems"]]
    if problems and not skip_invalid:
        raise TFRecordBuildError(problems)
    if not valid:
        raise TFRecordBuildError(problems + [f"{labelme_dir}: no valid annotated frame to write"],
                                 skippable=False)

    # 2. Write shards and manifest into a hidden sibling folder, swap it in at the end.
    items = [(cid, fr) for cid in sorted(valid) for fr in valid[cid]]
    results = _ordered_map(functools.partial(_load_example, label_map=label_map,
                                             labelme_dir=labelme_dir), items, workers)
    try:
        with atomic_io.atomic_dir(output_dir) as tmp_dir:
            with tqdm(total=len(items), desc="write", unit="frame", disable=quiet) as bar:
                manifest_cases, sizes = _write_shards(tmp_dir, found, valid, results, names,
                                                      shards_per_case, labelme_dir, bar)
            manifest = {
                "classes": {name: class_id for class_id, name in names.items()},
                "ignore_label": labels.IGNORE_LABEL,
                "cases": manifest_cases,
                "image_size": list(sizes.pop()) if len(sizes) == 1 else None,
                "total_frames": sum(c["frames"] for c in manifest_cases.values()),
                "source_dir": str(labelme_dir),
                "data_source": _data_source(found),
                "label_map": dict(label_map) if label_map is not None else None,
                "skipped": skipped,
            }
            _write_json_atomic(tmp_dir / MANIFEST_NAME, manifest)
            fault_point("build_tfrecords.manifest_written")
    finally:
        results.close()  # stops the worker threads if writing failed
    return manifest


def _load_example(item: tuple[int, cases_lib.Frame], label_map: Mapping[str, int] | None,
                  labelme_dir: pathlib.Path) -> tuple[bytes, np.ndarray, tuple[int, int]]:
    """One frame as a serialised Example, its per-label pixel counts and its size.

    The stored file name is the image's path relative to ``labelme_dir`` (its bare name
    if it lies elsewhere).
    """
    case_id, frame = item
    ann = labelme.load_annotation(frame.json_path, label_map)
    source = pathlib.Path(ann.image_path or frame.json_path)
    try:
        filename = source.resolve().relative_to(labelme_dir.resolve()).as_posix()
    except ValueError:
        filename = source.name
    label = np.asarray(ann.label, dtype=np.uint8)
    serialized = encode_example(ann.image, label, filename, case_id, frame.frame_id)
    return serialized, np.bincount(label.ravel(), minlength=256), label.shape


def _validate_frames(found: list[cases_lib.Case], label_map: Mapping[str, int] | None,
                     allow_predicted: bool, workers: int, quiet: bool | None
                     ) -> tuple[dict[int, list[cases_lib.Frame]], list[dict[str, Any]]]:
    """Checks every annotation (`labelme.validate_annotation`) on ``workers`` threads.

    Decoding each image to check it is most of the time, and Pillow decodes without
    the GIL, so the threads share the work.

    Returns:
      ``(valid, skipped)``: the valid frames per case id in frame order, and one
      ``{"file", "problems"}`` entry per invalid frame.
    """
    all_frames = [(case, frame) for case in found for frame in case.frames]
    checks = _ordered_map(
        lambda item: labelme.validate_annotation(item[1].json_path, label_map,
                                                 allow_predicted=allow_predicted),
        all_frames, workers)
    skipped: list[dict[str, Any]] = []
    valid: dict[int, list[cases_lib.Frame]] = {}
    with tqdm(total=len(all_frames), desc="validate", unit="frame", disable=quiet) as bar:
        for (case, frame), errors in zip(all_frames, checks, strict=True):
            if errors:
                skipped.append({"file": str(frame.json_path), "problems": list(errors)})
            else:
                valid.setdefault(case.case_id, []).append(frame)
            bar.update()
            bar.set_postfix(invalid=len(skipped))
    return valid, skipped


def _write_shards(out_dir: pathlib.Path, found: list[cases_lib.Case],
                  valid: dict[int, list[cases_lib.Frame]], results: Iterator[tuple],
                  names: Mapping[int, str], shards_per_case: int, labelme_dir: pathlib.Path,
                  bar: tqdm) -> tuple[dict[str, Any], set[tuple[int, int]]]:
    """Writes every case's shards into ``out_dir`` from ``results`` (frames in order).

    Returns:
      ``(manifest "cases" entries, set of frame sizes)``.
    """
    manifest_cases: dict[str, Any] = {}
    sizes: set[tuple[int, int]] = set()
    for case in found:
        frames = valid.get(case.case_id, [])
        if not frames:
            continue
        num_shards = min(shards_per_case, len(frames))
        counts = np.zeros(256, np.int64)
        case_sizes: set[tuple[int, int]] = set()
        shard_names = []
        for shard, chunk in enumerate(np.array_split(np.arange(len(frames)), num_shards)):
            name = shard_filename(case.case_id, shard, num_shards)
            shard_names.append(name)
            with tf.io.TFRecordWriter(str(out_dir / name)) as writer:
                for _ in chunk:
                    serialized, frame_counts, shape = next(results)
                    writer.write(serialized)
                    counts += frame_counts
                    case_sizes.add(shape)
                    bar.update()
            fault_point("build_tfrecords.shard_written")
        sizes |= case_sizes
        manifest_cases[labels.case_name(case.case_id)] = {
            "case_id": case.case_id,
            "folder": case.folder.relative_to(labelme_dir).as_posix() or ".",
            "frames": len(frames),
            "frame_ids": [f.frame_id for f in frames],
            "shards": shard_names,
            "image_size": list(case_sizes.pop()) if len(case_sizes) == 1 else None,
            "pixels_per_class": _pixels_per_class(counts, names),
        }
    return manifest_cases, sizes


def format_table1(manifest: Mapping[str, Any]) -> str:
    """The paper's Table 1 (images per case, and the total) as plain text."""
    rows = [("Case", "Frames")]
    for name, entry in sorted(manifest["cases"].items(), key=lambda kv: kv[1]["case_id"]):
        rows.append((name, str(entry["frames"])))
    rows.append(("Total", str(sum(e["frames"] for e in manifest["cases"].values()))))
    width = max(len(r[0]) for r in rows)
    lines = ["Table 1. Number of images for each case"]
    lines += [f"{a:<{width}}  {b:>6}" for a, b in rows]
    return "\n".join(lines)
