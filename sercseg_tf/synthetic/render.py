"""Renders synthetic ICSI frames: a static per-case layer, composited cheaply per frame.

Image model (modulation contrast, cf. Hoffman & Gross 1975, and brightfield):
    I(x) = B(x) (1 - alpha(x)) + V(x) [g_r dh/dtheta(x) - g_e |grad h|(x)] + noise,
where B is the unevenly lit, vignetted empty field (darker beyond a dish edge), alpha the
absorption of cytoplasm, zona, cells and glass, h an optical-path "height" field (domes
for cells, wall thickness for the hollow pipettes), dh/dtheta its derivative along the
case's shading direction (Hoffman and DIC-like relief: one side of every edge bright, the
other dark) and |grad h| the dark refractive rims of brightfield; V = sqrt(B / 150). The
per-case static layer (field, debris, cumulus, second oocyte, zona, granular cytoplasm,
sERC, polar body, holding pipette, focus and partial defocus) is computed once; each
video frame re-samples the region the needle indents (`Indentation.backward`,
cv2.remap), draws the needle (fainter inside the ooplasm, where it shows as two lines
around a lighter lumen) and the sperm, adds noise from a pool, the flicker and the tint,
and passes through JPEG when the case has compression blocks.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from sercseg_tf.synthetic.geometry import StarShape, smoothstep
from sercseg_tf.synthetic.scene import CaseScene, FrameGeometry

_NOISE_POOL = 8
_NOISE_MARGIN = 32
_RELIEF = 14.0  # grey levels per unit height slope at gain 1 and background 150
_EDGE = 10.0
_NEEDLE_ABSORB = 0.45  # glass darkening per relative path length: needles are dark bands


def _blurred_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    noise = rng.standard_normal(shape, dtype=np.float32)
    out = cv2.GaussianBlur(noise, (0, 0), sigma)
    return out / (out.std() + 1e-6)


def _soft_inside(rho: np.ndarray, radius: float, edge: float = 0.8) -> np.ndarray:
    """Returns a soft 0..1 mask of rho < 1 with an edge about `edge` pixels wide."""
    return smoothstep(0.5 + (1.0 - rho) * radius / (2.0 * edge)).astype(np.float32)


def _dome(rho: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(1.0 - rho * rho, 0.0, None)).astype(np.float32)


def _relief(height: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Returns (derivative along `angle`, gradient magnitude) of a height field."""
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    return gx * math.cos(angle) + gy * math.sin(angle), cv2.magnitude(gx, gy)


def _tube_thickness(
    v: np.ndarray, outer: np.ndarray | float, inner: np.ndarray | float
) -> np.ndarray:
    """Glass path length through a hollow cylinder at lateral offset v (chord lengths)."""
    v2 = v * v
    return 2.0 * (
        np.sqrt(np.clip(outer * outer - v2, 0.0, None))
        - np.sqrt(np.clip(inner * inner - v2, 0.0, None))
    )


def _box(cx: float, cy: float, reach: float, h: int, w: int) -> tuple[slice, slice] | None:
    """The (rows, cols) slices of a square of half-size `reach` about (cx, cy), or None."""
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 2)
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 2)
    if x1 <= x0 or y1 <= y0:
        return None
    return slice(y0, y1), slice(x0, x1)


class _Fields:
    """Height and absorption accumulated over the static scene, with its pixel grid."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        self.ys, self.xs = np.mgrid[0:h, 0:w].astype(np.float32)
        self.height = np.zeros((h, w), np.float32)
        self.absorb = np.zeros((h, w), np.float32)
        # The held oocyte's granules, kept apart so they are not smeared by the warp.
        self.tex_height = np.zeros((h, w), np.float32)
        self.tex_absorb = np.zeros((h, w), np.float32)
        self.tex_mask = np.zeros((h, w), np.float32)


def _add_blob(f: _Fields, x0: float, y0: float, rr: float, height: float, absorb: float):
    box = _box(x0, y0, 4 * rr, f.h, f.w)
    if box is None:
        return
    d2 = (f.xs[box] - x0) ** 2 + (f.ys[box] - y0) ** 2
    blob = np.exp(-d2 / (2 * rr * rr)).astype(np.float32)
    f.height[box] += blob * rr * height
    f.absorb[box] += blob * absorb


def _add_cell(f: _Fields, ooplasm: StarShape, zona_in: StarShape, zona_out: StarShape,
              scene: CaseScene, rng: np.random.Generator, sercs=(), split=False) -> None:
    """Adds an oocyte: zona shell, perivitelline space, granular ooplasm and its sERCs.

    With `split` the granular texture goes to the separate texture fields: unmasked
    texture and the mask that shows it (see `CaseRenderer`).
    """
    look = scene.look
    radius = math.sqrt(ooplasm.semi_axes[0] * ooplasm.semi_axes[1])
    box = _box(*zona_out.center, max(zona_out.semi_axes) * 1.1 + 4, f.h, f.w)
    if box is None:
        return
    xs, ys = f.xs[box], f.ys[box]
    shape = xs.shape
    d = np.hypot(xs - zona_in.center[0], ys - zona_in.center[1])
    phi = np.arctan2(ys - zona_in.center[1], xs - zona_in.center[0])
    r_in, r_out = zona_in.radius(phi), zona_out.radius(phi)
    shell = (np.sqrt(np.clip(r_out**2 - d**2, 0, None))
             - np.sqrt(np.clip(r_in**2 - d**2, 0, None))).astype(np.float32)  # fmt: skip
    grain = radius / 110.0 * look.granule_scale
    zona_tex = _blurred_noise(rng, shape, 1.2 * grain)
    in_zona = _soft_inside(d / r_out, radius) * (1 - _soft_inside(d / r_in, radius))
    # Texture only where the line of sight cuts the zona's rim (its caps are out of focus).
    f.height[box] += look.zona_relief * shell * (1 + look.zona_texture * zona_tex * in_zona)
    f.absorb[box] += in_zona * (look.zona_absorb + look.zona_texture / 6 * zona_tex)
    corona = scene.surroundings.corona if split else 0.0
    if corona > 0:  # remnant corona cells: a fuzzy granular halo around the zona
        outside = smoothstep((d - r_out) / 2.0 + 0.5)
        halo = (np.exp(-np.square(np.maximum(d - r_out, 0.0) / corona)) * outside).astype(
            np.float32)  # fmt: skip
        grains = _blurred_noise(rng, shape, 1.5 * grain)
        f.height[box] += halo * 3.0 * np.maximum(grains, 0.0)
        f.absorb[box] += halo * 0.04 * grains

    rho_o = ooplasm.rho(xs, ys).astype(np.float32)
    m_o = _soft_inside(rho_o, radius)
    tex = (0.55 * _blurred_noise(rng, shape, 0.9 * grain)
           + 0.35 * _blurred_noise(rng, shape, 2.2 * grain)
           + 0.25 * _blurred_noise(rng, shape, 6.0 * grain))  # fmt: skip
    m_s = np.zeros(shape, np.float32)
    serc_height = np.zeros(shape, np.float32)
    for serc in sercs:  # smooth, low-texture, slightly clearer disc(s) with a faint rim
        rho_s = serc.rho(xs, ys).astype(np.float32)
        r_s = float(serc.semi_axes[1])
        m_s = np.maximum(m_s, _soft_inside(rho_s, r_s, edge=1.5))
        serc_height += 0.25 * r_s * _dome(rho_s)
    clear = rng.uniform(0.75, 0.92)
    tex_amp = look.texture_gain * (0.75 + 0.25 * (1 - rho_o**2)) * (1 - clear * m_s)
    f.height[box] += m_o * (0.45 * radius * _dome(rho_o) + serc_height)
    f.absorb[box] += m_o * look.cyto_absorb * (1.0 - rng.uniform(0.2, 0.5) * m_s)
    if split:
        f.tex_height[box] += 2.2 * tex
        f.tex_absorb[box] += look.cyto_absorb * look.granule_absorb * tex
        f.tex_mask[box] += m_o * tex_amp
    else:
        f.height[box] += m_o * 2.2 * tex * tex_amp
        f.absorb[box] += m_o * look.cyto_absorb * look.granule_absorb * tex * tex_amp


def _add_round_cell(f: _Fields, cell: StarShape, gain: float, absorb: float,
                    rng: np.random.Generator, texture: float = 1.5) -> None:
    """A small granular cell (polar body, cumulus cell): dome, texture, absorption."""
    r = float(cell.semi_axes[1])
    box = _box(*cell.center, max(cell.semi_axes) + 4, f.h, f.w)
    if box is None:
        return
    rho = cell.rho(f.xs[box], f.ys[box]).astype(np.float32)
    m = _soft_inside(rho, r)
    tex = _blurred_noise(rng, rho.shape, max(0.8, 0.12 * r))
    f.height[box] += m * (gain * r * _dome(rho) + texture * tex)
    f.absorb[box] += m * absorb * (1.0 + 0.3 * tex)


def _add_holding(f: _Fields, scene: CaseScene) -> None:
    """Holding pipette: a thick-walled glass tube along -a, fire-polished end."""
    hx, hy = scene.holding_end
    ax, ay = scene.needle.direction  # the pipette points along -a (into the cell)
    u = (f.xs - hx) * ax + (f.ys - hy) * ay  # distance from the end face, back along it
    v = -(f.xs - hx) * ay + (f.ys - hy) * ax
    rh, rl = scene.holding_radius, scene.holding_lumen
    rr = 0.5 * (rh - rl)  # the wall's corners are rounded with this radius
    bulge = rr * (1.0 - np.sqrt(np.clip(1.0 - (1.0 - np.clip(u / rr, 0, 1)) ** 2, 0, 1)))
    thick = _tube_thickness(v, rh - bulge, rl + bulge) * (u >= 0)
    thick = cv2.GaussianBlur(thick.astype(np.float32), (0, 0), 0.8)
    f.height += 0.4 * thick
    f.absorb += 0.05 * thick / (2 * rh)


def _illumination(scene: CaseScene, f: _Fields, rng: np.random.Generator):
    """Returns (field B, relief scale V): uneven light, vignetting, dish edge."""
    look = scene.look
    cx, cy = f.w / 2.0, f.h / 2.0
    r2 = ((f.xs - cx) ** 2 + (f.ys - cy) ** 2) / (cx * cx + cy * cy)
    vignette = (1.0 - look.vignette * r2 * (0.6 + 0.4 * r2)).astype(np.float32)
    illum = 1.0 + look.gradient[0] * (f.xs - cx) + look.gradient[1] * (f.ys - cy)
    illum = illum + look.blotch * _blurred_noise(rng, (f.h, f.w), 0.12 * f.h)
    field = look.background * illum * vignette
    dish = scene.surroundings.dish_edge
    if dish is not None:
        dx, dy, big_r, dark = dish
        dist = np.hypot(f.xs - dx, f.ys - dy) - big_r  # > 0 outside the drop
        field = field * (1.0 - (1.0 - dark) * smoothstep(dist / 6.0 + 0.5))
        f.height += 6.0 * np.exp(-np.square(dist / 4.0)).astype(np.float32)
    return field.astype(np.float32), np.sqrt(field / 150.0).astype(np.float32)


def _focus(img: np.ndarray, look, f: _Fields) -> np.ndarray:
    """Focus blur, plus a smooth ramp into a more defocused part of the frame."""
    sharp = cv2.GaussianBlur(img, (0, 0), look.focus_sigma)
    extra, angle, pos = look.defocus
    if extra <= 0:
        return sharp
    soft = cv2.GaussianBlur(img, (0, 0), math.hypot(look.focus_sigma, extra))
    t = ((f.xs - f.w / 2) * math.cos(angle) + (f.ys - f.h / 2) * math.sin(angle)) / f.h
    weight = smoothstep((t - pos) / 0.35).astype(np.float32)
    return sharp + weight * (soft - sharp)


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
        self.static, self.scale = self._static_layer(scene, rng)
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
        self.p_grid, self.s_grid = scene.oolemma_table.coords(self.xs, self.ys)
        hy, hx = np.mgrid[0 : (h + 1) // 2, 0 : (w + 1) // 2].astype(np.float32) * 2 + 0.5
        self.p_half, self.s_half = scene.oolemma_table.coords(hx, hy)
        self.smooth = cv2.GaussianBlur(self.static, (0, 0), 4.0)
        self.base_and_mask = np.dstack([self.base, self.tex_mask])
        self.released: np.ndarray | None = None  # sperm head position once injected

    # ------------------------------------------------------------------ static layer
    def _static_layer(self, scene: CaseScene, rng: np.random.Generator):
        h, w = scene.image_size
        look = scene.look
        f = _Fields(h, w)
        field, scale = _illumination(scene, f, rng)
        sur = scene.surroundings
        for x0, y0, rr, height, absorb in sur.debris:  # dust on the dish, unlabelled
            _add_blob(f, x0, y0, rr, height, absorb)
        if sur.second_oocyte is not None:
            _add_cell(f, *sur.second_oocyte, scene, rng)
        for x0, y0, rc, bright in sur.cumulus:  # corona / cumulus cells, granular or swollen
            cell = StarShape((x0, y0), (rc * 1.1, rc * 0.9), float(rng.uniform(0, np.pi)))
            _add_round_cell(f, cell, 0.5, 0.05 - 0.08 * bright, rng, texture=sur.cumulus_texture)
        _add_cell(f, scene.oocyte, scene.zona_inner, scene.zona_outer, scene, rng, scene.sercs,
                  split=True)  # fmt: skip
        _add_round_cell(f, scene.polar_body, 0.8, look.cyto_absorb * 1.3, rng)
        _add_holding(f, scene)

        def image(height: np.ndarray, absorb: np.ndarray, with_field: bool) -> np.ndarray:
            relief, edges = _relief(height, look.relief_angle)
            img = scale * (look.relief_gain * _RELIEF * relief - look.edge_gain * _EDGE * edges)
            img = img + field * ((1.0 - absorb) if with_field else -absorb)
            return _focus(img.astype(np.float32), look, f)

        self.base = image(f.height, f.absorb, True)
        self.texture = image(f.tex_height, f.tex_absorb, False)
        self.tex_mask = f.tex_mask
        return self.base + self.tex_mask * self.texture, scale

    # ------------------------------------------------------------------ per frame
    def render(self, geo: FrameGeometry, j: int) -> np.ndarray:
        """Returns video frame j (uint8 RGB H x W x 3) for the frame geometry `geo`."""
        look = self.scene.look
        k = int(self.noise_index[j])
        oy, ox = int(self.noise_dy[j]), int(self.noise_dx[j])
        noise = self.noise_pool[k, oy : oy + self.height, ox : ox + self.width]
        frame = cv2.scaleAdd(noise, float(look.noise_sigma), self.static)
        if geo.deformation.active:
            self._warp(frame, geo, noise)
        if geo.needle_polygon is not None and len(geo.needle_polygon) >= 3:
            self._draw_needle(frame, geo)
        self._draw_sperm(frame, geo)
        gain = float(self.gain[j])
        channels = [cv2.convertScaleAbs(frame, alpha=gain * t) for t in look.tint]
        if look.jpeg_quality:  # codec blocks (the frame as the camera's recorder stored it)
            # (RGB passed as if BGR: only the luma weights of near-grey frames change.)
            ok, buf = cv2.imencode(
                ".jpg", cv2.merge(channels), [cv2.IMWRITE_JPEG_QUALITY, look.jpeg_quality]
            )
            return cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return cv2.merge(channels)

    def _shift(self, ind, box, half: bool) -> tuple[np.ndarray, np.ndarray]:
        """`Indentation.shift` on a region, at full or half resolution (2x2 block centres)."""
        p_grid, s_grid = (self.p_half, self.s_half) if half else (self.p_grid, self.s_grid)
        idx = (p_grid[box] - np.float32(ind.table.p0)) * np.float32(1.0 / ind.table.step)
        tables = np.stack(ind.tables(), axis=-1).astype(np.float32)[None]  # A, s_d, s_1
        looked_up = cv2.remap(tables, idx, np.zeros_like(idx), cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        return ind.shift(s_grid[box], *cv2.split(looked_up))

    def _warp(self, frame: np.ndarray, geo: FrameGeometry, noise: np.ndarray) -> None:
        """Re-samples the indented region from the static layer (`Indentation`).

        Shapes, relief and sERCs are warped; the ooplasm's granules are not (only the mask
        that shows them), so compressed cytoplasm shows no sheared streaks. The funnel the
        needle opens is filled from a smoothed copy of the static layer (clear
        perivitelline fluid). The displacement is smooth except at the funnel's wall, so
        it is computed on 2x2 blocks and interpolated, and exactly around the funnel.
        """
        ind = geo.deformation
        x0, y0, x1, y1 = ind.support_box(self.height, self.width)
        if x1 <= x0 or y1 <= y0:
            return
        x0, y0 = x0 - x0 % 2, y0 - y0 % 2
        box = (slice(y0, y1), slice(x0, x1))
        half_box = (slice(y0 // 2, (y1 + 1) // 2), slice(x0 // 2, (x1 + 1) // 2))
        shift_h, gap_h = self._shift(ind, half_box, half=True)
        shift = cv2.resize(shift_h, (2 * shift_h.shape[1], 2 * shift_h.shape[0]),
                           interpolation=cv2.INTER_LINEAR)[: y1 - y0, : x1 - x0]  # fmt: skip
        rows, cols = np.flatnonzero(gap_h.any(axis=1)), np.flatnonzero(gap_h.any(axis=0))
        funnel = None
        if rows.size:  # exact displacement and funnel mask around the funnel
            fy0, fx0 = max(0, 2 * rows[0] - 4), max(0, 2 * cols[0] - 4)
            fy1, fx1 = min(y1 - y0, 2 * rows[-1] + 6), min(x1 - x0, 2 * cols[-1] + 6)
            funnel = (slice(fy0, fy1), slice(fx0, fx1))
            exact, gap = self._shift(
                ind, (slice(y0 + fy0, y0 + fy1), slice(x0 + fx0, x0 + fx1)), half=False
            )
            shift[funnel] = exact
        ax, ay = ind.table.direction
        qx = self.xs[box] + shift * np.float32(ax)
        qy = self.ys[box] + shift * np.float32(ay)
        both = cv2.remap(self.base_and_mask, qx, qy, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT)  # fmt: skip
        warped, mask = cv2.split(both)
        warped += mask * self.texture[box]  # granules stay put: no smeared texture
        if funnel is not None:
            fill = cv2.remap(self.smooth, qx[funnel], qy[funnel], cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)  # fmt: skip
            warped[funnel] = np.where(gap, fill, warped[funnel])
        frame[box] = cv2.scaleAdd(noise[box], float(self.scene.look.noise_sigma), warped)

    def _inside_mask(self, geo: FrameGeometry, x0: int, y0: int, shape) -> np.ndarray:
        """Soft mask of the (deformed) ooplasm in a region of interest."""
        mask = np.zeros(shape, np.uint8)
        pts = np.round((geo.oocyte_outline[::2] - [x0, y0]) * 16).astype(np.int32)
        cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_AA, shift=4)
        return mask.astype(np.float32) * np.float32(1 / 255)

    def _shade(self, frame, box, height, absorb, contrast) -> None:
        """Draws a glass/cell height field into frame[box] with the case's optics."""
        look = self.scene.look
        relief, edges = _relief(height, look.relief_angle)
        shading = look.relief_gain * 1.6 * _RELIEF * relief - look.edge_gain * 1.6 * _EDGE * edges
        frame[box] = frame[box] * (1.0 - contrast * absorb) + self.scale[box] * contrast * shading

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
        box = (slice(y0, y1), slice(x0, x1))
        xs, ys = self.xs[box], self.ys[box]
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
        bevel = needle.bevel_length * (w0 - v) / (2.0 * w0)
        cut = smoothstep(0.5 + (u - bevel)) * smoothstep(u / needle.fade_length)
        h_n = (_tube_thickness(v, w_out, w_in) * cut).astype(np.float32)
        inside = self._inside_mask(geo, x0, y0, xs.shape)
        if inside.max() > 0:  # in the ooplasm: medium-filled lumen, no granules, lighter
            body = (smoothstep(w_out - np.abs(v) + 0.5) * cut).astype(np.float32)
            lumen = (smoothstep(w_in - np.abs(v)) * cut).astype(np.float32)
            roi = frame[box]
            smooth = cv2.GaussianBlur(roi, (0, 0), 2.0)
            frame[box] = (roi + inside * body * 0.7 * (smooth - roi)
                          + inside * lumen * look.lumen_light * look.background)  # fmt: skip
        contrast = look.needle_contrast * (1.0 - inside * (1.0 - look.needle_inside))
        h_n = cv2.GaussianBlur(h_n, (0, 0), look.needle_focus_sigma)
        self._shade(frame, box, h_n, _NEEDLE_ABSORB * h_n / (2.0 * w0), contrast)

    def _sperm_pose(self, geo: FrameGeometry) -> np.ndarray | None:
        """Head centre of the sperm in this frame (in the needle, or left in the ooplasm)."""
        sperm = self.scene.sperm
        if sperm is None:
            return None
        needle = self.scene.needle
        if geo.tau >= sperm.release_tau:
            if self.released is None:
                depth, _, _, offset = self.scene.motion.at(sperm.release_tau)
                self.released = needle.axis_point(depth, offset) - np.asarray(
                    needle.direction) * sperm.head_axes[0] * 2.0  # fmt: skip
            return self.released
        if geo.needle_polygon is None:
            return None
        head = needle.axis_point(geo.needle_depth, geo.needle_offset) - np.asarray(
            needle.direction) * sperm.head_back  # fmt: skip
        inside = 0 <= head[0] < self.width and 0 <= head[1] < self.height
        return head if inside else None

    def _draw_sperm(self, frame: np.ndarray, geo: FrameGeometry) -> None:
        """Head (small dark ellipse) and tail (thin wavy line towards the needle entry)."""
        head = self._sperm_pose(geo)
        if head is None:
            return
        sperm = self.scene.sperm
        ax, ay = self.scene.needle.direction
        reach = sperm.tail_length + 3 * sperm.head_axes[0] + 4
        tail_end = head - np.array([ax, ay]) * reach
        x0 = max(0, int(min(head[0], tail_end[0]) - 8))
        x1 = min(self.width, int(max(head[0], tail_end[0]) + 9))
        y0 = max(0, int(min(head[1], tail_end[1]) - 8))
        y1 = min(self.height, int(max(head[1], tail_end[1]) + 9))
        if x1 <= x0 or y1 <= y0:
            return
        box = (slice(y0, y1), slice(x0, x1))
        rx, ry = self.xs[box] - head[0], self.ys[box] - head[1]
        along = -(rx * ax + ry * ay)  # > 0 towards the tail
        across = -rx * ay + ry * ax
        a_h, b_h = sperm.head_axes
        rho = np.sqrt((along / a_h) ** 2 + (across / b_h) ** 2)
        h_s = 0.6 * b_h * _dome(rho)
        t = np.clip((along - a_h) / sperm.tail_length, 0.0, 1.0)
        wave = sperm.tail_amplitude * t * np.sin(2 * np.pi * sperm.tail_waves * t
                                                  + sperm.tail_phase)  # fmt: skip
        on_tail = (along > a_h * 0.8) & (along < a_h + sperm.tail_length)
        h_s = h_s + 0.5 * on_tail * np.exp(-np.square(across - wave) / 0.5)
        inside = self._inside_mask(geo, x0, y0, h_s.shape)
        look = self.scene.look
        contrast = look.needle_contrast * (1.0 - inside * (1.0 - look.needle_inside))
        h_s = cv2.GaussianBlur(h_s.astype(np.float32), (0, 0), look.needle_focus_sigma)
        self._shade(frame, box, h_s, 0.3 * np.minimum(h_s / (0.6 * b_h), 1.0), contrast)
