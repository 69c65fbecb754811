"""Exports a fold's model as a SavedModel: ``python -m sercseg_tf.export --fold=5``.

Restores the latest checkpoint of ``MODEL_DIR/fold_05`` and writes
``MODEL_DIR/fold_05/export/`` with `inference.export_saved_model`: ``serving_default``
takes ``images: uint8[B,H,W,3]`` of any size and returns ``semantic_pred: int32[B,H,W]``
and ``semantic_probs: float32[B,H,W,4]`` (preprocessing, ``image_scale``, padding and the
test-time flip and scales, ``add_flipped_images`` and ``eval_scales``, and the
post-processing, ``keep_largest_oocyte`` and ``needle_hysteresis_weight``, are inside
the graph). The export is written into a hidden sibling and swapped in when complete
(`sercseg_tf.atomic_io.atomic_dir`): a failed or killed export leaves the previous one
intact. An existing export (an earlier run) is an error unless ``--overwrite``.

The export carries a model card, ``export/assets/model_card.json`` (`sercseg_tf.model_card`):
classes and colours, the config, the training frame size and scales, the fold (0 = every
case, ``--all_cases``), the held-out IoU of ``evaluate`` if it ran, where the data came
from, the package version and the date; ``--um_per_px`` adds a calibration. The
training facts come from ``fold_NN/training_data.json`` (written by train), else from
the manifest in ``--tfrecord_dir``.

``--precision`` (a config key) chooses the arithmetic inside the SavedModel, e.g.
``--precision=mixed_bfloat16`` for a CPU with AMX / AVX512-BF16, whatever precision the
checkpoint was trained in; the interface stays uint8 in, int32 / float32 out, so
``sercseg_tf.predict`` runs any of them unchanged.

Takes the same ``--config``, ``--tfrecord_dir``, ``--model_dir``, ``--fold`` and
config-key flags as `sercseg_tf.train`; without ``--config`` the run's saved
``config.yaml`` is used, and a value contradicting its architecture is an error
(`sercseg_tf.config.run_config`).
"""

from __future__ import annotations

import math
import os
import pathlib
import sys
from typing import Any

from absl import flags, logging

from sercseg_tf import atomic_io, cli, layout, model_card
from sercseg_tf import config as config_lib
from sercseg_tf.config import ConfigError, ExperimentConfig

config_lib.define_flags()
config_lib.define_all_cases_flag()
cli.define_flag("float", "um_per_px", None,
                "Micrometres per pixel of the frames (calibration; adds µm/µm² columns).")
cli.define_overwrite_flag()
FLAGS = flags.FLAGS


def _training_facts(model_dir: str | os.PathLike, fold: int,
                    tfrecord_dir: str | os.PathLike | None) -> dict[str, Any] | None:
    """The fold's training record, else one made from ``tfrecord_dir``'s manifest, else None."""
    record = model_card.read_json(layout.training_data_json(model_dir, fold))
    if record is not None or tfrecord_dir is None:
        return record
    from sercseg_tf.data import dataset, tfrecord

    try:
        train_cases, held_out = dataset.fold_cases(tfrecord_dir, fold)
        manifest = tfrecord.read_manifest(tfrecord_dir)
    except (FileNotFoundError, ValueError) as e:
        logging.warning("export: no training record and no usable manifest (%s): the model "
                        "card has no training frame size", e)
        return None
    logging.info("export: no %s; training facts taken from %s", layout.TRAINING_DATA_JSON,
                 tfrecord_dir)
    return model_card.training_record(manifest, tfrecord_dir, fold, train_cases, held_out)


def held_out_iou(model_dir: str | os.PathLike, fold: int) -> dict[str, float] | None:
    """Mean IoU per class of the fold's held-out case from ``eval/iou_mean.csv``, or None."""
    import pandas as pd

    path = layout.eval_dir(model_dir, fold) / layout.IOU_MEAN_CSV
    if not path.is_file():
        return None
    row = pd.read_csv(path).iloc[0]
    return {k: float(row[k]) for k in ("oocyte", "serc", "needle", "mean")
            if k in row and math.isfinite(float(row[k]))}


def run_export(config: ExperimentConfig, model_dir: str | os.PathLike, fold: int,
               tfrecord_dir: str | os.PathLike | None = None,
               um_per_px: float | None = None, overwrite: bool = False) -> pathlib.Path:
    """Exports the fold's latest checkpoint to ``model_dir/fold_NN/export`` with its card.

    Args:
      config: the fold's config.
      model_dir: runs folder.
      fold: the fold (0: the every-case model).
      tfrecord_dir: where to read training facts when the fold has no
        ``training_data.json`` (trained before it existed).
      um_per_px: calibration stored in the card.
      overwrite: replace an earlier export.

    Returns:
      The export directory.

    Raises:
      FileNotFoundError: the fold has no checkpoint.
      FileExistsError: the fold has an export and ``overwrite`` is False.
      ValueError: the config contradicts the run's architecture or checkpoint.
      OSError: the fold folder cannot be written.
    """
    from sercseg_tf.model import inference
    from sercseg_tf.training import checkpoints

    export_dir = layout.export_dir(model_dir, fold)
    atomic_io.refuse_existing([export_dir], overwrite)
    model, _ = checkpoints.restore_model(config, model_dir, fold)
    atomic_io.check_writable(layout.fold_dir(model_dir, fold))
    card = model_card.build_card(config.to_dict(),
                                 _training_facts(model_dir, fold, tfrecord_dir), fold,
                                 held_out_iou(model_dir, fold), um_per_px)
    # export_saved_model writes beside export_dir and swaps it in (atomic_io.atomic_dir).
    inference.export_saved_model(model, str(export_dir), image_scale=config.image_scale,
                                 output_stride=config.output_stride, model_card=card,
                                 add_flipped_images=config.add_flipped_images,
                                 eval_scales=config.eval_scale_factors,
                                 keep_largest_oocyte=config.keep_largest_oocyte,
                                 needle_hysteresis_weight=config.needle_hysteresis_weight)
    return export_dir


def main(argv: list[str]) -> int:
    """Command-line entry point (absl)."""
    del argv
    fold = config_lib.fold_from_flags("export")
    if fold is None:
        return 2
    try:
        config = config_lib.run_config_from_flags(layout.config_path(FLAGS.model_dir, fold))
        path = run_export(config, FLAGS.model_dir, fold, FLAGS.tfrecord_dir, FLAGS.um_per_px,
                          FLAGS.overwrite)
    except (ConfigError, OSError, ValueError) as e:
        print(f"export: {e}", file=sys.stderr)
        return 1
    print(f"SavedModel written to {path} (model card: {model_card.card_path(path)})")
    return 0


def entry() -> None:
    """Console script ``sercseg-export``."""
    cli.app_run(main, tensorflow=True)


if __name__ == "__main__":
    entry()
