"""Extracts one frame every N seconds (default 1, as the paper did) from ICSI videos.

Usage:
  python tools/extract_frames.py data/synthetic/case*/video.wmv --output_dir frames
  python tools/extract_frames.py clip.mp4 other.avi --output_dir frames --every_seconds 0.5

`.../case05/video.wmv` -> OUTPUT_DIR/case05/frame_0000.png, ...; other videos use their
file stem as the case folder. Frame k is the video frame at t = k * every_seconds
(index round(t * fps)). An unreadable video is one error line naming it (exit 1).
"""

from __future__ import annotations

import argparse
import sys
import time

from sercseg_tf.data import video


def main(argv: list[str] | None = None) -> int:
    """Runs the extraction; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="+", help="WMV, AVI or MP4 files.")
    parser.add_argument(
        "--output_dir", required=True, help="Root folder for <case>/frame_NNNN.png."
    )
    parser.add_argument("--every_seconds", type=float, default=1.0, help="Sampling period (s).")
    args = parser.parse_args(argv)
    if args.every_seconds <= 0:
        print(
            f"extract_frames: --every_seconds must be > 0, got {args.every_seconds}",
            file=sys.stderr,
        )
        return 2
    names = [video.video_case_name(v) for v in args.videos]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        print(f"extract_frames: several videos map to the same case folder: {dup}", file=sys.stderr)
        return 2
    total = 0
    start = time.perf_counter()
    for path, name in zip(args.videos, names, strict=True):
        try:
            written = video.extract_frames(path, args.output_dir, args.every_seconds, name=name)
        except video.VideoError as err:
            print(f"extract_frames: {err}", file=sys.stderr)
            return 1
        total += len(written)
        print(f"{path}: {len(written)} frames -> {args.output_dir}/{name}", file=sys.stderr)
    elapsed = time.perf_counter() - start
    print(
        f"extract_frames: {total} frames from {len(args.videos)} videos in {elapsed:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
