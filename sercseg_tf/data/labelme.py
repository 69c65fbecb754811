"""LabelMe annotation reader: image + exclusive class map, with one clear line per problem.

Reads JSON files written by labelme 3.x-7.x and rasterises them exactly as labelme does
(`sercseg_tf.data.labelme_shapes`; pure Pillow/NumPy, labelme is never imported).

Conventions:

* Labels are matched with `labels.normalize_label_name` (case and whitespace do not
  matter). ``label_map=None`` means `labels.DEFAULT_LABEL_MAP` and the ICSI paint order
  (oocyte, then sERC, then needle on top: `labels.ICSI_PAINT_ORDER`) whatever the JSON
  order; a custom label map paints in JSON order, the last shape winning (labelme's rule).
* The image comes from ``imageData`` (base64) when present, else from ``imagePath``
  relative to the JSON's folder (Windows backslashes accepted; if that path does not
  exist, the file name alone is tried in the JSON's folder).
* EXIF orientation: like labelme (``labelme.utils.apply_exif_orientation`` via
  ``LabelFile.load_image_file``), the EXIF Orientation tag is applied to images read from
  ``imagePath`` for formats where Pillow exposes ``_getexif`` (JPEG, PNG, WebP, MPO), and
  never to ``imageData`` (labelme stores it already oriented and decodes it as is).
  Annotations were drawn on the image labelme displayed, so this keeps them aligned.
* Images come back as uint8 RGB: grey/palette/alpha images are converted with Pillow
  (alpha dropped); 16-bit or float images are min-max scaled to 0..255, the rule labelme
  uses for such TIFFs.
* Error messages: ``"<json path>: shape <i>: <reason>"`` for a shape, ``"<json path>:
  <reason>"`` for the file.
* Machine-made files: ``predict --labelme`` writes ``flags: {"predicted": true}``
  (`PREDICTED_FLAG`). A reviewer unticks that flag in LabelMe's Flags panel and saves;
  `validate_annotation` with ``allow_predicted=False`` (what ``build_tfrecords`` does
  unless ``--allow_predicted``) reports a file still marked, so unreviewed predictions
  never become ground truth by accident.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np
import PIL.ExifTags
import PIL.Image
import PIL.ImageOps

from sercseg_tf import labels
from sercseg_tf.data.labelme_shapes import Shape, image_error_reason, paint_shapes, parse_shape

LabelMapArg = Mapping[str, int] | str | os.PathLike | None

IGNORE_NAME = "__ignore__"
# The image-level LabelMe flag marking a file written by predict and not yet reviewed.
PREDICTED_FLAG = "predicted"

__all__ = [
    "Annotation",
    "LabelMeError",
    "PREDICTED_FLAG",
    "apply_exif_orientation",
    "image_to_rgb_uint8",
    "load_annotation",
    "rasterize_shapes",
    "read_label_map",
    "resolve_label_map",
    "validate_annotation",
]


class LabelMeError(ValueError):
    """A LabelMe file or label map that cannot be used; the message names file and reason."""


@dataclass(frozen=True)
class Annotation:
    """A loaded LabelMe annotation.

    Attributes:
        image: uint8 [H, W, 3] RGB.
        label: uint8 [H, W] class ids (0 = background, 255 = ignore if mapped).
        json_path: The annotation file.
        image_path: The file the pixels were read from; None when they came from the
            embedded ``imageData``.
        errors: Problems of skipped shapes (only with ``load_annotation(strict=False)``).
    """

    image: np.ndarray
    label: np.ndarray
    json_path: Path
    image_path: Path | None
    errors: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- label maps


def _check_id(name: str, value: Any, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise LabelMeError(f"{source}: label {name!r}: id must be an integer 0..255, got {value!r}")
    return int(value)


def _normalized_map(mapping: Mapping[Any, Any], source: str) -> dict[str, int]:
    """Normalises names; two spellings of one name with different ids are an error."""
    out: dict[str, int] = {}
    for name, value in mapping.items():
        if not isinstance(name, str) or not name.strip():
            raise LabelMeError(f"{source}: label names must be non-empty strings, got {name!r}")
        key = labels.normalize_label_name(name)
        class_id = _check_id(name, value, source)
        if key in out and out[key] != class_id:
            raise LabelMeError(
                f"{source}: label {name!r} is given ids {out[key]} and {class_id} "
                "(names are compared case- and whitespace-insensitively)"
            )
        out[key] = class_id
    return out


def _parse_labels_txt(text: str, source: str) -> dict[str, int]:
    """labelme2voc's labels.txt: one name per line, ``__ignore__`` -> 255.

    labelme2voc gives line i the id ``i - 1`` with ``__ignore__`` on line 0 (id -1, here
    255) and ``_background_`` on line 1 (id 0). Generalised: ``__ignore__`` maps to 255
    and takes no id; every other name takes the next id from 0. Blank lines are skipped.
    """
    mapping: dict[str, int] = {}
    next_id = 0
    for raw in text.splitlines():
        name = raw.strip()
        if not name:
            continue
        if name == IGNORE_NAME:
            mapping[name] = labels.IGNORE_LABEL
            continue
        if next_id > 255:
            raise LabelMeError(f"{source}: more than 256 classes")
        if labels.normalize_label_name(name) in {labels.normalize_label_name(k) for k in mapping}:
            raise LabelMeError(f"{source}: label {name!r} is listed twice")
        mapping[name] = next_id
        next_id += 1
    return _normalized_map(mapping, source)


def read_label_map(path: str | os.PathLike) -> dict[str, int]:
    """Reads a label map file.

    Accepted forms: YAML or JSON ``{name: id}`` (ids 0..255; 255 = ignore), or
    labelme2voc's ``labels.txt`` (one name per line; ``__ignore__`` -> 255 and the other
    names numbered from 0 in order, so ``__ignore__``, ``_background_``, ``a`` gives
    ``{__ignore__: 255, _background_: 0, a: 1}`` exactly as labelme2voc's ``i - 1``).

    Args:
        path: The file.

    Returns:
        Normalised name (`labels.normalize_label_name`) -> class id.

    Raises:
        LabelMeError: Unreadable file, bad ids, or conflicting names.
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise LabelMeError(f"{source}: cannot read label map: {e}") from e
    if path.suffix.lower() == ".txt":
        return _parse_labels_txt(text, source)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise LabelMeError(f"{source}: broken JSON: {e}") from e
    else:
        import yaml  # Local: only label-map files need it.

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise LabelMeError(f"{source}: broken YAML: {' '.join(str(e).split())}") from e
    if not isinstance(data, Mapping) or not data:
        raise LabelMeError(f"{source}: label map must be a non-empty mapping of name: id")
    return _normalized_map(data, source)


def resolve_label_map(label_map: LabelMapArg) -> tuple[dict[str, int], bool]:
    """Returns (normalised name -> id, whether the ICSI paint order applies).

    Args:
        label_map: None (the default ICSI map), a mapping, or a label-map file path.
    """
    if label_map is None:
        return _normalized_map(labels.DEFAULT_LABEL_MAP, "DEFAULT_LABEL_MAP"), True
    if isinstance(label_map, str | os.PathLike):
        return read_label_map(label_map), False
    return _normalized_map(label_map, "label_map"), False


def _parse_shapes(
    raw_shapes: Any, label_map: Mapping[str, int], prefix: str
) -> tuple[list[Shape], list[str]]:
    """Parses a shapes list; returns valid shapes and prefixed error lines."""
    if not isinstance(raw_shapes, list):
        return [], [f"{prefix}: 'shapes' must be a list, got {type(raw_shapes).__name__}"]
    shapes: list[Shape] = []
    errors: list[str] = []
    for i, obj in enumerate(raw_shapes):
        shape, reasons = parse_shape(obj, i, label_map)
        if shape is not None:
            shapes.append(shape)
        errors.extend(f"{prefix}: shape {i}: {r}" for r in reasons)
    return shapes, errors


def rasterize_shapes(
    shapes: Sequence[Mapping[str, Any]],
    height: int,
    width: int,
    label_map: LabelMapArg = None,
) -> np.ndarray:
    """Rasterises LabelMe shape dicts into an exclusive class map.

    Args:
        shapes: The ``shapes`` list of a LabelMe file (``mask`` may be base64 text or a
            decoded array).
        height: Image height.
        width: Image width.
        label_map: None for the ICSI classes and paint order, else a mapping or file
            (JSON order, last shape wins).

    Returns:
        uint8 [height, width].

    Raises:
        LabelMeError: Any invalid shape (all problems joined by "; ").
    """
    mapping, icsi = resolve_label_map(label_map)
    parsed, errors = _parse_shapes(list(shapes), mapping, "<shapes>")
    if errors:
        raise LabelMeError("; ".join(errors))
    return paint_shapes(parsed, height, width, labels.ICSI_PAINT_ORDER if icsi else None)


# --------------------------------------------------------------------------- images


def apply_exif_orientation(image: PIL.Image.Image) -> PIL.Image.Image:
    """Applies the EXIF Orientation tag exactly like ``labelme.utils.apply_exif_orientation``.

    Orientation 2 mirror, 3 rotate 180, 4 flip, 5 mirror(rotate 270), 6 rotate 270,
    7 mirror(rotate 90), 8 rotate 90 (Pillow's counter-clockwise ROTATE_*). Formats
    without ``_getexif`` (e.g. TIFF, BMP) and unreadable EXIF blocks are left as they are.
    """
    getexif = getattr(image, "_getexif", None)
    if getexif is None:
        return image
    try:
        exif = getexif()
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the image.
        return image
    if not exif:
        return image
    orientation = exif.get(PIL.ExifTags.Base.Orientation)
    rotate_270 = PIL.Image.Transpose.ROTATE_270
    rotate_90 = PIL.Image.Transpose.ROTATE_90
    if orientation == 2:
        return PIL.ImageOps.mirror(image)
    if orientation == 3:
        return image.transpose(PIL.Image.Transpose.ROTATE_180)
    if orientation == 4:
        return PIL.ImageOps.flip(image)
    if orientation == 5:
        return PIL.ImageOps.mirror(image.transpose(rotate_270))
    if orientation == 6:
        return image.transpose(rotate_270)
    if orientation == 7:
        return PIL.ImageOps.mirror(image.transpose(rotate_90))
    if orientation == 8:
        return image.transpose(rotate_90)
    return image


def image_to_rgb_uint8(image: PIL.Image.Image) -> np.ndarray:
    """uint8 RGB; 16-bit/32-bit/float single-channel images are min-max scaled.

    ``(v - min) / (max - min) * 255`` over the image, labelme's rule for such TIFFs
    (a constant image gives 0); predict reads images with this rule too, so a frame is
    seen the same way in training and in prediction.
    """
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if not math.isfinite(lo) or not math.isfinite(hi) or hi == lo:
            grey = np.zeros(arr.shape, dtype=np.uint8)
        else:
            grey = np.clip((arr - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8).copy()


def _read_image_bytes(data: bytes, orient: bool) -> np.ndarray:
    with PIL.Image.open(io.BytesIO(data)) as img:
        img.load()
        if orient:
            img = apply_exif_orientation(img)
        return image_to_rgb_uint8(img)


def _resolve_image_path(json_path: Path, image_path: str) -> Path:
    """``imagePath`` relative to the JSON's folder; Windows separators accepted."""
    rel = PureWindowsPath(image_path).as_posix()
    candidate = json_path.parent / rel
    if candidate.exists():
        return candidate
    fallback = json_path.parent / PureWindowsPath(image_path).name
    return fallback if fallback.exists() else candidate


# --------------------------------------------------------------------------- files


@dataclass
class _Parsed:
    json_path: Path
    image: np.ndarray | None = None
    image_path: Path | None = None
    height: int | None = None
    width: int | None = None
    shapes: list[Shape] = field(default_factory=list)
    file_errors: list[str] = field(default_factory=list)
    shape_errors: list[str] = field(default_factory=list)
    predicted: bool = False


def _declared_size(raw: Mapping[str, Any], key: str, prefix: str, errors: list[str]) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        errors.append(f"{prefix}: {key} must be a positive integer, got {value!r}")
        return None
    return int(value)


def _parse_file(json_path: str | os.PathLike, label_map: LabelMapArg) -> tuple[_Parsed, bool]:
    """Reads everything, collecting one line per problem. Returns (parsed, icsi_order)."""
    mapping, icsi = resolve_label_map(label_map)
    path = Path(json_path)
    prefix = str(path)
    out = _Parsed(json_path=path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        out.file_errors.append(f"{prefix}: broken JSON: {e}")
        return out, icsi
    except (OSError, UnicodeDecodeError) as e:
        out.file_errors.append(f"{prefix}: cannot read annotation: {e}")
        return out, icsi
    if not isinstance(raw, dict):
        out.file_errors.append(f"{prefix}: not a LabelMe file (top level is not an object)")
        return out, icsi

    errors = out.file_errors
    flags = raw.get("flags")
    out.predicted = isinstance(flags, dict) and flags.get(PREDICTED_FLAG) is True
    height = _declared_size(raw, "imageHeight", prefix, errors)
    width = _declared_size(raw, "imageWidth", prefix, errors)

    image_data = raw.get("imageData")
    image_path = raw.get("imagePath")
    if image_data is not None:
        try:
            if not isinstance(image_data, str):
                raise ValueError(f"expected base64 text, got {type(image_data).__name__}")
            out.image = _read_image_bytes(base64.b64decode(image_data, validate=True), False)
        except (binascii.Error, ValueError, OSError) as e:
            errors.append(f"{prefix}: imageData is not a readable image: {image_error_reason(e)}")
    elif not isinstance(image_path, str) or not image_path.strip():
        errors.append(f"{prefix}: no image: imageData is empty and imagePath is {image_path!r}")
    else:
        file = _resolve_image_path(path, image_path)
        if not file.exists():
            errors.append(f"{prefix}: image missing: {image_path!r} (looked for {file})")
        else:
            try:
                out.image = _read_image_bytes(file.read_bytes(), True)
                out.image_path = file
            except (OSError, ValueError) as e:
                errors.append(f"{prefix}: image unreadable: {file}: {image_error_reason(e)}")

    if out.image is not None:
        img_h, img_w = out.image.shape[:2]
        if (height is not None and height != img_h) or (width is not None and width != img_w):
            errors.append(
                f"{prefix}: size mismatch: imageHeight x imageWidth = {height} x {width} "
                f"but the image is {img_h} x {img_w}"
            )
        out.height, out.width = img_h, img_w
    else:
        out.height, out.width = height, width

    if "shapes" not in raw:
        errors.append(f"{prefix}: no 'shapes' list")
    else:
        out.shapes, out.shape_errors = _parse_shapes(raw["shapes"], mapping, prefix)
    return out, icsi


def validate_annotation(
    json_path: str | os.PathLike, label_map: LabelMapArg = None, *, allow_predicted: bool = True
) -> list[str]:
    """Checks a LabelMe file and returns every problem, one line each (empty if valid).

    Lines read ``"<json path>: <reason>"`` (file level: broken JSON, image missing or
    unreadable, size mismatch, still marked predicted) or ``"<json path>: shape <i>:
    <reason>"`` (unknown label, too few/many points for the shape type, points that are
    not numbers, bad mask).

    Args:
        json_path: The annotation file.
        label_map: None (default ICSI labels), a mapping, or a label-map file.
        allow_predicted: If False, a file whose ``flags`` has ``predicted: true`` (written
            by ``predict --labelme`` and not reviewed) is a problem.
    """
    parsed, _ = _parse_file(json_path, label_map)
    problems = parsed.file_errors + parsed.shape_errors
    if parsed.predicted and not allow_predicted:
        problems.insert(0, f"{parsed.json_path}: still marked as a prediction (flag "
                        f"'{PREDICTED_FLAG}'): review it in LabelMe, untick the flag and "
                        "save, or pass --allow_predicted")
    return problems


def load_annotation(
    json_path: str | os.PathLike, label_map: LabelMapArg = None, *, strict: bool = True
) -> Annotation:
    """Loads the image and rasterises its shapes into an exclusive class map.

    Args:
        json_path: The annotation file.
        label_map: None for `labels.DEFAULT_LABEL_MAP` painted in
            `labels.ICSI_PAINT_ORDER`; a mapping or label-map file paints in JSON order
            with the last shape winning.
        strict: If False, invalid shapes are skipped and listed in ``errors`` (file-level
            problems still raise).

    Returns:
        The `Annotation`.

    Raises:
        LabelMeError: All problems joined by "; " (each names the file and the shape).
    """
    parsed, icsi = _parse_file(json_path, label_map)
    problems = parsed.file_errors + (parsed.shape_errors if strict else [])
    if problems:
        raise LabelMeError("; ".join(problems))
    assert parsed.image is not None and parsed.height is not None and parsed.width is not None
    label = paint_shapes(
        parsed.shapes, parsed.height, parsed.width, labels.ICSI_PAINT_ORDER if icsi else None
    )
    return Annotation(
        image=parsed.image,
        label=label,
        json_path=parsed.json_path,
        image_path=parsed.image_path,
        errors=tuple(parsed.shape_errors),
    )
