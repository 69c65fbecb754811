"""Tests for sercseg_tf.features (eq. 1–4 of the paper)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from sercseg_tf import features as F
from sercseg_tf.labels import BACKGROUND, IGNORE_LABEL, NEEDLE, OOCYTE, SERC


def ellipse_mask(a, b, theta, cx, cy, shape=None):
    """Pixel centres (x=col, y=row) inside the ellipse with semi-axes a, b."""
    if shape is None:
        size = int(2 * max(a, b) + 12)
        shape = (size, size)
        cx, cy = cx + size / 2, cy + size / 2
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    u = (x - cx) * math.cos(theta) + (y - cy) * math.sin(theta)
    w = -(x - cx) * math.sin(theta) + (y - cy) * math.cos(theta)
    return (u / a) ** 2 + (w / b) ** 2 <= 1.0


def ramanujan_circularity(a, b):
    perimeter = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))
    return 4 * math.pi * math.pi * a * b / perimeter**2


def polygon_mask(poly, shape):
    """Even-odd point-in-polygon test at pixel centres."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    inside = np.zeros(shape, dtype=bool)
    for i in range(len(poly)):
        (x1, y1), (x2, y2) = poly[i], poly[(i + 1) % len(poly)]
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < x_at)
    return inside


TIP_ANGLE = {"left": 0.0, "top": 90.0, "right": 180.0, "bottom": 270.0}


def needle_polygon(side, tilt_deg, tip, shaft=12.0, tip_width=5.0, bevel_deg=45.0):
    """Tapered pipette with a bevelled apex at ``tip``, entering from ``side``.

    Local frame: s back along the shaft from the apex, t across it. The shaft (width
    ``shaft``) tapers over 30 px to ``tip_width``; the bevel cuts the end at
    ``bevel_deg`` so the apex is the corner on one wall.
    """
    phi = math.radians(TIP_ANGLE[side] + tilt_deg)
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
    tip = np.asarray(tip, dtype=float)
    return [tip - s * u + t * n for s, t in local]


# --- perimeter / circularity -------------------------------------------------------


def test_contour_area_length_exact_on_a_pixel_block():
    block = np.zeros((10, 12))
    block[2:6, 3:8] = 1.0  # 4 x 5 pixels
    area, length = F.contour_area_length(block, 0.5)
    # Marching squares through crack midpoints: a 3 x 4 rectangle through the outer
    # pixel centres grown by 1/2 px, its four corners cut by triangles of area 1/8.
    assert area == pytest.approx(20.0 - 4 * 0.125)
    assert length == pytest.approx(2 * 3 + 2 * 4 + 4 * math.sqrt(0.5))


def test_contour_area_length_of_a_linear_ramp_disc():
    # Distance field of a disc of radius 15: the 0-level contour is the circle itself
    # up to the chord error of a polygon with ~1 px edges.
    y, x = np.mgrid[0:50, 0:50].astype(float)
    field = 15.0 - np.hypot(x - 24.3, y - 25.1)
    area, length = F.contour_area_length(field, 0.0)
    assert area == pytest.approx(math.pi * 225, rel=2e-3)
    assert length == pytest.approx(2 * math.pi * 15, rel=2e-3)


def test_contour_area_subtracts_holes():
    ring = np.zeros((40, 40))
    ring[5:35, 5:35] = 1.0  # 30 x 30 block
    ring[15:25, 15:25] = 0.0  # minus a 10 x 10 hole
    area, length = F.contour_area_length(ring)
    outer_area, outer_len = 30 * 30 - 0.5, 4 * 29 + 4 * math.sqrt(0.5)
    hole_area, hole_len = 10 * 10 - 0.5, 4 * 9 + 4 * math.sqrt(0.5)
    assert area == pytest.approx(outer_area - hole_area)
    assert length == pytest.approx(outer_len + hole_len)


def test_disc_circularity_unbiased_where_binary_contour_is_not():
    disc = ellipse_mask(20, 20, 0.0, 0.3, 0.1)
    assert F.circularity(disc) == pytest.approx(1.0, abs=0.01)
    # Without the blur the staircase makes the contour ~5 % too long.
    assert F.circularity(disc, sigma=0.0) < 0.92


def test_circularity_within_one_percent_on_random_ellipses():
    rng = np.random.default_rng(20240601)
    errors = []
    for _ in range(300):
        b = rng.uniform(10.0, 30.0)
        a = b * rng.uniform(1.0, 3.3)  # analytic circularity 0.62 .. 1.0
        theta = rng.uniform(0.0, math.pi)
        mask = ellipse_mask(a, b, theta, rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5))
        expected = ramanujan_circularity(a, b)
        errors.append(F.circularity(mask) / expected - 1.0)
    errors = np.abs(errors)
    assert errors.max() < 0.01, errors.max()
    assert errors.mean() < 0.005


def test_circularity_of_empty_mask_is_nan():
    assert math.isnan(F.circularity(np.zeros((5, 5), bool)))
    assert F.smoothed_contour_area_length(np.zeros((0, 0), bool)) == (0.0, 0.0)


def test_tiny_blob_falls_back_to_binary_contour():
    mask = np.zeros((7, 7), bool)
    mask[3, 3] = True
    area, length = F.smoothed_contour_area_length(mask)
    assert area == pytest.approx(0.5)  # the marching-squares diamond
    assert length == pytest.approx(4 * math.sqrt(0.5))


# --- needle tip --------------------------------------------------------------------


@pytest.mark.parametrize("side", ["left", "top", "right", "bottom"])
def test_needle_tip_within_1_5_px(side):
    rng = np.random.default_rng(7 + len(side))
    errors = []
    for tilt in (-30.0, -15.0, 0.0, 15.0, 30.0):
        for bevel in (35.0, 45.0, 60.0):
            tip = np.array([100.0, 80.0]) + rng.uniform(-5.0, 5.0, size=2)
            poly = needle_polygon(
                side,
                tilt,
                tip,
                shaft=rng.uniform(8, 16),
                tip_width=rng.uniform(3, 6),
                bevel_deg=bevel,
            )
            mask = polygon_mask(poly, (160, 200))
            (tx, ty), entry = F.needle_tip(mask)
            assert entry == side
            errors.append(math.hypot(tx - tip[0], ty - tip[1]))
    assert max(errors) < 1.5, errors


def test_needle_tip_uses_largest_component_and_far_end_when_off_border():
    mask = np.zeros((100, 120), bool)
    mask[40:46, 70:110] = True  # bar nearest the right border at x=109
    mask[5:7, 5:7] = True  # stray blob
    (tx, ty), side = F.needle_tip(mask)
    assert side == "right"
    assert tx == pytest.approx(70 - 1.0, abs=0.3)  # left end + TIP_EDGE_OFFSET_PX
    assert ty == pytest.approx(42.5, abs=0.3)


def test_needle_tip_of_empty_mask():
    (tx, ty), side = F.needle_tip(np.zeros((4, 4), bool))
    assert math.isnan(tx) and math.isnan(ty) and side is None


# --- compute_features ---------------------------------------------------------------


def scene(shape=(240, 320)):
    lab = np.zeros(shape, np.uint8)
    oocyte = ellipse_mask(80, 80, 0.0, 170.2, 120.4, shape)
    serc = ellipse_mask(30, 18, 0.5, 190.0, 110.0, shape)
    lab[oocyte] = OOCYTE
    lab[serc] = SERC
    tip = np.array([120.3, 131.7])
    needle = polygon_mask(needle_polygon("left", 10.0, tip, 14.0, 5.0, 45.0), shape)
    lab[needle] = NEEDLE
    return lab, oocyte, serc, tip


def test_compute_features_on_a_scene():
    lab, oocyte, serc, tip = scene()
    res = F.compute_features(lab)
    assert res.nan_reasons == {}
    assert res.n_serc_clusters == 1 and res.n_oocyte_components == 1
    assert res.S_s == serc.sum()
    region = (lab == OOCYTE) | (lab == SERC)
    assert res.S_o == region.sum()
    assert res.f2 == pytest.approx(res.S_s / res.S_o)
    assert res.f1 == pytest.approx(ramanujan_circularity(30, 18), rel=0.01)
    assert res.f1 == pytest.approx(4 * math.pi * res.S_s_contour / res.L_s**2)
    ys, xs = np.nonzero(region)
    assert res.oocyte_centroid == pytest.approx((xs.mean(), ys.mean()))
    assert res.needle_entry_side == "left"
    assert math.hypot(res.needle_tip[0] - tip[0], res.needle_tip[1] - tip[1]) < 1.5
    assert res.f3 == pytest.approx(res.oocyte_centroid[0] - res.needle_tip[0])
    assert res.f4 == pytest.approx(res.oocyte_centroid[1] - res.needle_tip[1])
    row = res.as_dict()
    assert row["C_ox"] == res.oocyte_centroid[0] and row["T_ny"] == res.needle_tip[1]
    assert all(not isinstance(v, (tuple, list, dict)) for v in row.values())


def test_oocyte_holes_are_filled():
    lab, *_ = scene()
    holed = lab.copy()
    holed[150:160, 200:210] = BACKGROUND  # hole inside the oocyte
    holed[170:175, 180:185] = IGNORE_LABEL
    a, b = F.compute_features(lab), F.compute_features(holed)
    assert b.S_o == a.S_o
    assert b.oocyte_centroid == pytest.approx(a.oocyte_centroid)


def test_several_serc_clusters_area_weighted():
    lab = np.zeros((200, 200), np.uint8)
    lab[ellipse_mask(90, 90, 0, 100, 100, lab.shape)] = OOCYTE
    big = ellipse_mask(30, 15, 0.2, 80, 90, lab.shape)
    small = ellipse_mask(12, 12, 0.0, 140, 140, lab.shape)
    lab[big] = SERC
    lab[small] = SERC
    res = F.compute_features(lab)
    assert res.n_serc_clusters == 2
    c_big, c_small = F.circularity(big), F.circularity(small)
    assert res.serc_circularities == pytest.approx((c_big, c_small))
    w_big, w_small = big.sum(), small.sum()
    assert res.f1 == pytest.approx((c_big * w_big + c_small * w_small) / (w_big + w_small))
    assert res.S_s == w_big + w_small
    assert res.f2 == pytest.approx(res.S_s / res.S_o)
    assert "f3" in res.nan_reasons and "needle" in res.nan_reasons["f3"]


def test_missing_regions_give_nan_with_reason():
    lab = np.zeros((50, 60), np.uint8)
    res = F.compute_features(lab)
    for name in ("f1", "f2", "f3", "f4"):
        assert math.isnan(getattr(res, name)) and res.nan_reasons[name]
    assert res.S_s == 0 and res.S_o == 0 and res.needle_entry_side is None
    lab[10:20, 10:20] = OOCYTE
    res = F.compute_features(lab)
    assert res.nan_reasons["f1"] == "no sERC pixels"
    assert res.nan_reasons["f3"] == "no needle pixels"
    assert res.S_o == 100 and res.oocyte_centroid == (14.5, 14.5)


def _check_result(res):
    for name in ("f1", "f2", "f3", "f4"):
        value = getattr(res, name)
        assert isinstance(value, float)
        assert math.isfinite(value) or res.nan_reasons.get(name), name
    row = res.as_dict()
    assert set(row) >= {"f1", "f2", "f3", "f4", "S_s", "L_s", "S_o", "C_ox", "T_nx"}


@pytest.mark.parametrize(
    "lab",
    [
        np.zeros((0, 0), np.uint8),
        np.zeros((0, 7), np.int32),
        np.full((8, 9), IGNORE_LABEL, np.uint8),
        np.array([[SERC]], np.uint8),
        np.array([[NEEDLE]], np.int64),
        np.array([[OOCYTE, SERC, NEEDLE]], np.uint8),
        np.array([[SERC], [NEEDLE], [7]], np.int16),
    ],
)
def test_degenerate_label_maps_do_not_raise(lab):
    _check_result(F.compute_features(lab))


def test_random_label_maps_do_not_raise():
    rng = np.random.default_rng(3)
    values = np.array([0, 1, 2, 3, 255], np.uint8)
    for _ in range(40):
        h, w = rng.integers(1, 30, size=2)
        lab = rng.choice(values, size=(h, w), p=rng.dirichlet(np.ones(5)))
        if rng.random() < 0.3:  # blocky maps: larger regions
            lab = np.kron(lab[: max(1, h // 4), : max(1, w // 4)], np.ones((4, 4), np.uint8))
        _check_result(F.compute_features(lab.astype(rng.choice([np.uint8, np.int32]))))


def test_squeezes_trailing_channel_and_rejects_bad_input():
    lab, *_ = scene((120, 160))
    a = F.compute_features(lab)
    b = F.compute_features(lab[..., None])
    assert a.as_dict() == b.as_dict()
    with pytest.raises(ValueError, match="2-D"):
        F.compute_features(np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(ValueError, match="integer"):
        F.compute_features(np.zeros((3, 3), np.float32))


def test_no_tensorflow_import():
    code = (
        "import sys, sercseg_tf.features, sercseg_tf.metrics; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
