"""A predicted label map as a LabelMe file of editable polygons (``predict --labelme``).

LabelMe polygons have no holes, and a file is painted shape after shape, later shapes
on top (labelme's ``shapes_to_label``; the project's reader paints oocyte, then sERC,
then needle whatever the order). The polygons are written in that order, oocyte, sERC,
needle, so both painters give the same map, and each class's region is built so that
painting reproduces the prediction:

1. Paint mask of class c: its pixels, plus every hole in them made only of classes
   painted later (an sERC inside the oocyte, the needle's shaft) and every hole smaller
   than `MIN_REGION_PX`; the later shapes paint over the filled part.
2. Components of fewer than `MIN_REGION_PX` pixels are dropped (specks an annotator
   would delete anyway).
3. Each 8-connected component's outline and hole outlines are traced through boundary
   pixel centres (OpenCV ``findContours``), simplified (Douglas-Peucker, ``epsilon`` at
   most 1 px) and every remaining hole is joined to the outline by a zero-width slit
   (the "bridge" of polygon-with-holes triangulation) at the closest pair of vertices,
   giving one simple-to-edit polygon per component.
4. The polygon is rasterised as labelme does (`sercseg_tf.data.labelme_shapes`:
   ``ImageDraw.polygon`` with outline) and compared with the component; the largest
   ``epsilon`` of `EPSILONS` whose IoU reaches `MIN_COMPONENT_IOU` is kept (thin needles
   need a finer outline than round oocytes).

The file: ``imagePath`` the frame PNG beside it (relative), ``imageData`` null, image
flags ``{"predicted": true}`` (`sercseg_tf.data.labelme.PREDICTED_FLAG`; untick it in
LabelMe's Flags panel once reviewed), labels `sercseg_tf.labels.LABELME_LABELS`.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import cv2
import numpy as np

from sercseg_tf import atomic_io, labels
from sercseg_tf.data import labelme_shapes
from sercseg_tf.data.labelme import PREDICTED_FLAG

# Version written in the files (the LabelMe JSON format they follow).
LABELME_FORMAT_VERSION = "5.4.1"
MIN_REGION_PX = 5
EPSILONS: tuple[float, ...] = (1.0, 0.7, 0.5, 0.3, 0.0)
MIN_COMPONENT_IOU = 0.99

Point = tuple[float, float]


def paint_mask(label_map: np.ndarray, class_id: int) -> np.ndarray:
    """Class pixels plus holes made of later-painted classes or smaller than MIN_REGION_PX.

    Holes are the 4-connected background components of the class mask that do not touch
    the frame border (the complement of 8-connected foreground).
    """
    order = labels.ICSI_PAINT_ORDER
    later = np.isin(label_map, order[order.index(class_id) + 1:])
    mask = label_map == class_id
    n, holes = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    sizes = np.bincount(holes.ravel(), minlength=n)
    later_px = np.bincount(holes.ravel(), weights=later.ravel(), minlength=n)
    fill = (later_px == sizes) | (sizes < MIN_REGION_PX)
    fill[0] = False  # label 0: the class pixels themselves
    fill[np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]])] = False
    mask |= fill[holes]
    n, comps, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= MIN_REGION_PX
    keep[0] = False
    return keep[comps]


def _ring(contour: np.ndarray, epsilon: float) -> np.ndarray:
    """A closed contour simplified within ``epsilon`` px, as float ``[N, 2]`` (x, y)."""
    if epsilon > 0:
        contour = cv2.approxPolyDP(contour, epsilon, True)
    return contour[:, 0, :].astype(np.float64)


def bridge(outer: np.ndarray, holes: list[np.ndarray]) -> list[Point]:
    """One polygon: ``outer`` with each hole joined by a zero-width slit.

    The slit runs between the closest pair of vertices of the polygon so far and the
    hole; the hole is walked once around and the walk returns along the slit.
    """
    poly = [tuple(p) for p in outer]
    for hole in holes:
        current = np.asarray(poly)
        d = ((current[:, None, :] - hole[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        walk = [tuple(p) for p in np.roll(hole, -j, axis=0)] + [tuple(hole[j])]
        poly = poly[: i + 1] + walk + poly[i:]
    return [(float(x), float(y)) for x, y in poly]


def _rasterised_iou(points: list[Point], component: np.ndarray, class_id: int) -> float:
    """IoU of a polygon drawn as labelme draws it with the component mask."""
    shape = labelme_shapes.Shape(0, "", class_id, "polygon", tuple(points))
    drawn = labelme_shapes.shape_to_mask(shape, *component.shape)
    union = np.count_nonzero(drawn | component)
    return np.count_nonzero(drawn & component) / union if union else 1.0


def _component_polygon(component: np.ndarray, class_id: int) -> list[Point]:
    """The coarsest polygon (largest epsilon) that reproduces one component's mask."""
    contours, hierarchy = cv2.findContours(component.astype(np.uint8), cv2.RETR_CCOMP,
                                           cv2.CHAIN_APPROX_NONE)
    outer = next(i for i, h in enumerate(hierarchy[0]) if h[3] == -1)
    holes = [i for i, h in enumerate(hierarchy[0]) if h[3] == outer]
    points: list[Point] = []
    for eps in EPSILONS:
        ring = _ring(contours[outer], eps)
        points = bridge(ring, [_ring(contours[h], eps) for h in holes])
        if len(ring) >= 3 and _rasterised_iou(points, component, class_id) >= MIN_COMPONENT_IOU:
            return points
    while len(points) < 3:  # a one- or two-pixel-wide sliver: repeat to make a polygon
        points = points + points[:1]
    return points


def class_polygons(mask: np.ndarray, class_id: int) -> list[list[Point]]:
    """Polygons (x, y pixel centres) that paint ``mask``, largest component first.

    Each component is traced in its bounding box (plus a 1 px margin) and shifted back.
    """
    n, comps, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8),
                                                          connectivity=8)
    found = []
    for k in range(1, n):
        x, y, w, h, area = stats[k]
        y0, x0 = max(y - 1, 0), max(x - 1, 0)
        component = comps[y0:y + h + 1, x0:x + w + 1] == k
        poly = _component_polygon(component, class_id)
        found.append((int(area), [(px + x0, py + y0) for px, py in poly]))
    return [poly for _, poly in sorted(found, key=lambda t: -t[0])]


def labelme_shapes_of(label_map: np.ndarray) -> list[dict[str, Any]]:
    """LabelMe polygon shapes of a label map, in paint order (oocyte, sERC, needle)."""
    shapes = []
    for class_id in labels.ICSI_PAINT_ORDER:
        for poly in class_polygons(paint_mask(np.asarray(label_map), class_id), class_id):
            shapes.append({"label": labels.LABELME_LABELS[class_id],
                           "points": [[x, y] for x, y in poly], "group_id": None,
                           "description": "", "shape_type": "polygon", "flags": {}})
    return shapes


def labelme_document(label_map: np.ndarray, image_name: str) -> dict[str, Any]:
    """The LabelMe file of a predicted label map (module docstring)."""
    height, width = np.asarray(label_map).shape[:2]
    return {"version": LABELME_FORMAT_VERSION, "flags": {PREDICTED_FLAG: True},
            "shapes": labelme_shapes_of(label_map), "imagePath": image_name,
            "imageData": None, "imageHeight": int(height), "imageWidth": int(width)}


def write_labelme(folder: str | os.PathLike, stem: str, image: np.ndarray,
                  label_map: np.ndarray) -> pathlib.Path:
    """Writes ``folder/stem.png`` (the frame) and ``folder/stem.json``; returns the JSON.

    Raises:
      FileExistsError: either file exists already (an annotation is never overwritten).
    """
    import json

    import PIL.Image

    folder = pathlib.Path(folder)
    png, doc = folder / f"{stem}.png", folder / f"{stem}.json"
    for path in (png, doc):
        if path.exists():
            raise FileExistsError(f"{path}: exists; an annotation is never overwritten")
    with atomic_io.atomic_path(png) as tmp:
        PIL.Image.fromarray(np.asarray(image, np.uint8)).save(tmp)
    text = json.dumps(labelme_document(label_map, png.name), indent=1)
    return atomic_io.atomic_write_text(doc, text + "\n")
