"""Renders synthetic ICSI frames: a static per-case layer, composited cheaply per frame.

Image model (relief / Hoffman-like modulation contrast, cf. Hoffman & Gross 1975):
    I(x) = B(x) (1 - alpha(x)) + g V(x) dh/dtheta(x) + noise,
where B is the vignetted, unevenly lit empty field, alpha the absorption of cytoplasm,
zona, polar body and glass, h an optical-path "height" field (domes for the cells, wall
thickness of the hollow pipettes) and dh/dtheta its derivative along the case's shading
direction, which gives the bright/dark relief edges of such microscopes. The per-case
static layer (background, oocyte with texture, zona, polar body, sERC, holding pipette,
focus blur) is computed once; each video frame only re-samples the region the needle
indents (cv2.remap), draws the needle in its bounding box and adds noise from a pool.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from sercseg_tf.synthetic.geometry import StarShape, smoothstep
from sercseg_tf.synthetic.scene import CaseScene, FrameGeometry

_NOISE_POOL = 8
_NOISE_MARGIN = 32


def _blurred_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    noise = rng.standard_normal(shape, dtype=np.float32)
    out = cv2.GaussianBlur(noise, (0, 0), sigma)
    return out / (out.std() + 1e-6)


def _soft_inside(rho: np.ndarray, radius: float, edge: float = 0.8) -> np.ndarray:
    """Returns a soft 0..1 mask of rho < 1 with an edge about `edge` pixels wide."""
    return smoothstep(0.5 + (1.0 - rho) * radius / (2.0 * edge)).astype(np.float32)


def _dome(rho: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(1.0 - rho * rho, 0.0, None)).astype(np.float32)


def _relief(height: np.ndarray, angle: float) -> np.ndarray:
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    return gx * math.cos(angle) + gy * math.sin(angle)


def _tube_thickness(
    v: np.ndarray, outer: np.ndarray | float, inner: np.ndarray | float
) -> np.ndarray:
    """Glass path length through a hollow cylinder at lateral offset v (chord lengths)."""
    v2 = v * v
    return 2.0 * (
        np.sqrt(np.clip(outer * outer - v2, 0.0, None))
        - np.sqrt(np.clip(inner * inner - v2, 0.0, None))
    )


class CaseRenderer:
    """Renders the frames of one case; construct once, call `render(geometry, j)` per frame."""

    def __init__(self, scene: CaseScene, rng: np.random.Generator, num_video_frames: int):
        """Builds the static layer and draws all per-frame randomness up front.

        Args:
          scene: the case parameters.
          rng: generator for the rendering randomness (textures, noise, flicker).
          num_video_frames: frames in the video; frame j's noise depends only on j.
        """
        self.scene = scene
        h, w = scene.image_size
        self.height, self.width = h, w
        look = scene.look
        self.static, self.vignette = self._static_layer(scene, rng)
        self.noise_pool = rng.standard_normal(
            (_NOISE_POOL, h + _NOISE_MARGIN, w + _NOISE_MARGIN), dtype=np.float32
        )
        # Slight spatial correlation, as a camera and codec give.
        for k in range(_NOISE_POOL):
            self.noise_pool[k] = cv2.GaussianBlur(self.noise_pool[k], (0, 0), 0.6) * 1.6
        n = max(num_video_frames, 1)
        self.noise_index = rng.integers(0, _NOISE_POOL, size=n)
        self.noise_dy = rng.integers(0, _NOISE_MARGIN, size=n)
        self.noise_dx = rng.integers(0, _NOISE_MARGIN, size=n)
        self.gain = (1.0 + look.flicker * rng.standard_normal(n)).astype(np.float32)
        self.ys, self.xs = np.mgrid[0:h, 0:w].astype(np.float32)

    # ------------------------------------------------------------------ static layer
    def _static_layer(self, scene: CaseScene, rng: np.random.Generator):
        h, w = scene.image_size
        look = scene.look
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy = w / 2.0, h / 2.0
        r2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / (cx * cx + cy * cy)
        vignette = (1.0 - look.vignette * r2 * (0.6 + 0.4 * r2)).astype(np.float32)
        illum = 1.0 + look.gradient[0] * (xs - cx) + look.gradient[1] * (ys - cy)
        illum = illum + 0.03 * _blurred_noise(rng, (h, w), 60.0)
        field = (look.background * illum * vignette).astype(np.float32)

        height = np.zeros((h, w), np.float32)
        absorb = np.zeros((h, w), np.float32)
        radius = scene.oocyte.semi_axes[1]

        # Debris and dust on the dish: small soft blobs, unlabelled.
        for _ in range(int(rng.integers(3, 12))):
            x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
            rr = rng.uniform(1.5, 5.0)
            blob = np.exp(-((xs - x0) ** 2 + (ys - y0) ** 2) / (2 * rr * rr))
            height += (blob * rr * rng.uniform(0.3, 1.0)).astype(np.float32)
            absorb += (blob * rng.uniform(0.0, 0.15)).astype(np.float32)

        # Zona pellucida: a thick glassy shell (projected thickness of a spherical shell).
        d = np.hypot(xs - scene.zona_inner.center[0], ys - scene.zona_inner.center[1])
        phi = np.arctan2(ys - scene.zona_inner.center[1], xs - scene.zona_inner.center[0])
        r_in = scene.zona_inner.radius(phi)
        r_out = scene.zona_outer.radius(phi)
        shell = np.sqrt(np.clip(r_out**2 - d**2, 0, None)) - np.sqrt(
            np.clip(r_in**2 - d**2, 0, None)
        )
        shell = shell.astype(np.float32)
        zona_tex = _blurred_noise(rng, (h, w), 1.2)
        in_zona = _soft_inside(d / r_out, float(radius)) * (
            1 - _soft_inside(d / r_in, float(radius))
        )
        height += 0.35 * shell * (1 + 0.08 * zona_tex)
        absorb += in_zona * (0.04 + 0.02 * zona_tex)

        # Oocyte cytoplasm: dome + granular texture, darker than the medium.
        rho_o = scene.oocyte.rho(xs, ys).astype(np.float32)
        m_o = _soft_inside(rho_o, float(radius))
        tex = (
            0.55 * _blurred_noise(rng, (h, w), 0.9)
            + 0.35 * _blurred_noise(rng, (h, w), 2.2)
            + 0.25 * _blurred_noise(rng, (h, w), 6.0)
        )
        # sERC: smooth, low-texture, slightly clearer disc(s) with a faint rim.
        m_s = np.zeros((h, w), np.float32)
        serc_height = np.zeros((h, w), np.float32)
        for serc in scene.sercs:
            rho_s = serc.rho(xs, ys).astype(np.float32)
            r_s = float(serc.semi_axes[1])
            m_s = np.maximum(m_s, _soft_inside(rho_s, r_s, edge=1.5))
            serc_height += 0.25 * r_s * _dome(rho_s)
        clear = rng.uniform(0.75, 0.92)
        tex_amp = look.texture_gain * (0.75 + 0.25 * (1 - rho_o**2)) * (1 - clear * m_s)
        cyto_height = 0.45 * radius * _dome(rho_o) + 2.2 * tex * tex_amp
        height += m_o * (cyto_height + serc_height)
        absorb += (
            m_o * look.cyto_absorb * (1.0 + 0.45 * tex * tex_amp - rng.uniform(0.2, 0.5) * m_s)
        )

        # Polar body: a small granular cell in the perivitelline space.
        pb: StarShape = scene.polar_body
        rho_p = pb.rho(xs, ys).astype(np.float32)
        m_p = _soft_inside(rho_p, float(pb.semi_axes[1]))
        pb_tex = _blurred_noise(rng, (h, w), 1.0)
        height += m_p * (0.8 * pb.semi_axes[1] * _dome(rho_p) + 1.5 * pb_tex)
        absorb += m_p * look.cyto_absorb * (1.3 + 0.3 * pb_tex)

        # Holding pipette: a thick-walled glass tube opposite the needle, polished end.
        hx, hy = scene.holding_end
        ax, ay = scene.needle.direction  # the holding pipette points along -a (into the cell)
        u = (xs - hx) * ax + (ys - hy) * ay  # distance from the end face, back along it
        v = -(xs - hx) * ay + (ys - hy) * ax
        rh, rl = scene.holding_radius, scene.holding_lumen
        # Fire-polished end: the wall's outer and inner corners are rounded (radius rr).
        rr = 0.5 * (rh - rl)
        bulge = rr * (1.0 - np.sqrt(np.clip(1.0 - (1.0 - np.clip(u / rr, 0, 1)) ** 2, 0, 1)))
        thick = _tube_thickness(v, rh - bulge, rl + bulge) * (u >= 0)
        thick = cv2.GaussianBlur(thick.astype(np.float32), (0, 0), 0.8)
        height += 0.4 * thick
        absorb += 0.05 * thick / (2 * rh) + 0.05 * (np.abs(v) < rl) * (u > 0) * 0

        relief = _relief(height, look.relief_angle)
        img = field * (1.0 - absorb) + look.relief_gain * 14.0 * relief * vignette
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), look.focus_sigma)
        return img.astype(np.float32), vignette

    # ------------------------------------------------------------------ per frame
    def render(self, geo: FrameGeometry, j: int) -> np.ndarray:
        """Returns video frame j (uint8 RGB H x W x 3) for the frame geometry `geo`."""
        frame = self.static.copy()
        deform = geo.deformation
        x0, y0, x1, y1 = deform.support_box(self.height, self.width)
        if x1 > x0 and y1 > y0:
            xs = self.xs[y0:y1, x0:x1]
            ys = self.ys[y0:y1, x0:x1]
            dx, dy = deform.displacement(xs, ys)
            frame[y0:y1, x0:x1] = cv2.remap(
                self.static,
                (xs - dx).astype(np.float32),
                (ys - dy).astype(np.float32),
                interpolation=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REFLECT,
            )
        if geo.needle_polygon is not None and len(geo.needle_polygon) >= 3:
            self._draw_needle(frame, geo)
        k = int(self.noise_index[j])
        oy, ox = int(self.noise_dy[j]), int(self.noise_dx[j])
        noise = self.noise_pool[k, oy : oy + self.height, ox : ox + self.width]
        frame = cv2.scaleAdd(noise, float(self.scene.look.noise_sigma), frame)
        gain = float(self.gain[j])
        channels = [cv2.convertScaleAbs(frame, alpha=gain * t) for t in self.scene.look.tint]
        return cv2.merge(channels)

    def _draw_needle(self, frame: np.ndarray, geo: FrameGeometry) -> None:
        scene = self.scene
        needle = scene.needle
        look = scene.look
        poly = geo.needle_polygon
        pad = 6
        x0 = max(0, int(np.floor(poly[:, 0].min())) - pad)
        x1 = min(self.width, int(np.ceil(poly[:, 0].max())) + pad + 1)
        y0 = max(0, int(np.floor(poly[:, 1].min())) - pad)
        y1 = min(self.height, int(np.ceil(poly[:, 1].max())) + pad + 1)
        xs = self.xs[y0:y1, x0:x1]
        ys = self.ys[y0:y1, x0:x1]
        base = needle.axis_point(geo.needle_depth, geo.needle_offset)
        ax, ay = needle.direction
        nx, ny = needle.normal * needle.sharp_side
        rx = xs - np.float32(base[0])
        ry = ys - np.float32(base[1])
        u = -(rx * ax + ry * ay)
        v = rx * nx + ry * ny
        w0 = needle.half_width
        w_out = w0 * (1.0 + needle.taper * np.clip(u, 0, None))
        w_in = w_out - needle.wall
        thick = _tube_thickness(v, w_out, w_in)
        bevel = needle.bevel_length * (w0 - v) / (2.0 * w0)
        cut = smoothstep(0.5 + (u - bevel))
        fade = smoothstep(u / needle.fade_length)
        h_n = (thick * cut * fade).astype(np.float32)
        h_n = cv2.GaussianBlur(h_n, (0, 0), look.needle_focus_sigma)
        relief = _relief(h_n, look.relief_angle)
        roi = frame[y0:y1, x0:x1]
        vig = self.vignette[y0:y1, x0:x1]
        absorb = 0.22 * look.needle_contrast * h_n / (2.0 * w0)
        frame[y0:y1, x0:x1] = (
            roi * (1.0 - absorb) + (look.relief_gain * 22.0 * look.needle_contrast) * relief * vig
        )
