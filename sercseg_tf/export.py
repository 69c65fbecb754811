"""Exports a fold's model as a SavedModel: ``python -m sercseg_tf.export --fold=5``.

Restores the latest checkpoint of ``MODEL_DIR/fold_05`` and writes
``MODEL_DIR/fold_05/export/`` with `inference.export_saved_model`: ``serving_default``
takes ``images: uint8[B,H,W,3]`` of any size and returns ``semantic_pred: int32[B,H,W]``
and ``semantic_probs: float32[B,H,W,4]`` (preprocessing, ``image_scale`` and padding are
inside the graph). The export is written beside the target and renamed when complete.

``--precision`` (a config key) chooses the arithmetic inside the SavedModel, e.g.
``--precision=mixed_bfloat16`` for a CPU with AMX / AVX512-BF16, whatever precision the
checkpoint was trained in; the interface stays uint8 in, int32 / float32 out, so
``sercseg_tf.predict`` runs any of them unchanged.

Takes the same ``--config``, ``--tfrecord_dir``, ``--model_dir``, ``--fold`` and
config-key flags as `sercseg_tf.train`.
"""

from __future__ import annotations

import os
import pathlib
import sys

from absl import app, flags

from sercseg_tf import config as config_lib
from sercseg_tf import layout
from sercseg_tf.config import ConfigError, ExperimentConfig

config_lib.define_flags()
FLAGS = flags.FLAGS


def run_export(config: ExperimentConfig, model_dir: str | os.PathLike, fold: int
               ) -> pathlib.Path:
    """Exports the fold's latest checkpoint to ``model_dir/fold_NN/export``.

    Returns:
      The export directory.

    Raises:
      FileNotFoundError: the fold has no checkpoint.
    """
    from sercseg_tf.model import inference
    from sercseg_tf.training import checkpoints

    model, _ = checkpoints.restore_model(config, model_dir, fold)
    export_dir = layout.export_dir(model_dir, fold)
    # export_saved_model writes beside export_dir and renames (atomic replace).
    inference.export_saved_model(model, str(export_dir), image_scale=config.image_scale,
                                 output_stride=config.output_stride)
    return export_dir


def main(argv: list[str]) -> int:
    """Command-line entry point (absl)."""
    del argv
    if FLAGS.fold is None:
        print("export: --fold is required (the held-out case id)", file=sys.stderr)
        return 2
    try:
        config = config_lib.config_from_flags()
        path = run_export(config, FLAGS.model_dir, FLAGS.fold)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"export: {e}", file=sys.stderr)
        return 1
    print(f"SavedModel written to {path}")
    return 0


if __name__ == "__main__":
    app.run(main)
