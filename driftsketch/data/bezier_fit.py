"""Fit pen-stroke polylines with exactly 32 cubic Bezier segments (Schneider's algorithm), many at once.

A drawing is a list of strokes, each an ``(n, 2)`` polyline. :func:`fit_drawings` normalises each
drawing (bounding box centred, aspect kept, max extent ``margin``), fits each stroke in canvas
pixels (512 canvas) and returns ``(32, 4, 2)`` float32 sketches in ``[-1, 1]`` with the segments in
drawing order. Within a stroke consecutive segments share end/start points exactly.

Per stroke: resample by arc length, detect corners at a coarse scale, Gaussian-smooth each
corner-to-corner piece with its end points pinned (this turns the whole-pixel staircase of the
MNIST strokes into a smooth curve), then fit piecewise cubics by least squares with chord-length
parameters and tangent-distance refinement (:mod:`driftsketch.data.schneider`). Too many segments:
refit with a looser tolerance. Too few: split the longest segment exactly at t = 0.5 (de Casteljau).
Every step runs on the whole batch of drawings at once (:mod:`driftsketch.data.strokes`), so a
batch of a few hundred drawings costs a few hundred numpy calls, not a few hundred per drawing.

    from driftsketch.data.bezier_fit import FitConfig, fit_drawing, fit_drawings
    sketch, stats = fit_drawing([np.array([[0, 0], [10, 5], [20, 0]])], FitConfig())
    batch = fit_drawings(list_of_drawings, FitConfig())   # batch.sketches, batch.errors, ...
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from driftsketch.config import Config, NonNegativeFloat, NonNegativeInt, PositiveFloat
from driftsketch.data.ragged import local_index, ragged_arange, starts_of
from driftsketch.data.schneider import fit_pieces
from driftsketch.data.strokes import Strokes, cut_runs, find_corners, resample, smooth_pinned, staircase_steps
from driftsketch.errors import DriftSketchError
from driftsketch.sketch import CANVAS_SIZE, NUM_SEGMENTS, from_canvas, to_canvas


class FitConfig(Config):
    """Fitting settings (defaults: ``fit`` in configs/data.yaml). Units: canvas px."""

    defaults_from: ClassVar[str] = "data.yaml:fit"
    margin: PositiveFloat  # drawings span at most [-margin, margin]
    resample_px: PositiveFloat  # arc-length spacing of the resampled polyline
    staircase_resample: NonNegativeFloat  # spacing as a multiple of the grid step for staircase strokes (0: resample_px)
    smooth_px: NonNegativeFloat  # Gaussian sigma for ordinary (float) strokes
    staircase_smooth: NonNegativeFloat  # sigma as a multiple of the grid step for staircase strokes
    tolerance_px: PositiveFloat  # first-try max distance between smoothed polyline and curve
    tolerance_growth: PositiveFloat  # refit factor when a drawing needs more than 32 segments
    corner_angle_deg: float  # turning angle (over the corner window) that makes a corner
    corner_window_px: PositiveFloat  # half-width of the window the turning angle is measured over
    dot_length_px: PositiveFloat  # a single-point stroke (a dot) becomes a segment this long
    max_refits: NonNegativeInt


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


def sub_curves(ctrl: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The parts ``[a, b]`` of cubics ``ctrl (K, 4, 2)`` as cubics, by de Casteljau blossoming.

    Exact where it matters: ``a = 0`` starts at ``ctrl[:, 0]``, ``b = 1`` ends at ``ctrl[:, 3]``,
    and two parts that meet at ``t`` share that end point bit for bit.
    """
    ctrl = np.asarray(ctrl, dtype=np.float64)

    def blossom(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        p = ctrl
        for t in (x, y, z):
            t = t[:, None, None]
            p = (1 - t) * p[:, :-1] + t * p[:, 1:]
        return p[:, 0]

    return np.stack([blossom(a, a, a), blossom(a, a, b), blossom(a, b, b), blossom(b, b, b)], axis=1)


def split_bezier(ctrl: np.ndarray, t: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Split one cubic ``(4, 2)`` at ``t``; both halves trace the same curve."""
    ctrl = np.asarray(ctrl, dtype=np.float64)[None]
    left, right = sub_curves(np.concatenate([ctrl, ctrl]), np.array([0.0, t]), np.array([t, 1.0]))
    return left, right


def segment_lengths(ctrl: np.ndarray) -> np.ndarray:
    """Approximate arc lengths of cubics ``(..., 4, 2)`` (mean of chord and control polygon)."""
    ctrl = np.asarray(ctrl, dtype=np.float64)
    poly = np.linalg.norm(np.diff(ctrl, axis=-2), axis=-1).sum(-1)
    chord = np.linalg.norm(ctrl[..., 3, :] - ctrl[..., 0, :], axis=-1)
    return 0.5 * (poly + chord)


def split_to_count_batch(segs: np.ndarray, owner: np.ndarray, n: int = NUM_SEGMENTS) -> np.ndarray:
    """Segments grouped by ``owner`` (1..n each, in order) -> ``(owners, n, 4, 2)``: per owner, the
    longest segment is split at t = 0.5 until there are ``n`` (first one on ties), order kept.

    Without the loop: splitting the longest piece first means a piece of length ``L / 2**j`` is
    split exactly when it is among the ``n - k`` longest of all candidate pieces, so every
    segment's binary subdivision tree follows from one sort.
    """
    segs = np.asarray(segs, dtype=np.float64)
    owner = np.asarray(owner)
    _, owner = np.unique(owner, return_inverse=True)
    owner = owner.ravel()
    have = np.bincount(owner)
    levels = max(int(np.ceil(np.log2(n))), 1)
    seg = np.repeat(np.arange(len(segs)), levels)
    j = np.tile(np.arange(levels), len(segs))
    length = segment_lengths(segs)[seg] / 2.0**j
    order = np.lexsort((j, seg, -length, owner[seg]))
    mult = 2**j[order]
    total = np.cumsum(mult)
    first = starts_of(np.bincount(owner[seg], minlength=len(have)))
    before = total - mult - np.repeat((total - mult)[first], np.bincount(owner[seg], minlength=len(have)))
    taken = np.empty(len(order), dtype=np.int64)
    taken[order] = np.clip((n - have)[owner[seg[order]]] - before, 0, mult)
    taken = taken.reshape(len(segs), levels)
    # leaves at level j are nodes [taken[j], 2 * taken[j - 1]) (level 0: [taken[0], 1))
    upper = np.concatenate([np.ones((len(segs), 1), dtype=np.int64), 2 * taken], axis=1)
    lower = np.concatenate([taken, np.zeros((len(segs), 1), dtype=np.int64)], axis=1)
    count = (upper - lower).ravel()
    m = ragged_arange(lower.ravel(), count)
    level = np.repeat(np.tile(np.arange(levels + 1), len(segs)), count)
    leaf_seg = np.repeat(np.repeat(np.arange(len(segs)), levels + 1), count)
    a, b = m / 2.0**level, (m + 1) / 2.0**level
    order = np.lexsort((a, leaf_seg))
    out = sub_curves(segs[leaf_seg[order]], a[order], b[order])
    return out.reshape(len(have), n, 4, 2)


def split_to_count(segments: list[np.ndarray], n: int = NUM_SEGMENTS) -> list[np.ndarray]:
    """Split the longest segment at t = 0.5 (exactly, de Casteljau) until there are ``n``; order kept."""
    segs = np.asarray(segments, dtype=np.float64).reshape(-1, 4, 2)
    return list(split_to_count_batch(segs, np.zeros(len(segs), dtype=np.int64), n)[0])


def resample_polyline(points: np.ndarray, spacing: float) -> np.ndarray:
    """Resample a polyline at (nearly) uniform arc-length ``spacing``, keeping both end points."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(int(np.ceil(s[-1] / spacing)), 1) + 1
    si = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(si, s, points[:, 0]), np.interp(si, s, points[:, 1])], axis=1)


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


# --- many drawings at once -----------------------------------------------------------------------

@dataclass
class FitBatch:
    """Result of :func:`fit_drawings`: per drawing a sketch (zeros where it failed) and its stats."""

    sketches: np.ndarray  # (D, 32, 4, 2) float32 in [-1, 1]
    errors: list[str]  # '' where the fit worked, else why not
    chamfer_px: np.ndarray  # (D,) fit error against the original polyline; NaN when not measured
    staircase_px: np.ndarray  # (D,) detected grid step in canvas px (0: not a staircase)
    tolerance_px: np.ndarray  # (D,) tolerance that gave <= 32 segments (inf: one cubic per piece)

    @property
    def ok(self) -> np.ndarray:
        return np.array([not e for e in self.errors], dtype=bool)

    def fail(self, mask: np.ndarray, why: str | list[str]) -> None:
        for i in np.flatnonzero(mask):
            self.errors[i] = why if isinstance(why, str) else why[i]


@dataclass
class Plan:
    """One drawing batch in canvas px, ready to fit: strokes after dedupe plus per-drawing settings."""

    strokes: Strokes  # deduped px strokes of the drawings still alive
    spacing: np.ndarray  # (D,) arc-length resampling spacing, px
    sigma: np.ndarray  # (D,) smoothing sigma, samples
    window: np.ndarray  # (D,) corner window, samples
    tol: np.ndarray  # (D,) first-try tolerance, px


def normalise(st: Strokes, margin: float) -> tuple[Strokes, np.ndarray, np.ndarray]:
    """Centre each drawing's bounding box and scale it (aspect kept) into ``[-margin, margin]``,
    then to canvas px. Returns the px strokes, the scale (units per source unit) and the extent
    (source units; drawings without a positive finite extent cannot be fitted)."""
    lo, hi = st.bounds()
    extent = (hi - lo).max(axis=1)
    good = np.isfinite(extent) & (extent > 0)
    scale = np.where(good, 2.0 * margin / np.where(good, extent, 1.0), np.nan)
    centre = 0.5 * (lo + hi)
    po = st.point_owner
    px = to_canvas((st.pts - centre[po]) * scale[po, None])
    return Strokes(px, st.lengths, st.owner, st.count), scale, extent


def normalise_strokes(strokes: list[np.ndarray], margin: float) -> tuple[list[np.ndarray], float]:
    """One drawing's strokes in ``[-1, 1]`` units (see :func:`normalise`) and its scale."""
    st = Strokes.pack([strokes])
    px, scale, _ = normalise(st, margin)
    if not np.isfinite(scale[0]):
        raise FitError("drawing has no extent (all points equal)")
    unit = from_canvas(np.asarray(px.pts, dtype=np.float64))
    return [unit[s:s + n] for s, n in zip(px.starts, px.lengths)], float(scale[0])


def plan_batch(drawings: list[list[np.ndarray]], cfg: FitConfig, out: FitBatch) -> tuple[Plan, Strokes]:
    """Checks, normalisation, staircase detection and dedupe; failures are recorded in ``out``.

    Returns the plan and the px strokes before dedupe (what the fit error is measured against).
    """
    st = Strokes.pack(drawings)
    strokes = st.per_drawing()
    out.fail(strokes == 0, "drawing has no finite points")
    px, scale, extent = normalise(st, cfg.margin)
    out.fail((strokes > 0) & ~np.isfinite(scale), "drawing has no extent (all points equal)")
    px = px.take(np.isfinite(scale)[px.owner])
    st = st.take(np.isfinite(scale)[st.owner])
    step_px = staircase_steps(st, extent) * np.nan_to_num(scale) * CANVAS_SIZE / 2
    out.staircase_px[:] = step_px
    dd = px.dedupe()
    per = dd.per_drawing()
    out.fail(per > NUM_SEGMENTS, [f"drawing has {k} strokes, more than {NUM_SEGMENTS}" for k in per])
    dd = dd.take(per[dd.owner] <= NUM_SEGMENTS)
    sigma_px = np.maximum(cfg.smooth_px, cfg.staircase_smooth * step_px)
    # a staircase is smoothed with a sigma of ~20 px: sampling it every 2 px only multiplies the work
    spacing = np.maximum(cfg.resample_px, cfg.staircase_resample * step_px)
    window = np.rint(np.maximum(cfg.corner_window_px, 1.5 * step_px) / spacing).astype(np.int64)
    tol = np.maximum(cfg.tolerance_px, 0.3 * step_px)
    return Plan(dd, spacing, sigma_px / spacing, window, tol), px


@dataclass
class Pieces:
    """Smoothed corner-to-corner pieces of the line strokes, in drawing order."""

    pts: np.ndarray
    lengths: np.ndarray
    stroke: np.ndarray  # index (into the plan's strokes) of the stroke each piece belongs to
    rank: np.ndarray  # position of the piece inside its stroke


def make_pieces(plan: Plan, lines: np.ndarray, cfg: FitConfig, corners: bool) -> Pieces:
    """Resample the line strokes, cut them at corners (when ``corners``), smooth each piece."""
    st = plan.strokes.take(lines)
    stroke_index = np.flatnonzero(lines)
    r = resample(st, plan.spacing[st.owner])
    starts, sigma = r.starts, plan.sigma[r.owner]
    whole = smooth_pinned(r.pts, starts, r.lengths, sigma)
    if not corners:
        return Pieces(whole, r.lengths, stroke_index, np.zeros(len(r.lengths), dtype=np.int64))
    cuts = find_corners(whole, starts, r.lengths, plan.window[r.owner], cfg.corner_angle_deg)
    p_starts, p_len, run = cut_runs(starts, r.lengths, cuts)
    pts = r.pts[ragged_arange(p_starts, p_len)]
    pts = smooth_pinned(pts, starts_of(p_len), p_len, sigma[run])
    return Pieces(pts, p_len, stroke_index[run], local_index(np.bincount(run, minlength=len(r.lengths))))


def dot_segments(points: np.ndarray, length: float) -> np.ndarray:
    """A one-point stroke becomes a horizontal straight segment of ``length`` px centred on it."""
    a, b = points - [length / 2, 0.0], points + [length / 2, 0.0]
    return np.stack([a, a + (b - a) / 3, a + 2 * (b - a) / 3, b], axis=1)


def fit_attempt(plan: Plan, pieces: Pieces, dots: np.ndarray, todo: np.ndarray, tol: np.ndarray,
                cfg: FitConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit the pieces and dots of the drawings in ``todo``; cubics with their stroke and order key."""
    owner = plan.strokes.owner
    use = todo[owner[pieces.stroke]]
    p_starts = starts_of(pieces.lengths)[use]
    cubics, piece, frac = fit_pieces(pieces.pts, p_starts, pieces.lengths[use],
                                     tol[owner[pieces.stroke[use]]])
    stroke = pieces.stroke[use][piece]
    key = pieces.rank[use][piece] + frac
    dot = np.flatnonzero(dots & todo[owner])
    dot_pts = plan.strokes.pts[plan.strokes.starts[dot]]
    return (np.concatenate([cubics, dot_segments(dot_pts, cfg.dot_length_px)]),
            np.concatenate([stroke, dot]), np.concatenate([key, np.zeros(len(dot))]))


def fit_plan(plan: Plan, cfg: FitConfig, out: FitBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cubics of every live drawing, refit with a looser tolerance while a drawing has more than 32.

    Returns cubics, their stroke index (in the plan) and order key, sorted in drawing order.
    """
    st = plan.strokes
    lines, dots = st.lengths >= 2, st.lengths == 1
    pending = np.zeros(st.count, dtype=bool)
    pending[st.owner] = True
    tol = plan.tol.copy()
    pieces = make_pieces(plan, lines, cfg, corners=cfg.max_refits // 2 > 0)
    kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for attempt in range(cfg.max_refits + 2):
        last_resort = attempt == cfg.max_refits + 1
        if attempt == cfg.max_refits // 2 and attempt > 0:
            pieces = make_pieces(plan, lines, cfg, corners=False)  # corners alone may need > 32 segments
        if last_resort:
            tol[pending] = np.inf  # one cubic per stroke (always <= 32 strokes here)
        cubics, stroke, key = fit_attempt(plan, pieces, dots, pending, tol, cfg)
        count = np.bincount(st.owner[stroke], minlength=st.count)
        done = pending & ((count <= NUM_SEGMENTS) | last_resort)
        out.tolerance_px[done] = tol[done]
        keep = done[st.owner[stroke]]
        kept.append((cubics[keep], stroke[keep], key[keep]))
        pending &= ~done
        if not pending.any():
            break
        tol[pending] *= cfg.tolerance_growth
    cubics, stroke, key = (np.concatenate(x) for x in zip(*kept))
    order = np.lexsort((key, stroke))
    return cubics[order], stroke[order], key[order]


def fit_drawings(drawings: list[list[np.ndarray]], cfg: FitConfig | None = None,
                 measure: np.ndarray | None = None) -> FitBatch:
    """Source-unit drawings -> :class:`FitBatch` of ``(32, 4, 2)`` float32 sketches in [-1, 1].

    ``measure`` (bool per drawing, default all) says whose fit error (``chamfer_px``, against the
    original polyline on the 512 canvas) to compute; it costs about as much as the fit itself.
    """
    cfg = cfg or FitConfig()
    count = len(drawings)
    out = FitBatch(np.zeros((count, NUM_SEGMENTS, 4, 2), np.float32), [""] * count,
                   np.full(count, np.nan), np.zeros(count), np.full(count, np.nan))
    plan, px = plan_batch(drawings, cfg, out)
    if not len(plan.strokes.lengths):
        return out
    cubics, stroke, _ = fit_plan(plan, cfg, out)
    owner = plan.strokes.owner[stroke]
    segs = split_to_count_batch(cubics, owner)
    alive = np.unique(owner)
    out.sketches[alive] = np.clip(from_canvas(np.asarray(segs, dtype=np.float64)), -1.0, 1.0).astype(np.float32)
    want = np.ones(count, dtype=bool) if measure is None else np.asarray(measure, dtype=bool)
    bounds = np.r_[0, np.cumsum(np.bincount(px.owner, minlength=count))]
    for i, d in enumerate(alive):
        if want[d]:
            strokes = [px.pts[s:s + n] for s, n in zip(px.starts[bounds[d]:bounds[d + 1]],
                                                       px.lengths[bounds[d]:bounds[d + 1]])]
            out.chamfer_px[d] = chamfer_px(strokes, segs[i])
    return out


# --- one drawing ---------------------------------------------------------------------------------

def fit_drawing(strokes: list[np.ndarray], cfg: FitConfig | None = None,
                with_error: bool = True) -> tuple[np.ndarray, dict]:
    """Source-unit strokes -> ``(32, 4, 2)`` float32 sketch in [-1, 1] and stats.

    Stats: ``chamfer_px`` (fit error against the original polyline, 512 canvas; NaN when not
    computed), ``staircase_px`` (grid step detected, canvas px) and ``tolerance_px``.
    """
    batch = fit_drawings([strokes], cfg, np.array([with_error]))
    if batch.errors[0]:
        raise FitError(batch.errors[0])
    return batch.sketches[0], {"chamfer_px": float(batch.chamfer_px[0]),
                               "staircase_px": float(batch.staircase_px[0]),
                               "tolerance_px": float(batch.tolerance_px[0])}


def fit_cubics(d: np.ndarray, tol: float, t1: np.ndarray | None = None,
               t2: np.ndarray | None = None) -> list[np.ndarray]:
    """Schneider's fit of one ``(n, 2)`` polyline: list of ``(4, 2)`` cubics within ``tol``."""
    d = np.asarray(d, dtype=np.float64)
    tangents = (None, None) if t1 is None or t2 is None else (np.asarray(t1)[None], np.asarray(t2)[None])
    cubics, _, _ = fit_pieces(d, np.array([0]), np.array([len(d)]), np.array([tol]), *tangents)
    return list(cubics)


def staircase_step(strokes: list[np.ndarray], max_fraction: float = 0.15) -> float:
    """Grid step of one whole-pixel staircase drawing (source units), or 0.0 (see :func:`staircase_steps`)."""
    st = Strokes.pack([strokes])
    lo, hi = st.bounds()
    return float(staircase_steps(st, (hi - lo).max(axis=1), max_fraction)[0])
