"""Extracts one frame every N seconds (default 1, as the paper did) from ICSI videos.

Usage:
  python tools/extract_frames.py data/synthetic/case*/video.wmv --output_dir frames
  python tools/extract_frames.py clip.mp4 other.avi --output_dir frames --every_seconds 0.5

`.../case05/video.wmv` -> OUTPUT_DIR/case05/frame_0000.png, ...; other videos use their
file stem as the case folder. Frame k is the video frame at t = k * every_seconds
(index round(t * fps)). A case folder is replaced as a whole when its video is done
(old frames never stay beside new ones; a failure or kill leaves it as it was).

Exit status: 0 when every video was read to its end; 1 when a video is unreadable or
truncated (its data ends before its declared duration: one line with the seconds
actually read); the other videos are still extracted. A truncated video's folder is
left as it was unless ``--allow_truncated`` writes the frames it has (the line is
still printed, exit 0).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from absl import app

from sercseg_tf import cli
from sercseg_tf.data import video

FLAGS = cli.FLAGS


def define_flags() -> None:
    """Defines the tool's flags (idempotent; shared names via `cli.define_flag`)."""
    cli.define_flag("string", "output_dir", None, "Output folder (required).")
    cli.define_flag("float", "every_seconds", 1.0,
                    "Video sampling period in seconds (1, as the paper).")
    cli.define_flag("boolean", "allow_truncated", False,
                    "Write the frames of a truncated video (exit 0) instead of failing.")


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
    """Extracts one video; prints its line. Returns (frames written, read completely)."""
    target = f"{FLAGS.output_dir}/{name}"
    try:
        written = video.extract_frames(path, FLAGS.output_dir, FLAGS.every_seconds, name=name,
                                       allow_truncated=FLAGS.allow_truncated)
    except video.VideoTruncatedError as err:
        if FLAGS.allow_truncated:
            print(f"extract_frames: {err}; {err.frames_yielded} frames -> {target}",
                  file=sys.stderr)
            return err.frames_yielded, True
        print(f"extract_frames: {err}; {target} left as it was (--allow_truncated writes "
              "these frames)", file=sys.stderr)
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


if __name__ == "__main__":
    define_flags()
    app.run(main)
