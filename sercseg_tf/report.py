"""Builds the leave-one-case-out report (paper Tables 1-3, Figures 3, 4, 6) from CSVs.

Reads what ``tools/run_loocv.py`` and training wrote under ``MODEL_DIR`` (layout in
``sercseg_tf.layout``) and writes ``MODEL_DIR/report/``:

- ``table1.csv`` / ``.md``: frames per case.
- ``table2_iou.csv`` / ``.md``: mean IoU per case and class (paper Table 2).
- ``table3_relative_error.csv`` / ``.md``: relative error (eq. 5) AVG / SD per case
  (paper Table 3), with the |M| floor stated.
- ``agreement.csv`` / ``.md``: Bland-Altman bias and limits, ICC(2,1), Lin's CCC, mean
  absolute error per feature; ``absolute_error.csv`` / ``.md``: |A - M| per case.
- ``frames_all.csv`` (every held-out frame), ``relative_error_frames.csv``,
  ``learning_curve.csv``, ``report.md`` (all tables in one file).
- ``figures/``: Figure 3 learning curve, Figure 4 overlays per case, Figure 6 style tip
  close-ups per case, Bland-Altman and scatter plots (matplotlib, Agg).
- ``index.html`` assembling all of it (relative links, no JavaScript, no network).

Markdown and HTML tables put the paper's values beside ours; the paper's are from
clinical videos, ours from "your data" or "synthetic data" as the folds' training records
say (``fold_NN/training_data.json``, from the TFRecord manifest's ``data_source``). With
no predictions yet, the report names the command that makes them. No TensorFlow is
imported here.

Usage: ``python -m sercseg_tf.report --model_dir runs [--output_dir runs/report]``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
from collections.abc import Iterable

import pandas as pd

from sercseg_tf import atomic_io, cli, features, layout, metrics, model_card, paper_values
from sercseg_tf.reporting import figures, html_page, tables

FLAGS = cli.FLAGS
FIGURES_SUBDIR = "figures"
TABLE_ROWS = {"table1": tables.table1_rows, "table2_iou": tables.table2_rows,
              "table3_relative_error": tables.table3_rows, "agreement": tables.agreement_rows,
              "absolute_error": tables.absolute_error_rows}
TABLE_TITLES = {"table1": "Table 1: number of images per case",
                "table2_iou": "Table 2: average IoU",
                "table3_relative_error": "Table 3: average and SD of relative errors [%]",
                "agreement": "Agreement of automatic (A) and manual (M) features",
                "absolute_error": "Absolute errors |A − M| per case (mean ± SD)"}


@dataclasses.dataclass
class ReportResult:
    """What `build_report` wrote."""

    output_dir: pathlib.Path
    index_html: pathlib.Path
    files: list[pathlib.Path]
    folds_reported: list[int]
    folds_failed: dict[int, str]
    tables: dict[str, pd.DataFrame]


def load_frames(model_dir: str | os.PathLike, folds: Iterable[int]) -> pd.DataFrame:
    """Concatenates ``fold_NN/predict/frames.csv`` of the given folds (adds a fold column).

    The image / label file columns stay relative to each fold's predict directory.
    """
    parts = []
    for fold in folds:
        path = layout.frames_csv(model_dir, fold)
        if path.exists():
            df = pd.read_csv(path)
            df.insert(0, "fold", int(fold))
            parts.append(df)
    if not parts:
        return _empty_frames()
    return pd.concat(parts, ignore_index=True)


def _empty_frames() -> pd.DataFrame:
    cols = ["fold", "case", "frame", "filename", "image_file", "manual_file", "auto_file",
            *layout.IOU_COLUMNS, "tip_error_px"]
    cols += [f"{s}_{f}" for s in layout.SOURCES for f in features.FEATURES]
    cols += [f"{s}_tip_{a}" for s in layout.SOURCES for a in ("x", "y")]
    return pd.DataFrame({c: pd.Series(dtype=float) for c in cols})


def load_histories(model_dir: str | os.PathLike,
                   folds: Iterable[int]) -> dict[int, dict[str, pd.DataFrame]]:
    """Reads ``fold_NN/train/history.csv`` and ``fold_NN/eval/history.csv`` where present."""
    out: dict[int, dict[str, pd.DataFrame]] = {}
    for fold in folds:
        h = {}
        for split, folder in (("train", layout.train_dir(model_dir, fold)),
                              ("eval", layout.eval_dir(model_dir, fold))):
            p = folder / layout.HISTORY_CSV
            if p.exists() and p.stat().st_size > 0:
                try:
                    h[split] = pd.read_csv(p)
                except (pd.errors.ParserError, pd.errors.EmptyDataError):
                    continue
        if h:
            out[int(fold)] = h
    return out


def _write_csv(df: pd.DataFrame, path: pathlib.Path, files: list[pathlib.Path]) -> None:
    atomic_io.atomic_write_text(path, df.to_csv(float_format="%.6g"))
    files.append(path)


def _write_text(text: str, path: pathlib.Path, files: list[pathlib.Path]) -> None:
    atomic_io.atomic_write_text(path, text)
    files.append(path)


def data_source_phrase(model_dir: str | os.PathLike, folds: Iterable[int]) -> str:
    """"your data", "synthetic data", both, or "data of unknown source" for the folds.

    Read from each fold's ``training_data.json`` (`sercseg_tf.model_card`), which copies
    the TFRecord manifest's ``data_source``; folds trained before it existed are unknown.
    """
    sources = set()
    for fold in folds:
        try:
            record = model_card.read_json(layout.training_data_json(model_dir, fold))
        except model_card.ModelCardError:
            record = None
        sources.add((record or {}).get("data_source"))
    words = [w for key, w in ((model_card.USER_DATA, "your data"),
                              (model_card.SYNTHETIC, "synthetic data")) if key in sources]
    return " and ".join(words) if words else "data of unknown source"


def _status_rows(status: dict[int, dict]) -> tuple[list[str], list[list[str]]]:
    header = ["Fold", "Held-out case", "Status", "Seconds", "Detail"]
    rows = []
    for fold in sorted(status):
        s = status[fold]
        sec = s.get("seconds")
        rows.append([f"{fold:02d}", str(s.get("held_out_case", fold)), str(s.get("status", "?")),
                     f"{float(sec):.0f}" if isinstance(sec, (int, float)) else "",
                     str(s.get("error", "") or "")])
    return header, rows


def _fold_status(model_dir: pathlib.Path, folds: Iterable[int] | None,
                 failures: dict[int, str] | None) -> tuple[list[int], dict[int, dict]]:
    """The folds to report and their status (``loocv_status.json`` + this run's failures)."""
    status = layout.read_status(model_dir)
    for fold, reason in (failures or {}).items():
        status.setdefault(int(fold), {}).update({"status": "failed", "error": reason})
    if folds is None:
        return layout.list_folds(model_dir), status
    selected = sorted(set(int(f) for f in folds))
    return selected, {k: v for k, v in status.items() if k in selected}


def _table_notes(notes: list[str], t3: pd.DataFrame) -> dict[str, list[str]]:
    """The notes under each table (definitions, floors, exclusions)."""
    floor = ", ".join(f"{f}: {v:g}" for f, v in metrics.DEFAULT_MIN_ABS_MANUAL.items())
    excluded = ""
    if not t3.empty and metrics.AVG_ROW in t3.index:
        excluded = ", ".join(f"{f}: {int(t3.loc[metrics.AVG_ROW, f'{f}_excluded'])}"
                             for f in features.FEATURES)
    return {
        "table1": notes,
        "table2_iou": [*notes, "IoU per frame and class, a class absent from both masks left "
                       "out; mean over frames of a case; Average column = mean of the class "
                       "means; AVG row = mean of case rows; — = not run / no value."],
        "table3_relative_error": [
            *notes, "Relative error (eq. 5) = |A − M| / |M| × 100 per frame; AVG = mean and "
            "SD = sample SD over the frames of a case; AVG row = mean of case rows.",
            f"Frames with a NaN feature (missing region) or |M| ≤ floor ({floor}; "
            f"f3, f4 in px) are left out; left out for the floor: {excluded or 'n/a'}. "
            "— = not run, or no frame with both values (e.g. no needle predicted); "
            "frames used per case: fK_n in the CSV."],
        "agreement": [*notes, "Pooled over all held-out frames with both values; the paper "
                      "reports none of these. Bias and limits: A − M, bias ± 1.96 SD "
                      "(Bland–Altman). ICC(2,1): two-way random, absolute agreement, single "
                      "measure. tip_px: Euclidean manual-to-automatic needle tip distance."],
        "absolute_error": notes,
    }


def _write_tables(frames: pd.DataFrame, notes: list[str], status: dict[int, dict],
                  out: pathlib.Path, files: list[pathlib.Path]) -> tuple[dict, dict]:
    """Computes Tables 1-3 and agreement (`metrics`), writes CSV, Markdown and report.md.

    Returns:
      ``(tables {name: DataFrame}, rendered {name: (header, rows, notes)})``.
    """
    computed = {"table1": tables.table1(frames), "table2_iou": metrics.case_iou_table(frames),
                "table3_relative_error": metrics.relative_error_table(frames),
                "agreement": metrics.agreement_table(frames),
                "absolute_error": metrics.absolute_error_table(frames)}
    note_map = _table_notes(notes, computed["table3_relative_error"])
    rendered, markdown = {}, []
    for name, df in computed.items():
        header, rows = TABLE_ROWS[name](df)
        rendered[name] = (header, rows, note_map[name])
        text = tables.to_markdown(header, rows, title=TABLE_TITLES[name], notes=note_map[name])
        _write_csv(df, out / f"{name}.csv", files)
        _write_text(text, out / f"{name}.md", files)
        markdown.append(text)
    re_frames = metrics.relative_error_frames(frames)
    _write_csv(frames.set_index(["fold", "case", "frame"]), out / "frames_all.csv", files)
    _write_csv(re_frames.set_index(["case", "frame"]), out / "relative_error_frames.csv", files)
    sh, sr = _status_rows(status)
    _write_text("# sercseg_tf leave-one-case-out report\n\n"
                + "\n".join(f"- {n}" for n in notes) + "\n\n"
                + tables.to_markdown(sh, sr, title="Folds") + "\n"
                + "\n".join(markdown), out / "report.md", files)
    return computed, rendered


def _write_case_figures(frames: pd.DataFrame, model_dir: pathlib.Path, fig_dir: pathlib.Path,
                        files: list[pathlib.Path], fig_files: dict) -> None:
    """Figure 4 (input / manual / automatic) and Figure 6 (tip close-up) per case."""
    for (fold, case), grp in frames.groupby(["fold", "case"]):
        pdir = layout.predict_dir(model_dir, int(fold))
        p4 = figures.figure4_case(grp, pdir, fig_dir / f"figure4_case{int(case):02d}.png")
        if p4:
            files.append(p4)
            fig_files["fig4"].append((f"{FIGURES_SUBDIR}/{p4.name}",
                                      f"Case {int(case)}: (a) input, (b) manual, (c) automatic."))
        p6 = figures.figure6_case(grp, pdir, fig_dir / f"figure6_case{int(case):02d}.png")
        if p6:
            files.append(p6)
            fig_files["fig6"].append((f"{FIGURES_SUBDIR}/{p6.name}",
                                      f"Case {int(case)}: needle tip of the frame with the "
                                      "largest tip error, or the middle frame if no automatic "
                                      "tip (green + manual, red dot automatic)."))


def _write_figures(frames: pd.DataFrame, model_dir: pathlib.Path, folds: list[int],
                   out: pathlib.Path, files: list[pathlib.Path]) -> tuple[dict, bool]:
    """Figure 3 (learning curve), Figures 4 and 6 per case, Bland-Altman and scatter plots.

    Returns:
      ``({"fig3"|"fig4"|"fig6"|"ba": [(relative path, caption)]}, learning curve written)``.
    """
    fig_dir = out / FIGURES_SUBDIR
    fig_dir.mkdir(parents=True, exist_ok=True)
    histories = load_histories(model_dir, folds)
    curve = figures.learning_curve_table(histories)
    fig_files: dict[str, list[tuple[str, str]]] = {"fig3": [], "fig4": [], "fig6": [], "ba": []}
    if not curve.empty:
        _write_csv(curve, out / "learning_curve.csv", files)
    p = figures.figure3_learning_curve(curve, fig_dir / "figure3_learning_curve.png",
                                       n_folds=len(histories))
    if p:
        files.append(p)
        fig_files["fig3"].append((f"{FIGURES_SUBDIR}/{p.name}",
                                  f"Learning curve averaged over {len(histories)} fold(s)."))
    _write_case_figures(frames, model_dir, fig_dir, files, fig_files)
    for name, fn, cap in (("bland_altman.png", figures.bland_altman_plot,
                           "Bland–Altman plots of f1–f4."),
                          ("scatter_auto_vs_manual.png", figures.scatter_plot,
                           "Automatic against manual value per feature (dashed: identity).")):
        pb = fn(frames, fig_dir / name) if len(frames) else None
        if pb:
            files.append(pb)
            fig_files["ba"].append((f"{FIGURES_SUBDIR}/{pb.name}", cap))
    return fig_files, not curve.empty


def _html_sections(rendered: dict, status: dict[int, dict], fig_files: dict, has_curve: bool,
                   model_dir: pathlib.Path, out: pathlib.Path) -> list:
    """The sections of ``index.html``, in the paper's order."""
    sec = html_page.Section

    def table(name: str) -> str:
        return tables.to_html(*rendered[name][:2])

    status_link = ([os.path.relpath(layout.status_json(model_dir), out)]
                   if layout.status_json(model_dir).exists() else [])
    return [
        sec("Folds", "folds", table_html=tables.to_html(*_status_rows(status)),
            links=status_link),
        sec("Table 1: images per case", "table1", table_html=table("table1"),
            links=["table1.csv", "table1.md"]),
        sec("Table 2: average IoU", "table2", table_html=table("table2_iou"),
            notes=rendered["table2_iou"][2][2:], links=["table2_iou.csv", "table2_iou.md"]),
        sec("Table 3: relative errors [%]", "table3", table_html=table("table3_relative_error"),
            notes=rendered["table3_relative_error"][2][2:],
            links=["table3_relative_error.csv", "table3_relative_error.md",
                   "relative_error_frames.csv"]),
        sec("Agreement statistics", "agreement",
            table_html=table("agreement") + table("absolute_error"),
            notes=rendered["agreement"][2][2:], figures=fig_files["ba"],
            links=["agreement.csv", "agreement.md", "absolute_error.csv", "absolute_error.md",
                   "frames_all.csv"]),
        sec("Figure 3: learning curve", "figure3", figures=fig_files["fig3"],
            intro="" if fig_files["fig3"] else "No history.csv found.",
            links=["learning_curve.csv"] if has_curve else []),
        sec("Figure 4: segmentation examples", "figure4", figures=fig_files["fig4"],
            intro="Middle held-out frame of each case; colours: " + ", ".join(
                tables.IOU_DISPLAY_NAMES) + " as in the legend."),
        sec("Figure 6: needle tip close-ups", "figure6", figures=fig_files["fig6"],
            intro="" if fig_files["fig6"] else "No frame with both tips found."),
    ]


def build_report(model_dir: str | os.PathLike, output_dir: str | os.PathLike | None = None,
                 folds: Iterable[int] | None = None,
                 failures: dict[int, str] | None = None) -> ReportResult:
    """Writes tables, figures and ``index.html`` for the folds found under ``model_dir``.

    Args:
      model_dir: the run directory (``MODEL_DIR``) holding ``fold_NN`` directories.
      output_dir: where to write; default ``MODEL_DIR/report``.
      folds: folds to include; default every ``fold_NN`` present.
      failures: ``{fold: reason}`` of folds that failed in this invocation; merged with
        ``loocv_status.json`` (which run_loocv keeps) and listed in the report.

    Returns:
      A `ReportResult` with the written paths and the computed tables.
    """
    model_dir = pathlib.Path(model_dir)
    out = pathlib.Path(output_dir) if output_dir else layout.report_dir(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    folds, status = _fold_status(model_dir, folds, failures)
    failed = {k: str(v.get("error", "")) for k, v in status.items() if v.get("status") == "failed"}
    frames = load_frames(model_dir, folds)
    reported = sorted(int(f) for f in frames["fold"].unique()) if len(frames) else []
    files: list[pathlib.Path] = []
    notes = [f"paper = clinical data (11 ICSI videos; {paper_values.PAPER_CITATION}).",
             f"ours = {data_source_phrase(model_dir, folds)} (this run: {len(reported)} "
             f"fold(s), {len(frames)} held-out frames)."]
    computed, rendered = _write_tables(frames, notes, status, out, files)
    fig_files, has_curve = _write_figures(frames, model_dir, folds, out, files)
    warnings = [f"Fold {k:02d} failed: {v}" for k, v in sorted(failed.items())]
    if not len(frames):
        warnings.append(f"No fold has predictions yet ({layout.PREDICT_SUBDIR}/"
                        f"{layout.FRAMES_CSV}): tables are empty. Make them with "
                        f"`python tools/run_loocv.py --model_dir {model_dir} --tfrecord_dir "
                        "DATA` (finished training is kept; held-out frames are predicted).")
    sections = _html_sections(rendered, status, fig_files, has_curve, model_dir, out)
    index = out / "index.html"
    _write_text(html_page.render("sercseg_tf: leave-one-case-out reproduction report",
                                 notes, warnings, sections), index, files)
    return ReportResult(output_dir=out, index_html=index, files=files,
                        folds_reported=reported, folds_failed=failed, tables=computed)


def define_flags() -> None:
    """Defines the report's flags (idempotent; shared names via `cli.define_flag`)."""
    cli.define_flag("string", "model_dir", "runs", "Runs folder; a fold is MODEL_DIR/fold_NN.")
    cli.define_flag("string", "output_dir", None, "Output folder (report: MODEL_DIR/report).")
    cli.define_flag("string", "folds", None,
                    'Folds (held-out case ids), e.g. "5", "1-3", "1,5,7"; default all.')


def main(argv: list[str]) -> int:
    """Absl entry point: ``python -m sercseg_tf.report --model_dir runs [--folds 1-3]``."""
    if len(argv) > 1:
        print(f"report: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return 1
    if not pathlib.Path(FLAGS.model_dir).is_dir():
        print(f"report: {FLAGS.model_dir}: not a directory", file=sys.stderr)
        return 1
    try:
        folds = layout.parse_folds(FLAGS.folds)
    except ValueError as e:
        print(f"report: {e}", file=sys.stderr)
        return 1
    res = build_report(FLAGS.model_dir, FLAGS.output_dir, folds=folds)
    print(f"report: {res.index_html} ({len(res.files)} files, folds {res.folds_reported}, "
          f"failed {sorted(res.folds_failed)})")
    return 0


def run(argv: list[str]) -> int:
    """Runs the command in-process on ``argv``; returns the exit status."""
    define_flags()
    return cli.run(main, argv, prog="report")


define_flags()

def entry() -> None:
    """Console script ``sercseg-report``."""
    define_flags()
    cli.app_run(main)


if __name__ == "__main__":
    entry()
