"""Evaluates a fold on its held-out case: ``python -m sercseg_tf.evaluate --fold=5``.

Restores the fold's latest checkpoint, predicts every held-out frame at full resolution
with `inference.predict_logits` (``image_scale`` applied inside), scores each frame with
`metrics.per_class_iou` and writes

- ``MODEL_DIR/fold_05/eval/iou.csv``: case, frame, filename, oocyte, serc, needle
  (NaN where a class is absent from both masks), one row per frame;
- ``MODEL_DIR/fold_05/eval/iou_mean.csv``: the case's mean IoU per class and their mean
  (one row of the paper's Table 2), also printed.

Takes the same ``--config``, ``--tfrecord_dir``, ``--model_dir``, ``--fold`` and
config-key flags as `sercseg_tf.train`; ``--precision`` picks the arithmetic of the
evaluation, independently of the precision the checkpoint was trained in. Without
``--config`` the run's saved ``config.yaml`` is used, and a value contradicting its
architecture is an error (`sercseg_tf.config.run_config`). Before the evaluation
starts, the held-out shards are checked against the manifest (a truncated shard or a
missing frame is an error naming the shard) and the output folder for being writable.
An existing ``iou.csv`` or ``iou_mean.csv`` (an earlier evaluation) is an error unless
``--overwrite``; nothing is written then.
"""

from __future__ import annotations

import os
import sys

import pandas as pd
from absl import flags

from sercseg_tf import atomic_io, cli, layout
from sercseg_tf import config as config_lib
from sercseg_tf.config import ConfigError, ExperimentConfig

config_lib.define_flags()
cli.define_overwrite_flag()
FLAGS = flags.FLAGS


def _write_csv_atomic(frame: pd.DataFrame, path: os.PathLike) -> None:
    atomic_io.atomic_write_text(path, frame.to_csv(index=False, float_format="%.6f"))


def run_evaluation(config: ExperimentConfig, tfrecord_dir: str | os.PathLike,
                   model_dir: str | os.PathLike, fold: int, overwrite: bool = False
                   ) -> pd.DataFrame:
    """Per-image IoU of the fold's held-out case (see the module docstring).

    Args:
      config: the fold's config.
      tfrecord_dir: per-case TFRecords with their manifest.
      model_dir: runs folder.
      fold: the held-out case.
      overwrite: replace an earlier evaluation's ``iou.csv`` / ``iou_mean.csv``.

    Returns:
      DataFrame with columns case, frame, filename, oocyte, serc, needle (one row per
      frame); also written to ``fold_NN/eval/iou.csv``, with the per-class means in
      ``iou_mean.csv``.

    Raises:
      FileNotFoundError: no checkpoint or no held-out shard.
      ValueError: a held-out shard is truncated or disagrees with the manifest, or the
        config contradicts the run's architecture.
      FileExistsError: an earlier evaluation exists and ``overwrite`` is False.
      OSError: the fold's ``eval`` folder cannot be written.
    """
    from sercseg_tf.data import dataset as dataset_lib
    from sercseg_tf.data import tfrecord
    from sercseg_tf.training import checkpoints, evaluator

    out_dir = layout.eval_dir(model_dir, fold)
    atomic_io.refuse_existing([out_dir / layout.IOU_CSV, out_dir / layout.IOU_MEAN_CSV],
                              overwrite)
    _, held_out = dataset_lib.fold_cases(tfrecord_dir, fold)
    if held_out is None:
        raise ValueError("fold 0 (--all_cases) trained on every case: no held-out case to "
                         "evaluate; the folds 1..N measure the method")
    tfrecord.verify_shards(tfrecord_dir, [held_out])
    model, _ = checkpoints.restore_model(config, model_dir, fold)
    atomic_io.check_writable(out_dir)  # before, not after, the work
    result = evaluator.evaluate_heldout(model, config,
                                      evaluator.heldout_dataset(tfrecord_dir, held_out))
    columns = ["case", "frame", "filename", *evaluator.IOU_COLUMNS]
    per_image = pd.DataFrame(result.rows, columns=columns)
    means = result.class_means()
    mean_row = pd.DataFrame([{"case": held_out, "frames": len(per_image),
                              **{c: means[c] for c in evaluator.IOU_COLUMNS},
                              "mean": means["miou"]}])
    _write_csv_atomic(per_image, out_dir / layout.IOU_CSV)
    _write_csv_atomic(mean_row, out_dir / layout.IOU_MEAN_CSV)
    return per_image


def main(argv: list[str]) -> int:
    """Command-line entry point (absl)."""
    del argv
    fold = config_lib.fold_from_flags("evaluate")
    if fold is None:
        return 2
    try:
        config = config_lib.run_config_from_flags(layout.config_path(FLAGS.model_dir, fold))
        per_image = run_evaluation(config, FLAGS.tfrecord_dir, FLAGS.model_dir, fold,
                                   FLAGS.overwrite)
    except (ConfigError, OSError, ValueError) as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 1
    out_dir = layout.eval_dir(FLAGS.model_dir, fold)
    print(f"{len(per_image)} frames -> {out_dir / layout.IOU_CSV}")
    print(pd.read_csv(out_dir / layout.IOU_MEAN_CSV).to_string(index=False))
    return 0


def entry() -> None:
    """Console script ``sercseg-evaluate``."""
    cli.app_run(main, tensorflow=True)


if __name__ == "__main__":
    entry()
