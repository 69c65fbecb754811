"""Exact geometry of the synthetic ICSI scene: shapes, needle, motion and deformation.

Everything here is pure NumPy and works in image pixel coordinates (x right, y down,
integer coordinates at pixel centres, the convention Pillow's polygon fill and LabelMe
use). The renderer (`render`) draws these shapes; the writer (`generator`) stores them
as ground truth and as human-like LabelMe polygons.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

OUTLINE_POINTS = 360


def polygon_area(points: np.ndarray) -> float:
    """Returns the area of a simple polygon by the shoelace formula.

    A = 1/2 |sum_i (x_i y_{i+1} - x_{i+1} y_i)|.

    Args:
      points: (N, 2) vertices (x, y), closed implicitly.
    """
    x, y = points[:, 0], points[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)))


def polygon_perimeter(points: np.ndarray) -> float:
    """Returns the perimeter of a closed polygon, sum_i |p_{i+1} - p_i|."""
    return float(np.sum(np.linalg.norm(np.roll(points, -1, axis=0) - points, axis=1)))


def polygon_circularity(points: np.ndarray) -> float:
    """Returns the circularity 4*pi*A / P**2 of a polygon (paper eq. 1, exact shape).

    Area and perimeter come from the same polygon (shoelace area, summed edge lengths),
    so a finely sampled circle scores 1 and an ellipse with axis ratio 0.5 about 0.84.
    """
    perimeter = polygon_perimeter(points)
    return float(4.0 * math.pi * polygon_area(points) / perimeter**2)


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2.0 * np.pi) - np.pi


@dataclasses.dataclass(frozen=True)
class StarShape:
    """A star-shaped closed curve r(phi) about a centre: a perturbed, dented ellipse.

    r(phi) = r_e(phi) * (1 + sum_k c_k cos(k phi + p_k)) - sum_j d_j exp(-dphi_j^2 / 2 s_j^2),
    where r_e(phi) = a b / sqrt((b cos(phi - theta))^2 + (a sin(phi - theta))^2) is the
    polar form of an ellipse with semi-axes a >= b rotated by theta.
    """

    center: tuple[float, float]
    semi_axes: tuple[float, float]
    angle: float = 0.0
    harmonics: tuple[tuple[int, float, float], ...] = ()
    dents: tuple[tuple[float, float, float], ...] = ()

    def radius(self, phi: np.ndarray) -> np.ndarray:
        """Returns r(phi) for angles phi (radians, image convention: y down)."""
        a, b = self.semi_axes
        rel = phi - self.angle
        r = a * b / np.sqrt((b * np.cos(rel)) ** 2 + (a * np.sin(rel)) ** 2)
        if self.harmonics:
            mod = np.ones_like(r)
            for k, amp, phase in self.harmonics:
                mod = mod + amp * np.cos(k * phi + phase)
            r = r * mod
        for phi0, depth, width in self.dents:
            r = r - depth * np.exp(-(_wrap(phi - phi0) ** 2) / (2.0 * width**2))
        return r

    def outline(self, n: int = OUTLINE_POINTS) -> np.ndarray:
        """Returns (n, 2) points (x, y) on the curve at equal angle steps."""
        phi = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
        r = self.radius(phi)
        cx, cy = self.center
        return np.stack([cx + r * np.cos(phi), cy + r * np.sin(phi)], axis=1)

    def rho(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Returns the normalised radius |p - c| / r(phi(p)) (< 1 inside) on a grid."""
        dx = x - self.center[0]
        dy = y - self.center[1]
        return np.hypot(dx, dy) / self.radius(np.arctan2(dy, dx))

    def scaled(self, factor: float) -> StarShape:
        """Returns the same shape scaled about its centre (dents scale too)."""
        a, b = self.semi_axes
        return dataclasses.replace(
            self,
            semi_axes=(a * factor, b * factor),
            dents=tuple((p, d * factor, w) for p, d, w in self.dents),
        )


@dataclasses.dataclass(frozen=True)
class NeedleGeometry:
    """A hollow injection needle with a bevelled tip, entering from one image side.

    Needle coordinates: u = distance from the tip along the axis back towards the entry
    border, v' = signed offset across the axis (sharp side positive). The glass occupies
    |v'| <= w(u) = w0 (1 + taper u) and u >= bevel(v') = Lb (w0 - v') / (2 w0); the lumen
    is |v'| < w(u) - wall. The true tip is the sharp point (u = 0, v' = w0).
    """

    entry_side: str
    direction: tuple[float, float]  # unit vector a, pointing from the entry into the image
    entry_point: tuple[float, float]  # axis point on the entry border
    half_width: float  # w0
    wall: float
    taper: float
    bevel_length: float  # Lb
    sharp_side: float  # +1 or -1: which side of the axis the sharp point lies on
    fade_length: float  # contrast ramps up over this many pixels behind the tip

    @property
    def normal(self) -> np.ndarray:
        """Unit normal n = a rotated by +90 degrees (x, y) -> (-y, x)."""
        ax, ay = self.direction
        return np.array([-ay, ax])

    def axis_point(self, depth: float, offset: float = 0.0) -> np.ndarray:
        """Returns the axis point at u = 0 for an insertion depth (px from the border)."""
        return (
            np.asarray(self.entry_point) + depth * np.asarray(self.direction) + offset * self.normal
        )

    def tip(self, depth: float, offset: float = 0.0) -> np.ndarray:
        """Returns the true (sharp) tip position (x, y)."""
        return self.axis_point(depth, offset) + self.sharp_side * self.half_width * self.normal

    def polygon(self, depth: float, offset: float, length: float) -> np.ndarray:
        """Returns the exact needle outline (unclipped) as 4 vertices (x, y).

        Order: sharp tip, far end on the sharp side, far end on the other side, heel.
        """
        a = np.asarray(self.direction)
        n = self.normal * self.sharp_side
        base = self.axis_point(depth, offset)
        w0 = self.half_width
        w_far = w0 * (1.0 + self.taper * length)
        w_heel = w0 * (1.0 + self.taper * self.bevel_length)
        return np.stack(
            [
                base + w0 * n,
                base - length * a + w_far * n,
                base - length * a - w_far * n,
                base - self.bevel_length * a - w_heel * n,
            ]
        )


def clip_polygon_to_rect(
    points: np.ndarray, x0: float, y0: float, x1: float, y1: float
) -> np.ndarray:
    """Clips a polygon to the rectangle [x0, x1] x [y0, y1] (Sutherland-Hodgman)."""
    poly = [tuple(p) for p in points]
    for axis, bound, keep_less in ((0, x1, True), (0, x0, False), (1, y1, True), (1, y0, False)):
        if not poly:
            break

        def inside(p, axis=axis, bound=bound, keep_less=keep_less):
            return p[axis] <= bound if keep_less else p[axis] >= bound

        out = []
        for i, cur in enumerate(poly):
            prev = poly[i - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(_intersect(prev, cur, axis, bound))
                out.append(cur)
            elif inside(prev):
                out.append(_intersect(prev, cur, axis, bound))
        poly = out
    return np.asarray(poly, dtype=np.float64).reshape(-1, 2)


def _intersect(p, q, axis, bound):
    t = (bound - p[axis]) / (q[axis] - p[axis])
    point = [p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]
    point[axis] = bound
    return tuple(point)


@dataclasses.dataclass(frozen=True)
class SurfaceTable:
    """Where each line parallel to the needle axis first enters a closed shape (rest frame).

    Needle-frame coordinates about the entry point E: s = (x - E) . a along the axis and
    p = (x - E) . n across it. ``entry[j]`` and ``exit[j]`` are the smallest and largest s
    of the shape on the line p = p0 + j * step (huge where the line misses the shape); `at`
    interpolates them.
    """

    origin: tuple[float, float]
    direction: tuple[float, float]
    p0: float
    step: float
    entry: np.ndarray
    exit: np.ndarray
    center_p: float  # lateral middle of the shape
    half_extent: float  # half its lateral width

    def coords(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns (p, s) of image points."""
        ax, ay = self.direction
        rx = x - self.origin[0]
        ry = y - self.origin[1]
        return ry * ax - rx * ay, rx * ax + ry * ay

    def at(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(entry, exit) s on the lines through p (linear interpolation; huge where missed)."""
        grid = self.p0 + self.step * np.arange(len(self.entry))
        return (np.interp(p, grid, self.entry, left=_MISS, right=_MISS),
                np.interp(p, grid, self.exit, left=_MISS, right=_MISS))  # fmt: skip


_MISS = 1e7


def surface_table(
    outline: np.ndarray, origin: np.ndarray, direction: np.ndarray, step: float = 0.5
) -> SurfaceTable:
    """Builds the `SurfaceTable` of a closed outline (any shape, first crossing wins)."""
    ax, ay = float(direction[0]), float(direction[1])
    rel = outline - np.asarray(origin, dtype=np.float64)
    p = rel[:, 1] * ax - rel[:, 0] * ay
    s = rel[:, 0] * ax + rel[:, 1] * ay
    p0 = math.floor(p.min()) - 1.0
    n = int(math.ceil((p.max() + 1.0 - p0) / step)) + 1
    entry = np.full(n, _MISS)
    exit_ = np.full(n, -_MISS)
    p1, s1 = np.roll(p, -1), np.roll(s, -1)
    for pa, sa, pb, sb in zip(p, s, p1, s1, strict=True):
        j0 = int(math.ceil((min(pa, pb) - p0) / step))
        j1 = int(math.floor((max(pa, pb) - p0) / step))
        if j1 < j0 or pa == pb:
            continue
        pj = p0 + step * np.arange(j0, j1 + 1)
        sj = sa + (pj - pa) / (pb - pa) * (sb - sa)
        entry[j0 : j1 + 1] = np.minimum(entry[j0 : j1 + 1], sj)
        exit_[j0 : j1 + 1] = np.maximum(exit_[j0 : j1 + 1], sj)
    exit_[entry >= _MISS] = _MISS
    return SurfaceTable(
        origin=(float(origin[0]), float(origin[1])),
        direction=(ax, ay),
        p0=float(p0),
        step=float(step),
        entry=entry,
        exit=exit_,
        center_p=float(0.5 * (p.min() + p.max())),
        half_extent=float(0.5 * (p.max() - p.min())),
    )


@dataclasses.dataclass(frozen=True)
class Indentation:
    """The needle pushing a membrane (oolemma or zona) in along its axis a.

    Every point moves along a only, so the lateral coordinate p is kept and the map is
    one-dimensional per line. On the line p the membrane spans s0(p)..s1(p)
    (`SurfaceTable`); material from s_d = s0 - b on is pushed in by A(p) = D T(p)
    P(p - p_n), where p_n is the needle axis, P(d) = (1 - beta) exp(-(|d| - w_c)_+^2 /
    (2 sigma_f^2)) + beta exp(-d^2 / (2 sigma_b^2)) a funnel around the needle (flat bottom
    of half-width w_c, walls of width sigma_f) mixed with a broad dent (kidney shapes), and
    T(p) fades A out towards the shape's lateral edge. The far side s1 stays where it is
    (held by the pipette): rest material at q_s = s_d + t, 0 <= t <= L + A with
    L = s1 - s_d - A, is shown at x_s = s_d + A + t L / (L + A) (evenly compressed), and
    nothing beyond s1 moves. The funnel between s_d and s_d + A is filled with what lies
    just outside the membrane (q_s = s_d - c (x_s - s_d)). The map is one-to-one for any
    depth and funnel width.
    """

    table: SurfaceTable
    offset: float  # p of the needle axis
    depth: float  # D, pixels
    core: float  # w_c
    funnel: float  # sigma_f
    broad: float  # sigma_b
    broadness: float  # beta
    gap_scale: float = 0.2  # c
    band: float = 3.5  # b

    @property
    def active(self) -> bool:
        """Whether the indentation moves anything by more than a tenth of a pixel."""
        return self.depth > 0.1

    def amplitude(self, p: np.ndarray) -> np.ndarray:
        """A(p): how far the membrane on line p is pushed in, pixels."""
        d = np.abs(p - self.offset)
        funnel = np.exp(-np.square(np.maximum(d - self.core, 0.0)) / (2.0 * self.funnel**2))
        broad = np.exp(-np.square(d) / (2.0 * self.broad**2))
        t = self.table
        taper = 1.0 - smoothstep(
            (np.abs(p - t.center_p) - 0.55 * t.half_extent) / (0.4 * t.half_extent)
        )
        return self.depth * taper * ((1.0 - self.broadness) * funnel + self.broadness * broad)

    def tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns (A, s_d, s1) on the p grid of the surface table (fast per-pixel lookup)."""
        t = self.table
        grid = t.p0 + t.step * np.arange(len(t.entry))
        return self.amplitude(grid), t.entry - self.band, t.exit

    def shift(
        self, s: np.ndarray, amp: np.ndarray, s_d: np.ndarray, s_1: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Returns (q_s - s, inside-the-funnel mask) for shown s on lines with A, s_d, s1."""
        rel = s - s_d
        u = rel - amp
        length = np.maximum(s_1 - s_d - amp, 1.0)
        gap = (rel >= 0) & (u < 0)
        # q_s - s is -(1 + c) rel in the funnel, u A / L - A where squeezed, 0 elsewhere.
        shift = np.where(gap, -(1.0 + self.gap_scale) * rel, 0.0)
        squeezed = (u >= 0) & (u < length)
        shift = np.where(squeezed, amp * (u / length - 1.0), shift)
        return shift.astype(s.dtype, copy=False), gap

    def backward(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Maps shown pixel positions to the rest positions they show (for cv2.remap)."""
        p, s = self.table.coords(x, y)
        amp = self.amplitude(p).astype(s.dtype)
        s0, s1 = self.table.at(p)
        shift, _ = self.shift(s, amp, (s0 - self.band).astype(s.dtype), s1.astype(s.dtype))
        ax, ay = self.table.direction
        return x + shift * ax, y + shift * ay

    def forward(self, points: np.ndarray) -> np.ndarray:
        """Moves rest-frame points (N, 2) to where they are shown (inverse of `backward`)."""
        if not self.active or len(points) == 0:
            return points.copy()
        p, s = self.table.coords(points[:, 0], points[:, 1])
        amp = self.amplitude(p)
        s0, s1 = self.table.at(p)
        s_d = s0 - self.band
        length = np.maximum(s1 - s_d - amp, 1.0)
        t = s - s_d
        moved = (t >= 0) & (t < length + amp) & (amp > 0)
        shift = np.where(moved, amp - t * amp / (length + amp), 0.0)
        ax, ay = self.table.direction
        return points + np.stack([shift * ax, shift * ay], axis=1)

    def support_box(
        self, height: int, width: int, cutoff: float = 0.25
    ) -> tuple[int, int, int, int]:
        """Returns (x0, y0, x1, y1) outside which nothing moves by more than `cutoff` px."""
        t = self.table
        grid = t.p0 + t.step * np.arange(len(t.entry))
        amp = self.amplitude(grid)
        hit = (amp > cutoff) & (t.entry < _MISS / 2)
        if self.depth <= cutoff or not hit.any():
            return (0, 0, 0, 0)
        p_lo, p_hi = grid[hit].min() - 1.0, grid[hit].max() + 1.0
        s_lo = t.entry[hit].min() - self.band - 1.0
        s_hi = t.exit[hit].max() + 1.0
        ax, ay = t.direction
        corners = np.array(
            [[t.origin[0] + s * ax - p * ay, t.origin[1] + s * ay + p * ax]
             for s in (s_lo, s_hi) for p in (p_lo, p_hi)]
        )  # fmt: skip
        x0 = max(0, int(math.floor(corners[:, 0].min())) - 1)
        x1 = min(width, int(math.ceil(corners[:, 0].max())) + 2)
        y0 = max(0, int(math.floor(corners[:, 1].min())) - 1)
        y1 = min(height, int(math.ceil(corners[:, 1].max())) + 2)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else (0, 0, 0, 0)


def smoothstep(x: np.ndarray | float) -> np.ndarray | float:
    """Returns 3x^2 - 2x^3 of x clipped to [0, 1] (C1 ease)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclasses.dataclass(frozen=True)
class NeedleMotion:
    """Needle insertion depth L(tau), indentations and lateral offset over a video.

    Keyframes (tau, L, D_oolemma, D_zona) with tau in [0, 1] are joined by smoothstep
    easing; a small tremor (sum of sines) is added to L (and to a dent being pushed) and a
    slow drift to the lateral offset.
    """

    keys: tuple[tuple[float, float, float, float], ...]
    tremor: tuple[tuple[float, float, float], ...]  # (amplitude px, cycles per video, phase)
    drift: tuple[tuple[float, float, float], ...]

    def at(self, tau: float) -> tuple[float, float, float, float]:
        """Returns (depth L, oolemma dent, zona dent, lateral offset) at time tau."""
        keys = self.keys
        if tau <= keys[0][0]:
            values = keys[0][1:]
        elif tau >= keys[-1][0]:
            values = keys[-1][1:]
        else:
            i = max(j for j in range(len(keys)) if keys[j][0] <= tau)
            t0, t1 = keys[i][0], keys[i + 1][0]
            w = float(smoothstep((tau - t0) / max(t1 - t0, 1e-9)))
            pairs = zip(keys[i][1:], keys[i + 1][1:], strict=True)
            values = tuple(a + w * (b - a) for a, b in pairs)
        depth, dent_o, dent_z = values
        tremor = sum(a * math.sin(2 * math.pi * c * tau + p) for a, c, p in self.tremor)
        offset = sum(a * math.sin(2 * math.pi * c * tau + p) for a, c, p in self.drift)
        # The needle pushes the surface it touches: a dent moves with the tip.
        dent_o = max(dent_o + (tremor if dent_o > 0 else 0.0), 0.0)
        dent_z = max(dent_z + (tremor if dent_z > 0 else 0.0), 0.0)
        return depth + tremor, dent_o, dent_z, offset


def ray_span(
    shape: StarShape, needle: NeedleGeometry, offset: float, max_depth: float
) -> tuple[float, float]:
    """Returns the insertion depths at which the needle tip enters and leaves `shape`.

    Both are nan when the tip's straight path misses the shape.
    """
    depths = np.arange(0.0, max_depth, 0.25)
    tips = needle.tip(0.0, offset)[None, :] + depths[:, None] * np.asarray(needle.direction)
    idx = np.flatnonzero(shape.rho(tips[:, 0], tips[:, 1]) < 1.0)
    if not idx.size:
        return float("nan"), float("nan")
    return float(depths[idx[0]]), float(depths[idx[-1]])


def resample_closed(points: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns points and unit outward-ish normals at arclength fractions of a closed curve.

    Args:
      points: (N, 2) closed curve.
      positions: fractions of the perimeter in [0, 1).
    """
    closed = np.vstack([points, points[:1]])
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    target = (positions % 1.0) * cum[-1]
    x = np.interp(target, cum, closed[:, 0])
    y = np.interp(target, cum, closed[:, 1])
    eps = 0.5
    xa = np.interp((target + eps) % cum[-1], cum, closed[:, 0])
    ya = np.interp((target + eps) % cum[-1], cum, closed[:, 1])
    xb = np.interp((target - eps) % cum[-1], cum, closed[:, 0])
    yb = np.interp((target - eps) % cum[-1], cum, closed[:, 1])
    tx, ty = xa - xb, ya - yb
    norm = np.hypot(tx, ty) + 1e-12
    # For a counter-clockwise-in-math (clockwise on screen) curve this points outwards;
    # the sign does not matter for symmetric jitter.
    normals = np.stack([ty / norm, -tx / norm], axis=1)
    return np.stack([x, y], axis=1), normals


def human_polygon(
    outline: np.ndarray, num_vertices: int, jitter: float, bias: float, rng: np.random.Generator
) -> np.ndarray:
    """Returns a polygon as a person clicks it: uneven vertices near the true boundary.

    Vertices sit at jittered arclength positions (spacing varies by +-35 %) and are moved
    along the boundary normal by N(bias, jitter) pixels.
    """
    start = rng.random()
    steps = 1.0 + rng.uniform(-0.35, 0.35, size=num_vertices)
    pos = start + np.cumsum(steps) / np.sum(steps)
    pts, normals = resample_closed(outline, np.sort(pos % 1.0))
    offsets = rng.normal(bias, jitter, size=num_vertices)
    return pts + normals * offsets[:, None]
