"""Pen strokes of many drawings as one ragged batch, and the batched steps before the Bezier fit.

:class:`Strokes` holds every stroke's points back to back with the drawing it belongs to. The
steps (normalise, staircase detection, dedupe, arc-length resampling, pinned Gaussian smoothing,
corner detection) work on the whole batch with a few numpy calls each, so that fitting costs per
drawing what the arithmetic costs, not what Python's per-call overhead costs.

    st = Strokes.pack([[np.array([[0, 0], [10, 5]])], [np.array([[1, 1], [2, 9], [4, 4]])]])
    lo, hi = st.bounds()
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from driftsketch.data.ragged import local_index, ragged_arange, run_ids, seg_cumsum, starts_of


@dataclass
class Strokes:
    """Strokes back to back: ``pts (N, 2)``, ``lengths (S,)`` (all >= 1), ``owner (S,)`` drawing index
    (non-decreasing) of ``count`` drawings; a drawing may own no stroke."""

    pts: np.ndarray
    lengths: np.ndarray
    owner: np.ndarray
    count: int

    @classmethod
    def pack(cls, drawings: list[list[np.ndarray]]) -> "Strokes":
        """Non-empty strokes whose points are all finite, as float64 ``(n, 2)`` arrays."""
        arrays, owner = [], []
        for i, strokes in enumerate(drawings):
            for s in strokes:
                a = np.asarray(s, dtype=np.float64).reshape(-1, 2)
                if len(a):
                    arrays.append(a)
                    owner.append(i)
        if not arrays:
            return cls(np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros(0, np.int64), len(drawings))
        st = cls(np.concatenate(arrays), np.array([len(a) for a in arrays]), np.array(owner), len(drawings))
        bad = ~np.isfinite(st.pts).all(axis=1)
        return st.take(np.add.reduceat(bad, st.starts) == 0) if bad.any() else st

    @property
    def starts(self) -> np.ndarray:
        return starts_of(self.lengths)

    @property
    def point_owner(self) -> np.ndarray:
        return np.repeat(self.owner, self.lengths)

    def take(self, keep: np.ndarray) -> "Strokes":
        """The strokes selected by a boolean mask (drawing numbering unchanged)."""
        pts = self.pts[ragged_arange(self.starts[keep], self.lengths[keep])]
        return Strokes(pts, self.lengths[keep], self.owner[keep], self.count)

    def per_drawing(self) -> np.ndarray:
        """Number of strokes of each drawing."""
        return np.bincount(self.owner, minlength=self.count)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-drawing min and max point ``(count, 2)``; NaN for drawings without strokes."""
        lo, hi = np.full((self.count, 2), np.nan), np.full((self.count, 2), np.nan)
        if len(self.lengths):
            first = np.flatnonzero(np.r_[True, self.owner[1:] != self.owner[:-1]])
            at = self.starts[first]
            lo[self.owner[first]] = np.minimum.reduceat(self.pts, at, axis=0)
            hi[self.owner[first]] = np.maximum.reduceat(self.pts, at, axis=0)
        return lo, hi

    def dedupe(self) -> "Strokes":
        """Drop consecutive duplicate points inside each stroke."""
        keep = np.ones(len(self.pts), dtype=bool)
        keep[1:] = np.any(np.diff(self.pts, axis=0) != 0, axis=1)
        keep[self.starts] = True
        lengths = np.bincount(run_ids(self.lengths)[keep], minlength=len(self.lengths))
        return Strokes(self.pts[keep], lengths, self.owner, self.count)


def staircase_steps(st: Strokes, extent: np.ndarray, max_fraction: float = 0.15) -> np.ndarray:
    """Grid step of each whole-pixel staircase drawing (source units), 0.0 where it is not one.

    A staircase moves only by (+-q, 0), (0, +-q) or (+-q, +-q) for one small step size q (within
    25%, at least 80% of the moves, q at most ``max_fraction`` of the drawing's extent). A
    simplified polyline such as a 4-point square has equal axis-aligned moves too, but long ones.
    """
    q = np.zeros(st.count)
    if len(st.pts) < 2:
        return q
    d = np.abs(np.diff(st.pts, axis=0))
    same = np.ones(len(d), dtype=bool)
    same[st.starts[1:] - 1] = False  # the jump from one stroke to the next
    owner = st.point_owner[1:]
    keep = same & np.any(d > 0, axis=1)
    d, owner = d[keep], owner[keep]
    moves = np.bincount(owner, minlength=st.count)
    big = d.max(axis=1)
    order = np.lexsort((big, owner))
    first = starts_of(moves)
    has = moves >= 8
    lo, hi = first + (moves - 1) // 2, first + moves // 2
    q[has] = 0.5 * (big[order][lo[has]] + big[order][hi[has]])  # the median, as np.median takes it
    q[(q <= 0) | (q > max_fraction * extent)] = 0.0
    qo = q[owner]
    ok = np.all((d == 0) | ((d >= 0.75 * qo[:, None]) & (d <= 1.25 * qo[:, None])), axis=1)
    share = np.bincount(owner, weights=ok, minlength=st.count) / np.maximum(moves, 1)
    q[share < 0.8] = 0.0
    return q


def resample(st: Strokes, spacing: float | np.ndarray) -> Strokes:
    """Each stroke (>= 2 distinct points) resampled at uniform arc-length ``spacing`` (one value, or
    one per stroke), end points kept."""
    if not len(st.pts):  # no line strokes at all (a drawing of dots only): nothing to resample
        return st
    starts = st.starts
    step = np.zeros(len(st.pts))
    step[1:] = np.linalg.norm(np.diff(st.pts, axis=0), axis=1)
    step[starts] = 0.0
    s = seg_cumsum(step, starts, st.lengths)
    total = s[starts + st.lengths - 1]
    n = np.maximum(np.ceil(total / spacing).astype(np.int64), 1) + 1
    ids = run_ids(n)
    si = local_index(n) * (total / (n - 1))[ids]  # np.linspace(0, total, n) ...
    si[starts_of(n) + n - 1] = total  # ... which ends exactly at total
    offset = np.cumsum(total + 1.0) - (total + 1.0)  # keeps strokes apart on one axis
    x_src = s + np.repeat(offset, st.lengths)
    x_new = si + offset[ids]
    pts = np.stack([np.interp(x_new, x_src, st.pts[:, k]) for k in range(2)], axis=1)
    return Strokes(pts, n, st.owner, st.count)


def smooth_pinned(pts: np.ndarray, starts: np.ndarray, lengths: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Gaussian-smooth every run (sigma in samples, per run) with its end points held fixed.

    Padding by odd reflection about each end point keeps the end point and its direction. Runs
    that share a kernel (same sigma and radius) are convolved together in one call.
    """
    out = pts.copy()
    radius = np.minimum(np.ceil(3 * sigma), lengths - 1).astype(np.int64)
    todo = np.flatnonzero((sigma >= 0.3) & (lengths >= 3))
    if not len(todo):
        return out
    order = todo[np.lexsort((radius[todo], sigma[todo]))]
    key_s, key_r = sigma[order], radius[order]
    cut = np.flatnonzero(np.r_[True, (key_s[1:] != key_s[:-1]) | (key_r[1:] != key_r[:-1]), True])
    for lo, hi in zip(cut[:-1], cut[1:]):
        members = np.sort(order[lo:hi])
        _convolve_group(pts, out, starts[members], lengths[members], float(key_s[lo]), int(key_r[lo]))
    ends = np.concatenate([starts[todo], starts[todo] + lengths[todo] - 1])
    out[ends] = pts[ends]
    return out


def _convolve_group(pts: np.ndarray, out: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                    sigma: float, r: int) -> None:
    """Runs padded by odd reflection, laid back to back, convolved with one kernel (in place)."""
    kernel = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded_len = lengths + 2 * r
    q = local_index(padded_len) - r  # position in the run, -r .. n - 1 + r
    n = np.repeat(lengths, padded_len)
    base = np.repeat(starts, padded_len)
    head, tail = q < 0, q > n - 1
    src = base + np.where(head, -q, np.where(tail, 2 * (n - 1) - q, q))
    anchor = base + np.where(head, 0, n - 1)
    padded = np.where((head | tail)[:, None], 2 * pts[anchor] - pts[src], pts[src])
    at = ragged_arange(starts_of(padded_len), lengths)  # 'valid' output index of every run point
    dest = ragged_arange(starts, lengths)
    for k in range(2):
        out[dest, k] = np.convolve(padded[:, k], kernel, mode="valid")[at]


def find_corners(pts: np.ndarray, starts: np.ndarray, lengths: np.ndarray, window: np.ndarray,
                 angle_deg: float) -> list[np.ndarray]:
    """Per run, indices of corners: local maxima of the turning angle between ``window``-sample chords.

    Greedy as in a one-stroke loop: the sharpest candidate first, then every candidate farther
    than ``window`` from those already taken.
    """
    cuts = [np.zeros(0, dtype=np.int64)] * len(lengths)
    ok = (window >= 1) & (lengths >= 2 * window + 1)
    runs = np.flatnonzero(ok)
    if not len(runs):
        return cuts
    count = lengths[runs] - 2 * window[runs]
    w = np.repeat(window[runs], count)
    i = np.repeat(starts[runs], count) + local_index(count) + w
    a, b = pts[i] - pts[i - w], pts[i + w] - pts[i]
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    ang = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    hit = ang >= angle_deg
    if not hit.any():
        return cuts
    run = np.repeat(runs, count)[hit]
    local = (i - np.repeat(starts[runs], count))[hit]
    order = np.lexsort((-ang[hit], run))
    run, local = run[order], local[order]
    bounds = np.flatnonzero(np.r_[True, run[1:] != run[:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        win, taken = int(window[run[lo]]), []
        for j in local[lo:hi].tolist():
            if all(abs(j - c) > win for c in taken):
                taken.append(j)
        cuts[run[lo]] = np.array(sorted(taken), dtype=np.int64)
    return cuts


def cut_runs(starts: np.ndarray, lengths: np.ndarray, cuts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pieces between consecutive cut points (each cut point ends one piece and starts the next).

    Returns piece ``starts``, ``lengths`` and the run each piece belongs to, in run order.
    """
    per_run = np.array([len(c) + 1 for c in cuts], dtype=np.int64)
    inner = np.concatenate([*cuts, np.zeros(0, dtype=np.int64)]).astype(np.int64)
    run = np.repeat(np.arange(len(lengths)), per_run)
    bounds_lo = np.zeros(len(run), dtype=np.int64)
    bounds_hi = lengths[run] - 1
    first = starts_of(per_run)
    is_first = np.zeros(len(run), dtype=bool)
    is_first[first] = True
    is_last = np.zeros(len(run), dtype=bool)
    is_last[first + per_run - 1] = True
    bounds_lo[~is_first] = inner
    bounds_hi[~is_last] = inner
    return starts[run] + bounds_lo, bounds_hi - bounds_lo + 1, run
