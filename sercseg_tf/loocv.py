"""Leave-one-case-out reproduction: train, evaluate, export and predict every fold.

For each selected fold k (held-out case k):

1. `train.run_training` (resumes from the fold's last checkpoint),
2. `evaluate.run_evaluation` (``fold_NN/eval/iou.csv``),
3. `export.run_export` (``fold_NN/export``, a SavedModel),
4. `predict_fold`: every held-out frame, read with the evaluator's held-out reader
   (`training.evaluator.heldout_dataset`), is predicted with the *exported* SavedModel,
   and the features (eq. 1-4) of the automatic mask and of the manual mask (the TFRecord
   label map) are computed with the same code; writes ``fold_NN/predict/frames.csv`` and
   the images / label PNGs behind it (layout: `sercseg_tf.layout`).

A fold is finished when its export and ``frames.csv`` exist; finished folds are skipped
on a re-run, and an unfinished one runs every stage again, replacing the evaluation and
export an interrupted run may have left. ``force`` runs every stage of the selected
folds again: training resumes from the fold's last checkpoint and continues to the
config's ``num_steps`` (so ``--force --num_steps N`` trains a finished fold on to step
N; at N already, it trains no further), then evaluation, export and prediction are
redone, each replacing its previous output atomically. Each fold runs under the fold's
lock (`sercseg_tf.run_lock`) and with the fold's saved config unless one is given
(`sercseg_tf.config.run_config`). A fold that fails is logged, recorded in
``MODEL_DIR/loocv_status.json`` and listed in the report; the other folds go on. Ctrl-C
or SIGTERM saves the running fold's checkpoint, records it as "interrupted" and stops.
At the end `sercseg_tf.report` writes ``MODEL_DIR/report/`` (tables, figures,
index.html) for every fold with predictions.
The command line is ``tools/run_loocv.py``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import time
import traceback
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from absl import logging

from sercseg_tf import atomic_io, formats, labels, layout, run_lock
from sercseg_tf.fault_points import fault_point

IMAGE_JPEG_QUALITY = 90


@dataclasses.dataclass
class Stages:
    """The per-fold stage functions (replaceable in tests)."""

    train: Callable  # (config, tfrecord_dir, model_dir, fold) -> dict
    evaluate: Callable  # (config, tfrecord_dir, model_dir, fold) -> DataFrame
    export: Callable  # (config, model_dir, fold) -> Path
    predict: Callable  # (export_dir, tfrecord_dir, model_dir, fold, batch_size) -> Path


def default_stages(strategy: str = "auto") -> Stages:
    """The real stages: train / evaluate / export and `predict_fold`."""
    from sercseg_tf import evaluate, export, train

    def train_fn(cfg, tfrecord_dir, model_dir, fold):
        return train.run_training(cfg, tfrecord_dir, model_dir, fold, strategy=strategy)

    # A fold whose stages run is unfinished (an interrupted earlier run) or forced: its own
    # earlier evaluation and export are replaced (the module docstring).
    def evaluate_fn(cfg, tfrecord_dir, model_dir, fold):
        return evaluate.run_evaluation(cfg, tfrecord_dir, model_dir, fold, overwrite=True)

    def export_fn(cfg, model_dir, fold):
        return export.run_export(cfg, model_dir, fold, overwrite=True)

    return Stages(train=train_fn, evaluate=evaluate_fn, export=export_fn, predict=predict_fold)


def is_fold_finished(model_dir: str | os.PathLike, fold: int) -> bool:
    """A fold is finished when its SavedModel export and its ``frames.csv`` exist."""
    return layout.has_export(model_dir, fold) and layout.frames_csv(model_dir, fold).is_file()


def heldout_frames(tfrecord_dir: str | os.PathLike, case_id: int) -> Iterator[dict]:
    """Yields the held-out case's frames as NumPy dicts (image uint8 HxWx3, label HxW).

    Reads through `training.evaluator.heldout_dataset`, the reader of the periodic and
    final evaluation, so prediction and evaluation see the same frames in the same order.
    """
    from sercseg_tf.training import evaluator

    for s in evaluator.heldout_dataset(tfrecord_dir, case_id).as_numpy_iterator():
        yield {"image": s[formats.SAMPLE_IMAGE][0],
               "label": s[formats.SAMPLE_LABEL][0, ..., 0],
               "filename": s[formats.SAMPLE_FILENAME][0].decode("utf-8"),
               "case": int(s[formats.SAMPLE_CASE_ID][0]),
               "frame": int(s[formats.SAMPLE_FRAME_ID][0])}


def frame_row(case: int, frame: int, filename: str, manual: np.ndarray,
              auto: np.ndarray) -> dict:
    """One ``frames.csv`` row: IoU per class, features of both masks, tip error (px)."""
    from sercseg_tf import metrics
    from sercseg_tf.predict import feature_row

    row = {"case": case, "frame": frame, "filename": filename}
    iou = metrics.per_class_iou(auto, manual, classes=labels.EVAL_CLASSES,
                                ignore_label=labels.IGNORE_LABEL)
    for c, col in zip(labels.EVAL_CLASSES, layout.IOU_COLUMNS, strict=True):
        row[col] = iou[c]
    for src, lab in zip(layout.SOURCES, (manual, auto), strict=True):
        row.update({f"{src}_{k}": v for k, v in feature_row(lab).items()})
    dx = row["auto_tip_x"] - row["manual_tip_x"]
    dy = row["auto_tip_y"] - row["manual_tip_y"]
    row["tip_error_px"] = float(math.hypot(dx, dy))  # NaN if either tip is missing
    return row


def _save_frame_files(pdir: pathlib.Path, sample: dict, pred: np.ndarray, stem: str) -> dict:
    """Writes the frame's JPEG and both label PNGs; returns their relative paths."""
    from PIL import Image

    files = {"image_file": f"{layout.IMAGE_SUBDIR}/{stem}.jpg",
             "manual_file": f"{layout.MANUAL_SUBDIR}/{stem}.png",
             "auto_file": f"{layout.AUTO_SUBDIR}/{stem}.png"}
    Image.fromarray(sample["image"]).save(pdir / files["image_file"], quality=IMAGE_JPEG_QUALITY)
    Image.fromarray(sample["label"].astype(np.uint8)).save(pdir / files["manual_file"])
    Image.fromarray(pred).save(pdir / files["auto_file"])
    return files


def _case_frames(tfrecord_dir: str | os.PathLike, case_id: int) -> int | None:
    """Frames of a case in the manifest (the progress bar's total), None if unknown."""
    from sercseg_tf.data import tfrecord

    entry = tfrecord.read_manifest(tfrecord_dir).get("cases", {}).get(labels.case_name(case_id))
    return int(entry["frames"]) if entry and "frames" in entry else None


def predict_fold(export_path: str | os.PathLike, tfrecord_dir: str | os.PathLike,
                 model_dir: str | os.PathLike, fold: int, batch_size: int = 4) -> pathlib.Path:
    """Predicts the held-out case of a fold with the exported SavedModel.

    Writes ``fold_NN/predict/{image,manual,auto}/NNNN.*`` and, last, ``frames.csv``
    (its presence marks the predictions complete), all into a hidden sibling swapped in
    for ``predict/`` at the end (`atomic_io.atomic_dir`): a failure or kill leaves the
    previous predictions whole.

    Returns:
      The path of ``frames.csv``.
    """
    from sercseg_tf.data import dataset, tfrecord

    _, case_id = dataset.fold_cases(tfrecord_dir, fold)
    tfrecord.verify_shards(tfrecord_dir, [case_id])
    with atomic_io.atomic_dir(layout.predict_dir(model_dir, fold)) as tmp:
        n = _predict_into(tmp, export_path, tfrecord_dir, fold, case_id, batch_size)
    logging.info("fold %02d: predicted %d held-out frames of case %d", fold, n, case_id)
    return layout.frames_csv(model_dir, fold)


def _predict_into(pdir: pathlib.Path, export_path: str | os.PathLike,
                  tfrecord_dir: str | os.PathLike, fold: int, case_id: int,
                  batch_size: int) -> int:
    """`predict_fold`'s work, into the (temporary) folder ``pdir``; returns #frames."""
    from tqdm import tqdm

    from sercseg_tf.model import inference
    from sercseg_tf.predict import Frame, batched_predictions

    serving_fn = inference.load_serving_fn(export_path)
    for sub in (layout.IMAGE_SUBDIR, layout.MANUAL_SUBDIR, layout.AUTO_SUBDIR):
        (pdir / sub).mkdir(parents=True)
    samples: dict[int, dict] = {}

    def frames():
        for s in heldout_frames(tfrecord_dir, case_id):
            samples[s["frame"]] = s
            yield Frame(s["frame"], math.nan, s["filename"], f"{s['frame']:04d}", s["image"])

    rows = []
    start = time.monotonic()
    total = _case_frames(tfrecord_dir, case_id)
    bar = tqdm(frames(), total=total, desc=f"fold {fold:02d} predict", unit="frame",
               disable=None)  # None: shown on a terminal only
    for frame, pred in batched_predictions(serving_fn, bar, batch_size):
        s = samples.pop(frame.index)
        files = _save_frame_files(pdir, s, pred, frame.name)
        rows.append({**frame_row(s["case"], s["frame"], s["filename"], s["label"], pred),
                     **files})
        fault_point("loocv.frame_predicted")
    if not rows:
        raise RuntimeError(f"fold {fold}: held-out case {case_id} has no frames")
    logging.info("fold %02d: %.1f frames/s", fold,
                 len(rows) / max(time.monotonic() - start, 1e-9))
    df = pd.DataFrame(rows).sort_values("frame")
    atomic_io.atomic_write_text(pdir / layout.FRAMES_CSV,
                                df.to_csv(index=False, float_format="%.6g"))
    return len(rows)


def run_fold(config, tfrecord_dir, model_dir, fold: int, stages: Stages,
             batch_size: int = 4, force: bool = False) -> None:
    """Runs the stages of one fold under its lock.

    Train, evaluate and export run when the fold has no export yet, or with ``force``
    (training then resumes from the last checkpoint to ``config.num_steps``); predict
    always runs.

    Raises:
      RunLockedError: another process is writing the fold.
    """
    with run_lock.hold(layout.lock_path(model_dir, fold), "run_loocv"):
        exp = layout.export_dir(model_dir, fold)
        if force or not layout.has_export(model_dir, fold):
            logging.info("fold %02d: training", fold)
            stages.train(config, tfrecord_dir, model_dir, fold)
            logging.info("fold %02d: evaluating", fold)
            stages.evaluate(config, tfrecord_dir, model_dir, fold)
            logging.info("fold %02d: exporting", fold)
            exp = pathlib.Path(stages.export(config, model_dir, fold))
        logging.info("fold %02d: predicting held-out frames with %s", fold, exp)
        stages.predict(exp, tfrecord_dir, model_dir, fold, batch_size)


# Failures explained by their message (bad input, a busy fold): logged without traceback.
_EXPLAINED = (OSError, ValueError, run_lock.RunLockedError)


def _run_one(config, tfrecord_dir, model_dir, fold: int, stages: Stages,
             batch_size: int, force: bool = False) -> dict:
    """Runs one fold and returns its status entry; a failure is caught and recorded.

    ``config`` may be a callable ``fold -> ExperimentConfig`` (the fold's own config).
    """
    start = time.monotonic()
    try:
        cfg = config(fold) if callable(config) else config
        run_fold(cfg, tfrecord_dir, model_dir, fold, stages, batch_size, force)
        entry = {"status": "done", "held_out_case": fold, "skipped": False}
    except Exception as e:  # noqa: BLE001 - a failed fold must not stop the others
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        trace = "" if isinstance(e, _EXPLAINED) else "\n" + traceback.format_exc()
        logging.error("fold %02d failed: %s%s", fold, reason, trace)
        entry = {"status": "failed", "held_out_case": fold, "error": reason}
    entry["seconds"] = round(time.monotonic() - start, 1)
    entry["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return entry


def run_loocv(config, tfrecord_dir: str | os.PathLike, model_dir: str | os.PathLike,
              folds: Sequence[int] | None = None, *, stages: Stages | None = None,
              force: bool = False, batch_size: int = 4, report: bool = True) -> dict[int, dict]:
    """Runs (or resumes) the selected folds and writes the report.

    Args:
      config: the `ExperimentConfig` of every fold, or a callable ``fold -> config``
        (`sercseg_tf.config.run_config` per fold: each fold's saved config).
      tfrecord_dir: per-case TFRecords with ``manifest.json``.
      model_dir: the run directory (``fold_NN`` per fold, ``report/``).
      folds: held-out case ids; None = every case of the manifest.
      stages: stage functions (default: `default_stages`).
      force: run every stage of the selected folds again (see the module docstring).
      batch_size: frames per call of the exported model when predicting.
      report: write ``MODEL_DIR/report`` at the end.

    Returns:
      ``{fold: status dict}`` of the selected folds (status "done", "skipped" or "failed").

    Raises:
      KeyboardInterrupt: Ctrl-C / SIGTERM; the running fold saved its checkpoint and is
        recorded as "interrupted" in ``loocv_status.json``.
    """
    from sercseg_tf.data import tfrecord

    model_dir = pathlib.Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    folds = list(folds) if folds is not None else tfrecord.case_ids(tfrecord_dir)
    stages = stages or default_stages()
    status = layout.read_status(model_dir)
    result: dict[int, dict] = {}
    for i, fold in enumerate(folds, 1):
        if not force and is_fold_finished(model_dir, fold):
            logging.info("fold %02d (%d/%d): finished earlier, skipped", fold, i, len(folds))
            entry = {**status.get(fold, {}), "status": "done", "held_out_case": fold,
                     "skipped": True}
            entry.pop("error", None)
        else:
            logging.info("fold %02d (%d/%d): starting", fold, i, len(folds))
            try:
                entry = _run_one(config, tfrecord_dir, model_dir, fold, stages, batch_size,
                                 force)
            except KeyboardInterrupt:
                status[fold] = {"status": "interrupted", "held_out_case": fold,
                                "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")}
                layout.write_status(model_dir, status)
                raise
        status[fold] = result[fold] = entry
        layout.write_status(model_dir, status)
    if report:
        from sercseg_tf import report as report_lib

        res = report_lib.build_report(model_dir)
        logging.info("report: %s (folds %s; failed %s)", res.index_html, res.folds_reported,
                     sorted(res.folds_failed))
    failed = [f for f, e in result.items() if e["status"] == "failed"]
    if failed:
        logging.error("failed folds: %s (see %s)", failed, layout.status_json(model_dir))
    return result
