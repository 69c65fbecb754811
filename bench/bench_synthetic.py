"""Measures the synthetic generator's speed (video frames rendered + encoded per second).

Usage:
  python bench/bench_synthetic.py                      # default 11 cases (579 annotated,
                                                       # 13,896 video frames), temp dir
  python bench/bench_synthetic.py --num_cases 2 --frames_per_case 10
  python bench/bench_synthetic.py --novideo            # annotated frames only
  python bench/bench_synthetic.py --num_cases 22 --vary_size

Prints one JSON line: rates, output size, a digest of the output (same seed -> same
digest) and the CPU (model name and SIMD flags from /proc/cpuinfo).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path

from absl import app, flags

from sercseg_tf import paper_values
from sercseg_tf.synthetic import generator as synthetic


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


flags.DEFINE_integer("num_cases", 11, "Cases to generate.")
flags.DEFINE_integer("frames_per_case", None, "Annotated frames per case; default Table 1.")
flags.DEFINE_integer("seed", 0, "Dataset seed.")
flags.DEFINE_boolean("video", True, "Also render and encode the videos (--novideo: off).")
flags.DEFINE_integer("num_workers", 1, "Cases generated in parallel.")
flags.DEFINE_string("output_dir", None, "Keep the output here (default: a temp dir).")
flags.DEFINE_boolean("vary_size", False, "Each case draws its stored frame size.")

_SIMD = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "amx_tile")


def _cpu() -> dict:
    """Model name and the SIMD flags (of `_SIMD`) that /proc/cpuinfo lists."""
    from sercseg_tf.training import precision

    found = precision.cpu_flags()
    return {"cpu": precision.cpu_model(), "cpu_flags": [f for f in _SIMD if f in found]}


def main(argv: list[str]) -> None:
    del argv
    args = flags.FLAGS
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.output_dir or tmp)
        start = time.perf_counter()
        cpu_start = time.process_time()
        paths = synthetic.generate_dataset(
            out,
            args.num_cases,
            args.frames_per_case,
            args.seed,
            write_video=args.video,
            workers=args.num_workers,
            vary_size=args.vary_size,
        )
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        if args.frames_per_case is None:
            counts = [
                paper_values.FRAMES_PER_CASE[(c - 1) % len(paper_values.FRAMES_PER_CASE)]
                for c in range(1, args.num_cases + 1)
            ]
        else:
            counts = [args.frames_per_case] * args.num_cases
        annotated = sum(counts)
        video_frames = 0 if not args.video else 24 * annotated
        rendered = annotated if not args.video else video_frames
        size_mb = sum(p.stat().st_size for c in paths for p in c.iterdir()) / 2**20
        result = {
            "cases": len(paths),
            "annotated_frames": annotated,
            "video_frames": video_frames,
            "seconds": round(elapsed, 2),
            "num_workers": args.num_workers,
            "rendered_frames_per_s": round(rendered / elapsed, 1),
            "annotated_frames_per_s": round(annotated / elapsed, 2),
            "output_mb": round(size_mb, 1),
            "digest": _digest(out),
            **_cpu(),
        }
        if args.num_workers == 1:  # CPU time of this process; wall time is noisy on a shared box
            result["cpu_seconds"] = round(cpu, 2)
            result["rendered_frames_per_cpu_s"] = round(rendered / cpu, 1)
        print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
