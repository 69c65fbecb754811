"""Trains one leave-one-case-out fold: ``python -m sercseg_tf.train --fold=5``.

Usage::

    python -m sercseg_tf.train --fold=5 [--config=configs/paper.yaml]
        [--tfrecord_dir=data/tfrecords] [--model_dir=runs]
        [--strategy=auto|one_device|mirrored|multi_worker|tpu] [--num_steps=N]
        [--<any config key>=VALUE ...]

Writes ``MODEL_DIR/fold_05/{checkpoints,train,eval}`` (+ ``config.yaml``). Running the
same command again resumes from the latest checkpoint; Ctrl-C saves a checkpoint first.
Multi-machine training: see `sercseg_tf.training.distribute` (``--strategy=multi_worker``
with ``TF_CONFIG`` on each machine).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

from absl import app, flags, logging

from sercseg_tf import config as config_lib
from sercseg_tf.config import ConfigError, ExperimentConfig

config_lib.define_flags()
config_lib.define_strategy_flag()
FLAGS = flags.FLAGS


def run_training(config: ExperimentConfig, tfrecord_dir: str | os.PathLike,
                 model_dir: str | os.PathLike, fold: int, strategy: Any = "auto"
                 ) -> dict[str, Any]:
    """Trains (or resumes) a fold to ``config.num_steps`` and evaluates the held-out case.

    Args:
      config: experiment settings (`sercseg_tf.config.load_config`).
      tfrecord_dir: folder with per-case shards and ``manifest.json``.
      model_dir: runs folder; the fold writes ``model_dir/fold_NN``.
      fold: held-out case id.
      strategy: a strategy name (`sercseg_tf.config.STRATEGIES`) or a
        ``tf.distribute.Strategy``.

    Returns:
      Summary dict (steps, final loss, rates, last checkpoint, held-out IoU); see
      `sercseg_tf.training.loop.train_fold`.
    """
    from sercseg_tf.training import loop

    return loop.train_fold(config, tfrecord_dir, model_dir, fold, strategy=strategy)


def _sigterm_as_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    """Command-line entry point (absl)."""
    del argv
    if FLAGS.fold is None:
        print("train: --fold is required (the held-out case id)", file=sys.stderr)
        return 2
    try:
        config = config_lib.config_from_flags()
    except ConfigError as e:
        print(f"train: {e}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        summary = run_training(config, FLAGS.tfrecord_dir, FLAGS.model_dir, FLAGS.fold,
                               strategy=FLAGS.strategy)
    except KeyboardInterrupt:
        logging.warning("train: interrupted")
        return 130
    except (FileNotFoundError, ValueError, FloatingPointError) as e:
        print(f"train: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    app.run(main)
