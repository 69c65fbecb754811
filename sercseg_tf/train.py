"""Trains one leave-one-case-out fold: ``python -m sercseg_tf.train --fold=5``.

Usage::

    python -m sercseg_tf.train --fold=5 [--config=configs/paper.yaml]
        [--tfrecord_dir=data/tfrecords] [--model_dir=runs]
        [--strategy=auto|one_device|mirrored|multi_worker|tpu] [--num_steps=N]
        [--<any config key>=VALUE ...]

Writes ``MODEL_DIR/fold_05/{checkpoints,train,eval}`` (+ ``config.yaml``). Running the
same command again resumes from the latest checkpoint, with the run's saved
``config.yaml`` unless ``--config`` is given (an architecture key that contradicts it is
an error: `sercseg_tf.config.run_config`); Ctrl-C or SIGTERM saves a checkpoint first
and exits 130. One train per fold folder at a time (`sercseg_tf.run_lock`).
Multi-machine training: see `sercseg_tf.training.distribute` (``--strategy=multi_worker``
with ``TF_CONFIG`` on each machine); a lost worker ends every worker with exit status 1
and one line, and starting all of them again resumes from the last checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from absl import app, flags, logging

from sercseg_tf import cli, layout
from sercseg_tf import config as config_lib
from sercseg_tf.config import ConfigError, ExperimentConfig
from sercseg_tf.run_lock import RunLockedError

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


def tf_error_line(error: BaseException, multi_worker: bool) -> str | None:
    """One line for a TensorFlow runtime error (None for any other exception).

    With several workers such an error almost always means a worker was lost
    (killed, preempted, unreachable); the line says how to resume.
    """
    import tensorflow as tf

    if not isinstance(error, tf.errors.OpError):
        return None
    reason = f"{type(error).__name__}: {_first_reason_line(str(error.message))}"
    if multi_worker:
        return (f"a worker was lost or failed ({reason}); start every worker again with "
                "the same command to resume from the last checkpoint")
    return f"TensorFlow error ({reason})"


def _first_reason_line(message: str) -> str:
    """The first informative line of a TensorFlow error message.

    Graph errors start with "Graph execution error:" and the Python stack of the op;
    the reason follows them.
    """
    for line in message.splitlines():
        text = line.strip()
        if (text and text != "Graph execution error:" and not line[:1].isspace()
                and not text.startswith("Detected at node")):
            return text
    return message.strip().splitlines()[0] if message.strip() else ""


def _train_from_flags(config: ExperimentConfig) -> dict[str, Any]:
    """`run_training` for the command line; multi_worker's strategy is made first.

    MultiWorkerMirroredStrategy must exist before TensorFlow's context is initialised
    (anything that lists devices or creates a tensor), so it is created here, before
    any data or model code runs.
    """
    strategy: Any = FLAGS.strategy
    if strategy == "multi_worker":
        from sercseg_tf.training import distribute

        strategy = distribute.create_strategy("multi_worker")
    return run_training(config, FLAGS.tfrecord_dir, FLAGS.model_dir, FLAGS.fold,
                        strategy=strategy)


def main(argv: list[str]) -> int:
    """Command-line entry point (absl)."""
    del argv
    if FLAGS.fold is None:
        print("train: --fold is required (the held-out case id)", file=sys.stderr)
        return 2
    try:
        config = config_lib.run_config_from_flags(
            layout.config_path(FLAGS.model_dir, FLAGS.fold))
    except ConfigError as e:
        print(f"train: {e}", file=sys.stderr)
        return 2
    cli.sigterm_as_interrupt()
    try:
        summary = _train_from_flags(config)
    except KeyboardInterrupt:
        logging.warning("train: interrupted")
        return 130
    except (OSError, ValueError, FloatingPointError, RunLockedError) as e:
        print(f"train: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        line = tf_error_line(e, FLAGS.strategy == "multi_worker")
        if line is None:
            raise
        print(f"train: {line}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    app.run(main)
