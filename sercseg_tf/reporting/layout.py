"""File layout shared by ``tools/run_loocv.py`` (writer) and ``sercseg_tf.report`` (reader).

A leave-one-case-out run lives in ``MODEL_DIR``::

  MODEL_DIR/fold_05/{checkpoints,train,eval,export}     (TRAIN's layout)
  MODEL_DIR/fold_05/predict/frames.csv                  one row per held-out frame
  MODEL_DIR/fold_05/predict/{image,manual,auto}/NNNN.*  input JPEG, label PNGs
  MODEL_DIR/loocv_status.json                           per-fold status of run_loocv
  MODEL_DIR/report/                                     tables, figures, index.html

``frames.csv`` columns: ``case, frame, filename, image_file, manual_file, auto_file``,
``iou_oocyte, iou_serc, iou_needle`` (NaN where the class is absent from both masks),
then for ``src`` in (manual, auto): ``{src}_f1 .. {src}_f4, {src}_S_s, {src}_L_s,
{src}_S_o, {src}_oocyte_cx, {src}_oocyte_cy, {src}_tip_x, {src}_tip_y,
{src}_entry_side, {src}_n_serc_clusters, {src}_nan_reasons``, and ``tip_error_px``.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterable

from sercseg_tf import atomic_io, labels

PREDICT_SUBDIR = "predict"
FRAMES_CSV = "frames.csv"
IMAGE_SUBDIR = "image"
MANUAL_SUBDIR = "manual"
AUTO_SUBDIR = "auto"
EXPORT_SUBDIR = "export"
STATUS_JSON = "loocv_status.json"
REPORT_SUBDIR = "report"
SOURCES: tuple[str, ...] = ("manual", "auto")
FEATURES: tuple[str, ...] = ("f1", "f2", "f3", "f4")
# IoU columns in frames.csv, one per evaluated class (labels.EVAL_CLASSES).
IOU_COLUMNS: tuple[str, ...] = tuple(f"iou_{labels.CLASS_NAMES[c]}" for c in labels.EVAL_CLASSES)


def fold_dir(model_dir: str | os.PathLike, fold: int) -> pathlib.Path:
    """Returns ``MODEL_DIR/fold_NN``."""
    return pathlib.Path(model_dir) / f"fold_{int(fold):02d}"


def predict_dir(model_dir: str | os.PathLike, fold: int) -> pathlib.Path:
    """Returns ``MODEL_DIR/fold_NN/predict``."""
    return fold_dir(model_dir, fold) / PREDICT_SUBDIR


def frames_csv(model_dir: str | os.PathLike, fold: int) -> pathlib.Path:
    """Returns the per-frame predictions table of a fold."""
    return predict_dir(model_dir, fold) / FRAMES_CSV


def list_folds(model_dir: str | os.PathLike) -> list[int]:
    """Returns the fold numbers that have a ``fold_NN`` directory, sorted."""
    root = pathlib.Path(model_dir)
    folds = []
    for p in root.glob("fold_*"):
        suffix = p.name[len("fold_"):]
        if p.is_dir() and suffix.isdigit():
            folds.append(int(suffix))
    return sorted(folds)


def read_status(model_dir: str | os.PathLike) -> dict[int, dict]:
    """Reads ``loocv_status.json`` as ``{fold: {"status": ..., ...}}`` ({} if absent)."""
    path = pathlib.Path(model_dir) / STATUS_JSON
    if not path.exists():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {int(k): v for k, v in raw.get("folds", {}).items()}


def write_status(model_dir: str | os.PathLike, status: dict[int, dict]) -> pathlib.Path:
    """Writes ``loocv_status.json`` atomically (folds sorted)."""
    payload = {"folds": {f"{k:02d}": status[k] for k in sorted(status)}}
    return atomic_io.atomic_write_text(pathlib.Path(model_dir) / STATUS_JSON,
                             json.dumps(payload, indent=2, sort_keys=True) + "\n")


def parse_folds(spec: str | Iterable[int] | None) -> list[int] | None:
    """Parses a fold selection such as ``"5"``, ``"1-3"``, ``"1,5,7"`` or ``"1-3,8"``.

    Args:
      spec: the selection string (or an iterable of ints, or None / "" / "all" for all).

    Returns:
      Sorted unique fold numbers, or None meaning every fold.

    Raises:
      ValueError: naming the bad part, for anything that is not a positive int or range.
    """
    if spec is None:
        return None
    if not isinstance(spec, str):
        return sorted({int(x) for x in spec})
    text = spec.strip().lower()
    if text in ("", "all"):
        return None
    folds: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"--folds {spec!r}: empty item")
        try:
            if "-" in part:
                lo_s, hi_s = part.split("-", 1)
                lo, hi = int(lo_s), int(hi_s)
                if lo > hi:
                    raise ValueError
                folds.update(range(lo, hi + 1))
            else:
                folds.add(int(part))
        except ValueError:
            raise ValueError(
                f"--folds {spec!r}: {part!r} is not a fold number or range like 1-3"
            ) from None
    if min(folds) < 1:
        raise ValueError(f"--folds {spec!r}: fold numbers start at 1")
    return sorted(folds)
