"""Cost and agreement of the post-processing against scipy's connected components.

Usage:
  python bench/bench_postprocess.py --export runs/demo/fold_05/export --images DIR
      [--size 480x640] [--repeats 9] [--needle_weight 4]

Each frame of ``--images`` (.png / .jpg) is resized to ``--size`` and run once through
the SavedModel; its class probabilities ``p`` give logits ``log p``. Timed on those
logits, ``--repeats`` times each (median and range per frame), each rule of
`sercseg_tf.model.postprocess` as a graph function against its peer in NumPy/scipy:

* ``keep_largest_oocyte``; the peer: ``argmax``, ``scipy.ndimage.label`` (8-connected)
  of oocyte ∪ sERC, the largest component kept;
* ``grow_needle`` with ``--needle_weight``; the peer: the weak and strong needle
  masks, ``scipy.ndimage.label`` of the weak one on pixels (8-connected), the
  components holding a strong pixel kept.

Also prints the SavedModel's own time per frame (the same frames, with the export's
settings) so the cost reads as a share of inference, and the pixels on which graph and
peer disagree (the graph joins regions less than ``BLOCK`` pixels apart).
Prints the CPU model and flags; compare figures from one run only.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("export", None, "Exported SavedModel folder.")
flags.DEFINE_string("images", None, "Folder of frames (.png / .jpg).")
flags.DEFINE_string("size", "480x640", "HxW each frame is resized to.")
flags.DEFINE_integer("repeats", 9, "Timed runs per frame and method.")
flags.DEFINE_float("needle_weight", 4.0, "grow_needle's prior factor w.")
flags.mark_flags_as_required(["export", "images"])


def _scipy_largest(logits):
    """The peer: largest 8-connected oocyte ∪ sERC component by scipy, others background."""
    import numpy as np
    from scipy import ndimage

    from sercseg_tf import labels

    pred = logits.argmax(-1)
    cell = (pred == labels.OOCYTE) | (pred == labels.SERC)
    comps, count = ndimage.label(cell, np.ones((3, 3), bool))
    if count > 1:
        sizes = np.bincount(comps.ravel())[1:]
        pred[cell & (comps != 1 + int(np.argmax(sizes)))] = labels.BACKGROUND
    return pred


def _scipy_grow(logits, weight: float):
    """The peer: weak needle pixels 8-connected (on pixels) to a strong one become needle."""
    import numpy as np
    from scipy import ndimage

    from sercseg_tf import labels

    pred = logits.argmax(-1)
    strong = pred == labels.NEEDLE
    shifted = logits.copy()
    shifted[..., labels.NEEDLE] += np.log(weight)
    weak = (shifted.argmax(-1) == labels.NEEDLE) | strong
    comps, _ = ndimage.label(weak, np.ones((3, 3), bool))
    pred[np.isin(comps, np.unique(comps[strong])) & (comps > 0)] = labels.NEEDLE
    return pred


def _timed(fn, repeats: int) -> tuple[float, object]:
    """(median seconds, last result) of ``repeats`` calls."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main(argv: list[str]) -> None:
    del argv
    import cv2
    import numpy as np
    import tensorflow as tf

    from sercseg_tf.model import inference, postprocess
    from sercseg_tf.training import precision

    print(f"CPU: {precision.cpu_model()}; flags: "
          + " ".join(sorted(f for f in precision.cpu_flags() if "avx512" in f or "amx" in f)))
    h, w = (int(v) for v in FLAGS.size.lower().split("x"))
    serve = inference.load_serving_fn(FLAGS.export)
    spec = [tf.TensorSpec([None, None, None, None], tf.float32)]
    rules = {
        "largest": (tf.function(postprocess.keep_largest_oocyte, input_signature=spec),
                    _scipy_largest),
        "needle": (tf.function(lambda x: postprocess.grow_needle(x, FLAGS.needle_weight),
                               input_signature=spec),
                   lambda x: _scipy_grow(x, FLAGS.needle_weight)),
    }
    rows = {name: [] for name in rules}
    for path in sorted(p for p in Path(FLAGS.images).iterdir()
                       if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
        rgb = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if rgb is None:
            raise SystemExit(f"{path}: not a readable image")
        frame = cv2.resize(rgb[..., ::-1], (w, h), interpolation=cv2.INTER_AREA)[None]
        t_model, out = _timed(lambda f=frame: serve(f), FLAGS.repeats)
        logits = np.log(np.maximum(np.asarray(out["semantic_probs"]), 1e-30)).astype(np.float32)
        line = f"{path.name:<28} model {t_model * 1e3:7.1f} ms"
        for name, (graph, peer_fn) in rules.items():
            graph(logits)  # trace once
            t_graph, got = _timed(lambda x=logits, g=graph: g(x).numpy(), FLAGS.repeats)
            t_peer, peer = _timed(lambda x=logits[0], f=peer_fn: f(x.copy()), FLAGS.repeats)
            differ = int((got[0].argmax(-1) != peer).sum())
            rows[name].append((t_model, t_graph, t_peer))
            line += (f" | {name}: graph {t_graph * 1e3:6.1f} ms, scipy {t_peer * 1e3:6.1f} ms, "
                     f"{differ} px differ")
        print(line, flush=True)
    for name, values in rows.items():
        model_t, graph_t, peer_t = (np.array(c) * 1e3 for c in zip(*values, strict=True))
        print(f"{name}, median over {len(values)} frames: model {np.median(model_t):.1f} ms, "
              f"graph {np.median(graph_t):.1f} ms [{graph_t.min():.1f}-{graph_t.max():.1f}] "
              f"({np.median(graph_t / model_t):.1%} of the model), scipy "
              f"{np.median(peer_t):.1f} ms [{peer_t.min():.1f}-{peer_t.max():.1f}]; "
              f"graph/scipy {np.median(graph_t / peer_t):.2f}x")


if __name__ == "__main__":
    app.run(main)
