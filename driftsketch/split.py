"""The one train / held-out split of the project, and the seeded hash behind it and behind seeds.

    held = holdout_mask(ids, fraction=0.1, seed=0)   # bool (N,): exactly round(0.1 * N) True
    u = unit_hash("shuffle:0:17")                    # in [0, 1), the same on every machine and run

A key is held out when its hash with ``seed`` is among the ``round(fraction * K)`` lowest of the K
distinct keys: the size is
exact, not binomial (a small store cannot lose most of its training data to an unlucky draw), and the
result depends only on the set of keys, not on their order.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np


def unit_hash(text: str) -> float:
    """Deterministic hash of ``text`` into [0, 1) (SHA-256, first 8 bytes)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2.0**64


def holdout_size(fraction: float, n: int) -> int:
    """``round(fraction * n)`` (halves round up); ValueError unless 0 <= fraction <= 1."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1], got {fraction}")
    return int(fraction * n + 0.5)


def holdout_mask(keys: Sequence[str], fraction: float, seed: int = 0) -> np.ndarray:
    """Bool mask ``(len(keys),)``: True where the key is one of the ``round(fraction * K)`` distinct keys
    whose hash with ``seed`` is lowest (K distinct keys; equal keys land on the same side)."""
    distinct = sorted(set(keys), key=lambda k: (unit_hash(f"{seed}:{k}"), k))
    held = set(distinct[:holdout_size(fraction, len(distinct))])
    return np.array([k in held for k in keys], dtype=bool)
