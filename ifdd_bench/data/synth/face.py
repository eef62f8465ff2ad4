"""Procedural drawing of SynthDFER clips: numpy only, all T frames of a clip at once.

Every shape is a signed-distance field (SDF) evaluated on a (T, h, w) grid of face-local
coordinates; its soft coverage ``clip(0.5 - sdf / pixel, 0, 1)`` gives one-pixel anti-aliased
edges at any frame size. The face is painted layer by layer (premultiplied colour + coverage)
and composited over a separately drawn background, so the context-biased copy of a clip reuses
the foreground and only redraws the background.

Coordinates: the image spans [-1, 1] on both axes (y down). Face units put the face centre at 0
and its half-width at 1 (half-height ``face_ratio``); a layer is evaluated only inside the pixel
box that its face-unit box covers over all frames of the clip.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ifdd_bench.data.synth.dynamics import EXPRESSION_PARAMS, ClipParams, hsv_to_rgb

_P = {name: i for i, name in enumerate(EXPRESSION_PARAMS)}
_F32 = np.float32


def coverage(sdf: np.ndarray, pixel: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of the region ``sdf < 0`` (``pixel``: pixel size, same units)."""
    return np.clip(0.5 - sdf / pixel, 0.0, 1.0)


def sd_ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, ru, rv, *, flat: bool = False) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse (first-order estimate, good near the edge).

    ``flat=True`` raises the estimate outside the ellipse to the distance to its bounding box, which
    keeps very flat ellipses (a closed eye) from reaching far along their axis.
    """
    du, dv = (u - cu) / ru, (v - cv) / rv
    k0 = np.sqrt(du * du + dv * dv)
    k1 = np.sqrt(du * du / ru / ru + dv * dv / rv / rv) + 1e-6
    sdf = k0 * (k0 - 1.0) / k1
    if not flat:
        return sdf
    bu = np.maximum(np.abs(u - cu) - ru, 0.0)
    bv = np.maximum(np.abs(v - cv) - rv, 0.0)
    return np.where(k0 > 1.0, np.maximum(sdf, np.sqrt(bu * bu + bv * bv)), sdf)


def sd_segment(u: np.ndarray, v: np.ndarray, a: tuple, b: tuple, radius) -> np.ndarray:
    """Signed distance to a capsule: the segment a-b thickened by ``radius`` (a, b may be (T,1,1))."""
    au, av = a
    bu, bv = b
    eu, ev = bu - au, bv - av
    pu, pv = u - au, v - av
    h = np.clip((pu * eu + pv * ev) / (eu * eu + ev * ev + 1e-9), 0.0, 1.0)
    du, dv = pu - eu * h, pv - ev * h
    return np.sqrt(du * du + dv * dv) - radius


class _Canvas:
    """Premultiplied foreground (T, S, S, 3) + coverage (T, S, S) and the per-frame face transform."""

    def __init__(self, params: ClipParams, size: int):
        self.size = size
        t_len = len(params.pose)
        ident, ctx = params.identity, params.context
        pose = params.pose.astype(np.float64)
        self.cx = ctx.head_xy[0] + pose[:, 0] + params.shake[:, 0]  # (T,) head centre, image units
        self.cy = ctx.head_xy[1] + 0.08 + pose[:, 1] + params.shake[:, 1]
        self.angle = pose[:, 2]
        self.scale = ident.face_w * ctx.head_scale * np.exp(pose[:, 3])  # image units per face unit
        coords = ((np.arange(size) + 0.5) / size * 2.0 - 1.0).astype(_F32)  # pixel centres
        self.coords = coords
        self.rgb = np.zeros((3, t_len, size, size), _F32)  # channels first: contiguous inner loops
        self.alpha = np.zeros((t_len, size, size), _F32)

    def region(self, umin: float, umax: float, vmin: float, vmax: float):
        """Pixel slices covering a face-unit box over all frames, and the face coords there.

        Returns ``(sy, sx, u, v, pixel)`` with ``u, v`` of shape (T, h, w) and ``pixel`` (T, 1, 1).
        """
        cu = np.array([umin, umax, umin, umax])
        cv = np.array([vmin, vmin, vmax, vmax])
        cos, sin = np.cos(self.angle)[:, None], np.sin(self.angle)[:, None]
        s = self.scale[:, None]
        xs = self.cx[:, None] + s * (cos * cu - sin * cv)  # (T, 4) image units
        ys = self.cy[:, None] + s * (sin * cu + cos * cv)
        x0, x1 = self._pixel_span(xs)
        y0, y1 = self._pixel_span(ys)
        sy, sx = slice(y0, max(y0, y1)), slice(x0, max(x0, x1))
        dx = self.coords[None, None, sx] - self.cx[:, None, None].astype(_F32)  # (T, 1, w)
        dy = self.coords[None, sy, None] - self.cy[:, None, None].astype(_F32)  # (T, h, 1)
        cos3, sin3 = cos[:, :, None].astype(_F32), sin[:, :, None].astype(_F32)
        inv = (1.0 / self.scale)[:, None, None].astype(_F32)
        u = (cos3 * dx + sin3 * dy) * inv  # (T, h, w) face units
        v = (-sin3 * dx + cos3 * dy) * inv
        pixel = (2.0 / self.size) * inv  # (T, 1, 1) one pixel in face units
        return sy, sx, u, v, pixel

    def _pixel_span(self, values: np.ndarray) -> tuple[int, int]:
        """Pixel index range [lo, hi) covering image coordinates ``values`` plus a safety margin."""
        lo = (values.min() + 1.0) / 2.0 * self.size - 0.5
        hi = (values.max() + 1.0) / 2.0 * self.size - 0.5
        return int(np.clip(np.floor(lo) - 1, 0, self.size)), int(np.clip(np.ceil(hi) + 2, 0, self.size))

    def paint(self, sy: slice, sx: slice, cover: np.ndarray, colour, shade: np.ndarray | None = None) -> None:
        """Paint ``colour`` (3,), optionally times a (T, h, w) ``shade``, with coverage (T, h, w)."""
        colour = np.asarray(colour, _F32)
        for c in range(3):
            channel = self.rgb[c, :, sy, sx]  # (T, h, w) view
            delta = (colour[c] - channel) if shade is None else (colour[c] * shade - channel)
            delta *= cover
            channel += delta
        alpha = self.alpha[:, sy, sx]
        alpha += cover * (1.0 - alpha)


def _column(params: ClipParams, name: str) -> np.ndarray:
    """(T, 1, 1) float32 expression parameter times ``expression_gain``, for broadcasting over pixels."""
    return params.expression[:, _P[name]][:, None, None] * _F32(params.expression_gain)


def draw_foreground(params: ClipParams, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw the person (torso, hair, face, features, glasses) of every frame.

    Returns premultiplied ``rgb`` (3, T, S, S) (channels first) and coverage ``alpha`` (T, S, S), float32.
    """
    idn = params.identity
    cv = _Canvas(params, size)
    fh = idn.face_ratio
    dark = (idn.hair * 0.6).astype(_F32)

    # torso and neck
    sy, sx, u, v, px = cv.region(-2.4, 2.4, fh * 0.6 - 0.5, fh + 3.0)
    cv.paint(sy, sx, coverage(sd_ellipse(u, v, 0.0, fh + 1.55, 2.1, 1.0), px), idn.shirt)
    cv.paint(sy, sx, coverage(sd_segment(u, v, (0.0, fh * 0.6), (0.0, fh + 0.45), 0.42), px), idn.skin * 0.82)

    # hair behind the head
    if idn.hair_style:
        bottom = fh * 0.15 if idn.hair_style == 1 else fh + 0.9
        sy, sx, u, v, px = cv.region(-1.4, 1.4, -fh * 1.3, bottom + 0.1)
        sdf = sd_ellipse(u, v, 0.0, -0.12 * fh, 1.16, fh * 1.04)
        if idn.hair_style == 1:  # short: the cap ends at ``bottom``
            sdf = np.maximum(sdf, v - bottom)
        else:  # long: plus a slab down to the shoulders
            slab = np.maximum(np.abs(u) - 1.22, np.maximum(-0.1 * fh - v, v - bottom))
            sdf = np.minimum(sdf, slab)
        cv.paint(sy, sx, coverage(sdf, px), idn.hair)

    # ears (mirrored) and face with soft side shading
    ey = idn.eye_y * fh
    sy, sx, u, v, px = cv.region(-1.3, 1.3, ey - 0.4, ey + 0.5)
    cv.paint(sy, sx, coverage(sd_ellipse(np.abs(u), v, 0.97, ey + 0.08, idn.ear, idn.ear * 1.7), px),
             idn.skin * 0.9)
    sy, sx, u, v, px = cv.region(-1.05, 1.05, -fh - 0.05, fh + 0.05)
    shade = 1.0 - 0.16 * u * u - 0.05 * v / fh  # (T, h, w) darker towards the sides
    cv.paint(sy, sx, coverage(sd_ellipse(u, v, 0.0, 0.0, 1.0, fh), px), idn.skin, shade)

    # fringe: the hair cap above a curved hairline
    if idn.hair_style:
        sy, sx, u, v, px = cv.region(-1.2, 1.2, -fh * 1.2, idn.hairline * fh + 0.45)
        cap = sd_ellipse(u, v, 0.0, -0.12 * fh, 1.16, fh * 1.04)
        line = v - (idn.hairline * fh + 0.22 * u * u)
        cv.paint(sy, sx, coverage(np.maximum(cap, line), px), idn.hair)

    _draw_nose(cv, params, ey, fh)
    _draw_eyes(cv, params, ey, dark)
    _draw_brows(cv, params, ey, dark)
    _draw_mouth(cv, params, fh)
    if idn.glasses:
        _draw_glasses(cv, params, ey)
    return cv.rgb, cv.alpha


def _draw_nose(cv: _Canvas, params: ClipParams, ey: float, fh: float) -> None:
    idn = params.identity
    wrinkle = np.maximum(_column(params, "nose_wrinkle"), 0.0)
    tip = (idn.eye_y + 0.15 + idn.nose_len) * fh
    sy, sx, u, v, px = cv.region(-0.4, 0.4, min(ey, tip - 0.1 * params.expression_gain - 0.1), tip + 0.15)
    tip_t = tip - 0.1 * wrinkle  # wrinkling pulls the nose up
    bridge = sd_segment(u, v, (0.0, ey + 0.1), (0.07, tip_t - 0.06), 0.025)
    cv.paint(sy, sx, 0.45 * coverage(bridge, px), idn.skin * 0.72)
    nostrils = sd_ellipse(u, v, 0.0, tip_t, 0.17, 0.07)
    cv.paint(sy, sx, coverage(nostrils, px), idn.skin * 0.8)
    holes = sd_ellipse(np.abs(u), v, 0.075, tip_t + 0.02, 0.04, 0.022)
    cv.paint(sy, sx, coverage(holes, px), idn.skin * 0.45)
    # wrinkle lines on both sides of the bridge, visible in proportion to the wrinkle
    wv = ey + 0.17
    lines = sd_segment(np.abs(u), v, (0.07, wv), (0.2, wv - 0.05), 0.016)
    lines = np.minimum(lines, sd_segment(np.abs(u), v, (0.08, wv + 0.06), (0.22, wv + 0.03), 0.016))
    cv.paint(sy, sx, np.minimum(wrinkle * 1.6, 1.0) * coverage(lines, px), idn.skin * 0.55)


def _draw_eyes(cv: _Canvas, params: ClipParams, ey: float, dark: np.ndarray) -> None:
    idn = params.identity
    half_w = idn.eye_w
    blink = params.blink[:, None, None]
    openness = np.clip(0.6 + 0.6 * _column(params, "eye_open"), 0.06, 1.35) * (1.0 - 0.95 * blink)
    half_h = np.maximum(idn.eye_w * idn.eye_h * openness, 0.01)  # (T, 1, 1)
    box_h = idn.eye_w * idn.eye_h * 1.4 + 0.05
    sy, sx, u, v, px = cv.region(-idn.eye_dx - half_w - 0.05, idn.eye_dx + half_w + 0.05, ey - box_h, ey + box_h)
    au = np.abs(u)
    sclera = sd_ellipse(au, v, idn.eye_dx, ey, half_w, half_h, flat=True)
    inside = coverage(sclera, px)
    cv.paint(sy, sx, inside, (0.96, 0.95, 0.92))
    iris_r = idn.eye_w * idn.eye_h * 0.62
    iris = np.sqrt((au - idn.eye_dx) ** 2 + (v - ey) ** 2)
    cv.paint(sy, sx, inside * coverage(iris - iris_r, px), idn.iris)
    cv.paint(sy, sx, inside * coverage(iris - iris_r * 0.45, px), (0.03, 0.03, 0.03))
    cv.paint(sy, sx, coverage(np.abs(sclera) - 0.022, px), dark)  # lid outline (a line when closed)


def _draw_brows(cv: _Canvas, params: ClipParams, ey: float, dark: np.ndarray) -> None:
    idn = params.identity
    raise_, furrow = _column(params, "brow_raise"), _column(params, "brow_furrow")
    base = ey - idn.eye_w * idn.eye_h - 0.15
    inner_u = idn.eye_dx - idn.brow_len * 0.75 - 0.1 * furrow
    outer_u = idn.eye_dx + idn.brow_len
    inner_v = base - 0.3 * raise_ + 0.16 * furrow
    outer_v = base - 0.2 * raise_ + 0.04 * furrow
    reach = 0.46 * params.expression_gain + 0.15  # largest move of an end point + thickness + arch
    sy, sx, u, v, px = cv.region(-outer_u - 0.1, outer_u + 0.1, base - reach, base + reach)
    au = np.abs(u)
    mid, half = (idn.eye_dx + idn.brow_len * 0.12), idn.brow_len * 0.9
    arch = 0.05 * (1.0 - np.clip(((au - mid) / half) ** 2, 0.0, 1.0))
    brow = sd_segment(au, v + arch, (inner_u, inner_v), (outer_u, outer_v), idn.brow_thick)
    cv.paint(sy, sx, coverage(brow, px), dark * 0.9)


def _draw_mouth(cv: _Canvas, params: ClipParams, fh: float) -> None:
    idn = params.identity
    corner, opening = _column(params, "mouth_corner"), _column(params, "mouth_open")
    stretch, wrinkle = _column(params, "lip_stretch"), _column(params, "nose_wrinkle")
    my = idn.mouth_y * fh
    gain = params.expression_gain
    wide, tall = idn.mouth_w * (1.0 + 0.45 * gain) + 0.05, 0.7 * gain + 0.1
    sy, sx, u, v, px = cv.region(-wide, wide, my - tall, my + tall)
    half_w = np.maximum(idn.mouth_w * (1.0 + 0.45 * stretch - 0.08 * np.maximum(opening, 0.0)), 0.05)  # (T, 1, 1)
    q = u / half_w
    taper = np.sqrt(np.clip(1.0 - q * q, 0.0, 1.0))
    centre = my - 0.08 * np.maximum(wrinkle, 0.0) - 0.24 * corner * q * q  # corners up when corner > 0
    gap = 0.28 * np.maximum(opening + 0.05, 0.0) + 0.08 * np.maximum(wrinkle, 0.0)  # half opening
    lip = 0.05 * np.maximum(1.0 - 0.65 * np.maximum(-opening, 0.0), 0.2)  # pressed lips get thin
    dist = np.abs(v - centre)
    outside = np.abs(u) - half_w
    cv.paint(sy, sx, coverage(np.maximum(dist - (gap + lip) * taper - 0.004, outside), px), idn.lips)
    cavity = coverage(np.maximum(dist - gap * taper, outside), px)
    cv.paint(sy, sx, cavity, (0.22, 0.05, 0.07))
    teeth = coverage((v - centre) + gap * taper * 0.35, px)  # upper third of the opening
    cv.paint(sy, sx, cavity * teeth, (0.93, 0.91, 0.86))


def _draw_glasses(cv: _Canvas, params: ClipParams, ey: float) -> None:
    idn = params.identity
    radius = idn.eye_w * 1.3
    sy, sx, u, v, px = cv.region(-idn.eye_dx - radius - 0.1, idn.eye_dx + radius + 0.1, ey - radius - 0.1,
                                 ey + radius + 0.1)
    au = np.abs(u)
    dist = np.sqrt((au - idn.eye_dx) ** 2 + (v - ey) ** 2)
    cv.paint(sy, sx, 0.15 * coverage(dist - radius, px), idn.glasses_col)
    frame = np.minimum(np.abs(dist - radius) - 0.022,
                       sd_segment(au, v, (0.0, ey - 0.04), (idn.eye_dx - radius, ey - 0.04), 0.02))
    cv.paint(sy, sx, coverage(frame, px), idn.glasses_col)


def draw_background(params: ClipParams, size: int, hue: float) -> np.ndarray:
    """Background of every frame, channels first (3, T, S, S): hued base, gradient, gratings, objects.

    The scene is drawn once on a canvas larger than the frame and each frame is the crop that the
    camera shake (rounded to whole pixels) selects, so the background moves with the camera.
    """
    ctx = params.context
    shift = np.rint(params.shake / 2.0 * size).astype(int)  # (T, 2) pixels
    margin = int(np.abs(shift).max(initial=0))
    full = size + 2 * margin
    coords = ((np.arange(full) - margin + 0.5) / size * 2.0 - 1.0).astype(_F32)
    x, y = coords[None, :], coords[:, None]  # (1, F), (F, 1)
    light = 1.0 + ctx.gradient[0] * x + ctx.gradient[1] * y  # (F, F)
    for fx, fy, phase, amp in ctx.texture:
        light = light + amp * np.sin(fx * x + fy * y + phase)
    scene = light[None] * hsv_to_rgb(hue, ctx.sat, ctx.val)[:, None, None]  # (3, F, F)
    pixel = 2.0 / size
    for kind, ox, oy, rx, ry, r, g, b in ctx.objects:
        if kind == 0:
            sdf = sd_ellipse(x, y, ox, oy, rx, ry)
        else:
            sdf = np.maximum(np.abs(x - ox) - rx, np.abs(y - oy) - ry)
        a = coverage(sdf, pixel)
        scene += a * (np.array([r, g, b], _F32)[:, None, None] - scene)
    out = np.empty((3, len(shift), size, size), _F32)
    for t, (dx, dy) in enumerate(shift):
        # content moves by +shift, so frame pixel p shows scene pixel p - shift
        out[:, t] = scene[:, margin - dy: margin - dy + size, margin - dx: margin - dx + size]
    return out


def render_clip(params: ClipParams, size: int, hues: Sequence[float] | None = None) -> list[np.ndarray]:
    """Render clip frames as uint8 arrays (T, S, S, 3), one array per background hue.

    ``hues`` defaults to the clip's own (unbiased) hue; the context-biased train copy passes
    ``[context.hue, context.biased_hue]`` and gets two arrays that differ only in the background.
    The person, illumination flicker and sensor noise are identical across the copies.
    """
    hues = [params.context.hue] if hues is None else list(hues)
    rgb, alpha = draw_foreground(params, size)  # (3, T, S, S), (T, S, S)
    keep = 1.0 - alpha
    gain = (params.gain * 255.0).astype(_F32)[None, :, None, None]  # flicker, to 8-bit scale
    rng = np.random.default_rng(params.noise_seed)
    # sensor noise: uniform with standard deviation noise_std (cheaper to draw than Gaussian)
    noise = rng.random(rgb.shape, dtype=_F32)
    noise -= 0.5
    noise *= _F32(params.noise_std * 255.0 * np.sqrt(12.0))
    noise += 0.5  # rounding offset for the uint8 cast
    out = []
    for hue in hues:
        frame = draw_background(params, size, hue)
        frame *= keep
        frame += rgb
        frame *= gain
        frame += noise
        np.clip(frame, 0, 255, out=frame)
        out.append(frame.astype(np.uint8).transpose(1, 2, 3, 0).copy())  # (T, S, S, 3)
    return out
