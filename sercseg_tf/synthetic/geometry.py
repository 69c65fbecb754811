"""Exact geometry of the synthetic ICSI scene: shapes, needle, motion and deformation.

Everything here is pure NumPy and works in image pixel coordinates (x right, y down,
integer coordinates at pixel centres, the convention Pillow's polygon fill and LabelMe
use). The renderer (`synthetic_render`) draws these shapes; the writer
(`synthetic`) stores them as ground truth and as human-like LabelMe polygons.
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
class Deformation:
    """Indentation of the oocyte by the needle, as a smooth displacement field.

    A material point that rests at q is shown at x with x = q + delta(x), where
    delta(x) = D a exp(-p^2 / (2 sigma^2)) exp(-s^2 / (2 lam^2)), s = (x - tip) . a and
    p = (x - tip) . n. The rendered frame samples the rest image at q = x - delta(x)
    (backward map); outlines are moved by solving x = q + delta(x) by fixed-point
    iteration, which converges because |grad delta| < 1 (D / lam and D / sigma bounded).
    """

    tip: tuple[float, float]
    direction: tuple[float, float]
    depth: float  # D, pixels
    sigma: float
    lam: float

    def displacement(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns delta(x) components (dx, dy) on arrays of coordinates."""
        ax, ay = self.direction
        rx = x - self.tip[0]
        ry = y - self.tip[1]
        s = rx * ax + ry * ay
        p = -rx * ay + ry * ax
        mag = self.depth * np.exp(-(p * p) / (2 * self.sigma**2) - (s * s) / (2 * self.lam**2))
        return mag * ax, mag * ay

    def forward(self, points: np.ndarray, iterations: int = 60) -> np.ndarray:
        """Moves rest-frame points q to where they are shown: solves x = q + delta(x)."""
        if self.depth <= 0:
            return points.copy()
        x = points.copy()
        for _ in range(iterations):
            dx, dy = self.displacement(x[:, 0], x[:, 1])
            x_new = points + np.stack([dx, dy], axis=1)
            if np.max(np.abs(x_new - x)) < 1e-6:
                return x_new
            x = x_new
        return x

    def support_box(
        self, height: int, width: int, cutoff: float = 0.05
    ) -> tuple[int, int, int, int]:
        """Returns (x0, y0, x1, y1) outside which |delta| < cutoff pixels (clipped)."""
        if self.depth <= cutoff:
            return (0, 0, 0, 0)
        k = math.sqrt(2.0 * math.log(self.depth / cutoff))
        ext_s = k * self.lam
        ext_p = k * self.sigma
        ax, ay = self.direction
        hx = abs(ax) * ext_s + abs(ay) * ext_p
        hy = abs(ay) * ext_s + abs(ax) * ext_p
        x0 = max(0, int(math.floor(self.tip[0] - hx)))
        x1 = min(width, int(math.ceil(self.tip[0] + hx)) + 1)
        y0 = max(0, int(math.floor(self.tip[1] - hy)))
        y1 = min(height, int(math.ceil(self.tip[1] + hy)) + 1)
        return (x0, y0, x1, y1)


def smoothstep(x: np.ndarray | float) -> np.ndarray | float:
    """Returns 3x^2 - 2x^3 of x clipped to [0, 1] (C1 ease)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclasses.dataclass(frozen=True)
class NeedleMotion:
    """Needle insertion depth L(tau), indentation D(tau) and lateral offset over a video.

    Keyframes (tau, L, D) with tau in [0, 1] are joined by smoothstep easing; a small
    tremor (sum of sines) is added to L and a slow drift to the lateral offset.
    """

    keys: tuple[tuple[float, float, float], ...]
    tremor: tuple[tuple[float, float, float], ...]  # (amplitude px, cycles per video, phase)
    drift: tuple[tuple[float, float, float], ...]

    def at(self, tau: float) -> tuple[float, float, float]:
        """Returns (depth L, indentation D, lateral offset) at normalised time tau."""
        keys = self.keys
        if tau <= keys[0][0]:
            depth, dent = keys[0][1], keys[0][2]
        elif tau >= keys[-1][0]:
            depth, dent = keys[-1][1], keys[-1][2]
        else:
            i = max(j for j in range(len(keys)) if keys[j][0] <= tau)
            t0, l0, d0 = keys[i]
            t1, l1, d1 = keys[i + 1]
            w = float(smoothstep((tau - t0) / max(t1 - t0, 1e-9)))
            depth = l0 + w * (l1 - l0)
            dent = d0 + w * (d1 - d0)
        tremor = sum(a * math.sin(2 * math.pi * c * tau + p) for a, c, p in self.tremor)
        offset = sum(a * math.sin(2 * math.pi * c * tau + p) for a, c, p in self.drift)
        # The needle pushes the surface it touches: a dent moves with the tip.
        return depth + tremor, max(dent + (tremor if dent > 0 else 0.0), 0.0), offset


def ray_entry_depth(
    shape: StarShape, needle: NeedleGeometry, offset: float, max_depth: float
) -> float:
    """Returns the smallest insertion depth at which the needle tip is inside `shape`."""
    depths = np.arange(0.0, max_depth, 0.25)
    tips = needle.tip(0.0, offset)[None, :] + depths[:, None] * np.asarray(needle.direction)
    inside = shape.rho(tips[:, 0], tips[:, 1]) < 1.0
    idx = np.flatnonzero(inside)
    return float(depths[idx[0]]) if idx.size else float("nan")


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
