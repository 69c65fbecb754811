"""Trains one leave-one-case-out fold: ``python -m sercseg_tf.train --fold=5``.

Usage::

    python -m sercseg_tf.train --fold=5 | --all_cases [--config=configs/paper.yaml]
        [--tfrecord_dir=data/tfrecords] [--model_dir=runs]
        [--strategy=auto|one_device|mirrored|multi_worker|tpu] [--num_steps=N]
        [--<any config key>=VALUE ...]

Writes ``MODEL_DIR/fold_05/{checkpoints,train,eval}`` (+ ``config.yaml`` and
``training_data.json``, the cases and frame size the model card reports). Running the
same command again resumes from the latest checkpoint, with the run's saved
``config.yaml`` unless ``--config`` is given (an architecture key that contradicts it is
an error: `sercseg_tf.config.run_config`); Ctrl-C or SIGTERM saves a checkpoint first
and exits 130. One train per fold folder at a time (`sercseg_tf.run_lock`).

Multi-machine training: see `sercseg_tf.training.distribute` (``--strategy=multi_worker``
with ``TF_CONFIG`` on each machine); a lost worker ends every worker with exit status 1
and one line, and starting all of them again resumes from the last checkpoint.

``--all_cases`` (the same as ``--fold=0``) trains on every case and holds none out,
writing ``MODEL_DIR/fold_00``: the model to use on new patients once the folds have
measured the method. Nothing is evaluated during or after such a run (a log line says
so); its export's model card records ``all_cases: true``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from absl import flags, logging

from sercseg_tf import cli, layout, model_card
from sercseg_tf import config as config_lib
from sercseg_tf.config import ConfigError, ExperimentConfig
from sercseg_tf.run_lock import RunLockedError

config_lib.define_flags()
config_lib.define_strategy_flag()
config_lib.define_all_cases_flag()
FLAGS = flags.FLAGS


def run_training(config: ExperimentConfig, tfrecord_dir: str | os.PathLike,
                 model_dir: str | os.PathLike, fold: int, strategy: Any = "auto"
                 ) -> dict[str, Any]:
    """Trains (or resumes) a fold to ``config.num_steps`` and evaluates its held-out case.

    Args:
      config: experiment settings (`sercseg_tf.config.load_config`).
      tfrecord_dir: folder with per-case shards and ``manifest.json``.
      model_dir: runs folder; the fold writes ``model_dir/fold_NN``.
      fold: held-out case id; 0 trains on every case (nothing is evaluated).
      strategy: a strategy name (`sercseg_tf.config.STRATEGIES`) or a
        ``tf.distribute.Strategy``.

    Returns:
      Summary dict (steps, final loss, rates, last checkpoint, held-out IoU); see
      `sercseg_tf.training.loop.train_fold`.
    """
    from sercseg_tf.training import loop

    return loop.train_fold(config, tfrecord_dir, model_dir, fold, strategy=strategy,
                           on_start=lambda: write_training_record(tfrecord_dir, model_dir, fold))


def write_training_record(tfrecord_dir: str | os.PathLike, model_dir: str | os.PathLike,
                          fold: int) -> dict[str, Any]:
    """Writes ``fold_NN/training_data.json``: cases, frame size and data source.

    `sercseg_tf.export` copies it into the model card. Returns the record.

    Raises:
      ValueError: ``fold`` is neither 0 nor a case of the manifest.
    """
    from sercseg_tf.data import dataset, tfrecord

    train_cases, held_out = dataset.fold_cases(tfrecord_dir, fold)
    record = model_card.training_record(tfrecord.read_manifest(tfrecord_dir), tfrecord_dir,
                                        fold, train_cases, held_out)
    model_card.write_json(layout.training_data_json(model_dir, fold), record)
    return record


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


def _train_from_flags(config: ExperimentConfig, fold: int) -> dict[str, Any]:
    """`run_training` for the command line; multi_worker's strategy is made first.

    MultiWorkerMirroredStrategy must exist before TensorFlow's context is initialised
    (anything that lists devices or creates a tensor), so it is created here, before
    any data or model code runs.
    """
    strategy: Any = FLAGS.strategy
    if strategy == "multi_worker":
        from sercseg_tf.training import distribute

        strategy = distribute.create_strategy("multi_worker")
    return run_training(config, FLAGS.tfrecord_dir, FLAGS.model_dir, fold, strategy=strategy)


def main(argv: list[str]) -> int:
    """Command-line entry point (absl)."""
    del argv
    fold = config_lib.fold_from_flags("train")
    if fold is None:
        return 2
    try:
        config = config_lib.run_config_from_flags(layout.config_path(FLAGS.model_dir, fold))
    except ConfigError as e:
        print(f"train: {e}", file=sys.stderr)
        return 2
    cli.sigterm_as_interrupt()
    try:
        summary = _train_from_flags(config, fold)
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


def entry() -> None:
    """Console script ``sercseg-train``."""
    cli.app_run(main, tensorflow=True)


if __name__ == "__main__":
    entry()
