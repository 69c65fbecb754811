"""The run layout: every file and folder name under ``MODEL_DIR``, in one place.

A leave-one-case-out run lives in ``MODEL_DIR``::

  MODEL_DIR/fold_05/config.yaml                         the run's config (train writes it)
  MODEL_DIR/fold_05/training_data.json                  what it trains on (`model_card`)
  MODEL_DIR/fold_05/.lock                               pid + host of the writer (run_lock)
  MODEL_DIR/fold_05/checkpoints/ckpt-N.*                tf.train.CheckpointManager
  MODEL_DIR/fold_05/train/{events,history.csv}          TensorBoard + step, loss
  MODEL_DIR/fold_05/eval/{events,history.csv}           periodic held-out evaluation
  MODEL_DIR/fold_05/eval/{iou.csv,iou_mean.csv}         `sercseg_tf.evaluate`
  MODEL_DIR/fold_05/export/                             SavedModel (`sercseg_tf.export`)
  MODEL_DIR/fold_05/export/assets/model_card.json       its model card (`model_card`)
  MODEL_DIR/fold_00/                                    fold 0: every case, none held out
  MODEL_DIR/fold_05/predict/frames.csv                  one row per held-out frame
  MODEL_DIR/fold_05/predict/{image,manual,auto}/NNNN.*  input JPEG, label PNGs
  MODEL_DIR/loocv_status.json                           per-fold status of the LOOCV run
  MODEL_DIR/report/                                     tables, figures, index.html

``frames.csv`` columns: ``case, frame, filename, image_file, manual_file, auto_file``,
``iou_oocyte, iou_serc, iou_needle`` (NaN where the class is absent from both masks),
then for ``src`` in (manual, auto): ``{src}_f1 .. {src}_f4, {src}_S_s, {src}_L_s,
{src}_S_o, {src}_oocyte_cx, {src}_oocyte_cy, {src}_tip_x, {src}_tip_y,
{src}_entry_side, {src}_n_serc_clusters, {src}_nan_reasons``, and ``tip_error_px``.

No TensorFlow here; the only file this module reads or writes is ``loocv_status.json``.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterable

from sercseg_tf import atomic_io, labels

CONFIG_YAML = "config.yaml"
TRAINING_DATA_JSON = "training_data.json"
LOCK_FILE = ".lock"
CHECKPOINTS_SUBDIR = "checkpoints"
TRAIN_SUBDIR = "train"
EVAL_SUBDIR = "eval"
EXPORT_SUBDIR = "export"
PREDICT_SUBDIR = "predict"
HISTORY_CSV = "history.csv"
IOU_CSV = "iou.csv"
IOU_MEAN_CSV = "iou_mean.csv"
FRAMES_CSV = "frames.csv"
IMAGE_SUBDIR = "image"
MANUAL_SUBDIR = "manual"
AUTO_SUBDIR = "auto"
STATUS_JSON = "loocv_status.json"
REPORT_SUBDIR = "report"
SAVED_MODEL_PB = "saved_model.pb"
# The two sources of a label map in frames.csv: the annotator's and the model's.
SOURCES: tuple[str, ...] = ("manual", "auto")
# IoU columns in frames.csv, one per evaluated class (labels.EVAL_CLASSES).
IOU_COLUMNS: tuple[str, ...] = tuple(f"iou_{labels.CLASS_NAMES[c]}" for c in labels.EVAL_CLASSES)
# The frames.csv columns naming a frame, and the manual-to-automatic needle-tip distance.
CASE_COLUMN = "case"
FRAME_COLUMN = "frame"
TIP_ERROR_COLUMN = "tip_error_px"

_FOLD_PREFIX = "fold_"


def feature_column(source: str, feature: str) -> str:
    """Returns the frames.csv column of one source's feature, e.g. ``auto_f3``.

    Args:
      source: one of `SOURCES` ("manual" or "auto").
      feature: a feature name (`sercseg_tf.features.FEATURES`).

    Raises:
      ValueError: for an unknown source.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    return f"{source}_{feature}"


def fold_dir(model_dir: str | os.PathLike, fold: int) -> pathlib.Path:
    """Returns ``MODEL_DIR/fold_NN``."""
    return pathlib.Path(model_dir) / f"{_FOLD_PREFIX}{int(fold):02d}"


def config_path(model_dir: str | os.PathLike, fold: int) -> pathlib.Path:
    """Returns ``MODEL_DIR/fold_NN/config.yaml``, the config the fold was trained with."""
    return fold_dir(model_dir, fold) / CONFIG_YAML


def training_data_json(model_dir: str | os.PathLike, fold: int) -> pathlib.Path:
    """Returns ``MODEL_DIR/fold_NN/training_data.json`` (`sercseg_tf.model_card`)."""
    return fold_dir(model_dir, fold) / TRAINING_DATA_JSON


def checkpoint_dir(model_dir: str | os.PathLike, fold: int) -> pathlib.Path:
    """Returns ``MODEL_DIR/fold_NN/checkpoints``."""
    return fold_dir(model_dir, fold) / CHECKPOINTS_SUBDIR


def lock_path(model_dir: str | os.PathLike, fold: int) -> pathlib.Path:
    """Returns ``MODEL_DIR/fold_NN/.lock``, held by the process writing the fold."""
    return fold_dir(model_dir, fold) / LOCK_FILE


def train_dir(model_dir: str | os.PathLike, fold: int) -> pathlib.Path:
    """Returns ``MODEL_DIR/fold_NN/train`` (TensorBoard events and ``history.csv``)."""
    return fold_dir(model_dir, fold) / TRAIN_SUBDIR


def eval_dir(model_dir: str | os.PathLike, fold: int) -> pathlib.Path:
    """Returns ``MODEL_DIR/fold_NN/eval`` (events, ``history.csv``, ``iou*.csv``)."""
    return fold_dir(model_dir, fold) / EVAL_SUBDIR


def export_dir(model_dir: str | os.PathLike, fold: int) -> pathlib.Path:
    """Returns ``MODEL_DIR/fold_NN/export`` (the SavedModel)."""
    return fold_dir(model_dir, fold) / EXPORT_SUBDIR


def has_export(model_dir: str | os.PathLike, fold: int) -> bool:
    """True when the fold's SavedModel is complete (its ``saved_model.pb`` exists)."""
    return (export_dir(model_dir, fold) / SAVED_MODEL_PB).is_file()


def predict_dir(model_dir: str | os.PathLike, fold: int) -> pathlib.Path:
    """Returns ``MODEL_DIR/fold_NN/predict``."""
    return fold_dir(model_dir, fold) / PREDICT_SUBDIR


def frames_csv(model_dir: str | os.PathLike, fold: int) -> pathlib.Path:
    """Returns the per-frame predictions table of a fold."""
    return predict_dir(model_dir, fold) / FRAMES_CSV


def status_json(model_dir: str | os.PathLike) -> pathlib.Path:
    """Returns ``MODEL_DIR/loocv_status.json``."""
    return pathlib.Path(model_dir) / STATUS_JSON


def report_dir(model_dir: str | os.PathLike) -> pathlib.Path:
    """Returns ``MODEL_DIR/report``."""
    return pathlib.Path(model_dir) / REPORT_SUBDIR


def list_folds(model_dir: str | os.PathLike) -> list[int]:
    """Returns the fold numbers that have a ``fold_NN`` directory, sorted."""
    folds = []
    for p in pathlib.Path(model_dir).glob(f"{_FOLD_PREFIX}*"):
        suffix = p.name[len(_FOLD_PREFIX):]
        if p.is_dir() and suffix.isdigit():
            folds.append(int(suffix))
    return sorted(folds)


def read_status(model_dir: str | os.PathLike) -> dict[int, dict]:
    """Reads ``loocv_status.json`` as ``{fold: {"status": ..., ...}}`` ({} if absent)."""
    path = status_json(model_dir)
    if not path.exists():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {int(k): v for k, v in raw.get("folds", {}).items()}


def write_status(model_dir: str | os.PathLike, status: dict[int, dict]) -> pathlib.Path:
    """Writes ``loocv_status.json`` atomically (folds sorted)."""
    payload = {"folds": {f"{k:02d}": status[k] for k in sorted(status)}}
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    return atomic_io.atomic_write_text(status_json(model_dir), text)


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
