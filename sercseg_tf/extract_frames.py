"""Extracts one frame every N seconds (default 1, as the paper did) from ICSI videos.

Usage:
  sercseg-extract-frames data/synthetic/case*/video.wmv --output_dir frames
  sercseg-extract-frames clip.mp4 other.avi --output_dir frames --every_seconds 0.5

(also ``python -m sercseg_tf.extract_frames`` or ``python tools/extract_frames.py``)

`.../case05/video.wmv` -> OUTPUT_DIR/case05/frame_0000.png, ...; other videos use their
file stem as the case folder. Frame k is the video frame at t = k * every_seconds (index
round(t * fps)). An existing case folder (an earlier run) is an error for that video
unless ``--overwrite``, and always when it holds LabelMe ``*.json`` files (the
annotations would go with the old frames: move them out first). With ``--overwrite`` the
folder is replaced as a whole when its video is done (old frames never stay beside new
ones; a failure or kill leaves it as it was).

Exit status: 0 when every video was read; 1 when a video is unreadable or its case
folder may not be replaced (one error line naming it; the other videos are still
extracted). A video that stops decoding before its declared length (truncated) gets a
one-line warning with the seconds actually read and its frames are written; ``--strict``
makes that an error instead: exit 1, its case folder left as it was.
"""

from __future__ import annotations

import pathlib
import sys
import time
from collections.abc import Sequence

from sercseg_tf import atomic_io, cli
from sercseg_tf.data import video

FLAGS = cli.FLAGS


def define_flags() -> None:
    """Defines the tool's flags (idempotent; shared names via `cli.define_flag`)."""
    cli.define_flag("string", "output_dir", None, "Output folder (required).")
    cli.define_flag("float", "every_seconds", 1.0,
                    "Video sampling period in seconds (1, as the paper).")
    cli.define_flag("boolean", "progress", True,
                    "Progress bars on a terminal (--noprogress: off).")
    cli.define_flag("boolean", "strict", False,
                    "A truncated video is an error (exit 1, its folder left as it was).")
    cli.define_overwrite_flag()


def main(argv: Sequence[str]) -> int:
    """Absl entry point: ``argv[1:]`` are the videos; returns the process exit status."""
    videos = list(argv[1:])
    if not videos or not FLAGS.output_dir:
        print("extract_frames: give VIDEO... and --output_dir", file=sys.stderr)
        return 2
    if FLAGS.every_seconds <= 0:
        print(f"extract_frames: --every_seconds must be > 0, got {FLAGS.every_seconds}",
              file=sys.stderr)
        return 2
    names = [video.video_case_name(v) for v in videos]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        print(f"extract_frames: several videos map to the same case folder: {dup}", file=sys.stderr)
        return 2
    total, failed = 0, 0
    start = time.perf_counter()
    for path, name in zip(videos, names, strict=True):
        written, ok = _extract_one(path, name)
        total += written
        failed += not ok
    elapsed = time.perf_counter() - start
    print(f"extract_frames: {total} frames from {len(videos) - failed} of {len(videos)} "
          f"videos in {elapsed:.1f} s", file=sys.stderr)
    return 1 if failed else 0


def _extract_one(path: str, name: str) -> tuple[int, bool]:
    """Extracts one video; prints its line. Returns (frames written, counted as success)."""
    target = f"{FLAGS.output_dir}/{name}"
    try:
        folder = pathlib.Path(FLAGS.output_dir) / name
        notes = sorted(folder.glob("*.json")) if folder.is_dir() else []
        atomic_io.refuse_replacing(folder, FLAGS.overwrite, notes, "LabelMe file(s)",
                                   "move them out before extracting again")
        written = video.extract_frames(path, FLAGS.output_dir, FLAGS.every_seconds, name=name,
                                       progress=FLAGS.progress, allow_truncated=not FLAGS.strict)
    except video.VideoTruncatedError as err:
        if not FLAGS.strict:
            print(f"extract_frames: warning: {err}; {err.frames_read} frames -> {target}",
                  file=sys.stderr)
            return err.frames_read, True
        print(f"extract_frames: {err}; {target} left as it was (--strict)", file=sys.stderr)
        return 0, False
    except (video.VideoError, OSError) as err:
        print(f"extract_frames: {err}", file=sys.stderr)
        return 0, False
    print(f"{path}: {len(written)} frames -> {target}", file=sys.stderr)
    return len(written), True


def run(argv: Sequence[str]) -> int:
    """Runs the tool in-process on ``argv``; returns the exit status."""
    define_flags()
    return cli.run(main, argv, prog="extract_frames")


def entry() -> None:
    """Console script ``sercseg-extract-frames``."""
    define_flags()
    cli.app_run(main)


if __name__ == "__main__":
    entry()
