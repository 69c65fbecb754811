"""Random per-case ICSI scene parameters and the exact per-frame geometry they imply.

A case is drawn from a NumPy Generator seeded by (seed, case): oocyte size (zoom),
position, shape, zona pellucida, polar body, one or two sERCs, holding pipette, needle
and its motion, and the look (illumination, relief direction, noise, focus, tint).
`frame_geometry` returns the exact geometry of a frame at normalised time tau; cases
whose sERC circularity or area ratio would leave the paper's ranges in any annotated
frame are redrawn.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from sercseg_tf.synthetic.geometry import (
    Deformation,
    NeedleGeometry,
    NeedleMotion,
    StarShape,
    clip_polygon_to_rect,
    polygon_area,
    polygon_circularity,
    ray_entry_depth,
)

CIRCULARITY_RANGE = (0.6, 0.9)
AREA_RATIO_RANGE = (0.025, 0.2)
# Margins kept inside the ranges when drawing, so per-frame deformation stays inside.
_CIRC_DRAW = (0.64, 0.86)
_RATIO_DRAW = (0.032, 0.17)


@dataclasses.dataclass(frozen=True)
class Look:
    """Per-case imaging conditions."""

    background: float  # mean grey level of the empty field
    gradient: tuple[float, float]  # illumination slope per pixel (x, y), relative
    vignette: float  # relative fall-off at the corners
    relief_angle: float  # direction of the Hoffman/relief shading, radians
    relief_gain: float
    cyto_absorb: float  # cytoplasm darkening, relative
    texture_gain: float
    noise_sigma: float  # grey levels
    focus_sigma: float  # Gaussian blur of the scene, px
    needle_focus_sigma: float
    needle_contrast: float
    tint: tuple[float, float, float]  # RGB gains
    flicker: float  # relative per-frame brightness jitter


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
    holding_axis_y: float  # holding pipette: axis through this point along -needle.direction
    holding_end: tuple[float, float]
    holding_radius: float
    holding_lumen: float
    needle: NeedleGeometry
    motion: NeedleMotion
    dent_sigma: float
    dent_lambda: float
    look: Look
    label_names: tuple[str, str, str]  # oocyte, sERC, needle as this annotator writes them
    shape_order: tuple[int, ...]  # order of oocyte/sERC/needle shapes in the JSON


@dataclasses.dataclass
class FrameGeometry:
    """Exact geometry of one frame (shown frame coordinates)."""

    tau: float
    tip: np.ndarray | None
    needle_depth: float
    needle_offset: float
    needle_polygon: np.ndarray | None  # exact, clipped to the image
    deformation: Deformation
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


def _draw_serc(
    rng: np.random.Generator, oocyte: StarShape, area: float, others: list[StarShape]
) -> StarShape | None:
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
            if any(
                np.hypot(center[0] - o.center[0], center[1] - o.center[1])
                < r_max + max(o.semi_axes) + 4
                for o in others
            ):
                continue
            return cand
    return None


def draw_scene(rng: np.random.Generator, case_id: int, image_size: tuple[int, int]) -> CaseScene:
    """Draws the random parameters of one case (zoom, layout, shapes, motion, look)."""
    h, w = image_size
    radius = rng.uniform(0.20, 0.25) * h  # cytoplasm radius: 40-50 % of the frame height
    entry_side = "right" if rng.random() < 0.7 else "left"
    sign = -1.0 if entry_side == "right" else 1.0  # needle direction along x
    cx = w / 2 + rng.uniform(-0.04, 0.1) * w * (-sign)  # a little towards the holding side
    cy = h / 2 + rng.uniform(-0.06, 0.06) * h
    ecc = rng.uniform(0.0, 0.04)
    harm = tuple(
        (k, float(rng.uniform(0, 0.012)), float(rng.uniform(0, 2 * np.pi))) for k in (3, 4, 5)
    )
    oo_angle = float(rng.uniform(0, np.pi))
    base = StarShape((cx, cy), (radius * (1 + ecc), radius * (1 - ecc)), oo_angle, harm)
    pvs = rng.uniform(0.04, 0.09)
    zona_inner = StarShape(
        (cx, cy), (radius * (1 + ecc) * (1 + pvs), radius * (1 - ecc) * (1 + pvs)), oo_angle
    )
    zona_outer = zona_inner.scaled(1.0 + rng.uniform(0.11, 0.17))
    # Polar body in the perivitelline space, near 6 or 12 o'clock; it dents the oolemma.
    pb_phi = (np.pi / 2 if rng.random() < 0.5 else -np.pi / 2) + rng.uniform(-0.45, 0.45)
    pb_r = radius * rng.uniform(0.09, 0.13)
    zi = float(zona_inner.radius(np.array([pb_phi]))[0])
    r_at_pb = float(base.radius(np.array([pb_phi]))[0])
    # The oolemma gives way a little; the polar body fills the rest of the space.
    dent = 0.5 * max(0.0, r_at_pb - (zi - 2 * pb_r - 1.5))
    oocyte = dataclasses.replace(base, dents=((float(pb_phi), dent, pb_r / radius * 1.3),))
    pb_dist = min(r_at_pb - dent + pb_r + 0.5, zi - 0.4 * pb_r)
    pb_center = (cx + pb_dist * math.cos(pb_phi), cy + pb_dist * math.sin(pb_phi))
    polar_body = StarShape(pb_center, (pb_r * 1.05, pb_r * 0.95), float(rng.uniform(0, np.pi)))

    # sERC(s): total area ratio drawn in the paper's range.
    ratio = rng.uniform(*_RATIO_DRAW)
    n_serc = 2 if rng.random() < 0.2 else 1
    shares = [1.0] if n_serc == 1 else [ratio_split := rng.uniform(0.55, 0.75), 1 - ratio_split]
    oo_area = polygon_area(oocyte.outline())
    sercs: list[StarShape] = []
    for share in shares:
        s = _draw_serc(rng, oocyte, ratio * share * oo_area, sercs)
        if s is not None:
            sercs.append(s)

    # Needle: from the entry side, roughly aimed at the oocyte centre.
    tilt = math.radians(rng.uniform(-6, 6))
    direction = (sign * math.cos(tilt), math.sin(tilt))
    aim_y = cy + rng.uniform(-0.12, 0.12) * radius
    entry_x = w - 1.0 if entry_side == "right" else 0.0
    entry_y = aim_y - (cx - entry_x) * direction[1] / direction[0]
    w0 = radius * rng.uniform(0.045, 0.065)
    needle = NeedleGeometry(
        entry_side=entry_side,
        direction=direction,
        entry_point=(entry_x, float(entry_y)),
        half_width=float(w0),
        wall=float(w0 * rng.uniform(0.25, 0.38)),
        taper=float(rng.uniform(0.0, 0.0012)),
        bevel_length=float(2 * w0 / math.tan(math.radians(rng.uniform(30, 50)))),
        sharp_side=float(rng.choice([-1.0, 1.0])),
        fade_length=float(rng.uniform(3.0, 8.0)),
    )
    # Depths at which the tip meets the zona and the oolemma (rest frame, no offset).
    max_depth = float(w)
    l_zona = ray_entry_depth(zona_outer, needle, 0.0, max_depth)
    l_oolemma = ray_entry_depth(oocyte, needle, 0.0, max_depth)
    motion = _draw_motion(rng, radius, l_zona, l_oolemma)

    # Holding pipette opposite the needle, its polished end against the zona.
    hold_phi = math.atan2(direction[1], direction[0])
    r_zo = float(zona_outer.radius(np.array([hold_phi]))[0])
    holding_end = (cx + (r_zo - 2.0) * math.cos(hold_phi), cy + (r_zo - 2.0) * math.sin(hold_phi))

    look = Look(
        background=float(rng.uniform(120, 175)),
        gradient=(float(rng.uniform(-1, 1) * 1.5e-4), float(rng.uniform(-1, 1) * 1.5e-4)),
        vignette=float(rng.uniform(0.08, 0.3)),
        relief_angle=float(rng.uniform(0, 2 * np.pi)),
        relief_gain=float(rng.uniform(1.2, 2.6)),
        cyto_absorb=float(rng.uniform(0.08, 0.2)),
        texture_gain=float(rng.uniform(0.7, 1.3)),
        noise_sigma=float(rng.uniform(1.5, 6.0)),
        focus_sigma=float(rng.uniform(0.5, 1.6)),
        needle_focus_sigma=float(rng.uniform(0.5, 1.4)),
        needle_contrast=float(rng.uniform(0.7, 1.3)),
        tint=tuple(float(v) for v in 1.0 + rng.uniform(-0.04, 0.04, size=3)),
        flicker=float(rng.uniform(0.0, 0.01)),
    )
    order = [0, 1, 2]
    rng.shuffle(order)
    if rng.random() < 0.6:
        order = [0, 1, 2]  # most annotators draw oocyte, then sERC, then needle
    return CaseScene(
        case_id=case_id,
        image_size=(h, w),
        oocyte=oocyte,
        zona_inner=zona_inner,
        zona_outer=zona_outer,
        polar_body=polar_body,
        sercs=tuple(sercs),
        holding_axis_y=cy,
        holding_end=holding_end,
        holding_radius=float(radius * rng.uniform(0.6, 0.8)),
        holding_lumen=float(radius * rng.uniform(0.12, 0.22)),
        needle=needle,
        motion=motion,
        dent_sigma=float(radius * rng.uniform(0.28, 0.38)),
        dent_lambda=float(radius * rng.uniform(0.55, 0.7)),
        look=look,
        label_names=_LABEL_STYLES[int(rng.integers(len(_LABEL_STYLES)))],
        shape_order=tuple(order),
    )


def _draw_motion(
    rng: np.random.Generator, radius: float, l_zona: float, l_oolemma: float
) -> NeedleMotion:
    """Draws the needle keyframes of one video.

    Approach, push the zona, pierce it, push the oolemma (indentation; sometimes a first
    push that does not break it), break in, inject, retract.
    """
    keys: list[tuple[float, float, float]] = []
    start = l_zona - rng.uniform(25, 0.9 * l_zona - 20) if l_zona > 60 else l_zona * 0.5
    keys.append((0.0, start, 0.0))
    t = rng.uniform(0.08, 0.18)
    keys.append((t, l_zona, 0.0))
    dz = radius * rng.uniform(0.05, 0.12)
    t += rng.uniform(0.05, 0.1)
    keys.append((t, l_zona + dz, dz))  # zona pushed in
    t += rng.uniform(0.04, 0.08)
    keys.append((t, l_oolemma, 0.0))  # zona pierced, tip at the oolemma
    d_max = radius * rng.uniform(0.15, 0.3)
    if rng.random() < 0.35:  # a first push that does not break the membrane
        d1 = d_max * rng.uniform(0.5, 0.8)
        t += rng.uniform(0.06, 0.1)
        keys.append((t, l_oolemma + d1, d1))
        t += rng.uniform(0.05, 0.08)
        keys.append((t, l_oolemma + 0.2 * d1, 0.2 * d1))
    t += rng.uniform(0.08, 0.14)
    keys.append((t, l_oolemma + d_max, d_max))  # deepest indentation
    t += rng.uniform(0.02, 0.04)
    deep = l_oolemma + d_max + radius * rng.uniform(0.1, 0.6)
    keys.append((t, deep, d_max * rng.uniform(0.0, 0.15)))  # membrane breaks
    t += rng.uniform(0.08, 0.16)
    keys.append((t, deep + radius * rng.uniform(-0.1, 0.05), 0.0))  # injection
    t_end = max(t + 0.08, rng.uniform(0.88, 1.0))
    keys.append((t_end, l_zona - rng.uniform(10, 60), 0.0))  # withdrawn
    if t_end < 1.0:
        keys.append((1.0, keys[-1][1] - rng.uniform(0, 20), 0.0))
    scale = 1.0 / max(k[0] for k in keys)
    keys = [(k[0] * scale, float(k[1]), float(k[2])) for k in keys]
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
    return NeedleMotion(tuple(keys), tremor, drift)


NEEDLE_MIN_VISIBLE_DEPTH = 1.0


def frame_geometry(scene: CaseScene, tau: float) -> FrameGeometry:
    """Returns the exact geometry (shown-frame coordinates) at normalised time tau."""
    h, w = scene.image_size
    depth, dent, offset = scene.motion.at(tau)
    needle = scene.needle
    tip = needle.tip(depth, offset)
    deform = Deformation(
        tip=(float(tip[0]), float(tip[1])),
        direction=needle.direction,
        depth=float(dent),
        sigma=scene.dent_sigma,
        lam=scene.dent_lambda,
    )
    visible = depth >= NEEDLE_MIN_VISIBLE_DEPTH and 0 <= tip[0] <= w - 1 and 0 <= tip[1] <= h - 1
    polygon = None
    if visible:
        raw = needle.polygon(depth, offset, length=depth + 4 * needle.half_width + 20)
        polygon = clip_polygon_to_rect(raw, 0.0, 0.0, w - 1.0, h - 1.0)
    oocyte_outline = deform.forward(scene.oocyte.outline())
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
