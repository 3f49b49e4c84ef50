"""Fit pen-stroke polylines with exactly 32 cubic Bezier segments (Schneider's algorithm).

A drawing is a list of strokes, each an ``(n, 2)`` polyline. :func:`fit_drawing` normalises it
(bounding box centred, aspect kept, max extent ``margin``), fits each stroke in canvas pixels
(512 canvas) and returns a ``(32, 4, 2)`` float32 sketch in ``[-1, 1]`` with the segments in drawing
order. Within a stroke consecutive segments share end/start points exactly.

Per stroke: resample by arc length, detect corners at a coarse scale, Gaussian-smooth each
corner-to-corner piece with its end points pinned (this turns the whole-pixel staircase of the
MNIST strokes into a smooth curve), then fit piecewise cubics by least squares with chord-length
parameters and Newton reparametrisation (Schneider, Graphics Gems 1990). Too many segments: refit
with a looser tolerance. Too few: split the longest segment exactly at t = 0.5 (de Casteljau).

    from driftsketch.data.bezier_fit import FitConfig, fit_drawing
    sketch, stats = fit_drawing([np.array([[0, 0], [10, 5], [20, 0]])], FitConfig())
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from driftsketch.config import Config
from driftsketch.errors import DriftSketchError
from driftsketch.sketch import CANVAS_SIZE, NUM_SEGMENTS, from_canvas, to_canvas


class FitConfig(Config):
    """Fitting settings (defaults: ``fit`` in configs/data.yaml). Units: canvas px."""

    defaults_from: ClassVar[str] = "data.yaml:fit"
    margin: float  # drawings span at most [-margin, margin]
    resample_px: float  # arc-length spacing of the resampled polyline
    smooth_px: float  # Gaussian sigma for ordinary (float) strokes
    staircase_smooth: float  # sigma as a multiple of the grid step for staircase strokes
    tolerance_px: float  # first-try max distance between smoothed polyline and curve
    tolerance_growth: float  # refit factor when a drawing needs more than 32 segments
    corner_angle_deg: float  # turning angle (over the corner window) that makes a corner
    corner_window_px: float  # half-width of the window the turning angle is measured over
    dot_length_px: float  # a single-point stroke (a dot) becomes a segment this long
    max_refits: int


class FitError(DriftSketchError, ValueError):
    """A drawing that cannot become a 32-segment sketch (no ink, or more than 32 strokes)."""


# --- Bezier primitives ---------------------------------------------------------------------------

def bezier_eval(ctrl: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Evaluate cubics ``ctrl (..., 4, 2)`` at parameters ``t (M,)`` -> ``(..., M, 2)``."""
    t = np.asarray(t, dtype=np.float64)[:, None]
    mt = 1.0 - t
    c = np.asarray(ctrl, dtype=np.float64)[..., None, :, :]  # (..., 1, 4, 2)
    return (mt**3 * c[..., 0, :] + 3 * mt**2 * t * c[..., 1, :]
            + 3 * mt * t**2 * c[..., 2, :] + t**3 * c[..., 3, :])


def split_bezier(ctrl: np.ndarray, t: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Split one cubic ``(4, 2)`` at ``t`` by de Casteljau; both halves trace the same curve."""
    p0, p1, p2, p3 = np.asarray(ctrl, dtype=np.float64)
    p01, p12, p23 = p0 + t * (p1 - p0), p1 + t * (p2 - p1), p2 + t * (p3 - p2)
    p012, p123 = p01 + t * (p12 - p01), p12 + t * (p23 - p12)
    mid = p012 + t * (p123 - p012)
    return np.stack([p0, p01, p012, mid]), np.stack([mid, p123, p23, p3])


def segment_lengths(ctrl: np.ndarray) -> np.ndarray:
    """Approximate arc lengths of cubics ``(..., 4, 2)`` (mean of chord and control polygon)."""
    ctrl = np.asarray(ctrl, dtype=np.float64)
    poly = np.linalg.norm(np.diff(ctrl, axis=-2), axis=-1).sum(-1)
    chord = np.linalg.norm(ctrl[..., 3, :] - ctrl[..., 0, :], axis=-1)
    return 0.5 * (poly + chord)


# --- polyline preparation ------------------------------------------------------------------------

def dedupe(points: np.ndarray) -> np.ndarray:
    """Drop consecutive duplicate points of an ``(n, 2)`` polyline."""
    if len(points) < 2:
        return points
    keep = np.concatenate([[True], np.any(np.diff(points, axis=0) != 0, axis=1)])
    return points[keep]


def resample_polyline(points: np.ndarray, spacing: float) -> np.ndarray:
    """Resample a polyline at (nearly) uniform arc-length ``spacing``, keeping both end points."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(int(np.ceil(s[-1] / spacing)), 1) + 1
    si = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(si, s, points[:, 0]), np.interp(si, s, points[:, 1])], axis=1)


def smooth_pinned(points: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-smooth an ``(n, 2)`` polyline (sigma in samples) with its end points held fixed.

    Padding by odd reflection about each end point keeps the end point and its direction.
    """
    n = len(points)
    if sigma < 0.3 or n < 3:
        return points
    r = int(min(np.ceil(3 * sigma), n - 1))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    head = 2 * points[0] - points[r:0:-1]
    tail = 2 * points[-1] - points[-2:-r - 2:-1]
    padded = np.concatenate([head, points, tail])
    out = np.stack([np.convolve(padded[:, d], k, mode="valid") for d in range(2)], axis=1)
    out[0], out[-1] = points[0], points[-1]
    return out


def staircase_step(strokes: list[np.ndarray], max_fraction: float = 0.15) -> float:
    """Grid step of a whole-pixel staircase drawing (source units), or 0.0 when it is not one.

    A staircase moves only by (+-q, 0), (0, +-q) or (+-q, +-q) for one small step size q (within
    25%, at least 80% of the moves, q at most ``max_fraction`` of the drawing's extent). A
    simplified polyline such as a 4-point square has equal axis-aligned moves too, but long ones.
    """
    d = np.concatenate([np.abs(np.diff(s, axis=0)) for s in strokes if len(s) > 1] or [np.zeros((0, 2))])
    d = d[np.any(d > 0, axis=1)]
    if len(d) < 8:
        return 0.0
    q = float(np.median(d.max(axis=1)))
    allp = np.concatenate(strokes)
    if q <= 0 or q > max_fraction * float((allp.max(0) - allp.min(0)).max()):
        return 0.0
    ok = np.all((d == 0) | ((d >= 0.75 * q) & (d <= 1.25 * q)), axis=1)
    return q if ok.mean() >= 0.8 else 0.0


def find_corners(points: np.ndarray, window: int, angle_deg: float) -> np.ndarray:
    """Indices of corners: local maxima of the turning angle between ``window``-sample chords."""
    n = len(points)
    if n < 2 * window + 1 or window < 1:
        return np.zeros(0, dtype=int)
    a = points[window:n - window] - points[: n - 2 * window]
    b = points[2 * window:] - points[window:n - window]
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    ang = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    idx = []
    for i in np.argsort(-ang):
        if ang[i] < angle_deg:
            break
        j = i + window
        if all(abs(j - c) > window for c in idx):
            idx.append(j)
    return np.array(sorted(idx), dtype=int)


# --- Schneider fitting ---------------------------------------------------------------------------

def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 1e-12 else np.array([1.0, 0.0])


def _end_tangents(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(d) < 3:
        return _unit(d[-1] - d[0]), _unit(d[0] - d[-1])
    # second-order one-sided differences: exact for a quadratic through the first three points
    return _unit(-3 * d[0] + 4 * d[1] - d[2]), _unit(-3 * d[-1] + 4 * d[-2] - d[-3])


def _chord_params(d: np.ndarray) -> np.ndarray:
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(d, axis=0), axis=1))])
    return s / s[-1] if s[-1] > 0 else np.linspace(0, 1, len(d))


def _generate_bezier(d: np.ndarray, u: np.ndarray, t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """Least-squares cubic through d[0], d[-1] with fixed end tangent directions t1, t2."""
    p0, p3 = d[0], d[-1]
    mu = 1 - u
    b0, b1, b2, b3 = mu**3, 3 * u * mu**2, 3 * u**2 * mu, u**3
    a1, a2 = b1[:, None] * t1, b2[:, None] * t2
    c = np.array([[(a1 * a1).sum(), (a1 * a2).sum()], [(a1 * a2).sum(), (a2 * a2).sum()]])
    tmp = d - (np.outer(b0 + b1, p0) + np.outer(b2 + b3, p3))
    x = np.array([(a1 * tmp).sum(), (a2 * tmp).sum()])
    seg_len = np.linalg.norm(p3 - p0)
    det = c[0, 0] * c[1, 1] - c[0, 1] * c[1, 0]
    alpha = None
    if abs(det) > 1e-12:
        al = (x[0] * c[1, 1] - c[0, 1] * x[1]) / det
        ar = (c[0, 0] * x[1] - c[1, 0] * x[0]) / det
        eps = 1e-6 * max(seg_len, 1e-9)
        if al > eps and ar > eps:
            alpha = (al, ar)
    if alpha is None:  # Wu/Barsky heuristic, as in Schneider's code
        alpha = (seg_len / 3.0, seg_len / 3.0)
    return np.stack([p0, p0 + alpha[0] * t1, p3 + alpha[1] * t2, p3])


def _reparametrise(bez: np.ndarray, d: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One Newton-Raphson step towards the closest curve parameter for each point."""
    q = bezier_eval(bez, u)
    q1, q2 = _derivatives(bez, u)
    diff = q - d
    num = (diff * q1).sum(1)
    den = (q1 * q1).sum(1) + (diff * q2).sum(1)
    step = np.where(np.abs(den) > 1e-12, num / np.where(den == 0, 1, den), 0.0)
    out = np.clip(u - step, 0.0, 1.0)
    out[0], out[-1] = 0.0, 1.0
    return np.maximum.accumulate(out)


def _derivatives(bez: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d1 = 3 * np.diff(bez, axis=0)
    d2 = 2 * np.diff(d1, axis=0)
    mu, uu = (1 - u)[:, None], u[:, None]
    return mu**2 * d1[0] + 2 * mu * uu * d1[1] + uu**2 * d1[2], mu * d2[0] + uu * d2[1]


def _refine(bez: np.ndarray, d: np.ndarray, u: np.ndarray, t1: np.ndarray, t2: np.ndarray):
    """One Gauss-Newton step on the tangent lengths with point-to-tangent-line distances.

    Schneider's alternation (least squares, then Newton on the parameters) converges linearly
    and slowly; minimising the distances along the curve normals (tangent distance
    minimisation, Wang et al. 2006) converges in a few steps. Returns (bez, u, distances).
    """
    u = _reparametrise(bez, d, _reparametrise(bez, d, u))
    q = bezier_eval(bez, u)
    q1, _ = _derivatives(bez, u)
    nrm = np.stack([-q1[:, 1], q1[:, 0]], axis=1)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True) + 1e-12
    j1, j2 = 3 * u * (1 - u) ** 2 * (nrm @ t1), 3 * u**2 * (1 - u) * (nrm @ t2)
    r = ((q - d) * nrm).sum(1)
    a = np.array([[j1 @ j1, j1 @ j2], [j1 @ j2, j2 @ j2]])
    step = np.linalg.lstsq(a, -np.array([j1 @ r, j2 @ r]), rcond=None)[0]
    al, ar = (bez[1] - bez[0]) @ t1 + step[0], (bez[2] - bez[3]) @ t2 + step[1]
    new = np.stack([bez[0], bez[0] + al * t1, bez[3] + ar * t2, bez[3]])
    return new, u, np.linalg.norm(bezier_eval(new, u) - d, axis=1), al > 0 and ar > 0


def fit_cubics(d: np.ndarray, tol: float, t1=None, t2=None, depth: int = 0) -> list[np.ndarray]:
    """Schneider's recursive fit of an ``(n, 2)`` polyline: list of ``(4, 2)`` cubics within ``tol``."""
    if t1 is None or t2 is None:
        t1, t2 = _end_tangents(d)
    if len(d) == 2 or depth > 12:
        dist = np.linalg.norm(d[-1] - d[0]) / 3.0
        return [np.stack([d[0], d[0] + dist * t1, d[-1] + dist * t2, d[-1]])]
    u = _chord_params(d)
    bez = _generate_bezier(d, u, t1, t2)
    err = np.linalg.norm(bezier_eval(bez, u) - d, axis=1)
    if err.max() > tol:  # cheap: stops as soon as a step does not help
        for _ in range(6):
            new, new_u, new_err, ok = _refine(bez, d, u, t1, t2)
            if not ok or not np.isfinite(new_err.max()) or new_err.max() >= err.max():
                break
            bez, u, err = new, new_u, new_err
            if err.max() <= tol:
                break
    if err.max() <= tol or len(d) < 4:
        return [bez]
    split = int(np.clip(np.argmax(err[1:-1]) + 1, 1, len(d) - 2))
    k = max(1, min(3, split, len(d) - 1 - split))
    tc = _unit(d[split - k] - d[split + k])
    left = fit_cubics(d[: split + 1], tol, t1, tc, depth + 1)
    right = fit_cubics(d[split:], tol, -tc, t2, depth + 1)
    return left + right


# --- drawings ------------------------------------------------------------------------------------

def normalise_strokes(strokes: list[np.ndarray], margin: float) -> tuple[list[np.ndarray], float]:
    """Centre the bounding box and scale (aspect kept) so the drawing spans ``[-margin, margin]``.

    Returns the strokes in ``[-1, 1]`` units and the scale (units per source unit).
    """
    allp = np.concatenate(strokes, axis=0)
    lo, hi = allp.min(0), allp.max(0)
    extent = float((hi - lo).max())
    if not np.isfinite(extent) or extent <= 0:
        raise FitError("drawing has no extent (all points equal)")
    scale = 2.0 * margin / extent
    centre = 0.5 * (lo + hi)
    return [(s - centre) * scale for s in strokes], scale


def prepare_stroke(px: np.ndarray, step_px: float, cfg: FitConfig, corners: bool = True) -> list[np.ndarray]:
    """Resample, split at corners and smooth one stroke (canvas px) -> corner-to-corner pieces.

    ``step_px`` is the staircase grid step in canvas px (0 for ordinary strokes); it sets the
    smoothing and the corner window so that single staircase steps are neither corners nor kept.
    """
    spacing = cfg.resample_px
    r = resample_polyline(px, spacing)
    sigma_px = max(cfg.smooth_px, cfg.staircase_smooth * step_px)
    window = int(round(max(cfg.corner_window_px, 1.5 * step_px) / spacing))
    cuts = find_corners(smooth_pinned(r, sigma_px / spacing), window, cfg.corner_angle_deg) if corners else []
    bounds = [0, *[int(c) for c in cuts], len(r) - 1]
    return [smooth_pinned(r[a:b + 1], sigma_px / spacing) for a, b in zip(bounds[:-1], bounds[1:])]


def _dot_segment(p: np.ndarray, length: float) -> np.ndarray:
    a, b = p - [length / 2, 0.0], p + [length / 2, 0.0]
    return np.stack([a, a + (b - a) / 3, a + 2 * (b - a) / 3, b])


def split_to_count(segments: list[np.ndarray], n: int = NUM_SEGMENTS) -> list[np.ndarray]:
    """Split the longest segment at t = 0.5 (exactly, de Casteljau) until there are ``n``; order kept."""
    segs = list(segments)
    lengths = [float(segment_lengths(s)) for s in segs]
    while len(segs) < n:
        i = int(np.argmax(lengths))
        left, right = split_bezier(segs[i])
        segs[i:i + 1] = [left, right]
        lengths[i:i + 1] = [lengths[i] / 2, lengths[i] / 2]
    return segs


def _fit_pieces(pieces: list[list[np.ndarray]], tol: float, cfg: FitConfig) -> list[list[np.ndarray]]:
    out = []
    for stroke in pieces:
        if len(stroke) == 1 and len(stroke[0]) == 1:  # a dot
            out.append([_dot_segment(stroke[0][0], cfg.dot_length_px)])
            continue
        out.append([c for piece in stroke for c in fit_cubics(piece, tol)])
    return out


def fit_strokes_px(strokes_px: list[np.ndarray], step_px: float, cfg: FitConfig) -> tuple[list[np.ndarray], float]:
    """Fit strokes (canvas px) with exactly 32 cubics in drawing order; returns them and the tolerance used."""
    strokes_px = [dedupe(s) for s in strokes_px if len(s)]
    if not strokes_px:
        raise FitError("drawing has no points")
    if len(strokes_px) > NUM_SEGMENTS:
        raise FitError(f"drawing has {len(strokes_px)} strokes, more than {NUM_SEGMENTS}")

    def prepare(corners: bool) -> list[list[np.ndarray]]:
        return [[s] if len(s) == 1 else prepare_stroke(s, step_px, cfg, corners) for s in strokes_px]

    pieces, tol = prepare(True), max(cfg.tolerance_px, 0.3 * step_px)
    for attempt in range(cfg.max_refits + 1):
        if attempt == cfg.max_refits // 2:
            pieces = prepare(False)  # corners alone may need more than 32 segments
        fitted = _fit_pieces(pieces, tol, cfg)
        flat = [c for stroke in fitted for c in stroke]
        if len(flat) <= NUM_SEGMENTS:
            return split_to_count(flat), tol
        tol *= cfg.tolerance_growth
    # Last resort: one cubic per stroke (always <= 32 strokes here).
    flat = [c for stroke in _fit_pieces(pieces, np.inf, cfg) for c in stroke]
    return split_to_count(flat), float("inf")


def chamfer_px(polylines_px: list[np.ndarray], segments_px: np.ndarray, spacing: float = 1.0) -> float:
    """Symmetric mean nearest-neighbour distance (px) between polylines and ``(K, 4, 2)`` cubics.

    Both sides are sampled densely (about every ``spacing`` px), so the discretisation adds at
    most ~``spacing / 4`` px.
    """
    from scipy.spatial import cKDTree

    a = np.concatenate([resample_polyline(p, spacing) if len(p) > 1 else p for p in polylines_px])
    m = int(np.clip(np.ceil(segment_lengths(segments_px).max() / spacing) + 1, 8, 512))
    b = bezier_eval(segments_px, np.linspace(0.0, 1.0, m)).reshape(-1, 2)
    da, _ = cKDTree(b).query(a)
    db, _ = cKDTree(a).query(b)
    return 0.5 * (float(da.mean()) + float(db.mean()))


def fit_drawing(strokes: list[np.ndarray], cfg: FitConfig | None = None,
                with_error: bool = True) -> tuple[np.ndarray, dict]:
    """Source-unit strokes -> ``(32, 4, 2)`` float32 sketch in [-1, 1] and stats.

    Stats: ``chamfer_px`` (fit error against the original polyline, 512 canvas; NaN when not
    computed), ``staircase`` (grid step detected, canvas px) and ``tolerance_px``.
    """
    cfg = cfg or FitConfig()
    strokes = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
    strokes = [s for s in strokes if len(s) and np.all(np.isfinite(s))]
    if not strokes:
        raise FitError("drawing has no finite points")
    unit, scale = normalise_strokes(strokes, cfg.margin)
    step_px = staircase_step(strokes) * scale * CANVAS_SIZE / 2
    px = [to_canvas(np.asarray(s, dtype=np.float64)) for s in unit]
    segs, tol = fit_strokes_px(px, step_px, cfg)
    segs_px = np.stack(segs)
    sketch = np.clip(from_canvas(np.asarray(segs_px, dtype=np.float64)), -1.0, 1.0).astype(np.float32)
    err = chamfer_px(px, segs_px) if with_error else float("nan")
    return sketch, {"chamfer_px": err, "staircase_px": step_px, "tolerance_px": tol}
