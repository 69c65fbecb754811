"""Every name under predict's ``--output_dir`` (``DIR``), in one place.

::

  DIR/NAME/labels/<frame>.png        palette PNG per frame: value = class id
  DIR/NAME/labelme/<frame>.{png,json} the frame and its predicted LabelMe polygons
                                      (``--labelme``; flagged "predicted")
  DIR/NAME/overlay.{mp4,webm}        colours, legend, time, markers, f1-f4 per frame
                                      (H.264 MP4 if OpenCV can write it, else VP8
                                      WebM); a single image gets overlay.png
  DIR/NAME/features.csv              one row per frame of this input
  DIR/NAME/summary.csv               one row: this input's summary
  DIR/NAME/features_over_time.png    f1-f4 and class areas against time
  DIR/NAME/run_info.json             model, version, arguments, date, status
  DIR/features.csv, DIR/summary.csv  rebuilt from every DIR/NAME present
  DIR/run_info.json                  every run into DIR, appended
  DIR/failures.txt                   this run's failed inputs (only if any)
  DIR/to_annotate.txt, to_annotate/  ``--select N``: frames worth annotating next

No TensorFlow here.
"""

from __future__ import annotations

import os
import pathlib

LABELS_SUBDIR = "labels"
LABELME_SUBDIR = "labelme"
OVERLAY_STEM = "overlay"
OVERLAY_IMAGE = "overlay.png"
FEATURES_CSV = "features.csv"
SUMMARY_CSV = "summary.csv"
TIMELINE_PNG = "features_over_time.png"
RUN_INFO_JSON = "run_info.json"
FAILURES_TXT = "failures.txt"
TO_ANNOTATE_TXT = "to_annotate.txt"
TO_ANNOTATE_SUBDIR = "to_annotate"
PARTIAL_SUFFIX = ".partial"


def input_dir(output_dir: str | os.PathLike, name: str) -> pathlib.Path:
    """Returns ``DIR/NAME``, the folder of one input."""
    return pathlib.Path(output_dir) / name


def partial_dir(output_dir: str | os.PathLike, name: str) -> pathlib.Path:
    """Returns ``DIR/.NAME.partial``, where an input is written before it is renamed."""
    return pathlib.Path(output_dir) / f".{name}{PARTIAL_SUFFIX}"


def input_dirs(output_dir: str | os.PathLike) -> list[pathlib.Path]:
    """The finished input folders of ``DIR`` (those holding a features.csv), by name."""
    root = pathlib.Path(output_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / FEATURES_CSV).is_file())
