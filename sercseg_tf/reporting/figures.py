"""Report figures with matplotlib (Agg backend, no display): Figures 3, 4, 6 and Bland-Altman.

- Figure 3: learning curve, training loss averaged over folds per step (band: min-max over
  folds), held-out loss averaged over folds where ``eval/history.csv`` has a loss column.
- Figure 4: per case, (a) input, (b) manual labels, (c) automatic labels over the input.
- Figure 6 style: per case, close-up around the needle tip of the frame with the largest
  tip error: (a) input, (b) manual needle mask, (c) automatic needle mask; manual tip
  marked with a green cross, automatic tip with a red dot in every panel.
- Bland-Altman plots (Bland & Altman 1986) of A - M against (A + M) / 2 for f1..f4, with
  the bias and the 95 % limits of agreement.
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from sercseg_tf import atomic_io, features, labels, layout, metrics, visualize  # noqa: E402
from sercseg_tf.reporting import tables  # noqa: E402

DPI = 110
TIP_CROP_HALF = 64  # half side of the Figure 6 close-up, px
_FILE_COLUMNS = ("image_file", "manual_file", "auto_file")


def _save(fig, path: pathlib.Path) -> pathlib.Path:
    try:
        with atomic_io.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _legend_handles():
    from matplotlib.patches import Patch
    return [Patch(color=np.array(labels.CLASS_COLOURS[c]) / 255.0,
                  label=labels.CLASS_DISPLAY_NAMES[c]) for c in labels.EVAL_CLASSES]


def learning_curve_table(histories: dict[int, dict[str, pd.DataFrame]]) -> pd.DataFrame:
    """Averages loss (and held-out mIoU) histories over folds per step.

    Args:
      histories: ``{fold: {"train": df(step, loss), "eval": df(step, loss, ..., miou)}}``;
        either entry may be missing.

    Returns:
      DataFrame indexed by step with columns ``{split}_{metric}_{mean,min,max,sd}`` and
      ``{split}_{metric}_n_folds`` for train loss, eval loss and eval miou (where
      present); NaN where a split has no value at a step.
    """
    parts = []
    for split, metric in (("train", "loss"), ("eval", "loss"), ("eval", "miou")):
        series = {}
        for fold, h in histories.items():
            df = h.get(split)
            if df is None or "step" not in df or metric not in df or df.empty:
                continue
            series[fold] = df.groupby("step")[metric].mean()
        if not series:
            continue
        wide = pd.DataFrame(series).sort_index()
        key = f"{split}_{metric}"
        parts.append(pd.DataFrame({
            f"{key}_mean": wide.mean(axis=1), f"{key}_min": wide.min(axis=1),
            f"{key}_max": wide.max(axis=1), f"{key}_sd": wide.std(axis=1),
            f"{key}_n_folds": wide.notna().sum(axis=1)}))
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, axis=1).sort_index()
    out.index.name = "step"
    return out


def figure3_learning_curve(curve: pd.DataFrame, path: pathlib.Path,
                           n_folds: int) -> pathlib.Path | None:
    """Plots the fold-averaged learning curve (paper Figure 3). None if no history.

    Left: training loss mean over folds (band min-max; with many steps a moving average
    over 2 % of the steps is drawn on top), held-out loss mean. Right (if recorded):
    held-out mean IoU averaged over folds.
    """
    if curve.empty:
        return None
    has_miou = "eval_miou_mean" in curve and curve["eval_miou_mean"].notna().any()
    fig, axes = plt.subplots(1, 2 if has_miou else 1, figsize=(12 if has_miou else 7, 4),
                             squeeze=False)
    ax = axes[0, 0]
    if "train_loss_mean" in curve:
        t = curve["train_loss_mean"].dropna()
        ax.plot(t.index, t.values, color="tab:blue", lw=0.8,
                label=f"train (mean of {n_folds} folds)")
        lo = curve.loc[t.index, "train_loss_min"]
        hi = curve.loc[t.index, "train_loss_max"]
        ax.fill_between(t.index, lo, hi, color="tab:blue", alpha=0.15, label="train min–max")
        if len(t) > 200:
            window = max(2, len(t) // 50)
            ax.plot(t.index, t.rolling(window, min_periods=1).mean(), color="navy", lw=1.5,
                    label=f"train, moving average ({window} steps)")
    if "eval_loss_mean" in curve:
        e = curve["eval_loss_mean"].dropna()
        ax.plot(e.index, e.values, "o-", color="tab:orange", label="held-out case (mean)")
    ax.set_xlabel("step")
    ax.set_ylabel("softmax cross-entropy loss")
    ax.set_title("Figure 3 (ours): learning curve averaged over folds")
    ax.grid(alpha=0.3)
    ax.legend()
    if has_miou:
        ax2 = axes[0, 1]
        m = curve["eval_miou_mean"].dropna()
        ax2.plot(m.index, m.values, "o-", color="tab:green", label="held-out mean IoU (mean)")
        ax2.fill_between(m.index, curve.loc[m.index, "eval_miou_min"],
                         curve.loc[m.index, "eval_miou_max"], color="tab:green", alpha=0.15,
                         label="min–max over folds")
        ax2.set_xlabel("step")
        ax2.set_ylabel("mean IoU (oocyte, sERC, needle)")
        ax2.set_ylim(0, 1)
        ax2.grid(alpha=0.3)
        ax2.legend()
    return _save(fig, path)


def _read(path: pathlib.Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def _pick_middle(df: pd.DataFrame) -> pd.Series:
    df = df.sort_values("frame")
    return df.iloc[len(df) // 2]


def _read_frame_files(fold_predict_dir: pathlib.Path,
                      row: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reads a frame row's input image, manual and automatic label maps (`_FILE_COLUMNS`)."""
    img, man, aut = (_read(fold_predict_dir / row[c]) for c in _FILE_COLUMNS)
    return img, man, aut

def figure4_case(frames_case: pd.DataFrame, fold_predict_dir: pathlib.Path,
                 path: pathlib.Path) -> pathlib.Path | None:
    """Figure 4 for one case: input / manual / automatic overlays of its middle frame."""
    if any(c not in frames_case for c in _FILE_COLUMNS):
        return None
    have = frames_case.dropna(subset=["image_file", "manual_file", "auto_file"])
    if have.empty:
        return None
    row = _pick_middle(have)
    try:
        img, man, aut = _read_frame_files(fold_predict_dir, row)
    except OSError:
        return None
    case = int(row["case"])
    iou = ", ".join(f"{n} {row[c]:.2f}" for n, c in zip(tables.IOU_DISPLAY_NAMES,
                                                          layout.IOU_COLUMNS, strict=True)
                    if np.isfinite(row[c]))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = [(img, "(a) input"), (visualize.overlay(img, man), "(b) manual (ground truth)"),
              (visualize.overlay(img, aut), "(c) automatic (DeepLab)")]
    for ax, (im, title) in zip(axes, panels, strict=True):
        ax.imshow(im)
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle(f"Figure 4 (ours): case {case}, frame {int(row['frame'])} — IoU {iou}")
    fig.legend(handles=_legend_handles(), loc="lower center", ncol=3, frameon=False)
    return _save(fig, path)


def figure6_case(frames_case: pd.DataFrame, fold_predict_dir: pathlib.Path,
                 path: pathlib.Path) -> pathlib.Path | None:
    """Figure 6 style needle-tip close-up of one case.

    Shows the frame with the largest manual-to-automatic tip error; if no frame has an
    automatic tip (the model found no needle), the middle frame with a manual tip, with
    the missing automatic tip stated in the title. None without any manual tip.
    """
    need = ["manual_tip_x", "manual_tip_y", "auto_tip_x", "auto_tip_y", "tip_error_px"]
    if any(c not in frames_case for c in [*need, *_FILE_COLUMNS]):
        return None
    files = list(_FILE_COLUMNS)
    both = frames_case.dropna(subset=[*need, *files])
    if not both.empty:
        row = both.loc[both["tip_error_px"].astype(float).idxmax()]
    else:
        manual_only = frames_case.dropna(subset=["manual_tip_x", "manual_tip_y", *files])
        if manual_only.empty:
            return None
        row = _pick_middle(manual_only)
    try:
        img, man, aut = _read_frame_files(fold_predict_dir, row)
    except OSError:
        return None
    h, w = man.shape[:2]
    mx, my = float(row["manual_tip_x"]), float(row["manual_tip_y"])
    ax_, ay_ = float(row["auto_tip_x"]), float(row["auto_tip_y"])
    has_auto = np.isfinite(ax_) and np.isfinite(ay_)
    cx, cy = ((mx + ax_) / 2, (my + ay_) / 2) if has_auto else (mx, my)
    dist = np.hypot(mx - ax_, my - ay_) if has_auto else 0.0
    half = max(TIP_CROP_HALF, int(np.ceil(dist / 2)) + 16)
    x0, x1 = int(max(0, cx - half)), int(min(w, cx + half))
    y0, y1 = int(max(0, cy - half)), int(min(h, cy + half))
    needle = labels.NEEDLE

    def mask_rgb(lab):
        m = (lab == needle)
        rgb = np.full(lab.shape + (3,), 255, np.uint8)
        rgb[m] = (0, 0, 0)
        return rgb

    panels = [(img, "(a) input"), (mask_rgb(man), "(b) needle, manual"),
              (mask_rgb(aut), "(c) needle, automatic")]
    fig, axes = plt.subplots(1, 3, figsize=(11, 4))
    for ax, (im, title) in zip(axes, panels, strict=True):
        ax.imshow(im[y0:y1, x0:x1], extent=(x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5),
                  interpolation="nearest")
        ax.plot([mx], [my], "+", color="lime", markersize=14, mew=2.5, label="manual tip")
        if has_auto:
            ax.plot([ax_], [ay_], "o", color="red", markersize=6, label="automatic tip")
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(loc="lower left", fontsize=8)
    detail = (f"tip error {float(row['tip_error_px']):.1f} px" if has_auto
              else "no automatic tip (no needle pixels predicted)")
    fig.suptitle(f"Figure 6 style (ours): case {int(row['case'])}, frame {int(row['frame'])}"
                 f" — {detail}")
    return _save(fig, path)


def bland_altman_plot(frames: pd.DataFrame, path: pathlib.Path) -> pathlib.Path | None:
    """Bland-Altman plots of f1..f4 (points coloured by case). None if nothing to plot."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), layout="constrained")
    plotted = False
    cases = sorted(frames["case"].unique()) if len(frames) else []
    cmap = plt.get_cmap("tab20")
    for ax, f in zip(axes.ravel(), features.FEATURES, strict=True):
        a = frames[f"auto_{f}"].to_numpy(np.float64)
        m = frames[f"manual_{f}"].to_numpy(np.float64)
        ok = np.isfinite(a) & np.isfinite(m)
        unit = tables.FEATURE_UNITS[f]
        ax.set_title(f"{f}: {tables.FEATURE_DESCRIPTIONS[f]}", fontsize=9)
        ax.set_xlabel(f"(A + M) / 2 {('[' + unit + ']') if unit else ''}")
        ax.set_ylabel(f"A − M {('[' + unit + ']') if unit else ''}")
        ax.grid(alpha=0.3)
        if not ok.any():
            ax.text(0.5, 0.5, "no frame with both values", ha="center", transform=ax.transAxes)
            continue
        plotted = True
        for i, c in enumerate(cases):
            sel = ok & (frames["case"].to_numpy() == c)
            ax.scatter((a[sel] + m[sel]) / 2, a[sel] - m[sel], s=10, color=cmap(i % 20),
                       label=f"case {int(c)}")
        ba = metrics.bland_altman(a, m)
        ax.axhline(ba.bias, color="k", lw=1.2, label=f"bias {ba.bias:.3g}")
        if np.isfinite(ba.sd_diff):
            for v in (ba.loa_low, ba.loa_high):
                ax.axhline(v, color="k", ls="--", lw=1)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle("Bland–Altman: automatic (A) vs manual (M); dashed = bias ± 1.96 SD")
    if not plotted:
        plt.close(fig)
        return None
    return _save(fig, path)


def scatter_plot(frames: pd.DataFrame, path: pathlib.Path) -> pathlib.Path | None:
    """Automatic against manual value per feature with the identity line."""
    fig, axes = plt.subplots(1, 4, figsize=(16, 4), layout="constrained")
    plotted = False
    for ax, f in zip(axes, features.FEATURES, strict=True):
        a = frames[f"auto_{f}"].to_numpy(np.float64)
        m = frames[f"manual_{f}"].to_numpy(np.float64)
        ok = np.isfinite(a) & np.isfinite(m)
        ax.set_title(f)
        ax.set_xlabel("manual M")
        ax.set_ylabel("automatic A")
        ax.grid(alpha=0.3)
        if not ok.any():
            continue
        plotted = True
        ax.scatter(m[ok], a[ok], s=8, c=frames["case"].to_numpy()[ok], cmap="tab20")
        lo = float(min(m[ok].min(), a[ok].min()))
        hi = float(max(m[ok].max(), a[ok].max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    if not plotted:
        plt.close(fig)
        return None
    return _save(fig, path)
