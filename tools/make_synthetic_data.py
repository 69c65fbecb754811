"""Generates the synthetic ICSI dataset (videos, 1-per-second frames, LabelMe, ground truth).

Usage:
  python tools/make_synthetic_data.py --output_dir data/synthetic
  python tools/make_synthetic_data.py --output_dir /tmp/tiny --num_cases 2 --frames_per_case 3
  python tools/make_synthetic_data.py --output_dir data/synthetic --examples_dir docs
  python tools/make_synthetic_data.py --output_dir data/pretrain --num_cases 200 --vary_size
  python tools/make_synthetic_data.py --output_dir data/synthetic --num_cases 31 \
      --extra_case_frames 12     # Table 1's cases + 20 short extra training cases
  python tools/make_synthetic_data.py --output_dir data/synthetic --video_cases 5

Default: 11 cases with the paper's Table 1 frame counts, 480x640, 24 fps WMV videos.
More cases draw from the same ranges (listed in sercseg_tf/synthetic/scene.py); with
--vary_size each case also draws its stored frame size (4:3, square, 16:9, 3:2, PAL).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from absl import app, flags, logging

from sercseg_tf.synthetic import generator as synthetic

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Folder for caseNN/ sub-folders.")
flags.DEFINE_integer("num_cases", 11, "Number of cases (case01..caseNN).")
flags.DEFINE_integer(
    "frames_per_case", None, "Annotated frames (= video seconds) per case; default Table 1."
)
flags.DEFINE_integer(
    "extra_case_frames", None,
    "Annotated frames of each case beyond Table 1's 11 (case12 on); default: Table 1 cycled.",
)
flags.DEFINE_integer("seed", 0, "Dataset seed; case c draws from default_rng([seed, c, stream]).")
flags.DEFINE_bool("write_video", True, "Also write caseNN/video.wmv.")
flags.DEFINE_list(
    "video_cases", None,
    "Only these cases get video.wmv (e.g. 5); default every case. Their frames and "
    "annotations are the same either way (make demo: 97 s with every video, ~20 s without).",
)
flags.DEFINE_integer("fps", 24, "Video frame rate.")
flags.DEFINE_integer("height", 480, "Frame height.")
flags.DEFINE_integer("width", 640, "Frame width.")
flags.DEFINE_bool(
    "vary_size", False, "Each case draws its stored frame size (ignores --height/--width)."
)
flags.DEFINE_integer(
    "num_workers", min(2, os.cpu_count() or 1), "Cases generated in parallel (same output)."
)
flags.DEFINE_string(
    "examples_dir",
    None,
    "If set, also write example_caseNN.png (frame | overlay) and synthetic_grid.png (one "
    "frame from each of 12 cases, the README's range) there.",
)
flags.DEFINE_list("example_cases", ["1", "3", "5", "7"], "Cases drawn as examples.")
flags.mark_flag_as_required("output_dir")


def _video_cases() -> set[int] | None:
    """--video_cases as case numbers (None: every case); ValueError names the problem."""
    if FLAGS.video_cases is None:
        return None
    try:
        cases = {int(c) for c in FLAGS.video_cases}
    except ValueError:
        given = ",".join(FLAGS.video_cases)
        raise ValueError(f"--video_cases must be case numbers, got {given}") from None
    if not cases <= set(range(1, FLAGS.num_cases + 1)):
        raise ValueError(f"--video_cases {sorted(cases)} outside cases 1..{FLAGS.num_cases}")
    return cases


def _check_flags() -> None:
    """Raises ValueError with a one-line reason for an impossible flag combination."""
    if FLAGS.num_cases < 1:
        raise ValueError(f"--num_cases must be >= 1, got {FLAGS.num_cases}")
    for name in ("frames_per_case", "extra_case_frames"):
        if FLAGS[name].value is not None and FLAGS[name].value < 1:
            raise ValueError(f"--{name} must be >= 1, got {FLAGS[name].value}")
    if FLAGS.frames_per_case is not None and FLAGS.extra_case_frames is not None:
        raise ValueError("give --frames_per_case (every case) or --extra_case_frames "
                         "(cases beyond Table 1's), not both")  # fmt: skip


def main(argv: list[str]) -> int:
    """Generates the dataset and optional example overlays."""
    del argv
    try:
        _check_flags()
        video_cases = _video_cases()
    except ValueError as err:
        print(f"make_synthetic_data: {err}", file=sys.stderr)
        return 2
    frames = FLAGS.frames_per_case
    if frames is None and FLAGS.extra_case_frames is not None:
        frames = synthetic.table1_then(FLAGS.extra_case_frames, FLAGS.num_cases)
    start = time.perf_counter()
    try:
        paths = synthetic.generate_dataset(
            FLAGS.output_dir,
            num_cases=FLAGS.num_cases,
            frames_per_case=frames,
            seed=FLAGS.seed,
            write_video=FLAGS.write_video,
            image_size=(FLAGS.height, FLAGS.width),
            fps=FLAGS.fps,
            workers=FLAGS.num_workers,
            vary_size=FLAGS.vary_size,
            video_cases=video_cases,
        )
    except (OSError, ValueError) as err:
        print(f"make_synthetic_data: {FLAGS.output_dir}: {err}", file=sys.stderr)
        return 1
    logging.info(
        "wrote %d cases to %s in %.1f s", len(paths), FLAGS.output_dir, time.perf_counter() - start
    )
    if FLAGS.examples_dir:
        cases = [int(c) for c in FLAGS.example_cases if int(c) <= FLAGS.num_cases]
        for path in synthetic.save_examples(FLAGS.output_dir, FLAGS.examples_dir, cases):
            logging.info("example: %s", path)
        grid = Path(FLAGS.examples_dir) / synthetic.GRID_NAME
        logging.info("grid: %s", synthetic.save_grid(grid, FLAGS.seed, vary_size=FLAGS.vary_size))
    return 0


if __name__ == "__main__":
    app.run(main)
