"""``features_over_time.png``: f1-f4 and the class areas of one input against time.

Six stacked panels sharing the x axis (time in s for a video, frame number for a
folder): f1, f2, f3 and f4 (px), the class areas (px, one line per class in its overlay
colour) and the confidence with the low-confidence threshold. A frame where a feature
is undefined is a gap in its line (NaN), so missing needles or sERC show. matplotlib
with the Agg backend; no TensorFlow.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pandas as pd

from sercseg_tf import atomic_io, labels
from sercseg_tf.features import FEATURES

FEATURE_TITLES = {"f1": "f1 sERC circularity", "f2": "f2 sERC / oocyte area",
                  "f3": "f3 centroid x - tip x [px]", "f4": "f4 centroid y - tip y [px]"}


def plot_features_over_time(rows: pd.DataFrame, path: str | os.PathLike, title: str,
                            min_confidence: float) -> pathlib.Path:
    """Draws the panels (module docstring) for one input's rows and saves the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = pd.to_numeric(rows["time_s"], errors="coerce")
    x = times if times.notna().all() else rows["frame"]
    fig, axes = plt.subplots(6, 1, figsize=(8, 11), sharex=True)
    for ax, f in zip(axes, FEATURES, strict=False):
        ax.plot(x, rows[f], marker=".", linewidth=1)
        ax.set_ylabel(f)
        ax.set_title(FEATURE_TITLES[f], fontsize=9, loc="left")
    for c in labels.EVAL_CLASSES:
        colour = np.asarray(labels.CLASS_COLOURS[c]) / 255.0
        axes[4].plot(x, rows[f"area_{labels.CLASS_NAMES[c]}"], color=colour,
                     label=labels.CLASS_DISPLAY_NAMES[c], linewidth=1)
    axes[4].set_ylabel("area [px]")
    axes[4].legend(fontsize=8, loc="upper right")
    axes[5].plot(x, rows["confidence"], marker=".", linewidth=1, color="black")
    axes[5].axhline(min_confidence, color="red", linestyle="--", linewidth=1)
    axes[5].set_ylabel("confidence")
    axes[5].set_xlabel("time [s]" if x is times else "frame")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = pathlib.Path(path)
    with atomic_io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return path
