"""LabelMe shape parsing and rasterisation, drawn exactly the way labelme draws them.

Pure Pillow/NumPy re-implementation of ``labelme.utils.shape.shape_to_mask`` and
``shapes_to_label`` (labelme 3.x-7.x; checked pixel for pixel against labelme 6.3.1 in
``tests/test_labelme.py``). labelme itself is never imported here: it pulls in Qt.

Drawing rules (x right, y down, pixel (x, y) covers the unit square around its centre as
Pillow defines it):

* ``polygon`` / ``oriented_rectangle``: ``ImageDraw.polygon(xy, fill=1, outline=1)``
  (the outline is part of the region); >= 3 points, exactly 4 for oriented_rectangle.
* ``rectangle``: two opposite corners, ``ImageDraw.rectangle`` of
  ``(min x, min y, max x, max y)`` with the outline.
* ``circle``: centre ``c`` and a point ``p`` on the edge, ``d = |c - p|``,
  ``ImageDraw.ellipse((cx - d, cy - d, cx + d, cy + d), fill=1, outline=1)``.
* ``line`` (2 points) / ``linestrip`` (>= 2 points): ``ImageDraw.line(xy, width=10)``.
* ``point``: ``ImageDraw.ellipse`` of radius 5 around the point.
* ``mask``: a base64 PNG pasted into the box of its two points, as labelme does:
  ``(x1, y1), (x2, y2) = int(points); label[y1:y2 + 1, x1:x2 + 1] = mask``. Where the box
  overhangs the image (labelme raises a broadcasting error there) only the part inside
  the image is painted.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageDraw

from sercseg_tf import labels

# labelme's defaults in shape_to_mask(line_width=10, point_size=5).
LINE_WIDTH = 10
POINT_RADIUS = 5

SHAPE_TYPES: tuple[str, ...] = (
    "polygon",
    "rectangle",
    "circle",
    "line",
    "linestrip",
    "point",
    "mask",
    "oriented_rectangle",
)

# shape type -> (minimum, maximum) number of points; None = no upper bound.
_POINT_COUNTS: dict[str, tuple[int, int | None]] = {
    "polygon": (3, None),
    "rectangle": (2, 2),
    "circle": (2, 2),
    "line": (2, 2),
    "linestrip": (2, None),
    "point": (1, 1),
    "mask": (2, 2),
    "oriented_rectangle": (4, 4),
}

Point = tuple[float, float]


@dataclass(frozen=True)
class Shape:
    """One validated LabelMe shape.

    Attributes:
        index: Position of the shape in the file's ``shapes`` list (0-based).
        label: The label as written in the file.
        class_id: Class id the label maps to (0..255).
        shape_type: One of `SHAPE_TYPES`.
        points: The points as the file stores them (ints stay ints, floats floats).
        mask: Decoded boolean mask of a ``mask`` shape, else None.
    """

    index: int
    label: str
    class_id: int
    shape_type: str
    points: tuple[Point, ...]
    mask: np.ndarray | None = None


def _is_number(value: Any) -> bool:
    """True for a finite JSON number (bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def _parse_points(raw: Any) -> tuple[tuple[Point, ...] | None, str | None]:
    """Returns (points, None) or (None, reason)."""
    if not isinstance(raw, list | tuple):
        return None, f"points must be a list of [x, y], got {type(raw).__name__}"
    points = []
    for k, point in enumerate(raw):
        if (
            not isinstance(point, list | tuple)
            or len(point) != 2
            or not all(_is_number(v) for v in point)
        ):
            return None, f"point {k} is not a pair of finite numbers: {point!r}"
        points.append((point[0], point[1]))
    return tuple(points), None


def image_error_reason(error: Exception) -> str:
    """A readable reason for a Pillow/base64 decoding error (no object addresses)."""
    if isinstance(error, PIL.UnidentifiedImageError):
        return "not a recognised image format"
    if isinstance(error, binascii.Error):
        return f"invalid base64 ({error})"
    return str(error)


def decode_mask(mask_b64: Any) -> np.ndarray:
    """Decodes a ``mask`` shape's base64 PNG into a boolean array (labelme's rule: != 0).

    Args:
        mask_b64: base64 text (or an already decoded array, as labelme's in-memory
            shapes hold it).

    Returns:
        Boolean array [h, w].

    Raises:
        ValueError: The text is not base64, not an image, or not single-channel.
    """
    if isinstance(mask_b64, np.ndarray):
        arr = mask_b64
    else:
        if not isinstance(mask_b64, str | bytes):
            raise ValueError(f"mask must be a base64 PNG string, got {type(mask_b64).__name__}")
        try:
            data = base64.b64decode(mask_b64, validate=True)
            with PIL.Image.open(io.BytesIO(data)) as img:
                arr = np.array(img)
        except (binascii.Error, ValueError, OSError) as e:
            raise ValueError(f"mask is not a base64-encoded image: {image_error_reason(e)}") from e
    if arr.ndim != 2:
        raise ValueError(f"mask must be a single-channel image, got shape {arr.shape}")
    return arr.astype(bool)


def parse_shape(
    obj: Any, index: int, label_map: Mapping[str, int]
) -> tuple[Shape | None, list[str]]:
    """Validates one entry of a LabelMe ``shapes`` list.

    Missing keys of older labelme versions take their defaults: no ``shape_type`` (or
    null) means polygon; group_id, flags, description, line_color... are ignored.

    Args:
        obj: The JSON object of the shape.
        index: Its position in the file (used in messages by the caller).
        label_map: Normalised label name -> class id (see `labels.normalize_label_name`).

    Returns:
        (shape, []) when valid, else (None, reasons) with one reason per problem.
    """
    if not isinstance(obj, Mapping):
        return None, [f"shape is not a JSON object but {type(obj).__name__}"]
    reasons: list[str] = []
    label = obj.get("label")
    class_id = -1
    if not isinstance(label, str):
        reasons.append(f"label must be a string, got {label!r}")
    else:
        key = labels.normalize_label_name(label)
        if key not in label_map:
            known = ", ".join(sorted(label_map))
            reasons.append(f"unknown label {label!r} (known: {known})")
        else:
            class_id = int(label_map[key])
    shape_type = obj.get("shape_type")
    if shape_type is None:
        shape_type = "polygon"
    if not isinstance(shape_type, str) or shape_type not in SHAPE_TYPES:
        reasons.append(
            f"unsupported shape_type {shape_type!r} (expected one of {', '.join(SHAPE_TYPES)})"
        )
    if "points" not in obj:
        reasons.append("no points")
        points = None
    else:
        points, reason = _parse_points(obj["points"])
        if reason is not None:
            reasons.append(reason)
    if points is not None and isinstance(shape_type, str) and shape_type in _POINT_COUNTS:
        lo, hi = _POINT_COUNTS[shape_type]
        n = len(points)
        if n < lo or (hi is not None and n > hi):
            want = f"{lo}" if lo == hi else f"at least {lo}"
            reasons.append(f"{shape_type} needs {want} points, got {n}")
    mask = None
    if shape_type == "mask":
        if obj.get("mask") is None:
            reasons.append("mask shape has no 'mask' image")
        else:
            try:
                mask = decode_mask(obj["mask"])
            except ValueError as e:
                reasons.append(str(e))
        if mask is not None and points is not None and len(points) == 2:
            (x1, y1), (x2, y2) = _mask_box(points)
            box_hw = (y2 - y1 + 1, x2 - x1 + 1)
            if mask.shape != box_hw:
                reasons.append(
                    f"mask image is {mask.shape[0]}x{mask.shape[1]} but its box "
                    f"({x1}, {y1})-({x2}, {y2}) is {box_hw[0]}x{box_hw[1]}"
                )
    if reasons:
        return None, reasons
    assert points is not None
    return Shape(index, label, class_id, shape_type, points, mask), []


def _mask_box(points: Sequence[Point]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Box corners as labelme's ``np.asarray(points).astype(int)`` (truncation toward 0)."""
    (x1, y1), (x2, y2) = points
    return (int(x1), int(y1)), (int(x2), int(y2))


def shape_to_mask(shape: Shape, height: int, width: int) -> np.ndarray:
    """Rasterises one shape like labelme's ``shape_to_mask`` (see the module docstring).

    Args:
        shape: A validated shape.
        height: Image height in pixels.
        width: Image width in pixels.

    Returns:
        Boolean mask [height, width].
    """
    if shape.shape_type == "mask":
        assert shape.mask is not None
        out = np.zeros((height, width), dtype=bool)
        (x1, y1), _ = _mask_box(shape.points)
        mh, mw = shape.mask.shape
        # Paste the box, clipped to the image (labelme errors on overhanging boxes).
        ys0, xs0 = max(y1, 0), max(x1, 0)
        ys1, xs1 = min(y1 + mh, height), min(x1 + mw, width)
        if ys1 > ys0 and xs1 > xs0:
            out[ys0:ys1, xs0:xs1] = shape.mask[ys0 - y1 : ys1 - y1, xs0 - x1 : xs1 - x1]
        return out

    canvas = PIL.Image.new("L", (width, height), 0)
    draw = PIL.ImageDraw.Draw(canvas)
    xy = list(shape.points)
    kind = shape.shape_type
    if kind == "circle":
        (cx, cy), (px, py) = xy
        d = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
        draw.ellipse(((cx - d, cy - d), (cx + d, cy + d)), outline=1, fill=1)
    elif kind == "rectangle":
        (x0, y0), (x1, y1) = xy
        box = ((min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1)))
        draw.rectangle(box, outline=1, fill=1)
    elif kind in ("line", "linestrip"):
        draw.line(xy=xy, fill=1, width=LINE_WIDTH)
    elif kind == "point":
        cx, cy = xy[0]
        r = POINT_RADIUS
        draw.ellipse(((cx - r, cy - r), (cx + r, cy + r)), outline=1, fill=1)
    elif kind in ("polygon", "oriented_rectangle"):
        draw.polygon(xy=xy, outline=1, fill=1)
    else:  # parse_shape only lets SHAPE_TYPES through.
        raise ValueError(f"shape_type={kind!r} is not supported")
    return np.asarray(canvas, dtype=np.uint8).astype(bool)


def paint_order(shapes: Sequence[Shape], class_order: Sequence[int] | None) -> list[Shape]:
    """Returns the shapes in the order they are painted (later shapes win).

    Args:
        shapes: Shapes in file order.
        class_order: None for labelme's rule (file order). Otherwise classes are painted
            in this order (file order within a class); classes not listed are painted
            first, so e.g. a ``background`` shape never erases a listed class.
    """
    if class_order is None:
        return list(shapes)
    rank = {int(c): i + 1 for i, c in enumerate(class_order)}
    return sorted(shapes, key=lambda s: (rank.get(s.class_id, 0), s.index))


def paint_shapes(
    shapes: Sequence[Shape], height: int, width: int, class_order: Sequence[int] | None
) -> np.ndarray:
    """Paints shapes into an exclusive class map, ``label[mask] = class_id`` per shape.

    Args:
        shapes: Validated shapes in file order.
        height: Image height.
        width: Image width.
        class_order: See `paint_order`.

    Returns:
        uint8 [height, width], 0 where no shape is.
    """
    label = np.zeros((height, width), dtype=np.uint8)
    for shape in paint_order(shapes, class_order):
        label[shape_to_mask(shape, height, width)] = shape.class_id
    return label
