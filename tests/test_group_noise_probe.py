"""benchmarks/group_noise_probe.py: the figures it reports for a group must follow the reward's ranking."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import group_noise_probe as gnp  # noqa: E402


def test_a_reward_equal_to_the_score_gets_every_pair_and_the_whole_gain():
    truth = np.random.default_rng(0).normal(size=(50, gnp.GROUP))
    out = gnp.group_figures(truth, truth[None], sd=2.0)
    assert out["acc"] == 1.0
    assert out["gain_sd"] == out["oracle_gain_sd"] > 0
    assert np.isclose(out["group_spread_sd"], truth.std(axis=1).mean() / 2.0, atol=1e-3)


def test_a_reversed_reward_gets_no_pair_and_picks_the_worst():
    truth = np.random.default_rng(1).normal(size=(50, gnp.GROUP))
    out = gnp.group_figures(truth, -truth[None], sd=1.0)
    assert out["acc"] == 0.0
    assert np.isclose(out["gain_sd"], (truth.min(axis=1) - truth.mean(axis=1)).mean(), atol=1e-3)
