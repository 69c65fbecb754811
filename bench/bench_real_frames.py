"""Scores an exported SavedModel on real frames with manual masks (a domain-gap check).

Usage:
  python bench/bench_real_frames.py --export runs/demo/fold_05/export
      --images DIR --masks DIR [--mask_values oocyte=170,needle=85]
      [--size 480x640] [--output_csv FILE] [--overlay_dir DIR]
  python bench/bench_real_frames.py --export runs/demo/fold_05/export --labelme_dir DIR

For each ``DIR/name.png`` (or .jpg) in ``--images`` the mask ``--masks/name.png`` (grey
levels) is read and mapped to class ids by ``--mask_values`` (grey level of each class;
every other level is background). Or, with ``--labelme_dir``, every LabelMe file of
the case folders under DIR (the layout of ``tools/build_tfrecords.py``: a clinic's
annotated frames, or synthetic cases drawn with another ``--seed``) gives the frame and
its label map (`sercseg_tf.data.labelme`, the ICSI paint order). The frame is resized
to ``--size`` (as a clinic would feed resized footage), run through the SavedModel's
``serving_default``, and the prediction resized back to the mask's size with
nearest-neighbour; IoU per class is `sercseg_tf.metrics.per_class_iou` (classes absent
from both maps are NaN and left out of the means; ``__ignore__`` pixels not counted).
Prints one row per frame and the mean per class; ``--overlay_dir`` writes frame | mask |
prediction overlays to look at.

The project keeps no real frames (licences): point it at your own annotated frames.
BUILD_NOTES.md says which public frames we scored and how they were cut out.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("export", None, "Exported SavedModel folder.")
flags.DEFINE_string("images", None, "Folder of real frames (.png / .jpg).")
flags.DEFINE_string("masks", None, "Folder of grey-level masks named like the frames (.png).")
flags.DEFINE_string("labelme_dir", None,
                    "Instead of --images/--masks: a folder of LabelMe case folders.")
flags.DEFINE_list("mask_values", ["oocyte=170", "needle=85"],
                  "class=grey level pairs in the masks; other levels are background.")
flags.DEFINE_string("size", "480x640", "HxW each frame is resized to before inference.")
flags.DEFINE_string("output_csv", None, "Optional CSV of per-frame IoU.")
flags.DEFINE_string("overlay_dir", None, "Optional folder for frame | mask | prediction overlays.")
flags.mark_flags_as_required(["export"])

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _mask_to_labels(mask, values: dict[str, int]):
    """Grey-level mask -> class-id map (background elsewhere)."""
    import numpy as np

    from sercseg_tf import labels

    out = np.zeros(mask.shape, np.int32)
    for name, level in values.items():
        out[mask == level] = labels.DEFAULT_LABEL_MAP[labels.normalize_label_name(name)]
    return out


def _grey_mask_frames(values: dict[str, int]):
    """Yields ``(name, overlay stem, rgb, label map)`` of ``--images`` with their ``--masks``."""
    import cv2

    frames = sorted(p for p in Path(FLAGS.images).iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    for path in frames:
        mask_path = Path(FLAGS.masks) / f"{path.stem}.png"
        rgb = cv2.imread(str(path), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        if rgb is None or mask is None:
            raise SystemExit(f"{path if rgb is None else mask_path}: not a readable image")
        yield path.name, path.stem, rgb[..., ::-1], _mask_to_labels(mask, values)


def _labelme_frames(root: str):
    """Yields ``(case/file name, overlay stem, rgb, labels)`` of each LabelMe file in ``root``."""
    from sercseg_tf.data import cases, labelme

    found, problems = cases.discover_cases(root)
    if problems:
        raise SystemExit("; ".join(problems))
    for case in found:
        for frame in case.frames:
            try:
                annotation = labelme.load_annotation(frame.json_path)
            except labelme.LabelMeError as e:
                raise SystemExit(str(e)) from None
            name = f"{case.folder.name}/{frame.json_path.stem}"
            yield (name, name.replace("/", "_"), annotation.image,
                   annotation.label.astype("int32"))


def main(argv: list[str]) -> None:
    del argv
    import cv2
    import numpy as np
    import pandas as pd

    from sercseg_tf import labels, metrics, visualize
    from sercseg_tf.model import inference

    values = {k: int(v) for k, v in (p.split("=") for p in FLAGS.mask_values)}
    unknown = {k for k in values if labels.normalize_label_name(k) not in labels.DEFAULT_LABEL_MAP}
    if unknown:
        raise app.UsageError(f"--mask_values: unknown classes {sorted(unknown)}")
    if (FLAGS.labelme_dir is None) == (FLAGS.images is None or FLAGS.masks is None):
        raise app.UsageError("give --images and --masks, or --labelme_dir")
    h, w = (int(v) for v in FLAGS.size.lower().split("x"))
    serve = inference.load_serving_fn(FLAGS.export)
    names = [labels.CLASS_NAMES[c] for c in labels.EVAL_CLASSES]
    rows = []
    source = (_labelme_frames(FLAGS.labelme_dir) if FLAGS.labelme_dir
              else _grey_mask_frames(values))
    for name, stem, rgb, gt in source:
        resized = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        pred = np.asarray(serve(resized[None])["semantic_pred"])[0]
        pred = cv2.resize(pred.astype(np.uint8), gt.shape[::-1], interpolation=cv2.INTER_NEAREST)
        iou = metrics.per_class_iou(pred, gt)
        rows.append({"frame": name, **{labels.CLASS_NAMES[c]: v for c, v in iou.items()}})
        cells = [f"  {labels.CLASS_NAMES[c]} {iou[c]:.3f}" for c in labels.EVAL_CLASSES]
        print(f"{name:<28}" + "".join(cells), flush=True)
        if FLAGS.overlay_dir:
            out = Path(FLAGS.overlay_dir)
            out.mkdir(parents=True, exist_ok=True)
            panel = visualize.overlay_panel(rgb, gt, pred)
            cv2.imwrite(str(out / f"{stem}.png"), panel[..., ::-1])
    table = pd.DataFrame(rows)
    print("mean " + "  ".join(f"{n} {table[n].mean():.3f} (n={table[n].notna().sum()})"
                              for n in names))
    if FLAGS.output_csv:
        table.to_csv(FLAGS.output_csv, index=False)


if __name__ == "__main__":
    app.run(main)
