"""Formats the report's tables: Markdown and HTML, ours beside the paper's values.

The numbers come from `sercseg_tf.metrics` (Tables 2, 3, agreement and absolute error,
where their definitions are documented); this module only lays them out: header and rows
per table with our value beside the paper's (`sercseg_tf.paper_values`), rendered as
GitHub-flavoured Markdown or a plain HTML table.

`table1` stays here: its only computation is a frame count per case, and its point is the
join of that count with the paper's Table 1, the same ours-beside-paper presentation as
the rows of the other tables.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sercseg_tf import features, labels, layout, metrics, paper_values

TOTAL_LABEL = "Total"
FEATURE_UNITS: dict[str, str] = {"f1": "", "f2": "", "f3": "px", "f4": "px"}
FEATURE_DESCRIPTIONS: dict[str, str] = {
    "f1": "sERC circularity 4πS_s/L_s²",
    "f2": "sERC / oocyte area ratio S_s/S_o",
    "f3": "C_ox − T_nx (oocyte centre to needle tip, x)",
    "f4": "C_oy − T_ny (oocyte centre to needle tip, y)",
}
IOU_DISPLAY_NAMES: tuple[str, ...] = tuple(
    labels.CLASS_DISPLAY_NAMES[c] for c in labels.EVAL_CLASSES
)


def table1(frames: pd.DataFrame) -> pd.DataFrame:
    """Table 1: frames per case, ours next to the paper's. Index: case id, then "Total"."""
    ours = (frames.groupby(layout.CASE_COLUMN).size() if len(frames)
            else pd.Series(dtype=int))
    cases = sorted(set(ours.index.astype(int)) | set(paper_values.TABLE1_FRAMES))
    rows = [{"case": c,
             "frames_ours": int(ours[c]) if c in ours.index else np.nan,
             "frames_paper": paper_values.TABLE1_FRAMES.get(c, np.nan)} for c in cases]
    rows.append({"case": TOTAL_LABEL, "frames_ours": int(ours.sum()),
                 "frames_paper": sum(paper_values.TABLE1_FRAMES.values())})
    return pd.DataFrame(rows).set_index("case")


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
    if case in (metrics.AVG_ROW, TOTAL_LABEL):
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
    keys = [*metrics.IOU_CLASS_NAMES, "average"]
    header = ["Case"] + [f"{n} {w}" for n in names for w in ("(ours)", "(paper)")] + [
        "Frames (ours)"]
    cases = [c for c in t2.index if c != metrics.AVG_ROW]
    all_cases = sorted(set(int(c) for c in cases) | set(paper_values.TABLE2_IOU))
    rows = []
    for c in [*all_cases, metrics.AVG_ROW]:
        ours = t2.loc[c] if c in t2.index else None
        paper = (paper_values.TABLE2_AVERAGE if c == metrics.AVG_ROW
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
    cases = [c for c in t3.index if c != metrics.AVG_ROW]
    all_cases = sorted(set(int(c) for c in cases) | set(paper_values.TABLE3_RELATIVE_ERROR))
    rows = []
    for c in [*all_cases, metrics.AVG_ROW]:
        ours = t3.loc[c] if c in t3.index else None
        paper = (paper_values.TABLE3_AVERAGE if c == metrics.AVG_ROW
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
        cls = ' class="avg"' if r and str(r[0]) in (metrics.AVG_ROW, TOTAL_LABEL) else ""
        out.append(f"<tr{cls}>" + "".join(
            f"<td{paper_attr if i in paper_cols else ''}>{html.escape(str(x))}</td>"
            for i, x in enumerate(r)) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)
