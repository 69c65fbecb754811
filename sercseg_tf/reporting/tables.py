"""Tables 1-3 and agreement statistics from per-frame CSVs, plus Markdown/HTML rendering.

Everything here is pandas/NumPy. Definitions (paper §2.4, §3):

- Table 2: IoU per class per frame (a class absent from both masks is NaN and left out),
  averaged over the frames of a case; the "average" column is the mean of the class
  means of that case; the AVG row is the mean of the per-case rows (as the paper's
  Table 2, whose AVG row equals the mean of its case rows).
- Table 3: relative error (eq. 5) ``RE = |A - M| / |M| * 100`` per frame and feature;
  frames where A or M is NaN, or where ``|M| <= floor`` (``RELATIVE_ERROR_FLOOR``), are
  left out and counted. Per case AVG = mean, SD = sample standard deviation (ddof=1)
  over frames; the AVG row is the mean of the per-case AVG and SD (as the paper's).
- Agreement (pooled over frames of all cases where both values are finite):
  Bland-Altman bias ``mean(A - M)`` and 95 % limits ``bias ± 1.96 sd(A - M)``
  (Bland & Altman 1986); ICC(2,1), two-way random effects, absolute agreement, single
  measurement (Shrout & Fleiss 1979); Lin's concordance correlation coefficient
  ``2 s_AM / (s_A² + s_M² + (mean_A - mean_M)²)`` with 1/n moments (Lin 1989);
  mean absolute error.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sercseg_tf import features, labels, layout, metrics, paper_values

CASE_COLUMN = "case"
AVERAGE_LABEL = "AVG"
TOTAL_LABEL = "Total"
# |M| at or below which the relative error (eq. 5) is undefined and the frame is left out
# of Table 3 (`metrics.DEFAULT_MIN_ABS_MANUAL`): f1, f2 are positive ratios (only M = 0 is
# excluded); f3, f4 are pixel offsets that cross zero, where eq. (5) explodes, so frames
# with |M| <= 1 px are excluded and counted.
RELATIVE_ERROR_FLOOR: dict[str, float] = dict(metrics.DEFAULT_MIN_ABS_MANUAL)
FEATURE_UNITS: dict[str, str] = {"f1": "", "f2": "", "f3": "px", "f4": "px"}
FEATURE_DESCRIPTIONS: dict[str, str] = {
    "f1": "sERC circularity 4πS_s/L_s²",
    "f2": "sERC / oocyte area ratio S_s/S_o",
    "f3": "C_ox − T_nx (oocyte centre to needle tip, x)",
    "f4": "C_oy − T_ny (oocyte centre to needle tip, y)",
}
IOU_CLASS_NAMES: tuple[str, ...] = tuple(labels.CLASS_NAMES[c] for c in labels.EVAL_CLASSES)
IOU_DISPLAY_NAMES: tuple[str, ...] = tuple(
    labels.CLASS_DISPLAY_NAMES[c] for c in labels.EVAL_CLASSES
)


# ---------------------------------------------------------------------------------------
# Statistics.


def relative_error(auto: np.ndarray, manual: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Relative error of eq. (5), ``|A - M| / |M| * 100`` [%] (`metrics.relative_error`).

    NaN where A or M is NaN or ``|M| <= floor``.
    """
    return metrics.relative_error(auto, manual, min_abs_manual=floor)


def bland_altman(auto: np.ndarray, manual: np.ndarray) -> dict[str, float]:
    """Bland-Altman bias and 95 % limits of ``d = A - M`` (`metrics.bland_altman`).

    ``bias = mean(d)``, ``sd = std(d, ddof=1)``, limits ``bias ± 1.96 sd``
    (Bland & Altman, Lancet 1986). Pairs with a NaN are dropped.
    """
    ba = metrics.bland_altman(auto, manual)
    return {"n": ba.n, "bias": ba.bias, "sd_diff": ba.sd,
            "loa_low": ba.loa_lower, "loa_high": ba.loa_upper}


def icc_2_1(auto: np.ndarray, manual: np.ndarray) -> float:
    """ICC(2,1) of Shrout & Fleiss (1979) for the two raters M and A (`metrics.icc_2_1`).

    Two-way random effects, absolute agreement, single measurement::

      ICC = (MSR - MSE) / (MSR + (k-1) MSE + k (MSC - MSE) / n),  k = 2.
    """
    a, m = _paired(auto, manual)
    return metrics.icc_2_1(np.column_stack([m, a])) if a.size else math.nan


def lins_ccc(auto: np.ndarray, manual: np.ndarray) -> float:
    """Lin's concordance correlation coefficient (Lin 1989; `metrics.lins_ccc`).

    ``ccc = 2 s_AM / (s_A² + s_M² + (mean_A - mean_M)²)`` with 1/n moments.
    """
    return metrics.lins_ccc(auto, manual)


def _paired(auto: np.ndarray, manual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(auto, dtype=np.float64).ravel()
    m = np.asarray(manual, dtype=np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(m)
    return a[ok], m[ok]


# ---------------------------------------------------------------------------------------
# Tables.


def table1(frames: pd.DataFrame) -> pd.DataFrame:
    """Table 1: frames per case, ours next to the paper's. Index: case id, then "Total"."""
    ours = frames.groupby(CASE_COLUMN).size() if len(frames) else pd.Series(dtype=int)
    cases = sorted(set(ours.index.astype(int)) | set(paper_values.TABLE1_FRAMES))
    rows = [{"case": c,
             "frames_ours": int(ours[c]) if c in ours.index else np.nan,
             "frames_paper": paper_values.TABLE1_FRAMES.get(c, np.nan)} for c in cases]
    rows.append({"case": TOTAL_LABEL, "frames_ours": int(ours.sum()),
                 "frames_paper": sum(paper_values.TABLE1_FRAMES.values())})
    return pd.DataFrame(rows).set_index("case")


def table2_iou(frames: pd.DataFrame) -> pd.DataFrame:
    """Table 2: mean IoU per case and class, with a last row AVG.

    Columns: oocyte, serc, needle, average, n_frames. Index: case id (int) and ``"AVG"``.
    """
    cols = list(layout.IOU_COLUMNS)
    per_case = frames.groupby(CASE_COLUMN)[cols].mean()  # pandas mean skips NaN
    per_case.columns = list(IOU_CLASS_NAMES)
    per_case["average"] = per_case[list(IOU_CLASS_NAMES)].mean(axis=1)
    per_case["n_frames"] = frames.groupby(CASE_COLUMN).size()
    per_case.index = per_case.index.astype(int)
    avg = per_case[[*IOU_CLASS_NAMES, "average"]].mean(axis=0)
    avg["n_frames"] = per_case["n_frames"].sum()
    out = pd.concat([per_case.astype(object), avg.to_frame(AVERAGE_LABEL).T.astype(object)])
    out.index.name = CASE_COLUMN
    return out


def table3_relative_error(frames: pd.DataFrame,
                          floor: dict[str, float] | None = None) -> pd.DataFrame:
    """Table 3: per case mean (avg) and sample SD (sd) of eq. (5) per feature; last row AVG.

    Columns ``f1_avg, f1_sd, ..., f4_sd`` and ``fK_n`` (frames used) and ``fK_excluded``
    (frames with both values present but |M| under the floor). Index: case ids and "AVG".
    """
    floor = RELATIVE_ERROR_FLOOR if floor is None else floor
    re = relative_error_frames(frames, floor)
    rows = {}
    for case, grp in re.groupby(CASE_COLUMN):
        row = {}
        fcase = frames[frames[CASE_COLUMN] == case]
        for f in features.FEATURES:
            v = grp[f].to_numpy(dtype=np.float64)
            v = v[np.isfinite(v)]
            row[f"{f}_avg"] = float(v.mean()) if v.size else np.nan
            row[f"{f}_sd"] = float(v.std(ddof=1)) if v.size > 1 else np.nan
            row[f"{f}_n"] = int(v.size)
            a = fcase[f"auto_{f}"].to_numpy(dtype=np.float64)
            m = fcase[f"manual_{f}"].to_numpy(dtype=np.float64)
            both = np.isfinite(a) & np.isfinite(m)
            row[f"{f}_excluded"] = int((both & (np.abs(m) <= floor.get(f, 0.0))).sum())
        rows[int(case)] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    if out.empty:
        return out
    avg = {c: (out[c].mean() if c.endswith(("_avg", "_sd")) else out[c].sum())
           for c in out.columns}
    out = pd.concat([out.astype(object), pd.DataFrame([avg], index=[AVERAGE_LABEL])])
    out.index.name = CASE_COLUMN
    return out


def relative_error_frames(frames: pd.DataFrame,
                          floor: dict[str, float] | None = None) -> pd.DataFrame:
    """Per-frame relative errors (eq. 5) [%]: columns case, frame, f1..f4."""
    floor = RELATIVE_ERROR_FLOOR if floor is None else floor
    out = frames[[CASE_COLUMN, "frame"]].copy()
    for f in features.FEATURES:
        out[f] = relative_error(frames[f"auto_{f}"], frames[f"manual_{f}"], floor.get(f, 0.0))
    return out


def agreement(frames: pd.DataFrame) -> pd.DataFrame:
    """Agreement per feature, pooled over all frames (index f1..f4 and tip_px).

    Columns: n, n_nan_manual, n_nan_auto, mean_manual, mean_auto, bias, sd_diff, loa_low,
    loa_high, icc_2_1, lins_ccc, mae (mean |A - M|), median_ae. ``tip_px`` holds the
    Euclidean needle-tip distance: only n, mae and median_ae apply there.
    """
    rows = {}
    for f in features.FEATURES:
        a = frames[f"auto_{f}"].to_numpy(dtype=np.float64)
        m = frames[f"manual_{f}"].to_numpy(dtype=np.float64)
        pa, pm = _paired(a, m)
        ba = bland_altman(a, m)
        ae = np.abs(pa - pm)
        rows[f] = {
            "n": ba["n"], "n_nan_manual": int((~np.isfinite(m)).sum()),
            "n_nan_auto": int((~np.isfinite(a)).sum()),
            "mean_manual": float(pm.mean()) if pm.size else np.nan,
            "mean_auto": float(pa.mean()) if pa.size else np.nan,
            "bias": ba["bias"], "sd_diff": ba["sd_diff"],
            "loa_low": ba["loa_low"], "loa_high": ba["loa_high"],
            "icc_2_1": icc_2_1(a, m), "lins_ccc": lins_ccc(a, m),
            "mae": float(ae.mean()) if ae.size else np.nan,
            "median_ae": float(np.median(ae)) if ae.size else np.nan,
        }
    if "tip_error_px" in frames:
        t = frames["tip_error_px"].to_numpy(dtype=np.float64)
        t = t[np.isfinite(t)]
        rows["tip_px"] = {"n": int(t.size),
                          "mae": float(t.mean()) if t.size else np.nan,
                          "median_ae": float(np.median(t)) if t.size else np.nan}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "feature"
    return out


def absolute_error(frames: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample SD of |A - M| per case and feature (f3, f4 and tip in px); AVG row."""
    rows = {}
    for case, grp in frames.groupby(CASE_COLUMN):
        row = {}
        for f in features.FEATURES:
            ae = np.abs(grp[f"auto_{f}"].to_numpy(np.float64)
                        - grp[f"manual_{f}"].to_numpy(np.float64))
            ae = ae[np.isfinite(ae)]
            row[f"{f}_mae"] = float(ae.mean()) if ae.size else np.nan
            row[f"{f}_sd"] = float(ae.std(ddof=1)) if ae.size > 1 else np.nan
        if "tip_error_px" in grp:
            t = grp["tip_error_px"].to_numpy(np.float64)
            t = t[np.isfinite(t)]
            row["tip_mae"] = float(t.mean()) if t.size else np.nan
            row["tip_sd"] = float(t.std(ddof=1)) if t.size > 1 else np.nan
        rows[int(case)] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    if out.empty:
        return out
    out = pd.concat([out, out.mean(axis=0).to_frame(AVERAGE_LABEL).T])
    out.index.name = CASE_COLUMN
    return out


# ---------------------------------------------------------------------------------------
# Side-by-side (ours vs paper) rendering.


def _fmt(v, digits: int) -> str:
    if v is None:
        return "—"
    try:
        fv = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(fv):
        return "—"
    return f"{fv:.{digits}f}"


def _case_label(case) -> str:
    if case in (AVERAGE_LABEL, TOTAL_LABEL):
        return str(case)
    return f"Case{int(case)}"


def table1_rows(t1: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and rows of Table 1 (ours vs paper)."""
    header = ["Case", "Frames (ours)", "Frames (paper)"]
    rows = [[_case_label(c), _fmt(r["frames_ours"], 0), _fmt(r["frames_paper"], 0)]
            for c, r in t1.iterrows()]
    return header, rows


def table2_rows(t2: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and rows of Table 2 with ours and paper side by side for every column."""
    names = [*IOU_DISPLAY_NAMES, "Average"]
    keys = [*IOU_CLASS_NAMES, "average"]
    header = ["Case"] + [f"{n} {w}" for n in names for w in ("(ours)", "(paper)")] + [
        "Frames (ours)"]
    cases = [c for c in t2.index if c != AVERAGE_LABEL]
    all_cases = sorted(set(int(c) for c in cases) | set(paper_values.TABLE2_IOU))
    rows = []
    for c in [*all_cases, AVERAGE_LABEL]:
        ours = t2.loc[c] if c in t2.index else None
        paper = (paper_values.TABLE2_AVERAGE if c == AVERAGE_LABEL
                 else paper_values.TABLE2_IOU.get(c))
        row = [_case_label(c)]
        for k in keys:
            row.append(_fmt(ours[k] if ours is not None else None, 2))
            row.append(_fmt(paper[k] if paper is not None else None, 2))
        row.append(_fmt(ours["n_frames"] if ours is not None else None, 0))
        rows.append(row)
    return header, rows


def table3_rows(t3: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and rows of Table 3 (AVG, SD per feature) with ours and paper side by side."""
    header = ["Case"]
    for f in features.FEATURES:
        for s in ("AVG", "SD"):
            header += [f"{f} {s} (ours)", f"{f} {s} (paper)"]
    cases = [c for c in t3.index if c != AVERAGE_LABEL]
    all_cases = sorted(set(int(c) for c in cases) | set(paper_values.TABLE3_RELATIVE_ERROR))
    rows = []
    for c in [*all_cases, AVERAGE_LABEL]:
        ours = t3.loc[c] if c in t3.index else None
        paper = (paper_values.TABLE3_AVERAGE if c == AVERAGE_LABEL
                 else paper_values.TABLE3_RELATIVE_ERROR.get(c))
        row = [_case_label(c)]
        for f in features.FEATURES:
            for s in ("avg", "sd"):
                row.append(_fmt(ours[f"{f}_{s}"] if ours is not None else None, 2))
                row.append(_fmt(paper[f"{f}_{s}"] if paper is not None else None, 2))
        rows.append(row)
    return header, rows


def agreement_rows(ag: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the agreement table (ours only: the paper reports none)."""
    header = ["Feature", "n", "mean M", "mean A", "bias (A−M)", "LoA low", "LoA high",
              "ICC(2,1)", "Lin's CCC", "MAE", "median AE", "NaN M", "NaN A"]
    rows = []
    for f, r in ag.iterrows():
        unit = FEATURE_UNITS.get(f, "px")
        label = f"{f} [{unit}]" if unit else f
        d = 4 if f in ("f1", "f2") else 2
        rows.append([label, _fmt(r.get("n"), 0), _fmt(r.get("mean_manual"), d),
                     _fmt(r.get("mean_auto"), d), _fmt(r.get("bias"), d),
                     _fmt(r.get("loa_low"), d), _fmt(r.get("loa_high"), d),
                     _fmt(r.get("icc_2_1"), 3), _fmt(r.get("lins_ccc"), 3),
                     _fmt(r.get("mae"), d), _fmt(r.get("median_ae"), d),
                     _fmt(r.get("n_nan_manual"), 0), _fmt(r.get("n_nan_auto"), 0)])
    return header, rows


def absolute_error_rows(ae: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the absolute-error table (mean ± SD of |A − M| per case)."""
    header = ["Case", "|Δf1|", "|Δf2|", "|Δf3| [px]", "|Δf4| [px]", "tip error [px]"]
    rows = []
    for c, r in ae.iterrows():
        row = [_case_label(c)]
        for f, d in (("f1", 4), ("f2", 4), ("f3", 1), ("f4", 1), ("tip", 1)):
            m, s = r.get(f"{f}_mae"), r.get(f"{f}_sd")
            row.append(f"{_fmt(m, d)} ± {_fmt(s, d)}")
        rows.append(row)
    return header, rows


def to_markdown(header: Sequence[str], rows: Sequence[Sequence[str]],
                title: str | None = None, notes: Sequence[str] = ()) -> str:
    """Renders a GitHub-flavoured Markdown table (with optional title and notes)."""
    lines = []
    if title:
        lines += [f"### {title}", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for r in rows:
        lines.append("| " + " | ".join(str(x) for x in r) + " |")
    if notes:
        lines.append("")
        lines += [f"{n}  " if i < len(notes) - 1 else n for i, n in enumerate(notes)]
    return "\n".join(lines) + "\n"


def to_html(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Renders a plain HTML table; columns whose header ends in "(paper)" get class paper."""
    paper_cols = {i for i, h in enumerate(header) if h.endswith("(paper)")}
    paper_attr = ' class="paper"'
    out = ["<table>", "<thead><tr>"]
    out += [f"<th{paper_attr if i in paper_cols else ''}>{html.escape(h)}</th>"
            for i, h in enumerate(header)]
    out.append("</tr></thead><tbody>")
    for r in rows:
        cls = ' class="avg"' if r and str(r[0]) in (AVERAGE_LABEL, TOTAL_LABEL) else ""
        out.append(f"<tr{cls}>" + "".join(
            f"<td{paper_attr if i in paper_cols else ''}>{html.escape(str(x))}</td>"
            for i, x in enumerate(r)) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)
