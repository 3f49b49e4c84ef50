"""benchmarks/reward_ceiling.py: the within-class ranking it fits must order pairs by what its inputs carry."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import reward_ceiling as rc  # noqa: E402


def pairs_of(n: int, features: int, rng: np.random.Generator):
    labels = rng.integers(0, 3, n)
    x = rng.normal(size=(n, features)) + labels[:, None] * 5.0  # class means the ranker must ignore
    return x, labels


def test_within_class_removes_each_class_mean_and_keeps_the_rest():
    v = np.array([1.0, 3.0, 10.0, 14.0])
    out = rc.within_class(v, np.array([0, 0, 1, 1]))
    assert np.allclose(out, [-1.0, 1.0, -2.0, 2.0])


def test_ridge_ranker_orders_pairs_by_a_score_its_inputs_carry():
    rng = np.random.default_rng(0)
    x, y = pairs_of(600, 20, rng)
    direction = rng.normal(size=20)
    w, scale = rc.ridge_ranker(x, x @ direction + 100.0 * y, y)  # a class offset pairs never compare
    xa, _ = pairs_of(400, 20, rng)
    xb = xa + rng.normal(size=xa.shape)
    assert rc.agreement(xa / scale @ w, xb / scale @ w, xa @ direction, xb @ direction) > 0.95


def test_ridge_ranker_is_at_chance_on_a_score_its_inputs_do_not_carry():
    rng = np.random.default_rng(1)
    x, y = pairs_of(600, 20, rng)
    w, scale = rc.ridge_ranker(x, rng.normal(size=600), y)
    xa, _ = pairs_of(2000, 20, rng)
    xb = xa + rng.normal(size=xa.shape)
    assert 0.4 < rc.agreement(xa / scale @ w, xb / scale @ w, rng.normal(size=2000), rng.normal(size=2000)) < 0.6


def test_agreement_skips_pairs_without_a_clear_choice():
    assert rc.agreement(np.array([1.0, 0.0, 5.0]), np.array([0.0, 1.0, 0.0]),
                        np.array([2.0, 1.0, 3.0]), np.array([1.0, 1.0, 1.0])) == 1.0
