"""Per-input summaries and the combined tables of predict's output folder.

``summary.csv`` of an input is one row (pandas; no TensorFlow)::

  input, name, kind, frames, seconds_read, seconds_declared, truncated,
  frames_oocyte, frames_serc, frames_needle        frames where the class was predicted
  f1_n, f1_median, f1_q1, f1_q3, f1_iqr, ... f4_*  over the frames where f_k is defined
                                                   (q1, q3: 25th and 75th percentiles,
                                                   iqr = q3 - q1; f3, f4 in px)
  tip_depth_max_px                                 deepest needle tip into the oocyte
                                                   (`rows.tip_depth_px`; NaN: no frame
                                                   with both)
  confidence_median, low_confidence_frames         (`uncertainty`)
  + f3_median_um, f4_median_um, tip_depth_max_um   with a calibration

``DIR/features.csv`` and ``DIR/summary.csv`` are rebuilt from every ``DIR/NAME/``
present (`combine`), so a later run into the same folder adds to them.
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from sercseg_tf import atomic_io, labels
from sercseg_tf.features import FEATURES
from sercseg_tf.prediction import paths

FLOAT_FORMAT = "%.6g"


def _quartiles(values: pd.Series) -> dict[str, float]:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return {"n": 0, "median": math.nan, "q1": math.nan, "q3": math.nan, "iqr": math.nan}
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"n": int(v.size), "median": float(med), "q1": float(q1), "q3": float(q3),
            "iqr": float(q3 - q1)}


def input_summary(rows: pd.DataFrame, info: Mapping[str, Any]) -> dict[str, Any]:
    """The summary row of one input (module docstring).

    Args:
      rows: the input's ``features.csv`` rows.
      info: ``input, name, kind, seconds_read, seconds_declared, truncated`` and
        optionally ``um_per_px``.
    """
    out: dict[str, Any] = {k: info.get(k) for k in
                           ("input", "name", "kind", "seconds_read", "seconds_declared",
                            "truncated")}
    out["frames"] = len(rows)
    for c in labels.EVAL_CLASSES:
        name = labels.CLASS_NAMES[c]
        out[f"frames_{name}"] = int((rows[f"area_{name}"] > 0).sum())
    for f in FEATURES:
        out.update({f"{f}_{k}": v for k, v in _quartiles(rows[f]).items()})
    depth = pd.to_numeric(rows["tip_depth_px"], errors="coerce")
    out["tip_depth_max_px"] = float(depth.max()) if depth.notna().any() else math.nan
    out["confidence_median"] = float(rows["confidence"].median())
    out["low_confidence_frames"] = int(rows["low_confidence"].astype(bool).sum())
    um = info.get("um_per_px")
    if um:
        for key in ("f3_median", "f4_median", "tip_depth_max"):
            source = key if key != "tip_depth_max" else "tip_depth_max_px"
            out[f"{key}_um"] = out[source] * um
    return out


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> pathlib.Path:
    """Writes a table atomically (no index, 6 significant digits)."""
    return atomic_io.atomic_write_text(path, df.to_csv(index=False, float_format=FLOAT_FORMAT))


def combine(output_dir: str | os.PathLike) -> tuple[pathlib.Path | None, int]:
    """Rebuilds ``DIR/features.csv`` and ``DIR/summary.csv`` from every ``DIR/NAME/``.

    Returns:
      ``(path of DIR/features.csv or None when no input folder exists, its row count)``.
    """
    root = pathlib.Path(output_dir)
    folders = paths.input_dirs(root)
    if not folders:
        return None, 0
    features = pd.concat([pd.read_csv(f / paths.FEATURES_CSV) for f in folders],
                         ignore_index=True)
    summaries = [pd.read_csv(f / paths.SUMMARY_CSV) for f in folders
                 if (f / paths.SUMMARY_CSV).is_file()]
    if summaries:
        write_csv(pd.concat(summaries, ignore_index=True), root / paths.SUMMARY_CSV)
    return write_csv(features, root / paths.FEATURES_CSV), len(features)
