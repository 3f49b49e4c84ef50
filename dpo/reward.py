"""A Bradley-Terry reward model fit on the stored preferences, to label many more pairs than people did.

    rm = fit_reward_model(classifier, winners, losers, labels, RewardConfig())   # (N, 32, 4, 2) each
    rm.score(beziers, labels)            # (N,) higher = more preferred
    rm.save("runs/dpo/reward.json"); rm = RewardModel.load("runs/dpo/reward.json", classifier)

The reward is linear in a few interpretable per-sketch features: a sketch classifier's confidence in the
asked class (probability and log-probability), continuity at several connection tolerances, and the
off-canvas and degenerate-segment shares. ``P(a preferred to b) = sigmoid(r(a) - r(b))`` is fit by
L2-regularised logistic regression on the feature differences of (winner, loser) pairs (L-BFGS, features
standardised). Seven weights can be estimated from a few hundred noisy pairs, unlike an image network;
the price is that the reward sees only what its features measure (docs/dpo.md, "Reward amplification").
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from dpo.config import RewardConfig
from driftsketch.errors import DriftSketchError
from driftsketch.evaluation.classifier import SketchClassifier
from driftsketch.evaluation.metrics import (
    continuity_per_sketch,
    vector_stats_per_sketch,
)
from driftsketch.fileio import atomic_write_text

FORMAT = "driftsketch-reward-v1"


class RewardError(DriftSketchError, ValueError):
    """A reward model that cannot be fit, loaded or used; the message names the file or field."""


def feature_names(cfg: RewardConfig) -> list[str]:
    """Names of the reward features, in column order."""
    return (["class_prob", "class_logprob"] + [f"continuity@{e:g}" for e in cfg.continuity_eps]
            + ["off_canvas_share", "degenerate_share"])


def sketch_features(classifier: SketchClassifier, beziers: np.ndarray, labels: np.ndarray,
                    cfg: RewardConfig) -> np.ndarray:
    """``(N, F)`` float64 features of sketches ``(N, 32, 4, 2)`` asked to be ``labels`` ``(N,)``."""
    x = np.asarray(beziers, dtype=np.float32).reshape(-1, 32, 4, 2)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(y) != len(x):
        raise RewardError(f"reward features: {len(y)} labels for {len(x)} sketches")
    n_cls = len(classifier.class_names)
    if y.size and (y.min() < 0 or y.max() >= n_cls):
        raise RewardError(f"reward features: class labels must lie in [0, {n_cls}) ({classifier.class_names})")
    prob = classifier.predict_proba(x)[np.arange(len(y)), y].astype(np.float64)
    stats = vector_stats_per_sketch(x)
    cols = [prob, np.log(prob + 1e-4)] + [continuity_per_sketch(x, e) for e in cfg.continuity_eps]
    cols += [stats["off_canvas_share"], stats["degenerate_share"]]
    return np.stack(cols, axis=1).astype(np.float64)


def file_digest(path: str | Path) -> str:
    """Short sha256 of a file (ties a reward model to the classifier it was fit with)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class RewardModel:
    """``r(x, y) = features(x, y) @ weights``; ``metrics`` holds the fit's pair accuracies."""

    def __init__(self, classifier: SketchClassifier, cfg: RewardConfig, weights: np.ndarray,
                 metrics: dict | None = None):
        if len(weights) != len(feature_names(cfg)):
            raise RewardError(f"reward model: {len(weights)} weights for features {feature_names(cfg)}")
        self.classifier, self.cfg = classifier, cfg
        self.weights = np.asarray(weights, dtype=np.float64)
        self.metrics = dict(metrics or {})

    def score(self, beziers: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Reward ``(N,)`` of sketches ``(N, 32, 4, 2)`` of classes ``labels``; higher is preferred."""
        return sketch_features(self.classifier, beziers, labels, self.cfg) @ self.weights

    def pair_accuracy(self, winners: np.ndarray, losers: np.ndarray, labels: np.ndarray) -> float:
        """Share of pairs whose winner gets the higher reward (equal rewards count 0.5)."""
        d = self.score(winners, labels) - self.score(losers, labels)
        return float(((d > 0) + 0.5 * (d == 0)).mean()) if len(d) else float("nan")

    def digest(self) -> str:
        """Short id of the fitted model (features, weights and classifier file)."""
        parts = [feature_names(self.cfg), self.weights.round(10).tolist(), _digest_or_none(self.cfg.classifier)]
        text = json.dumps(parts)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def describe(self) -> dict[str, float]:
        """Feature name -> weight."""
        return {n: round(float(w), 4) for n, w in zip(feature_names(self.cfg), self.weights)}

    def save(self, path: str | Path) -> Path:
        """Write the model as JSON (atomic: tmp file + rename)."""
        blob = {"format": FORMAT, "classifier": self.cfg.classifier, "continuity_eps": self.cfg.continuity_eps,
                "l2": self.cfg.l2, "classifier_sha256": _digest_or_none(self.cfg.classifier),
                "features": feature_names(self.cfg), "weights": self.weights.tolist(), "metrics": self.metrics}
        return atomic_write_text(path, json.dumps(blob, indent=2))

    @classmethod
    def load(cls, path: str | Path, classifier: SketchClassifier | None = None) -> "RewardModel":
        """Read a saved model; loads its classifier from the recorded path unless one is given."""
        try:
            blob = json.loads(Path(path).read_text())
            if blob.get("format") != FORMAT:
                raise RewardError(f"{path}: not a DriftSketch reward model (format {blob.get('format')!r})")
            cfg = RewardConfig(classifier=blob["classifier"], continuity_eps=list(blob["continuity_eps"]),
                               l2=float(blob["l2"]))
            weights = np.asarray(blob["weights"], dtype=np.float64)
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise RewardError(f"{path}: cannot read the reward model ({exc})") from None
        if classifier is None:
            digest = _digest_or_none(cfg.classifier)
            if digest is None or digest != blob.get("classifier_sha256"):
                raise RewardError(f"{path}: its classifier {cfg.classifier} is missing or has changed since the fit")
            classifier = SketchClassifier.load(cfg.classifier)
        return cls(classifier, cfg, weights, blob.get("metrics"))


def _digest_or_none(path: str) -> str | None:
    return file_digest(path) if path and Path(path).is_file() else None


def fit_bradley_terry(diff: np.ndarray, l2: float) -> np.ndarray:
    """Weights ``w`` maximising ``sum log sigmoid(diff @ w) - l2 |w * std|^2`` for winner-minus-loser
    feature differences ``diff`` ``(P, F)``; constant features get weight 0."""
    if len(diff) == 0:
        raise RewardError("reward model: no pairs to fit")
    scale = diff.std(axis=0)
    live = scale > 1e-9
    z = torch.tensor(diff[:, live] / scale[live])
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = -torch.nn.functional.logsigmoid(z @ w).mean() + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    out = np.zeros(diff.shape[1])
    out[live] = w.detach().numpy() / scale[live]
    return out


def fit_reward_model(classifier: SketchClassifier, winners: np.ndarray, losers: np.ndarray, labels: np.ndarray,
                     cfg: RewardConfig) -> RewardModel:
    """Fit on (winner, loser) sketch pairs ``(P, 32, 4, 2)`` of classes ``labels`` ``(P,)``."""
    fw = sketch_features(classifier, winners, labels, cfg)
    fl = sketch_features(classifier, losers, labels, cfg)
    if not np.isfinite(fw - fl).all():
        raise RewardError("reward model: non-finite features (NaN sketches?)")
    weights = fit_bradley_terry(fw - fl, cfg.l2)
    rm = RewardModel(classifier, cfg, weights)
    rm.metrics["train_pairs"] = len(labels)
    rm.metrics["train_accuracy"] = rm.pair_accuracy(winners, losers, labels)
    rm.metrics["cv_accuracy"] = cross_validated_accuracy(fw - fl, cfg.l2)
    return rm


def cross_validated_accuracy(diff: np.ndarray, l2: float, folds: int = 5, seed: int = 0) -> float:
    """K-fold pair accuracy of :func:`fit_bradley_terry` on winner-minus-loser features (NaN under 2 folds'
    worth of pairs): what the reward model's accuracy on new pairs from the same annotators will be."""
    if len(diff) < 2 * folds:
        return float("nan")
    fold = np.random.default_rng(seed).permutation(len(diff)) % folds
    hits = 0.0
    for k in range(folds):
        w = fit_bradley_terry(diff[fold != k], l2)
        z = diff[fold == k] @ w
        hits += float((z > 0).sum() + 0.5 * (z == 0).sum())
    return hits / len(diff)
