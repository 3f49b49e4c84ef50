"""Schneider's recursive least-squares cubic fit, run on many polylines ("pieces") at once.

Each recursion level handles every open piece of the batch with a few numpy calls on the
concatenated points (see :mod:`driftsketch.data.ragged`): chord-length parameters, the
least-squares cubic with fixed end tangents (Schneider, Graphics Gems 1990), up to six
tangent-distance Gauss-Newton refinements (Wang et al. 2006) and, where the error is still above
the tolerance, a split at the worst interior point with a shared tangent there. The math is the
one-piece-at-a-time algorithm's; only the bookkeeping is batched. Points are kept as separate x
and y arrays and cubics in power form per point, which is what makes the per-point arithmetic cheap.

    cubics, piece, frac = fit_pieces(points, starts, lengths, tol)   # ordered by (piece, frac)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from driftsketch.data.ragged import (
    local_index,
    ragged_arange,
    run_ids,
    seg_cummax_unit,
    seg_cumsum,
    seg_first_argmax,
    seg_sum,
    starts_of,
)

MAX_DEPTH = 12  # deeper than this: one straight-ish cubic (as in Schneider's code)
REFINE_STEPS = 6


def unit_rows(v: np.ndarray) -> np.ndarray:
    """Rows of ``v (n, 2)`` scaled to length 1; ``[1, 0]`` where a row has (almost) no length."""
    norm = np.linalg.norm(v, axis=1)
    safe = norm > 1e-12
    out = np.tile([1.0, 0.0], (len(v), 1))
    out[safe] = v[safe] / norm[safe, None]
    return out


def end_tangents(d: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit tangents at both ends of each run (second-order one-sided differences from 3 points)."""
    last = starts + lengths - 1
    t1 = np.where((lengths < 3)[:, None], d[last] - d[starts],
                  -3 * d[starts] + 4 * d[np.minimum(starts + 1, last)] - d[np.minimum(starts + 2, last)])
    t2 = np.where((lengths < 3)[:, None], d[starts] - d[last],
                  -3 * d[last] + 4 * d[np.maximum(last - 1, starts)] - d[np.maximum(last - 2, starts)])
    return unit_rows(t1), unit_rows(t2)


class PerPoint:
    """Each point's cubic in power form, ``B(u) = c0 + c1 u + c2 u^2 + c3 u^3``, for x and y."""

    def __init__(self, bez: np.ndarray, ids: np.ndarray):
        p0, p1, p2, p3 = bez[:, 0].T, bez[:, 1].T, bez[:, 2].T, bez[:, 3].T  # (2, P) each
        coef = np.concatenate([p0, 3 * (p1 - p0), 3 * (p0 - 2 * p1 + p2), p3 - p0 + 3 * (p1 - p2)])  # (8, P)
        per_point = np.take(coef, ids, axis=1)  # rows x0, y0, x1, y1, ...
        self.cx, self.cy = per_point[0::2], per_point[1::2]  # (4, N) each

    @staticmethod
    def _value(c: np.ndarray, u: np.ndarray) -> np.ndarray:
        return ((c[3] * u + c[2]) * u + c[1]) * u + c[0]

    def at(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._value(self.cx, u), self._value(self.cy, u)

    def first(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return tuple((3 * c[3] * u + 2 * c[2]) * u + c[1] for c in (self.cx, self.cy))

    def second(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return tuple(6 * c[3] * u + 2 * c[2] for c in (self.cx, self.cy))


@dataclass
class Level:
    """The open pieces of one recursion level: points (x, y) back to back plus per-piece fields."""

    x: np.ndarray  # (N,)
    y: np.ndarray  # (N,)
    lengths: np.ndarray  # (P,)
    t1: np.ndarray  # (P, 2) unit tangent leaving the first point
    t2: np.ndarray  # (P, 2) unit tangent leaving the last point backwards
    tol: np.ndarray  # (P,) max allowed distance
    depth: np.ndarray  # (P,)
    piece: np.ndarray  # (P,) index of the top-level piece this one came from
    frac: np.ndarray  # (P,) where it starts inside that piece, in [0, 1)
    starts: np.ndarray = field(init=False)
    last: np.ndarray = field(init=False)
    ids: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.starts = starts_of(self.lengths)
        self.last = self.starts + self.lengths - 1
        self.ids = run_ids(self.lengths)

    def take(self, keep: np.ndarray) -> "Level":
        """The pieces selected by a boolean mask, with their points."""
        at = ragged_arange(self.starts[keep], self.lengths[keep])
        return Level(self.x[at], self.y[at], self.lengths[keep], self.t1[keep], self.t2[keep],
                     self.tol[keep], self.depth[keep], self.piece[keep], self.frac[keep])

    def ends(self) -> tuple[np.ndarray, np.ndarray]:
        """First and last point of each piece, ``(P, 2)`` each."""
        return (np.stack([self.x[self.starts], self.y[self.starts]], 1),
                np.stack([self.x[self.last], self.y[self.last]], 1))

    def errors(self, bez: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Distance of every point to its piece's cubic at its parameter."""
        qx, qy = PerPoint(bez, self.ids).at(u)
        return np.sqrt((qx - self.x) ** 2 + (qy - self.y) ** 2)


@dataclass
class Fit:
    """Cubics of a level's pieces with per-point parameters and errors."""

    bez: np.ndarray  # (P, 4, 2)
    u: np.ndarray  # (N,)
    err: np.ndarray  # (N,) distance of each point to the curve at its parameter
    emax: np.ndarray  # (P,)

    def take(self, lv: Level, keep: np.ndarray) -> "Fit":
        on = keep[lv.ids]
        return Fit(self.bez[keep], self.u[on], self.err[on], self.emax[keep])


def chord_params(lv: Level) -> np.ndarray:
    """Cumulative chord length per piece scaled to [0, 1] (uniform where a piece has no length)."""
    step = np.zeros(len(lv.x))
    step[1:] = np.sqrt(np.diff(lv.x) ** 2 + np.diff(lv.y) ** 2)
    step[lv.starts] = 0.0
    s = seg_cumsum(step, lv.starts, lv.lengths)
    total = s[lv.last][lv.ids]
    flat = total <= 0
    u = s / np.where(flat, 1.0, total)
    if flat.any():
        u[flat] = (local_index(lv.lengths) / np.maximum(lv.lengths - 1, 1)[lv.ids])[flat]
    return u


def least_squares_cubics(lv: Level, u: np.ndarray) -> np.ndarray:
    """Least-squares cubic through each piece's end points with its fixed end tangent directions."""
    ids, count = lv.ids, len(lv.lengths)
    p0, p3 = lv.ends()
    mu = 1 - u
    b0, b1, b2, b3 = mu**3, 3 * u * mu**2, 3 * u**2 * mu, u**3
    s01, s23 = b0 + b1, b2 + b3
    tmp_x = lv.x - (s01 * p0[ids, 0] + s23 * p3[ids, 0])
    tmp_y = lv.y - (s01 * p0[ids, 1] + s23 * p3[ids, 1])
    t1, t2 = lv.t1, lv.t2
    c00 = seg_sum(b1 * b1, ids, count) * (t1 * t1).sum(1)
    c01 = seg_sum(b1 * b2, ids, count) * (t1 * t2).sum(1)
    c11 = seg_sum(b2 * b2, ids, count) * (t2 * t2).sum(1)
    x0 = t1[:, 0] * seg_sum(b1 * tmp_x, ids, count) + t1[:, 1] * seg_sum(b1 * tmp_y, ids, count)
    x1 = t2[:, 0] * seg_sum(b2 * tmp_x, ids, count) + t2[:, 1] * seg_sum(b2 * tmp_y, ids, count)
    seg_len = np.linalg.norm(p3 - p0, axis=1)
    det = c00 * c11 - c01 * c01
    solvable = np.abs(det) > 1e-12
    safe = np.where(solvable, det, 1.0)
    al, ar = (x0 * c11 - c01 * x1) / safe, (c00 * x1 - c01 * x0) / safe
    eps = 1e-6 * np.maximum(seg_len, 1e-9)
    good = solvable & (al > eps) & (ar > eps)
    al, ar = np.where(good, al, seg_len / 3.0), np.where(good, ar, seg_len / 3.0)  # Wu/Barsky fallback
    return np.stack([p0, p0 + al[:, None] * t1, p3 + ar[:, None] * t2, p3], axis=1)


def reparametrise(lv: Level, curve: PerPoint, u: np.ndarray) -> np.ndarray:
    """One Newton-Raphson step per point towards its closest curve parameter (kept increasing)."""
    qx, qy = curve.at(u)
    q1x, q1y = curve.first(u)
    q2x, q2y = curve.second(u)
    dx, dy = qx - lv.x, qy - lv.y
    num = dx * q1x + dy * q1y
    den = q1x * q1x + q1y * q1y + (dx * q2x + dy * q2y)
    step = np.where(np.abs(den) > 1e-12, num / np.where(den == 0, 1, den), 0.0)
    out = np.clip(u - step, 0.0, 1.0)
    out[lv.starts], out[lv.last] = 0.0, 1.0
    return seg_cummax_unit(out, lv.ids)


def solve_2x2_min_norm(a: np.ndarray, b: np.ndarray, c: np.ndarray, r0: np.ndarray, r1: np.ndarray):
    """Minimum-norm least-squares solution of ``[[a, b], [b, c]] x = [r0, r1]`` per row, as
    ``np.linalg.lstsq(rcond=None)`` gives it for a symmetric positive semi-definite matrix."""
    half_tr, half_gap = 0.5 * (a + c), np.hypot(0.5 * (a - c), b)
    big, small = half_tr + half_gap, half_tr - half_gap
    full = np.abs(small) > 2 * np.finfo(float).eps * np.abs(big)
    det = np.where(full, a * c - b * b, 1.0)
    x0, x1 = (r0 * c - b * r1) / det, (a * r1 - b * r0) / det
    # rank one (or zero): project onto the eigenvector of the large eigenvalue
    va, vb = np.where(a >= c, big - c, b), np.where(a >= c, b, big - a)
    vn = np.hypot(va, vb)
    zero = vn <= 0
    va = np.where(zero, (a >= c) * 1.0, va / np.where(zero, 1.0, vn))
    vb = np.where(zero, (a < c) * 1.0, vb / np.where(zero, 1.0, vn))
    proj = np.where(big > 0, (va * r0 + vb * r1) / np.where(big > 0, big, 1.0), 0.0)
    return np.where(full, x0, proj * va), np.where(full, x1, proj * vb)


def refine(lv: Level, fit: Fit) -> tuple[Fit, np.ndarray]:
    """One Gauss-Newton step on the tangent lengths with point-to-tangent-line distances.

    Returns the new fit and, per piece, whether both tangent lengths stayed positive.
    """
    ids, count, bez = lv.ids, len(lv.lengths), fit.bez
    curve = PerPoint(bez, ids)
    u = reparametrise(lv, curve, reparametrise(lv, curve, fit.u))
    qx, qy = curve.at(u)
    q1x, q1y = curve.first(u)
    norm = np.sqrt(q1x * q1x + q1y * q1y) + 1e-12
    nx, ny = -q1y / norm, q1x / norm
    r = (qx - lv.x) * nx + (qy - lv.y) * ny
    w1, w2 = 3 * u * (1 - u) ** 2, 3 * u**2 * (1 - u)
    j1 = w1 * (nx * lv.t1[ids, 0] + ny * lv.t1[ids, 1])
    j2 = w2 * (nx * lv.t2[ids, 0] + ny * lv.t2[ids, 1])
    s0, s1 = solve_2x2_min_norm(*(seg_sum(v, ids, count) for v in (j1 * j1, j1 * j2, j2 * j2)),
                                -seg_sum(j1 * r, ids, count), -seg_sum(j2 * r, ids, count))
    al = ((bez[:, 1] - bez[:, 0]) * lv.t1).sum(1) + s0
    ar = ((bez[:, 2] - bez[:, 3]) * lv.t2).sum(1) + s1
    new = np.stack([bez[:, 0], bez[:, 0] + al[:, None] * lv.t1, bez[:, 3] + ar[:, None] * lv.t2, bez[:, 3]], 1)
    err = lv.errors(new, u)
    return Fit(new, u, err, np.maximum.reduceat(err, lv.starts)), (al > 0) & (ar > 0)


def fit_level(lv: Level) -> Fit:
    """Least-squares cubic per piece, refined (up to 6 steps) while above tolerance and improving."""
    u = chord_params(lv)
    bez = least_squares_cubics(lv, u)
    err = lv.errors(bez, u)
    fit = Fit(bez, u, err, np.maximum.reduceat(err, lv.starts))
    active = fit.emax > lv.tol
    for _ in range(REFINE_STEPS):
        if not active.any():
            break
        sub = lv.take(active)
        new, ok = refine(sub, fit.take(lv, active))
        rows = np.flatnonzero(active)
        accept = ok & np.isfinite(new.emax) & (new.emax < fit.emax[rows])
        fit.bez[rows[accept]], fit.emax[rows[accept]] = new.bez[accept], new.emax[accept]
        moved = accept[sub.ids]
        pts = np.flatnonzero(active[lv.ids])[moved]
        fit.u[pts], fit.err[pts] = new.u[moved], new.err[moved]
        active[rows] = accept & (new.emax > sub.tol)
    return fit


def straight_cubics(lv: Level) -> np.ndarray:
    """Cubic from first to last point with the end tangents and a third of the chord as length."""
    p0, p3 = lv.ends()
    dist = (np.linalg.norm(p3 - p0, axis=1) / 3.0)[:, None]
    return np.stack([p0, p0 + dist * lv.t1, p3 + dist * lv.t2, p3], axis=1)


def split_level(lv: Level, fit: Fit) -> Level:
    """Children of every piece at its worst interior point, with a shared tangent there."""
    starts, n = lv.starts, lv.lengths
    inner = fit.err.copy()
    inner[starts], inner[lv.last] = -np.inf, -np.inf
    split = np.clip(seg_first_argmax(inner, lv.ids, starts), 1, n - 2)
    k = np.maximum(1, np.minimum(np.minimum(3, split), n - 1 - split))
    a, b = starts + split - k, starts + split + k
    tc = unit_rows(np.stack([lv.x[a] - lv.x[b], lv.y[a] - lv.y[b]], 1))
    child_starts = np.stack([starts, starts + split], 1).ravel()
    child_len = np.stack([split + 1, n - split], 1).ravel()
    at = ragged_arange(child_starts, child_len)

    def pairs(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        return np.stack([left, right], 1).reshape(-1, *left.shape[1:])

    return Level(lv.x[at], lv.y[at], child_len, pairs(lv.t1, -tc), pairs(tc, lv.t2), np.repeat(lv.tol, 2),
                 np.repeat(lv.depth + 1, 2), np.repeat(lv.piece, 2), pairs(lv.frac, lv.frac + 0.5 ** (lv.depth + 1)))


def fit_pieces(d: np.ndarray, starts: np.ndarray, lengths: np.ndarray, tol: np.ndarray,
               t1: np.ndarray | None = None, t2: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit every run of ``d (N, 2)`` (each >= 2 points) with cubics within ``tol`` (per run, px).

    Returns ``cubics (K, 4, 2)``, ``piece (K,)`` (the run each came from) and ``frac (K,)`` (its
    start inside that run, in [0, 1)), sorted so that each run's cubics follow each other in order.
    """
    starts, lengths = np.asarray(starts, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
    if t1 is None or t2 is None:
        t1, t2 = end_tangents(d, starts, lengths)
    count = len(lengths)
    at = ragged_arange(starts, lengths)
    lv = Level(np.ascontiguousarray(d[at, 0]), np.ascontiguousarray(d[at, 1]), lengths, t1, t2,
               np.broadcast_to(tol, (count,)).astype(float), np.zeros(count, dtype=np.int64),
               np.arange(count), np.zeros(count))
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    while len(lv.lengths):
        straight = (lv.lengths == 2) | (lv.depth > MAX_DEPTH)
        if straight.any():
            sel = lv.take(straight)
            out.append((straight_cubics(sel), sel.piece, sel.frac))
            lv = lv.take(~straight)
            if not len(lv.lengths):
                break
        fit = fit_level(lv)
        done = (fit.emax <= lv.tol) | (lv.lengths < 4)
        out.append((fit.bez[done], lv.piece[done], lv.frac[done]))
        if done.all():
            break
        lv, fit = lv.take(~done), fit.take(lv, ~done)
        lv = split_level(lv, fit)
    if not out:  # no pieces at all (a batch of drawings made only of dots)
        return np.zeros((0, 4, 2)), np.zeros(0, dtype=np.int64), np.zeros(0)
    bez, piece, frac = (np.concatenate(x) for x in zip(*out))
    order = np.lexsort((frac, piece))
    return bez[order], piece[order], frac[order]
