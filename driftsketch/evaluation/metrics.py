"""Vector metrics on batches of sketches ``(N, 32, 4, 2)`` (numpy; a single ``(32, 4, 2)`` is accepted).

Continuity (the definition used everywhere in this project): segment ``i`` is *connected* when its
end point ``P3_i`` lies within ``eps`` (Euclidean, ``[-1, 1]`` units) of the start point ``P0_j`` of
some *other* segment ``j != i``. A sketch's continuity is the share of its 32 segments that are
connected. A single open chain of 32 segments therefore scores 31/32 (its last end point meets
nothing), a closed chain (last end = first start) 1.0, and 32 scattered dashes 0.0.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from driftsketch.config import Config
from driftsketch.raster import sample_curves

CURVE_SAMPLES = 16  # points per segment when measuring lengths and canvas bounds


class MetricsConfig(Config):
    """Thresholds of the vector metrics (``metrics`` in configs/eval.yaml; [-1, 1] units)."""

    defaults_from: ClassVar[str] = "eval.yaml:metrics"
    connect_eps: float  # end point meets start point: continuity
    loose_connect_eps: float  # the second continuity figure and the pen-stroke count
    degenerate_length: float  # a shorter segment is degenerate
    canvas_tolerance: float  # a curve point beyond [-1 - tol, 1 + tol] is off the canvas


def _batch(beziers: np.ndarray) -> np.ndarray:
    x = np.asarray(beziers, dtype=np.float64)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-2:] != (4, 2):
        raise ValueError(f"expected beziers of shape (N, S, 4, 2), got {x.shape}")
    return x


def connection_matrix(beziers: np.ndarray, eps: float | None = None) -> np.ndarray:
    """``(N, S, S)`` bool: ``[n, i, j]`` is True when segment i's end meets segment j's start (i != j)
    within ``eps`` (default ``metrics.connect_eps``)."""
    eps = MetricsConfig().connect_eps if eps is None else eps
    x = _batch(beziers)
    ends, starts = x[:, :, 3], x[:, :, 0]  # (N, S, 2)
    dist = np.linalg.norm(ends[:, :, None, :] - starts[:, None, :, :], axis=-1)  # (N, S, S)
    conn = dist <= eps
    idx = np.arange(x.shape[1])
    conn[:, idx, idx] = False
    return conn


def continuity_per_sketch(beziers: np.ndarray, eps: float | None = None) -> np.ndarray:
    """Share of each sketch's segments whose end meets another segment's start: ``(N,)`` in [0, 1]."""
    return connection_matrix(beziers, eps).any(axis=2).mean(axis=1)


def continuity(beziers: np.ndarray, eps: float | None = None) -> float:
    """Mean of :func:`continuity_per_sketch` over the batch."""
    return float(continuity_per_sketch(beziers, eps).mean())


def stroke_count_per_sketch(beziers: np.ndarray, eps: float | None = None) -> np.ndarray:
    """Number of pen strokes per sketch: connected components of the segment graph whose edges join
    an end point to a start point within ``eps`` (default ``metrics.loose_connect_eps``). ``(N,)`` int;
    1 for a chain, 32 for confetti."""
    conn = connection_matrix(beziers, MetricsConfig().loose_connect_eps if eps is None else eps)
    adj = conn | conn.transpose(0, 2, 1)
    n, s = adj.shape[:2]
    labels = np.broadcast_to(np.arange(s), (n, s)).copy()
    big = s + 1
    for _ in range(s):  # min-label propagation converges in at most S rounds
        neigh = np.where(adj, labels[:, None, :], big).min(axis=2)
        new = np.minimum(labels, neigh)
        if np.array_equal(new, labels):
            break
        labels = new
    return (np.diff(np.sort(labels, axis=1), axis=1) != 0).sum(axis=1) + 1


def segment_lengths(beziers: np.ndarray) -> np.ndarray:
    """Arc length of every segment (polyline through 16 curve points): ``(N, S)`` in [-1, 1] units."""
    pts = sample_curves(_batch(beziers), CURVE_SAMPLES)
    return np.linalg.norm(np.diff(pts, axis=2), axis=-1).sum(axis=2)


def vector_stats_per_sketch(beziers: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sketch ``(N,)`` arrays: ``ink_length`` (sum of segment lengths, [-1, 1] units),
    ``off_canvas_share`` (segments whose curve leaves [-1, 1]), ``degenerate_share`` (segments shorter
    than ``metrics.degenerate_length``)."""
    cfg = MetricsConfig()
    x = _batch(beziers)
    pts = sample_curves(x, CURVE_SAMPLES)  # (N, S, K, 2)
    lengths = np.linalg.norm(np.diff(pts, axis=2), axis=-1).sum(axis=2)
    off = (np.abs(pts) > 1.0 + cfg.canvas_tolerance).any(axis=(2, 3))
    return {
        "ink_length": lengths.sum(axis=1),
        "off_canvas_share": off.mean(axis=1),
        "degenerate_share": (lengths < cfg.degenerate_length).mean(axis=1),
    }


def vector_stats(beziers: np.ndarray) -> dict[str, float]:
    """Batch means of :func:`vector_stats_per_sketch`, plus continuity at ``metrics.connect_eps`` and
    ``loose_connect_eps`` (0.02 and 0.05) and the mean number of pen strokes."""
    cfg = MetricsConfig()
    per = vector_stats_per_sketch(beziers)
    out = {k: float(v.mean()) for k, v in per.items()}
    out["continuity"] = continuity(beziers, cfg.connect_eps)
    out[f"continuity_eps{cfg.loose_connect_eps:g}"] = continuity(beziers, cfg.loose_connect_eps)
    out["stroke_count"] = float(stroke_count_per_sketch(beziers).mean())
    return out
