"""The `make demo` job: synthetic ICSI cases -> TFRecords -> fold 5 -> IoU next to the paper.

Runs each stage as the command a user would type, so the demo doubles as a worked
example. Stages that are already complete are skipped (synthetic data are reused,
training resumes from its last checkpoint, and the evaluation and export are kept while
they are newer than the fold's checkpoints), so a second `make demo` is fast. An
evaluation or export older than the checkpoints (training went on, e.g. after raising
``num_steps``) is made again with ``--overwrite``: it describes a checkpoint the run
has moved past.

Usage:
    python tools/run_demo.py [--data_dir data] [--model_dir runs/demo] [--fold 5]
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

from absl import app, flags

from sercseg_tf import labels, layout, paper_values
from sercseg_tf.synthetic.generator import VIDEO_NAME

REPO = Path(__file__).resolve().parents[1]
FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "data", "Synthetic cases and TFRecords go here.")
flags.DEFINE_string("model_dir", "runs/demo", "Runs folder of the demo's fold.")
flags.DEFINE_string("config", "configs/demo.yaml", "Experiment config.")
flags.DEFINE_integer("fold", 5, "Held-out case.")
flags.DEFINE_integer(
    "extra_cases", 20,
    "Synthetic cases beyond Table 1's 11 (case12 on), used only for training: each case "
    "draws one look, and 10 looks cover the clinic ranges too thinly to generalise.",
)
flags.DEFINE_integer("extra_case_frames", 12, "Annotated frames per extra case.")


def _run(argv: list[str]) -> None:
    """Runs one pipeline command from the repository root, echoing it; exits on failure."""
    print(f"\n$ {shlex.join(argv)}", flush=True)
    start = time.monotonic()
    result = subprocess.run([sys.executable, *argv], cwd=REPO)
    if result.returncode != 0:
        sys.exit(f"demo: command failed with exit code {result.returncode}: {shlex.join(argv)}")
    print(f"  ({time.monotonic() - start:.0f} s)", flush=True)


def _is_current(output: Path, *inputs: Path) -> bool:
    """True when ``output`` exists and is newer than every file in ``inputs``.

    ``inputs`` are files or folders (searched recursively).
    """
    if not output.is_file():
        return False
    files = [p for i in inputs for p in ([i] if i.is_file() else i.rglob("*")) if p.is_file()]
    return all(output.stat().st_mtime > p.stat().st_mtime for p in files)


def _run_unless_current(module: str, common: list[str], output: Path, *inputs: Path) -> None:
    """Runs ``python -m module`` unless its ``output`` is newer than its ``inputs``.

    What it replaces then is the demo's own output, older than its checkpoints or left
    incomplete (e.g. ``iou.csv`` without ``iou_mean.csv``), hence ``--overwrite``.
    """
    if _is_current(output, *inputs):
        print(f"\n{output} is newer than the checkpoints; reusing it.", flush=True)
        return
    _run(["-m", module, *common, "--overwrite"])


def _print_iou_table(iou_mean_csv: Path, fold: int) -> None:
    """Prints the held-out IoU per class next to the paper's row for the same case."""
    import pandas as pd

    ours = pd.read_csv(iou_mean_csv).iloc[0]
    paper = paper_values.TABLE2_IOU[fold]
    names = [labels.CLASS_NAMES[c] for c in labels.EVAL_CLASSES]
    header = ["", *[labels.CLASS_DISPLAY_NAMES[c] for c in labels.EVAL_CLASSES], "Average"]
    ours_row = [float(ours[n]) for n in names]
    paper_row = [paper[n] for n in names]
    rows = [
        (f"Case {fold} paper (clinical data)", paper_row + [paper["average"]]),
        (f"Case {fold} ours (synthetic data)", ours_row + [sum(ours_row) / len(ours_row)]),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\nHeld-out IoU, fold {fold} (paper Table 2 row vs this run)")
    print(f"{header[0]:<{width}}  " + "  ".join(f"{h:>8}" for h in header[1:]))
    for name, values in rows:
        print(f"{name:<{width}}  " + "  ".join(f"{v:8.2f}" for v in values))


def main(argv: list[str]) -> None:
    """Runs the demo pipeline end to end."""
    del argv
    args = FLAGS

    synthetic_dir = Path(args.data_dir) / "synthetic"
    tfrecord_dir = Path(args.data_dir) / "tfrecords"
    total = time.monotonic()

    num_cases = len(paper_values.FRAMES_PER_CASE) + args.extra_cases
    last_case = synthetic_dir / labels.case_name(num_cases)
    if (last_case / "ground_truth.json").exists():
        print(f"Synthetic cases already in {synthetic_dir}; reusing them.")
    else:
        # Training reads only the 1-per-second frames, and writing every case's video took
        # this stage from ~20 s to 97 s, so only the held-out case gets one (for predict).
        _run(["tools/make_synthetic_data.py", f"--output_dir={synthetic_dir}",
              f"--num_cases={num_cases}", f"--extra_case_frames={args.extra_case_frames}",
              f"--video_cases={args.fold}"])

    # Always rebuilt: it is quick and prints Table 1.
    _run([
        "tools/build_tfrecords.py",
        f"--labelme_dir={synthetic_dir}",
        f"--output_dir={tfrecord_dir}",
    ])

    common = [
        f"--config={args.config}",
        f"--tfrecord_dir={tfrecord_dir}",
        f"--model_dir={args.model_dir}",
        f"--fold={args.fold}",
    ]
    _run(["-m", "sercseg_tf.train", *common])
    checkpoints = layout.checkpoint_dir(args.model_dir, args.fold)
    iou_mean = layout.eval_dir(args.model_dir, args.fold) / layout.IOU_MEAN_CSV
    export = layout.export_dir(args.model_dir, args.fold)
    _run_unless_current("sercseg_tf.evaluate", common, iou_mean, checkpoints)
    # The export's model card carries the evaluation's IoU: newer than both.
    _run_unless_current("sercseg_tf.export", common, export / layout.SAVED_MODEL_PB,
                        checkpoints, iou_mean)

    _print_iou_table(iou_mean, args.fold)
    print(f"\nSavedModel: {export}")
    video_path = synthetic_dir / labels.case_name(args.fold) / VIDEO_NAME
    print(f"Try it on the held-out case's video: sercseg-predict --saved_model {export} "
          f"{video_path} --output_dir {Path(args.model_dir) / 'predictions'}")
    print(f"TensorBoard: tensorboard --logdir {args.model_dir}")
    print(f"Demo finished in {(time.monotonic() - total) / 60:.1f} min.")


if __name__ == "__main__":
    app.run(main)
