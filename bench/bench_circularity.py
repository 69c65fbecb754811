"""Circularity (eq. 1) estimators on digitised ellipses of known circularity.

Compares `sercseg_tf.features.circularity` (area and length of one sub-pixel contour
of the Gaussian-smoothed mask) with the naive estimator (pixel-count area with the
length of cv2.findContours CHAIN_APPROX_NONE through boundary pixel centres, via
cv2.arcLength). Truth: 4πab/P² with Ramanujan's perimeter
P ≈ π[3(a + b) − sqrt((3a + b)(a + 3b))]. Also reports the needle-tip error on
rasterised bevelled needles and the time per call.

Usage:
    .venv/bin/python bench/bench_circularity.py --num_ellipses=500 --seed=0
"""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
from absl import app, flags

from sercseg_tf import features as F

_NUM = flags.DEFINE_integer("num_ellipses", 500, "Random ellipses.")
_NUM_NEEDLES = flags.DEFINE_integer("num_needles", 200, "Random needles.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")
_MIN_B = flags.DEFINE_float("min_semi_axis", 10.0, "Smallest semi-minor axis (px).")
_MAX_B = flags.DEFINE_float("max_semi_axis", 40.0, "Largest semi-minor axis (px).")
_SIGMAS = flags.DEFINE_list("sigmas", ["0", "1.0", "1.5", "2.0"], "Extra sigmas to compare.")


def ellipse_mask(a, b, theta, dx, dy):
    size = int(2 * max(a, b) + 12)
    y, x = np.mgrid[0:size, 0:size].astype(float)
    cx, cy = size / 2 + dx, size / 2 + dy
    u = (x - cx) * math.cos(theta) + (y - cy) * math.sin(theta)
    w = -(x - cx) * math.sin(theta) + (y - cy) * math.cos(theta)
    return (u / a) ** 2 + (w / b) ** 2 <= 1.0


def ramanujan_circularity(a, b):
    perimeter = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))
    return 4 * math.pi * math.pi * a * b / perimeter**2


def naive_circularity(mask):
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    length = sum(cv2.arcLength(c, True) for c in contours)
    return 4 * math.pi * float(mask.sum()) / length**2


def polygon_mask(poly, shape):
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    inside = np.zeros(shape, dtype=bool)
    for i in range(len(poly)):
        (x1, y1), (x2, y2) = poly[i], poly[(i + 1) % len(poly)]
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < x_at)
    return inside


def needle_polygon(phi, tip, shaft, tip_width, bevel_deg):
    u = np.array([math.cos(phi), math.sin(phi)])
    n = np.array([-u[1], u[0]])
    flare = (shaft - tip_width) / 2
    bevel = tip_width / math.tan(math.radians(bevel_deg))
    local = [
        (0.0, 0.0),
        (30.0, -flare),
        (3000.0, -flare),
        (3000.0, tip_width + flare),
        (30.0, tip_width + flare),
        (bevel, tip_width),
    ]
    return [tip - s * u + t * n for s, t in local]


def summary(name, errors):
    e = np.asarray(errors) * 100
    print(
        f"{name:<34s} mean {e.mean():+6.2f} %  mean|e| {np.abs(e).mean():5.2f} %  "
        f"max|e| {np.abs(e).max():5.2f} %"
    )


def main(argv):
    del argv
    rng = np.random.default_rng(_SEED.value)
    ellipses = []
    for _ in range(_NUM.value):
        b = rng.uniform(_MIN_B.value, _MAX_B.value)
        a = b * rng.uniform(1.0, 3.3)  # analytic circularity 0.62 .. 1.0
        ellipses.append((a, b, rng.uniform(0, math.pi), *rng.uniform(-0.5, 0.5, size=2)))
    masks = [ellipse_mask(*e) for e in ellipses]
    truth = np.array([ramanujan_circularity(a, b) for a, b, *_ in ellipses])
    print(
        f"{len(masks)} ellipses, semi-axes {_MIN_B.value:g}..{3.3 * _MAX_B.value:g} px, "
        f"circularity {truth.min():.3f}..{truth.max():.3f}"
    )

    t0 = time.perf_counter()
    ours = np.array([F.circularity(m) for m in masks])
    t_ours = (time.perf_counter() - t0) / len(masks)
    t0 = time.perf_counter()
    naive = np.array([naive_circularity(m) for m in masks])
    t_naive = (time.perf_counter() - t0) / len(masks)
    summary(f"sub-pixel contour, sigma={F.DEFAULT_PERIMETER_SIGMA:g} (ours)", ours / truth - 1)
    summary("naive cv2 arcLength + pixel count", naive / truth - 1)
    for s in _SIGMAS.value:
        sigma = float(s)
        if sigma == F.DEFAULT_PERIMETER_SIGMA:
            continue
        values = np.array([F.circularity(m, sigma=sigma) for m in masks])
        summary(f"sub-pixel contour, sigma={sigma:g}", values / truth - 1)
    disc = ellipse_mask(20, 20, 0, 0.3, 0.1)
    print(
        f"disc r=20: ours {F.circularity(disc):.4f}, naive {naive_circularity(disc):.4f}; "
        f"time/mask ours {t_ours * 1e3:.2f} ms, naive {t_naive * 1e3:.2f} ms"
    )

    errors = []
    for _ in range(_NUM_NEEDLES.value):
        side_angle = rng.choice([0.0, 90.0, 180.0, 270.0])
        phi = math.radians(side_angle + rng.uniform(-30.0, 30.0))
        tip = np.array([100.0, 80.0]) + rng.uniform(-5, 5, size=2)
        poly = needle_polygon(
            phi, tip, rng.uniform(8, 16), rng.uniform(3, 6), rng.uniform(35.0, 60.0)
        )
        (tx, ty), _ = F.needle_tip(polygon_mask(poly, (160, 200)))
        errors.append(math.hypot(tx - tip[0], ty - tip[1]))
    errors = np.array(errors)
    print(
        f"needle tip, {len(errors)} bevelled needles (bevel 35-60 deg, tilt +-30 deg): "
        f"mean {errors.mean():.2f} px, p95 {np.percentile(errors, 95):.2f} px, "
        f"max {errors.max():.2f} px"
    )


if __name__ == "__main__":
    app.run(main)
