"""Shared pieces of the annotator and pair-selection benchmarks (bench_annotators.py, bench_active_selection.py).

- simulated annotators: the noisy labeling judge of bench_dpo_winrate.py ("honest"), a coin-flipper
  ("careless"), one who always picks the left sketch ("left") and one whose taste runs against the
  honest one ("reversed": the judge's choice, noise and ties included, then A and B swapped), through
  labeling.bot.misbehave, the same code the Label Studio bot runs;
- a per-sketch feature cache, so that reward models fit and score thousands of times cheaply;
- the win rate that a reward model buys: the hidden judge's win rate of its best of 8 base sketches
  against another base sketch of the class (bench_dpo_winrate.selection_ceiling), i.e. best-of-8
  sampling with it, the selection that reward amplification distils into the model; computed exactly.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from dpo.reward import fit_bradley_terry, sketch_features
from dpo.selection import Fit
from driftsketch.evaluation.judges import prefer_from_scores
from labeling.bot import misbehave


@dataclass(frozen=True)
class Profile:
    """How a simulated annotator answers (the honest one is bench_dpo_winrate's default annotator)."""

    noise: float = 0.1
    tie_margin: float = 0.02
    tie_rate: float = 0.05
    careless_share: float = 0.0
    always_left_share: float = 0.0
    reversed_share: float = 0.0


PROFILES = {"honest": Profile(), "careless": Profile(careless_share=1.0), "left": Profile(always_left_share=1.0),
            "reversed": Profile(reversed_share=1.0)}


def answers(score_a: np.ndarray, score_b: np.ndarray, left: list[str], profile: Profile,
            rng: np.random.Generator) -> list[str]:
    """Simulated answers "a" | "b" | "tie" to pairs with labeling-judge scores ``score_a``/``score_b``."""
    choices = prefer_from_scores(score_a, score_b, rng, profile.noise, profile.tie_margin, profile.tie_rate)
    return misbehave(choices, left, rng, profile.careless_share, profile.always_left_share, profile.reversed_share)


class FeatureCache:
    """Reward features of sketches, computed once per sketch (keyed by its bytes and class)."""

    def __init__(self, classifier, cfg):
        self.classifier, self.cfg, self.memo = classifier, cfg, {}

    def __call__(self, beziers: np.ndarray, labels: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(beziers, dtype=np.float32).reshape(-1, 32, 4, 2)
        y = np.asarray(labels).reshape(-1)
        keys = [hashlib.sha1(xi.tobytes() + bytes([int(yi)])).digest() for xi, yi in zip(x, y)]
        todo = [i for i, k in enumerate(keys) if k not in self.memo]
        if todo:
            feats = sketch_features(self.classifier, x[todo], y[todo], self.cfg)
            self.memo.update({keys[i]: f for i, f in zip(todo, feats)})
        return np.stack([self.memo[k] for k in keys]) if keys else np.zeros((0, 0))


class LinearReward:
    """``score = features @ weights`` over cached features (the Bradley-Terry reward of dpo/reward.py)."""

    def __init__(self, features: FeatureCache, weights: np.ndarray):
        self.features, self.weights = features, weights

    def score(self, beziers: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return self.features(beziers, labels) @ self.weights


def cached_fitter(features: FeatureCache, l2: float | list[float]) -> Fit:
    """``fit(winners, losers, labels)`` of the Bradley-Terry reward over cached features."""
    def fit(winners, losers, labels):
        return LinearReward(features, fit_bradley_terry(features(winners, labels) - features(losers, labels), l2))
    return fit


def best_of_k_exact(pick_scores: np.ndarray, hidden_scores: np.ndarray, labels: np.ndarray, k: int = 8) -> float:
    """The hidden-judge win rate of the best of ``k`` sketches of a class (by ``pick_scores``) against one
    other sketch of the class, averaged over classes: bench_dpo_winrate.selection_ceiling computed exactly
    instead of by sampling (no Monte-Carlo noise between methods).

    With a class's m sketches ranked by pick score, sketch i (0 = best) is the pick of a random k-subset
    with probability C(m-1-i, k-1) / C(m, k); the opponent is uniform over the m - k others, so a better-
    ranked j is it with probability 1 / (m - k) and a worse-ranked one with (1 - (k-1)/(m-1-i)) / (m - k).
    """
    from math import comb

    rates = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        m = len(idx)
        h = hidden_scores[idx][np.argsort(-pick_scores[idx], kind="stable")]
        beats = (h[:, None] > h[None, :]) + 0.5 * (h[:, None] == h[None, :])  # beats[i, j]: pick i vs opponent j
        total = 0.0
        for i in range(m - k + 1):
            p_pick = comb(m - 1 - i, k - 1) / comb(m, k)
            p_opp = np.full(m, 1.0 / (m - k))
            p_opp[i + 1:] = (1 - (k - 1) / (m - 1 - i)) / (m - k)
            p_opp[i] = 0.0
            total += p_pick * float(beats[i] @ p_opp)
        rates.append(total)
    return float(np.mean(rates))


def best_of_8(reward, eval_x: np.ndarray, eval_labels: np.ndarray, hidden_scores: np.ndarray) -> float:
    """Hidden-judge win rate of ``reward``'s best of 8 base sketches against another base sketch (exact)."""
    return best_of_k_exact(reward.score(eval_x, eval_labels), hidden_scores, eval_labels, 8)


def agreement(reward, a: np.ndarray, b: np.ndarray, labels: np.ndarray, truth: np.ndarray) -> float:
    """Share of pairs whose reward difference has the sign of ``truth`` (a judge's score difference)."""
    d = reward.score(a, labels) - reward.score(b, labels)
    keep = truth != 0
    return float(np.mean(np.sign(d[keep]) == np.sign(truth[keep])))


def mean_spread(values: list[float]) -> dict:
    """Mean, sample standard deviation and range of per-seed figures."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(v.mean()), 4), "std": round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 4),
            "min": round(float(v.min()), 4), "max": round(float(v.max()), 4), "n": len(v)}
