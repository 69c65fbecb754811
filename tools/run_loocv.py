"""Leave-one-case-out reproduction: train, evaluate, export and predict every fold, then report.

Usage::

  python tools/run_loocv.py [--config configs/paper.yaml] [--tfrecord_dir data/tfrecords] \
      [--model_dir runs] [--folds 1-11] [--num_steps N ...any config key...] [--force]

For each selected fold k (held-out case k):

1. ``train.run_training`` (resumes from the fold's last checkpoint),
2. ``evaluate.run_evaluation`` (``fold_NN/eval/iou.csv``),
3. ``export.run_export`` (``fold_NN/export``, a SavedModel),
4. predicts every held-out frame of the TFRecords with the *exported* SavedModel and
   computes the features (eq. 1-4) of the automatic mask and of the manual mask (the
   TFRecord label map) with the same code; writes ``fold_NN/predict/frames.csv`` and the
   images / label PNGs behind it (layout: `sercseg_tf.layout`).

A fold is finished when its export and ``frames.csv`` exist; finished folds are skipped
on a re-run (``--force`` redoes them; training still resumes from its checkpoint). A fold
that fails is logged with its traceback, recorded in ``MODEL_DIR/loocv_status.json`` and
listed in the report; the other folds go on. At the end ``sercseg_tf.report`` writes
``MODEL_DIR/report/`` (tables, figures, index.html) for every fold with predictions.
Exit status 1 if any selected fold failed (the report is still written), else 0.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import pathlib
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from sercseg_tf import (  # noqa: E402
    atomic_io,
    formats,
    labels,
    layout,  # noqa: E402
)

IMAGE_JPEG_QUALITY = 90


@dataclasses.dataclass
class Stages:
    """The per-fold stage functions (replaceable in tests)."""

    train: Callable  # (config, tfrecord_dir, model_dir, fold) -> dict
    evaluate: Callable  # (config, tfrecord_dir, model_dir, fold) -> DataFrame
    export: Callable  # (config, model_dir, fold) -> Path
    predict: Callable  # (export_dir, tfrecord_dir, model_dir, fold, batch_size) -> Path


def default_stages(strategy: str = "auto") -> Stages:
    """The real stages: TRAIN's train / evaluate / export and `predict_fold`."""
    from sercseg_tf import evaluate, export, train

    def train_fn(cfg, tfrecord_dir, model_dir, fold):
        return train.run_training(cfg, tfrecord_dir, model_dir, fold, strategy=strategy)

    return Stages(train=train_fn, evaluate=evaluate.run_evaluation, export=export.run_export,
                  predict=predict_fold)


def export_dir(model_dir: str | os.PathLike, fold: int) -> pathlib.Path:
    """``MODEL_DIR/fold_NN/export``."""
    return layout.fold_dir(model_dir, fold) / layout.EXPORT_SUBDIR


def is_fold_finished(model_dir: str | os.PathLike, fold: int) -> bool:
    """A fold is finished when its SavedModel export and its ``frames.csv`` exist."""
    return ((export_dir(model_dir, fold) / "saved_model.pb").is_file()
            and layout.frames_csv(model_dir, fold).is_file())


def _held_out_frames(tfrecord_dir: str | os.PathLike, case_id: int):
    """Yields decoded held-out samples as NumPy dicts (image uint8 HxWx3, label HxW)."""
    import tensorflow as tf

    from sercseg_tf.data import tfrecord

    files = sorted(glob.glob(tfrecord.case_file_pattern(tfrecord_dir, case_id)))
    if not files:
        raise FileNotFoundError(
            f"{tfrecord.case_file_pattern(tfrecord_dir, case_id)}: no TFRecord shards")
    ds = tf.data.TFRecordDataset(files).map(tfrecord.decode_example)
    for s in ds.as_numpy_iterator():
        fn = s[formats.SAMPLE_FILENAME]
        yield {"image": s[formats.SAMPLE_IMAGE], "label": s[formats.SAMPLE_LABEL][..., 0],
               "filename": fn.decode() if isinstance(fn, bytes) else str(fn),
               "case": int(s[formats.SAMPLE_CASE_ID]), "frame": int(s[formats.SAMPLE_FRAME_ID])}


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
    for src, lab in (("manual", manual), ("auto", auto)):
        row.update({f"{src}_{k}": v for k, v in feature_row(lab).items()})
    dx = row["auto_tip_x"] - row["manual_tip_x"]
    dy = row["auto_tip_y"] - row["manual_tip_y"]
    row["tip_error_px"] = float(math.hypot(dx, dy))  # NaN if either tip is missing
    return row


def predict_fold(export_path: str | os.PathLike, tfrecord_dir: str | os.PathLike,
                 model_dir: str | os.PathLike, fold: int, batch_size: int = 4) -> pathlib.Path:
    """Predicts the held-out case of a fold with the exported SavedModel.

    Writes ``fold_NN/predict/{image,manual,auto}/NNNN.*`` and, last, ``frames.csv``
    (atomically; its presence marks the predictions complete).

    Returns:
      The path of ``frames.csv``.
    """
    from PIL import Image

    from sercseg_tf.data import dataset
    from sercseg_tf.model import inference
    from sercseg_tf.predict import batched_predictions

    _, case_id = dataset.fold_cases(tfrecord_dir, fold)
    serving_fn = inference.load_serving_fn(export_path)
    pdir = layout.predict_dir(model_dir, fold)
    layout.frames_csv(model_dir, fold).unlink(missing_ok=True)
    for sub in (layout.IMAGE_SUBDIR, layout.MANUAL_SUBDIR, layout.AUTO_SUBDIR):
        shutil.rmtree(pdir / sub, ignore_errors=True)
        (pdir / sub).mkdir(parents=True)

    from sercseg_tf.predict import Frame

    samples: dict[int, dict] = {}

    def frames():
        for s in _held_out_frames(tfrecord_dir, case_id):
            samples[s["frame"]] = s
            yield Frame(s["frame"], math.nan, s["filename"], f"{s['frame']:04d}", s["image"])

    rows = []
    start = time.monotonic()
    for frame, pred in batched_predictions(serving_fn, frames(), batch_size):
        s = samples.pop(frame.index)
        stem = frame.name
        files = {"image_file": f"{layout.IMAGE_SUBDIR}/{stem}.jpg",
                 "manual_file": f"{layout.MANUAL_SUBDIR}/{stem}.png",
                 "auto_file": f"{layout.AUTO_SUBDIR}/{stem}.png"}
        Image.fromarray(s["image"]).save(pdir / files["image_file"], quality=IMAGE_JPEG_QUALITY)
        Image.fromarray(s["label"].astype(np.uint8)).save(pdir / files["manual_file"])
        Image.fromarray(pred).save(pdir / files["auto_file"])
        row = frame_row(s["case"], s["frame"], s["filename"], s["label"], pred)
        rows.append({**row, **files})
    if not rows:
        raise RuntimeError(f"fold {fold}: held-out case {case_id} has no frames")
    elapsed = time.monotonic() - start
    logging.info("fold %02d: predicted %d held-out frames of case %d (%.1f frames/s)",
                 fold, len(rows), case_id, len(rows) / max(elapsed, 1e-9))
    df = pd.DataFrame(rows).sort_values("frame")
    out = layout.frames_csv(model_dir, fold)
    atomic_io.atomic_write_text(out, df.to_csv(index=False, float_format="%.6g"))
    return out


def run_fold(config, tfrecord_dir, model_dir, fold: int, stages: Stages,
             batch_size: int = 4) -> None:
    """Runs the stages of one fold; skips train/eval/export when the export exists."""
    exp = export_dir(model_dir, fold)
    if not (exp / "saved_model.pb").is_file():
        logging.info("fold %02d: training", fold)
        stages.train(config, tfrecord_dir, model_dir, fold)
        logging.info("fold %02d: evaluating", fold)
        stages.evaluate(config, tfrecord_dir, model_dir, fold)
        logging.info("fold %02d: exporting", fold)
        exp = pathlib.Path(stages.export(config, model_dir, fold))
    logging.info("fold %02d: predicting held-out frames with %s", fold, exp)
    stages.predict(exp, tfrecord_dir, model_dir, fold, batch_size)


def all_folds(tfrecord_dir: str | os.PathLike) -> list[int]:
    """Every case id of the TFRecord manifest (one fold per case)."""
    from sercseg_tf.data import tfrecord

    manifest = tfrecord.read_manifest(tfrecord_dir)
    return sorted(int(v["case_id"]) for v in manifest["cases"].values())


def run_loocv(config, tfrecord_dir: str | os.PathLike, model_dir: str | os.PathLike,
              folds: Sequence[int] | None = None, *, stages: Stages | None = None,
              force: bool = False, batch_size: int = 4, report: bool = True) -> dict[int, dict]:
    """Runs (or resumes) the selected folds and writes the report.

    Args:
      config: the `ExperimentConfig` of every fold.
      tfrecord_dir: per-case TFRecords with ``manifest.json``.
      model_dir: the run directory (``fold_NN`` per fold, ``report/``).
      folds: held-out case ids; None = every case of the manifest.
      stages: stage functions (default: `default_stages`).
      force: redo folds that are finished.
      batch_size: frames per call of the exported model when predicting.
      report: write ``MODEL_DIR/report`` at the end.

    Returns:
      ``{fold: status dict}`` of the selected folds (status "done", "skipped" or "failed").
    """
    model_dir = pathlib.Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    folds = list(folds) if folds is not None else all_folds(tfrecord_dir)
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
            start = time.monotonic()
            try:
                run_fold(config, tfrecord_dir, model_dir, fold, stages, batch_size)
                entry = {"status": "done", "held_out_case": fold, "skipped": False}
            except Exception as e:  # noqa: BLE001 - a failed fold must not stop the others
                reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                logging.error("fold %02d failed: %s\n%s", fold, reason, traceback.format_exc())
                entry = {"status": "failed", "held_out_case": fold, "error": reason}
            entry["seconds"] = round(time.monotonic() - start, 1)
            entry["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
        status[fold] = entry
        result[fold] = entry
        layout.write_status(model_dir, status)
    if report:
        from sercseg_tf import report as report_lib

        res = report_lib.build_report(model_dir)
        logging.info("report: %s (folds %s; failed %s)", res.index_html, res.folds_reported,
                     sorted(res.folds_failed))
    failed = [f for f, e in result.items() if e["status"] == "failed"]
    if failed:
        logging.error("failed folds: %s (see %s)", failed, model_dir / layout.STATUS_JSON)
    return result


def _define_flags() -> None:
    """Defines the config-key flags (via TRAIN's modules, which also define --strategy)."""
    from sercseg_tf import config as config_lib
    from sercseg_tf import evaluate, export, train  # noqa: F401 - they define flags on import

    config_lib.define_flags()
    own = [
        (flags.DEFINE_string, "folds", None, 'Folds (held-out case ids), e.g. "5", "1-3", '
         '"1,5,7"; default every case of the manifest.'),
        (flags.DEFINE_boolean, "force", False, "Redo folds that are already finished."),
        (flags.DEFINE_integer, "predict_batch_size", 4, "Frames per call of the exported model."),
        (flags.DEFINE_string, "strategy", "auto", "tf.distribute strategy for training."),
        (flags.DEFINE_boolean, "report", True, "Write MODEL_DIR/report at the end."),
    ]
    for define, name, default, help_text in own:  # idempotent (tests call it again)
        if name not in flags.FLAGS:
            define(name, default, help_text)


def main(argv: Sequence[str]) -> int:
    """Entry point for absl.app.run: returns the exit status."""
    from sercseg_tf import config as config_lib

    if len(argv) > 1:
        print(f"unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return 1
    f = flags.FLAGS
    try:
        folds = layout.parse_folds(f.folds)
        cfg = config_lib.config_from_flags()
        if folds is not None:
            known = all_folds(f.tfrecord_dir)
            unknown = sorted(set(folds) - set(known))
            if unknown:
                raise ValueError(f"{f.tfrecord_dir}: --folds {f.folds}: no case(s) {unknown} "
                                 f"in the manifest (cases: {known})")
    except (ValueError, FileNotFoundError) as e:
        print(e, file=sys.stderr)
        return 1
    result = run_loocv(cfg, f.tfrecord_dir, f.model_dir, folds,
                       stages=default_stages(f.strategy), force=f.force,
                       batch_size=f.predict_batch_size, report=f.report)
    return 1 if any(e["status"] == "failed" for e in result.values()) else 0


if __name__ == "__main__":
    _define_flags()
    app.run(main)
