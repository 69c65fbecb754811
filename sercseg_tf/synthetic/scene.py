"""Random per-case ICSI scene parameters and the exact per-frame geometry they imply.

Domain randomisation: every case draws its own geometry, injection and look from
``default_rng([seed, case, 0])`` (the zona's shape and texture, pale needles and swollen
cumulus, added later, from ``default_rng([seed, case, 4])``), so clinics' different
optics and habits are ranges, not one look. Lengths are relative to the frame height H
or the ooplasm radius r.

=========================  ==============================================================
Ooplasm (labelled oocyte)  diameter 50-90 % of H (r = 0.25-0.45 H); oval up to 15 %,
                           long axis across the needle in 60 % of cases; zona
                           (perivitelline space 3-12 % of r, 40 %: 4-12 % more; zona
                           10-25 %) may touch or leave the frame, its oval 0-100 % of the
                           ooplasm's (the space widens at the flat sides, up to ~40 % of
                           r); 45 %: a holding-side dent of 4-16 % of r
Injection                  needle from the right in 70 %, else left; half-width 3-6.5 %
                           of r, tilt +-8 deg, aimed at the centre +-0.1 r; inside the
                           ooplasm 35-80 % of its contrast (35 %: a pale needle, all of
                           it x0.55-0.85), granule-free lumen 0-8 % lighter; zona pushed
                           3-10 % of r, then the oolemma pushed in 15-85 % of r (35 %: a
                           first push that does not break it) as a funnel (flat bottom
                           1-1.6 needle widths, walls 4-20 % of r) mixed with a broad dent
                           (share 0-75 %, width 35-80 % of r: kidney and, with the
                           holding-side dent, hourglass shapes); after the break the tip
                           goes 55-150 % of r past the oolemma (past the centre in about
                           half of the cases) while 5-35 % of the funnel stays; tip fades
                           over 3-14 px
Optics                     Hoffman modulation contrast 50 %, DIC-like 20 %, brightfield
                           30 % (see `Look`). Hoffman/DIC: relief on every edge, ooplasm
                           darkened 5-30 % with granules in relief, zona texture 5-35 %
                           of its relief (from near-smooth to mottled).
                           Brightfield: faint relief, dark refractive rims, ooplasm
                           darkened 20-45 % with strongly absorbing granules, near-smooth
                           zona (1-6 %, as real brightfield footage). Background grey
                           55-210; vignetting 5-60 %;
                           illumination slope up to 25 % of H; RGB tint up to +-6 %
                           (+-10 % in 30 %); 35 %: part of the frame defocused by a further
                           1.5-4.5 px; sensor noise 1-6 grey levels; 45 %: JPEG blocks at
                           quality 30-90
Surroundings               holding pipette (outer radius 55-90 % of r, lumen 15-35 % of
                           it) pressing the zona; 55 %: 1-6 cumulus clusters of 3-25 cells
                           (radius 5-11 % of r) on the zona, half of these swollen, smooth
                           cells 1.5-2x that size with 2-5 more clusters around the zona;
                           35 %: a granular corona halo 5-15 % of r wide around it; 3-15
                           debris particles; polar body; 12 %: a second oocyte at the
                           edge; 12 %: the edge of the dish or drop; 80 %: a sperm in the
                           needle, left in the ooplasm at the injection
=========================  ==============================================================

Label rules are the paper's: oocyte = ooplasm inside the oolemma (zona, perivitelline
space, polar body, pipettes, cumulus, debris, a second oocyte and the dish are
background), sERC inside it, needle wherever it is visible. `frame_geometry` returns the
exact geometry of a frame at normalised time tau; cases whose sERC circularity or area
ratio would leave the paper's ranges in any annotated frame are redrawn.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from sercseg_tf.synthetic.geometry import (
    Indentation,
    NeedleGeometry,
    NeedleMotion,
    StarShape,
    SurfaceTable,
    clip_polygon_to_rect,
    polygon_area,
    polygon_circularity,
    ray_span,
    surface_table,
)

CIRCULARITY_RANGE = (0.6, 0.9)
AREA_RATIO_RANGE = (0.025, 0.2)
OOPLASM_DIAMETER_RANGE = (0.5, 0.9)  # fraction of the frame height
# Margins kept inside the ranges when drawing, so per-frame deformation stays inside.
_CIRC_DRAW = (0.64, 0.86)
_RATIO_DRAW = (0.032, 0.17)
OOCYTE_OUTLINE_POINTS = 720
OPTICS = ("hoffman", "dic", "brightfield")
_OPTICS_P = (0.5, 0.2, 0.3)


@dataclasses.dataclass(frozen=True)
class Look:
    """Per-case imaging conditions (optics, illumination, camera, codec)."""

    optics: str  # one of OPTICS
    background: float  # mean grey level of the empty field
    gradient: tuple[float, float]  # illumination slope per pixel (x, y), relative
    vignette: float  # relative fall-off at the corners
    blotch: float  # amplitude of low-frequency illumination unevenness
    relief_angle: float  # shading direction of the Hoffman/DIC relief, radians
    relief_gain: float  # bright/dark relief along the shading direction
    edge_gain: float  # dark refractive rims (brightfield)
    cyto_absorb: float  # cytoplasm darkening, relative
    granule_absorb: float  # granule absorption contrast, relative to cyto_absorb
    zona_absorb: float  # zona darkening (< 0: brighter than the medium)
    zona_relief: float
    zona_texture: float  # relative height modulation of the zona (its granular look)
    texture_gain: float
    granule_scale: float  # granule size multiplier
    noise_sigma: float  # grey levels
    focus_sigma: float  # Gaussian blur of the scene, px
    defocus: tuple[float, float, float]  # (extra blur px, ramp angle, ramp position)
    needle_focus_sigma: float
    needle_contrast: float
    needle_inside: float  # needle contrast inside the ooplasm relative to outside
    lumen_light: float  # lumen lighter than the cytoplasm around it, relative
    tint: tuple[float, float, float]  # RGB gains
    flicker: float  # relative per-frame brightness jitter
    jpeg_quality: int  # 0 = no compression blocks


@dataclasses.dataclass(frozen=True)
class DentStyle:
    """How the membranes give way to the needle (see `Indentation`)."""

    core: float
    funnel: float
    broad: float
    broadness: float
    gap_scale: float


@dataclasses.dataclass(frozen=True)
class Sperm:
    """The spermatozoon in the needle: head behind the tip, tail towards the entry."""

    head_back: float  # head centre behind the tip along the axis, px
    head_axes: tuple[float, float]  # semi-axes along / across the axis, px
    tail_length: float
    tail_amplitude: float
    tail_waves: float
    tail_phase: float
    release_tau: float  # injected (left in the ooplasm) at this time


@dataclasses.dataclass(frozen=True)
class Surroundings:
    """Unlabelled things around the oocyte."""

    cumulus: tuple[tuple[float, float, float, float], ...]  # (x, y, radius, brightness)
    debris: tuple[tuple[float, float, float, float, float], ...]  # (x, y, r, height, absorb)
    second_oocyte: tuple[StarShape, StarShape, StarShape] | None  # ooplasm, zona in, out
    dish_edge: tuple[float, float, float, float] | None  # (cx, cy, radius, darkness)
    corona: float  # width of a fuzzy granular halo just outside the zona, px (0 = none)
    cumulus_texture: float  # granularity of the cumulus cells (low: smooth, swollen cells)


@dataclasses.dataclass(frozen=True)
class CaseScene:
    """All random parameters of one synthetic case."""

    case_id: int
    image_size: tuple[int, int]
    oocyte: StarShape  # oolemma (cytoplasm outline), rest frame
    zona_inner: StarShape
    zona_outer: StarShape
    polar_body: StarShape
    sercs: tuple[StarShape, ...]
    holding_end: tuple[float, float]
    holding_radius: float
    holding_lumen: float
    needle: NeedleGeometry
    motion: NeedleMotion
    dent: DentStyle
    oolemma_table: SurfaceTable
    zona_table: SurfaceTable
    sperm: Sperm | None
    surroundings: Surroundings
    look: Look
    label_names: tuple[str, str, str]  # oocyte, sERC, needle as this annotator writes them
    shape_order: tuple[int, ...]  # order of oocyte/sERC/needle shapes in the JSON

    @property
    def radius(self) -> float:
        """Equivalent radius r of the rest ooplasm (sqrt(a b))."""
        return math.sqrt(self.oocyte.semi_axes[0] * self.oocyte.semi_axes[1])


@dataclasses.dataclass
class FrameGeometry:
    """Exact geometry of one frame (shown frame coordinates)."""

    tau: float
    tip: np.ndarray | None
    needle_depth: float
    needle_offset: float
    needle_polygon: np.ndarray | None  # exact, clipped to the image
    deformation: Indentation
    oocyte_outline: np.ndarray
    oocyte_center: np.ndarray
    serc_outlines: list[np.ndarray]
    serc_centers: list[np.ndarray]

    @property
    def oocyte_area(self) -> float:
        """Area of the oocyte region (cytoplasm incl. sERC), px^2."""
        return polygon_area(self.oocyte_outline)

    @property
    def serc_area_ratio(self) -> float:
        """Total sERC area / oocyte area (paper's f2 with all clusters summed)."""
        return sum(polygon_area(o) for o in self.serc_outlines) / self.oocyte_area


_LABEL_STYLES = (
    ("oocyte", "sERC", "needle"),
    ("Oocyte", "sERC", "Needle"),
    ("oocyte", "SERC", "needle"),
    ("oocyte ", "serc", "needle"),
    ("Oocyte", "SERC ", "needle"),
)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _draw_serc(
    rng: np.random.Generator,
    oocyte: StarShape,
    area: float,
    others: list[StarShape],
    image_size: tuple[int, int],
) -> StarShape | None:
    """Draws one sERC of `area` px^2 inside the oocyte, clear of others and the frame edge."""
    h, w = image_size
    for _ in range(200):
        ratio = rng.uniform(0.32, 0.75)
        harmonics = tuple(
            (k, float(rng.uniform(0.0, 0.045)), float(rng.uniform(0, 2 * np.pi))) for k in (3, 4)
        )
        unit = StarShape((0.0, 0.0), (1.0, ratio), float(rng.uniform(0, np.pi)), harmonics)
        outline = unit.outline()
        circ = polygon_circularity(outline)
        if not _CIRC_DRAW[0] <= circ <= _CIRC_DRAW[1]:
            continue
        scale = math.sqrt(area / polygon_area(outline))
        shape = dataclasses.replace(unit, semi_axes=(scale, scale * ratio))
        r_max = float(np.max(np.hypot(*shape.outline().T)))
        for _ in range(50):
            dist = oocyte.semi_axes[1] * math.sqrt(rng.random()) * 0.8
            ang = rng.uniform(0, 2 * np.pi)
            center = (
                oocyte.center[0] + dist * math.cos(ang),
                oocyte.center[1] + dist * math.sin(ang),
            )
            cand = dataclasses.replace(shape, center=center)
            pts = cand.outline()
            if np.max(oocyte.rho(pts[:, 0], pts[:, 1])) > 0.9:
                continue
            if pts[:, 0].min() < 4 or pts[:, 1].min() < 4:
                continue
            if pts[:, 0].max() > w - 5 or pts[:, 1].max() > h - 5:
                continue
            if any(
                np.hypot(center[0] - o.center[0], center[1] - o.center[1])
                < r_max + max(o.semi_axes) + 4
                for o in others
            ):
                continue
            return cand
    return None


def _draw_cell(
    rng: np.random.Generator,
    rng_extra: np.random.Generator,
    image_size: tuple[int, int],
    direction: tuple[float, float],
) -> tuple[StarShape, StarShape, StarShape, StarShape]:
    """Draws the ooplasm, zona (inner, outer) and polar body of the held oocyte.

    The holding pipette sits on the side the needle points to (angle of `direction`).
    """
    h, w = image_size
    radius = _u(rng, *OOPLASM_DIAMETER_RANGE) / 2 * h
    ax, ay = direction
    hold_phi = math.atan2(ay, ax)
    cx = w / 2 + ax * _u(rng, -0.03, 0.08) * w
    cy = h / 2 + _u(rng, -0.08, 0.08) * h
    ecc = _u(rng, 0.0, 0.15)
    if rng.random() < 0.6:  # squeezed along the needle, long axis across it
        oo_angle = hold_phi + math.pi / 2 + float(rng.normal(0.0, 0.25))
    else:
        oo_angle = _u(rng, 0, np.pi)
    harm = tuple((k, _u(rng, 0, 0.012), _u(rng, 0, 2 * np.pi)) for k in (3, 4, 5))
    axes = (radius * (1 + ecc), radius * (1 - ecc))
    base = StarShape((cx, cy), axes, oo_angle, harm)
    pvs = _u(rng, 0.03, 0.12)
    # The zona is rounder than the ooplasm (its own oval, 0-100 % of the ooplasm's), so the
    # perivitelline space widens at the ooplasm's flat sides; 40 %: a wider space overall.
    pvs += _u(rng_extra, 0.04, 0.12) if rng_extra.random() < 0.4 else 0.0
    ecc_z = ecc * _u(rng_extra, 0.0, 1.0)
    long_z = axes[0] * (1 + pvs)
    zona_inner = StarShape((cx, cy), (long_z, long_z * (1 - ecc_z) / (1 + ecc_z)), oo_angle)
    zona_outer = zona_inner.scaled(1.0 + _u(rng, 0.10, 0.25))
    press = _u(rng, 0.01, 0.04) * radius  # the holding pipette flattens the zona a little
    zona_outer = dataclasses.replace(zona_outer, dents=((hold_phi, press, 0.35),))
    zona_inner = dataclasses.replace(zona_inner, dents=((hold_phi, 0.6 * press, 0.35),))
    dents = []
    if rng.random() < 0.45:  # hourglass: the held side gives way too
        dents.append((hold_phi, _u(rng, 0.04, 0.16) * radius, _u(rng, 0.3, 0.55)))
    # Polar body in the perivitelline space, near 6 or 12 o'clock; it dents the oolemma.
    pb_phi = hold_phi + (np.pi / 2 if rng.random() < 0.5 else -np.pi / 2) + _u(rng, -0.45, 0.45)
    pb_r = radius * _u(rng, 0.08, 0.12)
    zi = float(zona_inner.radius(np.array([pb_phi]))[0])
    r_at_pb = float(base.radius(np.array([pb_phi]))[0])
    dent = 0.5 * max(0.0, r_at_pb - (zi - 2 * pb_r - 1.5))
    dents.append((float(pb_phi), dent, pb_r / radius * 1.3))
    oocyte = dataclasses.replace(base, dents=tuple(dents))
    pb_dist = min(r_at_pb - dent + pb_r + 0.5, zi - 0.4 * pb_r)
    pb_center = (cx + pb_dist * math.cos(pb_phi), cy + pb_dist * math.sin(pb_phi))
    polar_body = StarShape(pb_center, (pb_r * 1.05, pb_r * 0.95), _u(rng, 0, np.pi))
    return oocyte, zona_inner, zona_outer, polar_body


def _draw_needle(
    rng: np.random.Generator, image_size: tuple[int, int], entry_side: str, center: tuple,
    radius: float,
) -> NeedleGeometry:
    """Draws the injection needle, entering from `entry_side`, aimed near the centre."""
    h, w = image_size
    sign = -1.0 if entry_side == "right" else 1.0
    tilt = math.radians(_u(rng, -8, 8))
    direction = (sign * math.cos(tilt), math.sin(tilt))
    cx, cy = center
    aim_y = cy + _u(rng, -0.1, 0.1) * radius
    entry_x = w - 1.0 if entry_side == "right" else 0.0
    entry_y = aim_y - (cx - entry_x) * direction[1] / direction[0]
    w0 = radius * _u(rng, 0.03, 0.065)
    return NeedleGeometry(
        entry_side=entry_side,
        direction=direction,
        entry_point=(entry_x, float(entry_y)),
        half_width=float(w0),
        wall=float(w0 * _u(rng, 0.2, 0.35)),
        taper=_u(rng, 0.0, 0.0012),
        bevel_length=float(2 * w0 / math.tan(math.radians(_u(rng, 30, 50)))),
        sharp_side=float(rng.choice([-1.0, 1.0])),
        fade_length=_u(rng, 3.0, 14.0),
    )


def draw_scene(
    rng: np.random.Generator,
    case_id: int,
    image_size: tuple[int, int],
    rng_extra: np.random.Generator,
) -> CaseScene:
    """Draws the random parameters of one case (zoom, layout, shapes, motion, look).

    `rng_extra` draws the ranges added later (zona shape and texture, pale needles,
    swollen cumulus) from a stream of their own, so most cases keep their other draws
    (a case whose sERC draw depends on the new zona shape is drawn anew).
    """
    h, w = image_size
    entry_side = "right" if rng.random() < 0.7 else "left"
    sign = -1.0 if entry_side == "right" else 1.0
    oocyte, zona_inner, zona_outer, polar_body = _draw_cell(
        rng, rng_extra, image_size, (sign, 0.0))
    radius = math.sqrt(oocyte.semi_axes[0] * oocyte.semi_axes[1])

    # sERC(s): total area ratio drawn in the paper's range.
    ratio = rng.uniform(*_RATIO_DRAW)
    n_serc = 2 if rng.random() < 0.2 else 1
    shares = [1.0] if n_serc == 1 else [ratio_split := rng.uniform(0.55, 0.75), 1 - ratio_split]
    oo_area = polygon_area(oocyte.outline())
    sercs: list[StarShape] = []
    for share in shares:
        s = _draw_serc(rng, oocyte, ratio * share * oo_area, sercs, image_size)
        if s is not None:
            sercs.append(s)

    needle = _draw_needle(rng, image_size, entry_side, oocyte.center, radius)
    max_depth = float(w + h)
    l_zona, _ = ray_span(zona_outer, needle, 0.0, max_depth)
    l_oolemma, l_exit = ray_span(oocyte, needle, 0.0, max_depth)
    motion, sperm_tau = _draw_motion(rng, radius, l_zona, l_oolemma, l_exit)

    # Holding pipette opposite the needle entry, its polished end pressing the zona.
    hold_phi = math.atan2(needle.direction[1], needle.direction[0])
    r_zo = float(zona_outer.radius(np.array([hold_phi]))[0])
    cx, cy = oocyte.center
    press = _u(rng, 1.0, 6.0)
    holding_end = (
        cx + (r_zo - press) * math.cos(hold_phi),
        cy + (r_zo - press) * math.sin(hold_phi),
    )
    holding_radius = radius * _u(rng, 0.55, 0.9)
    d_max = max(k[2] for k in motion.keys)
    pvs_px = radius * (zona_inner.semi_axes[1] / oocyte.semi_axes[1] - 1.0)
    dent = DentStyle(
        core=needle.half_width * _u(rng, 1.0, 1.6),
        funnel=radius * _u(rng, 0.04, 0.2),
        broad=radius * _u(rng, 0.35, 0.8),
        broadness=_u(rng, 0.0, 0.75),
        gap_scale=min(0.25, 0.6 * pvs_px / max(d_max, 1.0)),
    )
    order = [0, 1, 2]
    rng.shuffle(order)
    if rng.random() < 0.6:
        order = [0, 1, 2]  # most annotators draw oocyte, then sERC, then needle
    origin = np.asarray(needle.entry_point)
    a = np.asarray(needle.direction)
    return CaseScene(
        case_id=case_id,
        image_size=(h, w),
        oocyte=oocyte,
        zona_inner=zona_inner,
        zona_outer=zona_outer,
        polar_body=polar_body,
        sercs=tuple(sercs),
        holding_end=holding_end,
        holding_radius=holding_radius,
        holding_lumen=holding_radius * _u(rng, 0.15, 0.35),
        needle=needle,
        motion=motion,
        dent=dent,
        oolemma_table=surface_table(oocyte.outline(OOCYTE_OUTLINE_POINTS), origin, a),
        zona_table=surface_table(zona_outer.outline(OOCYTE_OUTLINE_POINTS), origin, a),
        sperm=_draw_sperm(rng, radius, needle, sperm_tau),
        surroundings=_draw_surroundings(rng, rng_extra, image_size, oocyte, zona_outer, hold_phi),
        look=_draw_look(rng, rng_extra, h),
        label_names=_LABEL_STYLES[int(rng.integers(len(_LABEL_STYLES)))],
        shape_order=tuple(order),
    )


def _draw_motion(
    rng: np.random.Generator, radius: float, l_zona: float, l_oolemma: float, l_exit: float
) -> tuple[NeedleMotion, float]:
    """Draws the needle keyframes of one video and the injection time.

    Approach, push the zona, pierce it, push the oolemma into a funnel (sometimes a first
    push that does not break it), break in and go deep (to or past the centre in about
    half of the cases), inject, retract. Keys are (tau, L, D_oolemma, D_zona).
    """
    keys: list[tuple[float, float, float, float]] = []
    start = l_zona - rng.uniform(25, 0.9 * l_zona - 20) if l_zona > 60 else l_zona * 0.5
    keys.append((0.0, start, 0.0, 0.0))
    t = rng.uniform(0.05, 0.15)
    keys.append((t, l_zona, 0.0, 0.0))
    dz = radius * rng.uniform(0.03, 0.1)
    t += rng.uniform(0.04, 0.08)
    keys.append((t, l_zona + dz, 0.0, dz))  # zona pushed in
    t += rng.uniform(0.03, 0.07)
    keys.append((t, l_oolemma, 0.0, 0.0))  # zona pierced, tip at the oolemma
    d_max = radius * rng.uniform(0.15, 0.85)
    if rng.random() < 0.35:  # a first push that does not break the membrane
        d1 = d_max * rng.uniform(0.4, 0.8)
        t += rng.uniform(0.05, 0.09)
        keys.append((t, l_oolemma + d1, d1, 0.0))
        t += rng.uniform(0.04, 0.07)
        keys.append((t, l_oolemma + 0.2 * d1, 0.2 * d1, 0.0))
    t += rng.uniform(0.07, 0.14)
    keys.append((t, l_oolemma + d_max, d_max, 0.0))  # deepest funnel
    t += rng.uniform(0.02, 0.04)
    chord = l_exit - l_oolemma
    deep = l_oolemma + min(max(radius * rng.uniform(0.55, 1.5), d_max + 0.05 * radius),
                           0.85 * chord)  # fmt: skip
    residual = d_max * rng.uniform(0.05, 0.35)
    keys.append((t, deep, residual, 0.0))  # membrane breaks, the tip goes in
    t += rng.uniform(0.04, 0.1)
    t_inject = t
    keys.append((t, deep + radius * rng.uniform(-0.12, 0.03), residual, 0.0))  # injection
    t += rng.uniform(0.06, 0.2)
    keys.append((t, deep - radius * rng.uniform(0.0, 0.2), residual, 0.0))  # aspirate, wait
    t += rng.uniform(0.06, 0.2)
    out = l_zona - rng.uniform(10, 60) if rng.random() < 0.7 else -rng.uniform(5, 40)
    keys.append((t, out, 0.0, 0.0))  # withdrawn (30 %: out of view)
    if t < 1.0:
        keys.append((1.0, out - rng.uniform(0, 20), 0.0, 0.0))
    scale = 1.0 / max(k[0] for k in keys)
    keys = [(k[0] * scale, float(k[1]), float(k[2]), float(k[3])) for k in keys]
    tremor = tuple(
        (float(rng.uniform(0.2, 1.2)), float(rng.uniform(3, 25)), float(rng.uniform(0, 2 * np.pi)))
        for _ in range(3)
    )
    drift = tuple(
        (
            float(rng.uniform(0.5, 3.0)),
            float(rng.uniform(0.3, 2.0)),
            float(rng.uniform(0, 2 * np.pi)),
        )
        for _ in range(2)
    )
    return NeedleMotion(tuple(keys), tremor, drift), t_inject * scale


def _draw_sperm(
    rng: np.random.Generator, radius: float, needle: NeedleGeometry, release_tau: float
) -> Sperm | None:
    """Draws the spermatozoon loaded in the needle (80 % of cases), sized like a human one."""
    if rng.random() >= 0.8:
        return None
    lumen = needle.half_width - needle.wall
    head_w = min(0.03 * radius, 0.8 * lumen)
    return Sperm(
        head_back=needle.half_width * _u(rng, 1.5, 8.0) + needle.bevel_length,
        head_axes=(head_w * _u(rng, 1.4, 1.8), head_w),
        tail_length=radius * _u(rng, 0.5, 0.9),
        tail_amplitude=lumen * _u(rng, 0.0, 0.4),
        tail_waves=_u(rng, 1.0, 4.0),
        tail_phase=_u(rng, 0, 2 * np.pi),
        release_tau=release_tau,
    )


def _cumulus_cluster(
    rng: np.random.Generator, radius: float, center: tuple[float, float],
    zona_outer: StarShape, hold_phi: float, grow: float,
) -> list[tuple[float, float, float, float]]:
    """One cluster of cumulus cells on the zona: (x, y, radius, brightness) per cell."""
    cx, cy = center
    # Not where the needle comes in (hold_phi + pi) nor at the pipette (hold_phi).
    phi = hold_phi + _u(rng, 0.5, math.pi - 0.5) * rng.choice([-1, 1])
    r_zo = float(zona_outer.radius(np.array([phi]))[0])
    cells = []
    for _ in range(int(rng.integers(3, 26))):
        rc = radius * _u(rng, 0.05, 0.11) * grow
        ang = phi + float(rng.normal(0.0, 0.18))
        dist = r_zo + rc * _u(rng, 0.0, 3.5)
        cells.append((cx + dist * math.cos(ang), cy + dist * math.sin(ang), rc, _u(rng, -1, 1)))
    return cells


def _draw_surroundings(
    rng: np.random.Generator,
    rng_extra: np.random.Generator,
    image_size: tuple[int, int],
    oocyte: StarShape,
    zona_outer: StarShape,
    hold_phi: float,
) -> Surroundings:
    """Draws cumulus/corona remnants, debris, maybe a second oocyte and a dish edge."""
    h, w = image_size
    radius = math.sqrt(oocyte.semi_axes[0] * oocyte.semi_axes[1])
    cx, cy = oocyte.center
    cumulus: list[tuple[float, float, float, float]] = []
    cumulus_texture = 3.0
    if rng.random() < 0.55:
        # Half of these: swollen, smooth cells (1.5-2x the size) in 2-5 more clusters,
        # ringing more of the zona, as the loosened corona radiata of real footage.
        grow, extra_clusters = 1.0, 0
        if rng_extra.random() < 0.5:
            grow, cumulus_texture = _u(rng_extra, 1.5, 2.0), _u(rng_extra, 0.3, 1.2)
            extra_clusters = int(rng_extra.integers(2, 6))
        args = (radius, oocyte.center, zona_outer, hold_phi, grow)
        for _ in range(int(rng.integers(1, 7))):
            cumulus += _cumulus_cluster(rng, *args)
        for _ in range(extra_clusters):
            cumulus += _cumulus_cluster(rng_extra, *args)
    scale = h / 480.0
    debris = []
    for _ in range(int(rng.integers(3, 16))):
        big = rng.random() < 0.2
        rr = scale * (_u(rng, 4.0, 12.0) if big else _u(rng, 1.5, 5.0))
        debris.append((_u(rng, 0, w), _u(rng, 0, h), rr, _u(rng, 0.3, 1.0), _u(rng, -0.05, 0.2)))
    second = None
    if rng.random() < 0.12:
        r2 = radius * _u(rng, 0.8, 1.1)
        r_zo = zona_outer.semi_axes[0]
        side = hold_phi + (math.pi / 2 if rng.random() < 0.5 else -math.pi / 2)
        phi = side + _u(rng, -0.4, 0.4)
        dist = r_zo + r2 * 1.25 + _u(rng, 5.0, 40.0)
        c2 = (cx + dist * math.cos(phi), cy + dist * math.sin(phi))
        ooplasm = StarShape(c2, (r2 * _u(rng, 1.0, 1.08), r2), _u(rng, 0, np.pi))
        zi = ooplasm.scaled(1 + _u(rng, 0.03, 0.1))
        second = (ooplasm, zi, zi.scaled(1 + _u(rng, 0.1, 0.2)))
    dish = None
    if rng.random() < 0.12:
        big_r = h * _u(rng, 1.5, 4.0)
        phi = hold_phi + (math.pi / 2 if rng.random() < 0.5 else -math.pi / 2)
        phi += _u(rng, -0.5, 0.5)
        dist = zona_outer.semi_axes[0] + _u(rng, 15.0, max(16.0, 0.5 * h))
        dish = (cx + (dist - big_r) * math.cos(phi), cy + (dist - big_r) * math.sin(phi),
                big_r, _u(rng, 0.15, 0.6))  # fmt: skip
    corona = radius * _u(rng, 0.05, 0.15) if rng.random() < 0.35 else 0.0
    return Surroundings(tuple(cumulus), tuple(debris), second, dish, corona, cumulus_texture)


def _draw_look(rng: np.random.Generator, rng_extra: np.random.Generator, height: int) -> Look:
    """Draws the optics and camera of one case (ranges in the module docstring)."""
    optics = str(rng.choice(OPTICS, p=_OPTICS_P))
    brightfield = optics == "brightfield"
    tint_range = 0.1 if rng.random() < 0.3 else 0.06
    defocus = (0.0, 0.0, 0.0)
    if rng.random() < 0.35:
        defocus = (_u(rng, 1.5, 4.5), _u(rng, 0, 2 * np.pi), _u(rng, -0.3, 0.4))
    relief = {"hoffman": (1.2, 2.8), "dic": (2.0, 3.5), "brightfield": (0.0, 0.5)}[optics]
    edge = (0.4, 1.2) if optics == "brightfield" else (0.0, 0.2)
    focus = (0.3, 0.9) if optics == "dic" else (0.4, 1.8)
    slope = 0.25 / height
    # 35 %: a pale needle (x0.55-0.85), faint against a bright field as in real footage.
    pale_needle = _u(rng_extra, 0.55, 0.85) if rng_extra.random() < 0.35 else 1.0
    return Look(
        optics=optics,
        background=_u(rng, 55, 210),
        gradient=(_u(rng, -slope, slope), _u(rng, -slope, slope)),
        vignette=_u(rng, 0.05, 0.6),
        blotch=_u(rng, 0.0, 0.06),
        relief_angle=_u(rng, 0, 2 * np.pi),
        relief_gain=_u(rng, *relief),
        edge_gain=_u(rng, *edge),
        cyto_absorb=_u(rng, *((0.2, 0.45) if brightfield else (0.05, 0.3))),
        granule_absorb=0.9 if brightfield else 0.45,
        zona_absorb=_u(rng, -0.05, 0.08),
        zona_relief=_u(rng, 0.15, 0.45),
        zona_texture=_u(rng_extra, *((0.01, 0.06) if brightfield else (0.05, 0.35))),
        texture_gain=_u(rng, 0.6, 1.4),
        granule_scale=_u(rng, 0.8, 1.5),
        noise_sigma=_u(rng, 1.0, 6.0),
        focus_sigma=_u(rng, *focus),
        defocus=defocus,
        needle_focus_sigma=_u(rng, 0.4, 1.6),
        needle_contrast=_u(rng, 0.6, 1.3) * pale_needle,
        needle_inside=_u(rng, 0.35, 0.8),
        lumen_light=_u(rng, 0.0, 0.08),
        tint=tuple(float(v) for v in 1.0 + rng.uniform(-tint_range, tint_range, size=3)),
        flicker=_u(rng, 0.0, 0.012),
        jpeg_quality=int(rng.integers(30, 91)) if rng.random() < 0.45 else 0,
    )


NEEDLE_MIN_VISIBLE_DEPTH = 1.0


def frame_geometry(scene: CaseScene, tau: float) -> FrameGeometry:
    """Returns the exact geometry (shown-frame coordinates) at normalised time tau."""
    h, w = scene.image_size
    depth, dent_o, dent_z, offset = scene.motion.at(tau)
    needle = scene.needle
    tip = needle.tip(depth, offset)
    style = dataclasses.asdict(scene.dent)
    if dent_z > dent_o:
        deform = Indentation(scene.zona_table, offset, dent_z, **style)
    else:
        deform = Indentation(scene.oolemma_table, offset, dent_o, **style)
    visible = depth >= NEEDLE_MIN_VISIBLE_DEPTH and 0 <= tip[0] <= w - 1 and 0 <= tip[1] <= h - 1
    polygon = None
    if visible:
        raw = needle.polygon(depth, offset, length=depth + 4 * needle.half_width + 20)
        polygon = clip_polygon_to_rect(raw, 0.0, 0.0, w - 1.0, h - 1.0)
    oocyte_outline = deform.forward(scene.oocyte.outline(OOCYTE_OUTLINE_POINTS))
    serc_outlines = [deform.forward(s.outline()) for s in scene.sercs]
    centers = np.asarray([s.center for s in scene.sercs], dtype=np.float64).reshape(-1, 2)
    serc_centers = list(deform.forward(centers)) if len(scene.sercs) else []
    return FrameGeometry(
        tau=tau,
        tip=tip if visible else None,
        needle_depth=depth,
        needle_offset=offset,
        needle_polygon=polygon,
        deformation=deform,
        oocyte_outline=oocyte_outline,
        oocyte_center=deform.forward(np.asarray([scene.oocyte.center]))[0],
        serc_outlines=serc_outlines,
        serc_centers=serc_centers,
    )


def scene_is_valid(scene: CaseScene, taus: np.ndarray) -> bool:
    """Checks the paper's sERC ranges (circularity, area ratio) at the given times."""
    if not scene.sercs:
        return False
    for tau in taus:
        geo = frame_geometry(scene, float(tau))
        ratio = geo.serc_area_ratio
        if not AREA_RATIO_RANGE[0] <= ratio <= AREA_RATIO_RANGE[1]:
            return False
        for outline in geo.serc_outlines:
            c = polygon_circularity(outline)
            if not CIRCULARITY_RANGE[0] <= c <= CIRCULARITY_RANGE[1]:
                return False
    return True
