"""Builds per-case TFRecord shards (deeplab2 keys) from LabelMe-annotated frames.

Usage:
  sercseg-build-tfrecords [--labelme_dir DIR] [--output_dir OUT]
      [--label_map FILE] [--skip_invalid] [--allow_predicted] [--shards_per_case 1]

(also ``python -m sercseg_tf.build_tfrecords`` or ``python tools/build_tfrecords.py``)

Input layout: every folder under ``--labelme_dir`` that holds LabelMe ``*.json`` files
is a case; its case id is the last integer in the folder name (``case05`` -> 5). A
case folder without a number is an error (rename it, e.g. ``case05``): case ids define
the leave-one-case-out folds and are never invented. Frame ids are the last integer
of each JSON file name (``frame_0007.json`` -> 7), else the sorted position.

Output: ``OUT/caseNN-SSSSS-of-NNNNN.tfrecord`` and ``OUT/manifest.json``. The build is
written into a hidden sibling of ``OUT`` and swapped in for ``OUT`` when complete
(`sercseg_tf.atomic_io.atomic_dir`), so a failed or killed run leaves the previous
build in ``OUT`` complete and untouched; ``OUT`` must hold nothing but a build. All
annotations are validated before anything is written: each problem is printed on one
line (file, shape index, reason) and the run exits 1, unless ``--skip_invalid`` writes
the valid frames and lists the skipped ones (also in the manifest). LabelMe files
written by ``predict --labelme`` and still marked ``predicted`` (not reviewed) are such
problems unless ``--allow_predicted``. With the default ``--labelme_dir`` the synthetic
set is generated first if it is absent. Ends by printing the paper's Table 1.
"""

from __future__ import annotations

import pathlib
import sys
import time
from collections.abc import Sequence

from sercseg_tf import cli

DEFAULT_LABELME_DIR = "data/synthetic"
DEFAULT_OUTPUT_DIR = "data/tfrecords"

FLAGS = cli.FLAGS


def define_flags() -> None:
    """Defines the command's flags (idempotent; shared names via `cli.define_flag`)."""
    cli.define_flag("string", "labelme_dir", DEFAULT_LABELME_DIR,
                    "Folder of LabelMe case folders.")
    cli.define_flag("string", "output_dir", DEFAULT_OUTPUT_DIR,
                    "Where shards and manifest.json go.")
    cli.define_flag("string", "label_map", None,
                    "Optional label map: YAML/JSON {name: id} or labelme2voc labels.txt.")
    cli.define_flag("boolean", "skip_invalid", False,
                    "Write the valid frames, list the skipped ones.")
    cli.define_flag("boolean", "allow_predicted", False,
                    "Accept LabelMe files still flagged 'predicted' (unreviewed predictions).")
    cli.define_flag("integer", "shards_per_case", 1, "Shards per case.", lower_bound=1)
    cli.define_flag("integer", "num_workers", None,
                    "Threads that rasterise/encode (default: CPUs).")
    cli.define_flag("boolean", "progress", True,
                    "Progress bars on a terminal (--noprogress: off).")


def main(argv: Sequence[str]) -> int:
    """Runs the build; returns the process exit status."""
    if len(argv) > 1:
        print(f"build_tfrecords: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return 1
    from sercseg_tf.data import tfrecord  # noqa: PLC0415  (slow TensorFlow import)

    labelme_dir = pathlib.Path(FLAGS.labelme_dir)
    if not labelme_dir.exists() and FLAGS.labelme_dir == DEFAULT_LABELME_DIR:
        from sercseg_tf.synthetic.generator import generate_dataset  # noqa: PLC0415

        print(f"{labelme_dir} not found: generating the synthetic set", flush=True)
        generate_dataset(labelme_dir)
    output_dir = FLAGS.output_dir or DEFAULT_OUTPUT_DIR  # None if predict defined it first
    start = time.perf_counter()
    try:
        manifest = tfrecord.build_tfrecords(
            labelme_dir,
            output_dir,
            label_map=FLAGS.label_map,
            skip_invalid=FLAGS.skip_invalid,
            shards_per_case=FLAGS.shards_per_case,
            num_workers=FLAGS.num_workers,
            allow_predicted=FLAGS.allow_predicted,
            progress=FLAGS.progress,
        )
    except tfrecord.TFRecordBuildError as e:
        for line in e.problems:
            print(line, file=sys.stderr)
        hint = "fix them, or pass --skip_invalid" if e.skippable and not FLAGS.skip_invalid \
            else "fix them"
        print(
            f"error: {len(e.problems)} problem(s); no TFRecords written, "
            f"{output_dir} unchanged ({hint})",
            file=sys.stderr,
        )
        return 1
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    frames = manifest["total_frames"]
    for entry in manifest["skipped"]:
        for problem in entry["problems"]:
            print(f"skipped: {problem}", file=sys.stderr)
    print(tfrecord.format_table1(manifest))
    print(
        f"wrote {frames} frames in {len(manifest['cases'])} cases to {output_dir} "
        f"in {seconds:.1f} s ({frames / seconds:.1f} frames/s); "
        f"skipped {len(manifest['skipped'])}"
    )
    return 0


def run(argv: Sequence[str]) -> int:
    """Runs the command in-process on ``argv``; returns the exit status."""
    define_flags()
    return cli.run(main, argv, prog="build_tfrecords", tensorflow=True)


def entry() -> None:
    """Console script ``sercseg-build-tfrecords``."""
    define_flags()
    cli.app_run(main, tensorflow=True)


define_flags()

if __name__ == "__main__":
    entry()
