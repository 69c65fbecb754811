"""Leave-one-case-out reproduction from the command line (logic: `sercseg_tf.loocv`).

Usage::

  python tools/run_loocv.py [--config configs/paper.yaml] [--tfrecord_dir data/tfrecords] \
      [--model_dir runs] [--folds 1-11] [--strategy auto] [--num_steps N ...any config key...] \
      [--force] [--predict_batch_size 4] [--noreport]

Trains, evaluates, exports and predicts every selected fold, skipping finished ones, then
writes ``MODEL_DIR/report``. Exit status 1 if any selected fold failed (the report is
still written) or the arguments are wrong, else 0.
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
    cli.define_flag("boolean", "force", False, "Redo folds that are already finished.")
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
        if folds is not None:
            known = tfrecord.case_ids(FLAGS.tfrecord_dir)
            unknown = sorted(set(folds) - set(known))
            if unknown:
                raise ValueError(f"{FLAGS.tfrecord_dir}: --folds {FLAGS.folds}: no case(s) "
                                 f"{unknown} in the manifest (cases: {known})")
    except (ValueError, FileNotFoundError) as e:
        print(e, file=sys.stderr)
        return 1
    result = loocv.run_loocv(cfg, FLAGS.tfrecord_dir, FLAGS.model_dir, folds,
                             stages=loocv.default_stages(FLAGS.strategy), force=FLAGS.force,
                             batch_size=FLAGS.predict_batch_size, report=FLAGS.report)
    return 1 if any(e["status"] == "failed" for e in result.values()) else 0


if __name__ == "__main__":
    define_flags()
    cli.app_run(main, tensorflow=True)
