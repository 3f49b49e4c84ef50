"""Segmented numpy operations on ragged batches: many variable-length runs stored back to back.

A batch is one flat array plus, per run, ``starts`` (index of its first element) and ``lengths``
(all >= 1). Runs are contiguous and in order, so ``ids`` (the run of every element) is sorted.
These helpers let the Bezier fitter treat thousands of strokes with a few numpy calls each.

    ids = run_ids(lengths)
    totals = seg_sum(values, ids, len(lengths))
"""
from __future__ import annotations

import numpy as np


def starts_of(lengths: np.ndarray) -> np.ndarray:
    """Start index of each run for runs stored back to back."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if len(lengths) else lengths


def run_ids(lengths: np.ndarray) -> np.ndarray:
    """The run index of every element."""
    return np.repeat(np.arange(len(lengths)), lengths)


def ragged_arange(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])`` without a Python loop."""
    starts, lengths = np.asarray(starts, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
    return np.arange(int(lengths.sum())) + np.repeat(starts - starts_of(lengths), lengths)


def local_index(lengths: np.ndarray) -> np.ndarray:
    """Position of every element inside its run (0, 1, ... per run)."""
    return ragged_arange(np.zeros(len(lengths), dtype=np.int64), lengths)


def seg_sum(values: np.ndarray, ids: np.ndarray, count: int) -> np.ndarray:
    """Sum of ``values`` per run."""
    return np.bincount(ids, weights=values, minlength=count)


def seg_cumsum(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at every run."""
    total = np.cumsum(values)
    return total - np.repeat(total[starts] - values[starts], lengths)


def seg_cummax_unit(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Running maximum restarting at every run, for values in ``[0, 1]`` (exact: values are copied)."""
    shifted = values + 2.0 * ids  # every run lies above all earlier ones
    best = np.maximum.accumulate(shifted)
    where = np.maximum.accumulate(np.where(shifted >= best, np.arange(len(values)), 0))
    return values[where]


def seg_first_argmax(values: np.ndarray, ids: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Index inside its run of the first maximum of each run (``np.argmax`` per run)."""
    best = np.maximum.reduceat(values, starts)
    hit = np.where(values == best[ids], np.arange(len(values)), len(values))
    first = np.minimum.reduceat(hit, starts)
    return np.where(first < len(values), first, starts) - starts
