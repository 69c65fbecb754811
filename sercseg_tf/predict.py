"""Segments new ICSI videos / images with an exported model and computes f1-f4 per frame.

Usage::

  sercseg-predict INPUT... --saved_model runs/fold_00/export --output_dir DIR \
      [--labelme] [--select N] [--every_seconds 1] [--input_scale S] [--um_per_px U] \
      [--min_confidence 0.8] [--overwrite] [--strict] [--predict_batch_size 4]

(also ``python -m sercseg_tf.predict``). INPUT is a video (.wmv, .avi, .mp4), an image
(.png, .jpg, .jpeg, .bmp, .tif, .tiff; 16-bit and grey images are min-max scaled) or a
folder of images (not recursive, sorted by name). Every input gets a folder
``DIR/NAME`` (its file or folder name without extension, or ``caseNN`` for a video
inside a ``caseNN`` folder) with label maps, an overlay video that plays in a browser,
``features.csv``, ``summary.csv``, ``features_over_time.png``, ``run_info.json`` and,
with ``--labelme``, the frames and their predicted LabelMe files for review (layout:
`sercseg_tf.prediction.paths`). ``DIR/features.csv`` and ``DIR/summary.csv`` are
rebuilt from every input folder present, so runs into the same ``DIR`` add up. An
existing ``DIR/NAME`` is replaced only with ``--overwrite``, and never when it holds a
reviewed LabelMe file (``predicted`` flag cleared).

Scale: the model card in the export (`sercseg_tf.model_card`) gives the training frame
size; every frame is resized to that scale before the model and its labels come back at
the frame's size (`sercseg_tf.prediction.scale`; ``--input_scale`` overrides).

``features.csv`` columns: name, video (the INPUT as given), source (the file the frame
came from), frame, time_s (NaN for images), label_file, labelme_file, f1..f4, S_s, L_s,
S_s_contour, S_o, oocyte_cx, oocyte_cy, tip_x, tip_y, needle_entry_side,
n_serc_clusters, n_oocyte_components, n_needle_components, nan_reasons, area_oocyte,
area_serc, area_needle (pixels), tip_depth_px, confidence, low_confidence, input_scale
and, with a calibration (``--um_per_px`` or the card's), ``*_um`` / ``*_um2`` columns.

A corrupt or unreadable input is reported on stderr as one line ``PATH: reason``, its
partial outputs are removed, and the other inputs are processed. A truncated video
(decoding stops before its declared end) is processed as far as it goes and reported
as ``PATH: truncated: read X of Y s``. Exit status: 0 when at least one input was
processed, 1 when none was or the arguments are wrong; with ``--strict`` any failed or
truncated input gives 1.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import pathlib
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sercseg_tf import __version__, atomic_io, cli, model_card, visualize
from sercseg_tf.prediction import paths, review, summary, timeline, to_labelme, uncertainty
from sercseg_tf.prediction.batches import batched_outputs, batched_predictions
from sercseg_tf.prediction.inputs import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    Frame,
    Input,
    InputError,
    Truncation,
    expand_input,
    input_name,
)
from sercseg_tf.prediction.rows import calibrated, feature_row
from sercseg_tf.prediction.scale import ScalePolicy

FLAGS = cli.FLAGS
# Re-exported: `sercseg_tf.loocv` predicts held-out frames with the same functions.
__all__ = ["IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "Frame", "InputError", "PredictOptions",
           "PredictResult", "batched_predictions", "feature_row", "run_predict"]


@dataclasses.dataclass
class PredictOptions:
    """Settings of a predict run (the command's flags)."""

    every_seconds: float = 1.0
    batch_size: int = 4
    progress: bool = True
    labelme: bool = False
    select: int = 0
    input_scale: float | None = None
    um_per_px: float | None = None
    min_confidence: float = uncertainty.DEFAULT_MIN_CONFIDENCE
    overwrite: bool = False


@dataclasses.dataclass
class PredictResult:
    """Outcome of `run_predict`."""

    processed: list[str]
    failures: dict[str, str]  # input path -> one-line reason
    features_csv: pathlib.Path | None  # the combined DIR/features.csv
    num_frames: int  # frames processed in this run
    truncated: dict[str, str] = dataclasses.field(default_factory=dict)
    warnings: dict[str, str] = dataclasses.field(default_factory=dict)
    to_annotate: list[pathlib.Path] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Model:
    """A loaded export: its serving function, its model card (None if none) and path."""

    serving_fn: Callable
    card: dict[str, Any] | None = None
    path: str | None = None

    def describe(self) -> dict[str, Any]:
        """The model as run_info.json records it."""
        training = (self.card or {}).get("training") or {}
        return {"saved_model": str(pathlib.Path(self.path).resolve()) if self.path else None,
                "model_card": bool(self.card),
                **{k: training.get(k) for k in ("fold", "all_cases", "frame_size",
                                                "held_out_iou", "data_source")},
                "created": (self.card or {}).get("created"),
                "trained_with_version": (self.card or {}).get("package_version")}


def load_model(saved_model: str | os.PathLike) -> Model:
    """Loads an export's serving function and model card.

    Raises:
      FileNotFoundError, model_card.ModelCardError, or TensorFlow's loading errors.
    """
    from sercseg_tf.model import inference

    return Model(inference.load_serving_fn(saved_model), model_card.read_card(saved_model),
                 str(saved_model))


@dataclasses.dataclass
class _InputRun:
    """What one input's processing collects while its frames stream through."""

    item: Input
    name: str
    folder: pathlib.Path  # the .partial folder being written
    options: PredictOptions
    policy: ScalePolicy
    card_um_per_px: float | None
    rows: list[dict] = dataclasses.field(default_factory=list)
    size: tuple[int, int] | None = None  # first frame's (H, W): the overlay video's size
    input_scale: float = 1.0
    um_per_px: float | None = None
    warning: str | None = None

    def first_frame(self, frame: Frame) -> None:
        """Fixes the overlay size, the scale, the calibration; warns once about scale."""
        self.size = frame.image.shape[:2]
        self.input_scale = self.policy.input_scale(self.size)
        self.um_per_px = self.options.um_per_px or (
            self.card_um_per_px / self.input_scale if self.card_um_per_px else None)
        reason = self.policy.warning(self.size)
        if reason:
            self.warning = f"{self.item.path}: warning: {reason}"
            print(self.warning, file=sys.stderr, flush=True)

    def frame_row(self, frame: Frame, pred: np.ndarray, probs: np.ndarray | None) -> dict:
        """Writes the frame's label PNG (and LabelMe files); returns its CSV row."""
        if self.size is None:
            self.first_frame(frame)
        label_rel = f"{self.name}/{paths.LABELS_SUBDIR}/{frame.name}.png"
        with atomic_io.atomic_path(self.folder / paths.LABELS_SUBDIR / f"{frame.name}.png") as t:
            visualize.label_image(pred).save(t)
        labelme_rel = ""
        if self.options.labelme:
            to_labelme.write_labelme(self.folder / paths.LABELME_SUBDIR, frame.name,
                                     frame.image, pred)
            labelme_rel = f"{self.name}/{paths.LABELME_SUBDIR}/{frame.name}.json"
        conf = uncertainty.confidence(probs, pred) if probs is not None else math.nan
        row = {"name": self.name, "video": self.item.path, "source": frame.source,
               "frame": frame.index, "time_s": frame.time_s, "label_file": label_rel,
               review.LABELME_FILE_COLUMN: labelme_rel, **feature_row(pred),
               "confidence": conf, "low_confidence": bool(conf < self.options.min_confidence),
               "input_scale": self.input_scale}
        if self.um_per_px:
            row.update(calibrated(row, self.um_per_px))
        self.rows.append(row)
        return row


def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "-"


def overlay_frame(frame: Frame, pred: np.ndarray, row: Mapping[str, Any]) -> np.ndarray:
    """The overlay video frame: class colours, legend, time, centroid and tip, f1-f4."""
    unit = "um" if "f3_um" in row else "px"
    f3, f4 = (row["f3_um"], row["f4_um"]) if unit == "um" else (row["f3"], row["f4"])
    lines = [f"f1 {_fmt(row['f1'], 3)}  f2 {_fmt(row['f2'], 3)}  "
             f"confidence {_fmt(row['confidence'], 2)}",
             f"f3 {_fmt(f3, 1)} {unit}  f4 {_fmt(f4, 1)} {unit}"]
    return visualize.annotate(visualize.overlay(frame.image, pred), time_s=frame.time_s,
                              centroid=(row["oocyte_cx"], row["oocyte_cy"]),
                              tip=(row["tip_x"], row["tip_y"]), lines=lines)


def _overlays(run: _InputRun, model: Model, frames: Iterator[Frame]) -> Iterator[np.ndarray]:
    """Streams frames through the model; yields overlay frames at the first frame's size."""
    import cv2

    for frame, pred, probs in batched_outputs(model.serving_fn, frames,
                                              run.options.batch_size, run.policy):
        row = run.frame_row(frame, pred, probs)
        ov = overlay_frame(frame, pred, row)
        if ov.shape[:2] != run.size:
            ov = cv2.resize(ov, (run.size[1], run.size[0]), interpolation=cv2.INTER_AREA)
        yield ov


def _write_overlay(run: _InputRun, overlays: Iterator[np.ndarray]) -> str:
    """Writes overlay.png (single image) or the browser-playable overlay video."""
    from sercseg_tf.data import video

    first = next(overlays, None)
    if first is None:
        raise InputError(f"{run.item.path}: no readable frames")
    if run.item.kind == "image":
        with atomic_io.atomic_path(run.folder / paths.OVERLAY_IMAGE) as tmp:
            import PIL.Image

            PIL.Image.fromarray(first).save(tmp)
        return paths.OVERLAY_IMAGE
    ext, fourcc = video.browser_video_format()
    name = f"{paths.OVERLAY_STEM}{ext}"
    fps = 1.0 / run.options.every_seconds if run.item.kind == "video" else 1.0
    try:
        video.write_video(run.folder / name, _chain(first, overlays), fps=fps,
                          size_hw=run.size, fourcc=fourcc)
    except video.VideoError as e:
        raise InputError(f"{run.item.path}: cannot write the overlay video ({e.reason})") from e
    return name


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _finish_input(run: _InputRun, overlay: str, run_record: dict) -> dict:
    """Writes the input's features.csv, summary.csv, plot and run_info.json."""
    rows = pd.DataFrame(run.rows)
    trunc = run.item.truncation
    info = {"input": run.item.path, "name": run.name, "kind": run.item.kind,
            "seconds_read": trunc.seconds_read if trunc else _seconds(rows, run),
            "seconds_declared": trunc.seconds_declared if trunc else None,
            "truncated": trunc is not None, "um_per_px": run.um_per_px}
    summary.write_csv(rows, run.folder / paths.FEATURES_CSV)
    summary.write_csv(pd.DataFrame([summary.input_summary(rows, info)]),
                      run.folder / paths.SUMMARY_CSV)
    if len(rows) > 1:
        timeline.plot_features_over_time(rows, run.folder / paths.TIMELINE_PNG,
                                         f"{run.name}: {run.item.path}",
                                         run.options.min_confidence)
    record = {**run_record, "input": run.item.path, "name": run.name, "kind": run.item.kind,
              "frames": len(rows), "overlay": overlay, "input_scale": run.input_scale,
              "scale_source": _scale_source(run), "scale_warning": run.warning,
              "um_per_px": run.um_per_px,
              "truncation": dataclasses.asdict(trunc) if trunc else None}
    model_card.write_json(run.folder / paths.RUN_INFO_JSON, record)
    return record


def _seconds(rows: pd.DataFrame, run: _InputRun) -> float | None:
    if run.item.kind != "video" or rows.empty:
        return None
    return float(rows["time_s"].max()) + run.options.every_seconds


def _scale_source(run: _InputRun) -> str:
    if run.policy.override is not None:
        return "--input_scale"
    return "model card" if run.policy.training_size else "none (no model card frame size)"


def _check_replaceable(final: pathlib.Path, path: str, overwrite: bool) -> None:
    """Refuses an existing input folder without --overwrite, or with reviewed files."""
    if not final.exists():
        return
    try:
        atomic_io.refuse_replacing(final, overwrite,
                                   review.reviewed_files(final / paths.LABELME_SUBDIR),
                                   "reviewed LabelMe file(s)",
                                   "move them to your annotations first")
    except FileExistsError as e:
        raise InputError(f"{path}: {e}, or choose another --output_dir") from None


def process_input(model: Model, path: str | os.PathLike, out_dir: pathlib.Path, name: str,
                  options: PredictOptions, run_record: dict,
                  on_skip: Callable[[str, str], None] | None = None) -> dict:
    """Segments one input into ``out_dir/name`` and returns its run_info record.

    Everything is written to ``.NAME.partial`` and renamed into place at the end, so a
    failed input leaves nothing behind (and an earlier result is replaced only then).

    Raises:
      InputError: the input (or one of its frames) cannot be read, or ``out_dir/name``
        exists and may not be replaced.
    """
    from tqdm import tqdm

    final = paths.input_dir(out_dir, name)
    _check_replaceable(final, str(path), options.overwrite)
    item = expand_input(path, options.every_seconds, on_skip)
    tmp = paths.partial_dir(out_dir, name)
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / paths.LABELS_SUBDIR).mkdir(parents=True)
    card_um = (model.card or {}).get("um_per_px")
    run = _InputRun(item, name, tmp, options, ScalePolicy.from_card(model.card,
                                                                     options.input_scale),
                    float(card_um) if card_um else None)
    try:
        with tqdm(item.frames, total=item.expected_frames, desc=name, unit="frame",
                  disable=None if options.progress else True) as bar:
            overlay = _write_overlay(run, _overlays(run, model, iter(bar)))
        record = _finish_input(run, overlay, run_record)
        _replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


def _replace(tmp: pathlib.Path, final: pathlib.Path) -> None:
    """Moves a finished ``.partial`` folder onto ``final`` (the old one removed last)."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _unique_name(stem: str, used: set[str]) -> str:
    name, k = stem or "input", 2
    while name in used:
        name, k = f"{stem}_{k}", k + 1
    used.add(name)
    return name


def _run_record(model: Model, options: PredictOptions, command: Sequence[str] | None) -> dict:
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "package_version": __version__, "model": model.describe(),
            "arguments": dataclasses.asdict(options),
            "command": list(command) if command else None}


def _append_run(out: pathlib.Path, record: dict, statuses: dict[str, dict]) -> None:
    """Appends this run to ``DIR/run_info.json`` (earlier runs kept)."""
    path = out / paths.RUN_INFO_JSON
    runs = (model_card.read_json(path) or {}).get("runs", [])
    model_card.write_json(path, {"runs": [*runs, {**record, "inputs": statuses}]})


def run_predict(saved_model: str | os.PathLike | None, inputs: Sequence[str | os.PathLike],
                output_dir: str | os.PathLike, every_seconds: float = 1.0,
                batch_size: int = 4, progress: bool = True,
                serving_fn: Callable | None = None, *, model: Model | None = None,
                options: PredictOptions | None = None,
                command: Sequence[str] | None = None) -> PredictResult:
    """Segments every input with the exported model (module docstring).

    Args:
      saved_model: directory written by `sercseg_tf.model.inference.export_saved_model`.
      inputs: videos, images or folders of images.
      output_dir: where outputs go (created).
      every_seconds: video sampling period (when ``options`` is None).
      batch_size: frames per model call (when ``options`` is None).
      progress: progress bars on a terminal (when ``options`` is None).
      serving_fn: an already loaded serving function, used without a model card.
      model: an already loaded `Model` (serving function and card).
      options: every setting; default from the three arguments above.
      command: the command line, recorded in run_info.json.

    Returns:
      A `PredictResult`; failed inputs are in ``failures`` (and on stderr).
    """
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    options = options or PredictOptions(every_seconds, batch_size, progress)
    if options.select > 0 and not options.labelme:  # selection copies LabelMe files
        options = dataclasses.replace(options, labelme=True)
    if model is None:
        model = Model(serving_fn, None, None) if serving_fn else load_model(saved_model)
    record = _run_record(model, options, command)
    result = PredictResult([], {}, None, 0)
    statuses: dict[str, dict] = {}
    used: set[str] = set()

    def skip(item: str, reason: str) -> None:
        result.failures[item] = reason
        print(reason, file=sys.stderr, flush=True)

    for path in inputs:
        name = _unique_name(input_name(path), used)
        try:
            info = process_input(model, path, out, name, options, record, on_skip=skip)
        except InputError as e:
            skip(str(path), str(e))
            statuses[str(path)] = {"name": name, "status": "failed", "reason": str(e)}
            continue
        _record_success(result, statuses, str(path), info)
    result.features_csv, _ = summary.combine(out)
    if options.select > 0 and result.features_csv:
        result.to_annotate = review.select_for_annotation(out, options.select)
    _append_run(out, record, statuses)
    _write_failures(out, result.failures)
    return result


def _record_success(result: PredictResult, statuses: dict, path: str, info: dict) -> None:
    result.processed.append(path)
    result.num_frames += info["frames"]
    status = {"name": info["name"], "status": "ok", "frames": info["frames"]}
    if info["truncation"]:
        message = Truncation(**info["truncation"]).message(path)
        result.truncated[path] = message
        print(message, file=sys.stderr, flush=True)
        status.update(status="truncated", reason=message)
    if info["scale_warning"]:
        result.warnings[path] = info["scale_warning"]
    statuses[path] = status


def _write_failures(out: pathlib.Path, failures: Mapping[str, str]) -> None:
    path = out / paths.FAILURES_TXT
    if failures:
        atomic_io.atomic_write_text(path, "".join(f"{r}\n" for r in failures.values()))
    else:
        path.unlink(missing_ok=True)


def define_flags() -> None:
    """Defines predict's flags (idempotent; shared names via `cli.define_flag`)."""
    cli.define_flag("string", "saved_model", None, "Exported SavedModel directory (required).")
    cli.define_flag("string", "output_dir", None, "Output folder (required).")
    cli.define_flag("float", "every_seconds", 1.0,
                    "Video sampling period in seconds (1, as the paper).")
    cli.define_flag("integer", "predict_batch_size", 4,
                    "Frames per call of the exported model.")
    cli.define_flag("boolean", "labelme", False,
                    "Also write each frame and its predicted LabelMe polygons to "
                    "DIR/NAME/labelme/ for review in LabelMe.")
    cli.define_flag("integer", "select", 0,
                    "List and copy the N least confident frames to DIR/to_annotate "
                    "(implies --labelme).")
    cli.define_flag("float", "input_scale", None,
                    "Object size in your frames relative to the training frames (2: twice "
                    "as large); default from the frame size and the model card.")
    cli.define_flag("float", "um_per_px", None,
                    "Micrometres per pixel of the frames (calibration; adds µm/µm² columns).")
    cli.define_flag("float", "min_confidence", uncertainty.DEFAULT_MIN_CONFIDENCE,
                    "Frames below this confidence are flagged low_confidence.")
    cli.define_flag("boolean", "overwrite", False,
                    "Replace an existing DIR/NAME (never one holding reviewed LabelMe files).")
    cli.define_flag("boolean", "strict", False,
                    "Exit 1 if any input failed or was truncated (default: only if all failed).")
    cli.define_flag("boolean", "progress", True,
                    "Progress bars on a terminal (--noprogress: off).")


def _options_from_flags() -> PredictOptions:
    return PredictOptions(FLAGS.every_seconds, FLAGS.predict_batch_size, FLAGS.progress,
                          FLAGS.labelme or FLAGS.select > 0, FLAGS.select, FLAGS.input_scale,
                          FLAGS.um_per_px, FLAGS.min_confidence, FLAGS.overwrite)


def _bad_arguments(inputs: Sequence[str]) -> str | None:
    if not inputs or not FLAGS.saved_model or not FLAGS.output_dir:
        return "give INPUT..., --saved_model and --output_dir (see --help)"
    if FLAGS.every_seconds <= 0 or FLAGS.predict_batch_size < 1 or FLAGS.select < 0:
        return "--every_seconds must be > 0, --predict_batch_size >= 1, --select >= 0"
    for name in ("input_scale", "um_per_px"):
        value = FLAGS[name].value
        if value is not None and not (math.isfinite(value) and value > 0):
            return f"--{name} must be a positive number, got {value}"
    return None


def main(argv: Sequence[str]) -> int:
    """Absl entry point: ``argv[1:]`` are the inputs; returns the exit status."""
    inputs = list(argv[1:])
    problem = _bad_arguments(inputs)
    if problem:
        print(f"predict: {problem}", file=sys.stderr)
        return 1
    try:
        model = load_model(FLAGS.saved_model)
    except Exception as e:  # noqa: BLE001 - any load failure is one line and exit 1
        print(f"{FLAGS.saved_model}: cannot load the model ({type(e).__name__}: {e})",
              file=sys.stderr)
        return 1
    if model.card is None:
        print(f"{FLAGS.saved_model}: no model card (exported by an older version): frames "
              "are used at their own size", file=sys.stderr)
    res = run_predict(FLAGS.saved_model, inputs, FLAGS.output_dir, model=model,
                      options=_options_from_flags(), command=sys.argv)
    print(f"processed {len(res.processed)} of {len(inputs)} input(s), {res.num_frames} "
          f"frame(s); features of all inputs in {FLAGS.output_dir}: {res.features_csv}")
    if res.to_annotate:
        print(f"{len(res.to_annotate)} frame(s) to annotate next: "
              f"labelme {pathlib.Path(FLAGS.output_dir) / paths.TO_ANNOTATE_SUBDIR} "
              "--labels oocyte,sERC,needle")
    if res.failures:
        listing = pathlib.Path(FLAGS.output_dir) / paths.FAILURES_TXT
        print(f"{len(res.failures)} failed (listed in {listing}):", file=sys.stderr)
        for reason in res.failures.values():
            print(f"  {reason}", file=sys.stderr)
    if not res.processed or (FLAGS.strict and (res.failures or res.truncated)):
        return 1
    return 0


def run(argv: Sequence[str]) -> int:
    """Runs the command in-process on ``argv`` (flags and inputs); returns the exit status."""
    define_flags()
    return cli.run(main, argv, prog="predict", tensorflow=True)


def entry() -> None:
    """Console script ``sercseg-predict``."""
    define_flags()
    cli.app_run(main, tensorflow=True)


define_flags()

if __name__ == "__main__":
    entry()
