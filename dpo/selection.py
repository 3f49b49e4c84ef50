"""Which pairs to ask people about: the candidates an ensemble of reward models is least sure about.

Any reward model with ``score(beziers (N, 32, 4, 2), labels (N,)) -> (N,)`` works: the ensemble is K
models fit on bootstrap resamples of the human pairs by a ``fit(winners, losers, labels)`` callable
(today :func:`reward_fitter`, the Bradley-Terry model of :mod:`dpo.reward`). A candidate pair's
``P(a better) = sigmoid(r(a) - r(b))`` is averaged over the ensemble; the least sure pairs are those
whose average is closest to 1/2 (``entropy``: highest predictive entropy), or those the members disagree
on most (``disagreement``: largest spread of the members' probabilities, what more labels can fix),
chosen per class in the candidates' class proportions so that uncertain classes cannot crowd out the others.

    models = fit_ensemble(reward_fitter(classifier, RewardConfig()), winners, losers, labels, k=5, seed=0)
    keep = select_uncertain(models, cand_a, cand_b, cand_labels, n=100)     # indices into the candidates
"""
from __future__ import annotations

from typing import Callable, Protocol

import numpy as np


class Scorer(Protocol):
    def score(self, beziers: np.ndarray, labels: np.ndarray) -> np.ndarray: ...


Fit = Callable[[np.ndarray, np.ndarray, np.ndarray], Scorer]


def reward_fitter(classifier, cfg) -> Fit:
    """``fit(winners, losers, labels)`` for the reward model of :mod:`dpo.reward` on its hand-made features,
    one head (the bootstrap ensemble is built here). :func:`dpo.reward.pair_uncertainty` does the same for a
    fitted RewardModel, flow embedding included."""
    from dpo.reward import fit_reward_model
    from driftsketch.config import replace_config

    hand = replace_config(cfg, embedding_t=[], ensemble=1)

    def fit(winners: np.ndarray, losers: np.ndarray, labels: np.ndarray) -> Scorer:
        return fit_reward_model(classifier, winners, losers, labels, hand)

    return fit


def fit_ensemble(fit: Fit, winners: np.ndarray, losers: np.ndarray, labels: np.ndarray, k: int,
                 seed: int = 0) -> list[Scorer]:
    """``k`` reward models, each fit on a bootstrap resample (with replacement) of the ``P`` pairs."""
    if len(labels) == 0:
        raise ValueError("fit_ensemble: no human pairs to fit on")
    rng = np.random.default_rng(seed)
    models = []
    for _ in range(k):
        idx = rng.integers(0, len(labels), size=len(labels))
        models.append(fit(winners[idx], losers[idx], labels[idx]))
    return models


def preference_probability(models: list[Scorer], a: np.ndarray, b: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(K, N)``: each model's ``P(a better than b)``."""
    # 0.5 (1 + tanh(d / 2)) is the logistic function without exp's overflow at large margins
    return np.stack([0.5 * (1.0 + np.tanh(0.5 * (m.score(a, labels) - m.score(b, labels)))) for m in models])


def class_quota(labels: np.ndarray, n: int) -> dict[int, int]:
    """``n`` split over the classes in ``labels`` in proportion to their counts (largest remainder)."""
    classes, counts = np.unique(labels, return_counts=True)
    share = counts / counts.sum() * n
    quota = np.floor(share).astype(int)
    for i in np.argsort(-(share - quota), kind="stable")[: n - quota.sum()]:
        quota[i] += 1
    return {int(c): int(q) for c, q in zip(classes, quota)}


def select_uncertain(models: list[Scorer], a: np.ndarray, b: np.ndarray, labels: np.ndarray, n: int,
                     kind: str = "entropy") -> np.ndarray:
    """Indices of the ``n`` candidate pairs ``(a[i], b[i])`` the ensemble is least sure about (``entropy``:
    mean probability nearest 1/2; ``disagreement``: largest standard deviation of the members'
    probabilities), taken per class in the candidates' class proportions; sorted."""
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    p = preference_probability(models, a, b, labels)
    if kind == "entropy":
        closeness = np.abs(p.mean(axis=0) - 0.5)
    elif kind == "disagreement":
        closeness = -p.std(axis=0)
    else:
        raise ValueError(f"select_uncertain: kind must be 'entropy' or 'disagreement', got {kind!r}")
    keep = []
    for c, q in class_quota(labels, n).items():
        idx = np.flatnonzero(labels == c)
        keep.extend(idx[np.argsort(closeness[idx], kind="stable")[:q]].tolist())
    return np.sort(np.asarray(keep, dtype=np.int64))


def select_from_store(preference_dir: str, class_names: list[str], classifier, cfg, a: np.ndarray, b: np.ndarray,
                      labels: np.ndarray, n: int, ensemble: int, seed: int = 0) -> tuple[np.ndarray, dict]:
    """The online round's rule: an ensemble of ``ensemble`` reward models fit on bootstrap resamples of the
    store's human pairs (``cfg``: a DPO config, for its reward inputs and annotator rules) keeps the ``n``
    candidate pairs ``(a[i], b[i])`` it is least sure about. Returns (sorted indices, info)."""
    from dpo.amplify import dataset_arrays
    from dpo.dataset import PreferenceDataset

    human = PreferenceDataset(preference_dir, class_names, annotators=cfg.annotators, use_noise=False)
    models = fit_ensemble(reward_fitter(classifier, cfg.amplify.reward), *dataset_arrays(human), k=ensemble, seed=seed)
    keep = select_uncertain(models, a, b, labels, n)
    return keep, {"selection": "uncertain", "human_pairs": len(human), "candidates": len(labels)}
