"""The review loop around predicted LabelMe files: what to annotate next, what to keep.

``--select N`` ranks every frame of ``DIR/features.csv`` that has a predicted LabelMe
file still flagged ``predicted`` by its confidence (`sercseg_tf.prediction.uncertainty`,
lowest first) and takes the N least confident: ``DIR/to_annotate.txt`` lists them and
``DIR/to_annotate/NAME_<frame>.{png,json}`` are copies to open with
``labelme DIR/to_annotate``. A copy that exists already is kept (it may hold your
corrections), and so is everything else in that folder.

`reviewed_files` finds LabelMe files whose ``predicted`` flag was cleared: predict
refuses to replace an input folder holding any, so a re-run never destroys a review.
No TensorFlow here.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil

import pandas as pd

from sercseg_tf import atomic_io
from sercseg_tf.data.labelme import PREDICTED_FLAG
from sercseg_tf.prediction import paths

LABELME_FILE_COLUMN = "labelme_file"  # features.csv: NAME/labelme/<frame>.json or ""


def is_flagged_predicted(json_path: str | os.PathLike) -> bool:
    """True when the LabelMe file's image flags still say ``predicted: true``."""
    try:
        flags = json.loads(pathlib.Path(json_path).read_text(encoding="utf-8")).get("flags")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(flags, dict) and flags.get(PREDICTED_FLAG) is True


def reviewed_files(folder: str | os.PathLike) -> list[pathlib.Path]:
    """LabelMe files under ``folder`` whose ``predicted`` flag is no longer set."""
    root = pathlib.Path(folder)
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*.json") if not is_flagged_predicted(p))


def _copy_for_review(root: pathlib.Path, rel_json: str, target_stem: str) -> pathlib.Path:
    """Copies a frame's PNG and JSON into ``to_annotate/`` unless the JSON is there."""
    source = root / rel_json
    target_dir = root / paths.TO_ANNOTATE_SUBDIR
    target = target_dir / f"{target_stem}.json"
    if target.exists():
        return target
    doc = json.loads(source.read_text(encoding="utf-8"))
    image = source.with_name(doc["imagePath"])
    png = target_dir / f"{target_stem}{image.suffix}"
    target_dir.mkdir(parents=True, exist_ok=True)
    with atomic_io.atomic_path(png) as tmp:
        shutil.copyfile(image, tmp)
    doc["imagePath"] = png.name
    return atomic_io.atomic_write_text(target, json.dumps(doc, indent=1) + "\n")


def select_for_annotation(output_dir: str | os.PathLike, n: int) -> list[pathlib.Path]:
    """Writes ``to_annotate.txt`` and the copies for the N least confident frames.

    Returns:
      The JSON files in ``to_annotate/``, least confident first.
    """
    root = pathlib.Path(output_dir)
    table = root / paths.FEATURES_CSV
    df = pd.read_csv(table, keep_default_na=False) if table.is_file() else pd.DataFrame()
    if LABELME_FILE_COLUMN not in df:
        df = pd.DataFrame(columns=[LABELME_FILE_COLUMN, "confidence"])
    df = df[df[LABELME_FILE_COLUMN].astype(str) != ""]
    df = df[[is_flagged_predicted(root / f) for f in df[LABELME_FILE_COLUMN]]]
    df = df.assign(confidence=pd.to_numeric(df["confidence"], errors="coerce"))
    picked = df.sort_values("confidence", kind="stable").head(n)
    lines = ["# frames most worth annotating next: lowest confidence first "
             "(mean normalised entropy over the predicted objects and a 3 px band)",
             "# copy\tconfidence\tpredicted file"]
    copies = []
    for rel, conf in zip(picked[LABELME_FILE_COLUMN], picked["confidence"], strict=True):
        stem = pathlib.Path(rel).parts[0] + "_" + pathlib.Path(rel).stem
        copy = _copy_for_review(root, rel, stem)
        copies.append(copy)
        lines.append(f"{copy.relative_to(root).as_posix()}\t{conf:.4f}\t{rel}")
    atomic_io.atomic_write_text(root / paths.TO_ANNOTATE_TXT, "\n".join(lines) + "\n")
    return copies
