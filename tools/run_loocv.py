"""Leave-one-case-out reproduction from the command line (logic: `sercseg_tf.loocv`).

Usage::

  python tools/run_loocv.py [--config configs/paper.yaml] [--tfrecord_dir data/tfrecords] \
      [--model_dir runs] [--folds 1-11] [--strategy auto] [--num_steps N ...any config key...] \
      [--force] [--predict_batch_size 4] [--noreport]

Trains, evaluates, exports and predicts every selected fold, skipping finished ones, then
writes ``MODEL_DIR/report``. Without ``--config`` a fold that was trained before keeps
its saved ``config.yaml`` (flags still override its non-architecture keys); new folds use
configs/paper.yaml. ``--force`` runs every stage of the selected folds again: training
resumes from the last checkpoint and goes on to ``--num_steps`` (a fold already there
trains no further), then evaluation, export and prediction are redone (details:
`sercseg_tf.loocv`). Exit status 1 if any selected fold failed (the report is still
written) or the arguments are wrong; 130 after Ctrl-C or SIGTERM (the running fold saves
its checkpoint first; run the same command again to resume); else 0.
"""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Sequence

# Run from a clone: the repository's package, installed or not.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from sercseg_tf import cli, layout, loocv  # noqa: E402
from sercseg_tf import config as config_lib  # noqa: E402

FLAGS = cli.FLAGS


def define_flags() -> None:
    """Defines the config-key flags, --strategy and this tool's own flags (idempotent)."""
    config_lib.define_flags()
    config_lib.define_strategy_flag()
    cli.define_flag("string", "folds", None,
                    'Folds (held-out case ids), e.g. "5", "1-3", "1,5,7"; default all.')
    cli.define_flag("boolean", "force", False,
                    "Run every stage of finished folds again (training resumes from the last "
                    "checkpoint to --num_steps; then evaluate, export, predict).")
    cli.define_flag("integer", "predict_batch_size", 4, "Frames per call of the exported model.")
    cli.define_flag("boolean", "report", True, "Write MODEL_DIR/report at the end.")


def main(argv: Sequence[str]) -> int:
    """Entry point for absl.app.run: returns the exit status."""
    from sercseg_tf.data import tfrecord

    if len(argv) > 1:
        print(f"unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return 1
    try:
        folds = layout.parse_folds(FLAGS.folds)
        cfg = config_lib.config_from_flags()
        known = tfrecord.case_ids(FLAGS.tfrecord_dir)  # a bad manifest: one line here
        if folds is not None:
            unknown = sorted(set(folds) - set(known))
            if unknown:
                raise ValueError(f"{FLAGS.tfrecord_dir}: --folds {FLAGS.folds}: no case(s) "
                                 f"{unknown} in the manifest (cases: {known})")
    except (ValueError, OSError) as e:
        print(e, file=sys.stderr)
        return 1
    del cfg  # validated above; each fold gets its own (saved config + flags)
    cli.sigterm_as_interrupt()
    try:
        result = loocv.run_loocv(_fold_config, FLAGS.tfrecord_dir, FLAGS.model_dir, folds,
                                 stages=loocv.default_stages(FLAGS.strategy),
                                 force=FLAGS.force, batch_size=FLAGS.predict_batch_size,
                                 report=FLAGS.report)
    except KeyboardInterrupt:
        print(f"run_loocv: interrupted; the running fold saved its checkpoint (see "
              f"{layout.status_json(FLAGS.model_dir)}); run the same command again to resume",
              file=sys.stderr)
        return 130
    return 1 if any(e["status"] == "failed" for e in result.values()) else 0


def _fold_config(fold: int) -> config_lib.ExperimentConfig:
    """The fold's config: its saved config.yaml (or --config) + the config-key flags."""
    return config_lib.run_config_from_flags(layout.config_path(FLAGS.model_dir, fold))


if __name__ == "__main__":
    define_flags()
    cli.app_run(main, tensorflow=True)
