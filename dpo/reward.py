"""A Bradley-Terry reward model fit on the stored preferences, to label many more pairs than people did.

    rm = fit_reward_model(classifier, winners, losers, labels, RewardConfig(...), encoder=model)  # (N, 32, 4, 2)
    rm.score(beziers, labels)            # (N,) higher = more preferred (the ensemble's mean)
    rm.member_scores(beziers, labels)    # (M, N): one row per ensemble member
    pair_uncertainty(rm, a, b, labels)   # (N,) in [0, 1]: how unsure the ensemble is which of a, b wins
    rm.save("runs/dpo/reward.json"); rm = RewardModel.load("runs/dpo/reward.json")

What the reward reads (``RewardConfig``):
- ``embedding_t``: the flow model's own hidden states (last transformer block, mean over the 32 stroke
  tokens) for the sketch noised to each time t, conditioned on the asked class. The network had to learn
  every geometric property of the data to predict velocities, so these features can express tastes nobody
  designed a feature for (a slant, proportions, smooth strokes); ``encoder`` names the checkpoint, or
  the model being tuned when empty.
- ``hand_features``: the seven hand-made features of the first version: a sketch classifier's
  probability and log-probability of the asked class, continuity at several tolerances, the off-canvas
  and degenerate-segment shares.

``P(a preferred to b) = sigmoid(r(a) - r(b))`` with ``r`` linear in those inputs, fit by L2-regularised
logistic regression on the (winner - loser) differences, every input standardised. The L2 strength is
chosen from ``l2`` by cross-validation; ``cv_accuracy`` is *nested* cross-validation (the strength is
chosen inside every outer training fold), so the gate in dpo/trainer.py reads an honest estimate.
``ensemble`` members are fit on bootstrap resamples of the pairs: their spread says where the reward
model is unsure (:func:`pair_uncertainty`, for active pair selection). See docs/dpo.md.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from dpo.config import RewardConfig
from driftsketch.config import to_dict
from driftsketch.errors import DriftSketchError
from driftsketch.evaluation.classifier import SketchClassifier
from driftsketch.evaluation.metrics import (
    continuity_per_sketch,
    vector_stats_per_sketch,
)
from driftsketch.fileio import atomic_write_text

FORMAT = "driftsketch-reward-v2"
FOLDS = 5  # cross-validation folds, outer and inner
EMBED_NOISE_SEED = 0  # the one fixed x0 every sketch is noised with: the embedding is a function of the sketch


class RewardError(DriftSketchError, ValueError):
    """A reward model that cannot be fit, loaded or used; the message names the file or field."""


def hand_feature_names(cfg: RewardConfig) -> list[str]:
    """Names of the hand-made features, in column order (none when ``hand_features`` is off)."""
    if not cfg.hand_features:
        return []
    return (["class_prob", "class_logprob"] + [f"continuity@{e:g}" for e in cfg.continuity_eps]
            + ["off_canvas_share", "degenerate_share"])


def feature_names(cfg: RewardConfig, embed_dim: int = 0) -> list[str]:
    """Names of every reward input, in column order: hand-made features, then ``flow@t/i``."""
    return hand_feature_names(cfg) + [f"flow@{t:g}/{i}" for t in cfg.embedding_t for i in range(embed_dim)]


def _check_labels(x: np.ndarray, labels: np.ndarray, n_cls: int, names: list[str]) -> np.ndarray:
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(y) != len(x):
        raise RewardError(f"reward features: {len(y)} labels for {len(x)} sketches")
    if y.size and (y.min() < 0 or y.max() >= n_cls):
        raise RewardError(f"reward features: class labels must lie in [0, {n_cls}) ({names})")
    return y


def sketch_features(classifier: SketchClassifier, beziers: np.ndarray, labels: np.ndarray,
                    cfg: RewardConfig) -> np.ndarray:
    """``(N, 7)`` float64 hand-made features of sketches ``(N, 32, 4, 2)`` asked to be ``labels`` ``(N,)``."""
    x = np.asarray(beziers, dtype=np.float32).reshape(-1, 32, 4, 2)
    y = _check_labels(x, labels, len(classifier.class_names), classifier.class_names)
    prob = classifier.predict_proba(x)[np.arange(len(y)), y].astype(np.float64)
    stats = vector_stats_per_sketch(x)
    cols = [prob, np.log(prob + 1e-4)] + [continuity_per_sketch(x, e) for e in cfg.continuity_eps]
    cols += [stats["off_canvas_share"], stats["degenerate_share"]]
    return np.stack(cols, axis=1).astype(np.float64)


@torch.no_grad()
def flow_embedding(encoder, beziers: np.ndarray, labels: np.ndarray, ts: Sequence[float],
                   batch_size: int = 512) -> np.ndarray:
    """``(N, len(ts) * D)``: the encoder's last-block token states, mean over tokens, for each sketch
    noised to each ``t`` with one fixed noise (``x_t = (1 - t) x0 + t x1`` in codec space), asked class."""
    x = np.asarray(beziers, dtype=np.float32).reshape(-1, 32, 4, 2)
    y = _check_labels(x, labels, encoder.config.num_classes, encoder.class_names)
    device = next(encoder.parameters()).device
    x0 = torch.randn((1, 32, 8), generator=torch.Generator().manual_seed(EMBED_NOISE_SEED)).to(device)
    was = encoder.training
    encoder.eval()
    out = []
    for i in range(0, len(x), batch_size):
        z1 = encoder.encode(torch.from_numpy(x[i:i + batch_size].reshape(-1, 32, 8)).to(device))
        yb = torch.from_numpy(y[i:i + batch_size]).to(device)
        cols = [encoder.hidden((1 - t) * x0 + t * z1, torch.full((len(z1),), float(t), device=device), yb).mean(dim=1)
                for t in ts]
        out.append(torch.cat(cols, dim=1).double().cpu().numpy())
    encoder.train(was)
    width = len(ts) * encoder.config.dim
    return np.concatenate(out) if out else np.zeros((0, width))


class SketchFeaturizer:
    """Every input of the reward for a batch of sketches: hand-made features, then the flow embedding."""

    def __init__(self, cfg: RewardConfig, classifier: SketchClassifier | None = None, encoder=None,
                 encoder_path: str = ""):
        if cfg.hand_features and classifier is None:
            raise RewardError("reward model: hand_features needs a classifier")
        if cfg.embedding_t and encoder is None:
            raise RewardError("reward model: embedding_t needs an encoder (a DriftSketch flow model)")
        if not cfg.hand_features and not cfg.embedding_t:
            raise RewardError("reward model: no inputs (hand_features false and embedding_t empty)")
        self.cfg, self.classifier, self.encoder, self.encoder_path = cfg, classifier, encoder, encoder_path
        self.embed_dim = encoder.config.dim if (encoder is not None and cfg.embedding_t) else 0
        self.names = feature_names(cfg, self.embed_dim)

    def __call__(self, beziers: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``(N, F)`` float64."""
        cols = []
        if self.cfg.hand_features:
            cols.append(sketch_features(self.classifier, beziers, labels, self.cfg))
        if self.cfg.embedding_t:
            cols.append(flow_embedding(self.encoder, beziers, labels, self.cfg.embedding_t))
        return np.concatenate(cols, axis=1)

    def identity(self) -> dict:
        """What the features depend on besides the config: the classifier file and the encoder."""
        return {"classifier": self.cfg.classifier if self.cfg.hand_features else None,
                "classifier_sha256": _digest_or_none(self.cfg.classifier) if self.cfg.hand_features else None,
                "encoder": self.encoder_path if self.embed_dim else None,
                "encoder_id": getattr(self.encoder, "checkpoint_id", None) if self.embed_dim else None}


def file_digest(path: str | Path) -> str:
    """Short sha256 of a file (ties a reward model to the classifier it was fit with)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class RewardModel:
    """``r(x, y) = features(x, y) @ mean(weights)``: an ensemble of linear Bradley-Terry heads.

    ``weights`` is ``(M, F)``, one row per ensemble member; ``metrics`` holds the fit's accuracies."""

    def __init__(self, featurizer: SketchFeaturizer, weights: np.ndarray, metrics: dict | None = None):
        weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        if weights.shape[1] != len(featurizer.names):
            raise RewardError(f"reward model: {weights.shape[1]} weights per member for {len(featurizer.names)} "
                              "features")
        self.featurizer, self.weights = featurizer, weights
        self.metrics = dict(metrics or {})

    @property
    def cfg(self) -> RewardConfig:
        return self.featurizer.cfg

    @property
    def classifier(self) -> SketchClassifier | None:
        return self.featurizer.classifier

    def features(self, beziers: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``(N, F)`` inputs of the reward."""
        return self.featurizer(beziers, labels)

    def member_scores(self, beziers: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``(M, N)``: every ensemble member's reward of every sketch."""
        return self.weights @ self.features(beziers, labels).T

    def score(self, beziers: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Reward ``(N,)`` of sketches ``(N, 32, 4, 2)`` of classes ``labels``; higher is preferred."""
        return self.features(beziers, labels) @ self.weights.mean(axis=0)

    def pair_accuracy(self, winners: np.ndarray, losers: np.ndarray, labels: np.ndarray) -> float:
        """Share of pairs whose winner gets the higher reward (equal rewards count 0.5)."""
        d = self.score(winners, labels) - self.score(losers, labels)
        return float(((d > 0) + 0.5 * (d == 0)).mean()) if len(d) else float("nan")

    def digest(self) -> str:
        """Short id of the fitted model (inputs, weights, classifier file and encoder)."""
        parts = [self.featurizer.names, self.weights.round(10).tolist(), self.featurizer.identity()]
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]

    def describe(self) -> dict[str, float]:
        """Hand-made feature name -> mean weight, and the size of the embedding part (its weight norm)."""
        w = self.weights.mean(axis=0)
        hand = hand_feature_names(self.cfg)
        out = {n: round(float(v), 4) for n, v in zip(hand, w)}
        if self.featurizer.embed_dim:
            out["flow_embedding_norm"] = round(float(np.linalg.norm(w[len(hand):])), 4)
        return out

    def save(self, path: str | Path) -> Path:
        """Write the model as JSON (atomic: tmp file + rename)."""
        blob = {"format": FORMAT, "config": to_dict(self.cfg), **self.featurizer.identity(),
                "features": self.featurizer.names, "weights": self.weights.tolist(), "metrics": self.metrics}
        return atomic_write_text(path, json.dumps(blob, indent=2))

    @classmethod
    def load(cls, path: str | Path, classifier: SketchClassifier | None = None, encoder=None) -> "RewardModel":
        """Read a saved model; loads its classifier and encoder from the recorded paths unless given, and
        refuses files that changed since the fit."""
        try:
            blob = json.loads(Path(path).read_text())
            if blob.get("format") != FORMAT:
                raise RewardError(f"{path}: not a DriftSketch reward model (format {blob.get('format')!r}, "
                                  f"expected {FORMAT!r})")
            cfg = RewardConfig(**blob["config"])
            weights = np.asarray(blob["weights"], dtype=np.float64)
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, RewardError):
                raise
            raise RewardError(f"{path}: cannot read the reward model ({exc})") from None
        if cfg.hand_features and classifier is None:
            digest = _digest_or_none(cfg.classifier)
            if digest is None or digest != blob.get("classifier_sha256"):
                raise RewardError(f"{path}: its classifier {cfg.classifier} is missing or has changed since the fit")
            classifier = SketchClassifier.load(cfg.classifier)
        if cfg.embedding_t and encoder is None:
            encoder = _load_encoder(path, blob.get("encoder"), blob.get("encoder_id"))
        featurizer = SketchFeaturizer(cfg, classifier, encoder, blob.get("encoder") or "")
        return cls(featurizer, weights, blob.get("metrics"))


def _load_encoder(where, encoder_path: str | None, encoder_id: str | None):
    from driftsketch.checkpoint import load_model

    if not encoder_path or not Path(encoder_path).is_file():
        raise RewardError(f"{where}: its encoder checkpoint {encoder_path!r} is missing")
    encoder = load_model(encoder_path)
    if encoder.checkpoint_id != encoder_id:
        raise RewardError(f"{where}: its encoder {encoder_path} is checkpoint {encoder.checkpoint_id}, the fit "
                          f"used {encoder_id}")
    return encoder


def _digest_or_none(path: str) -> str | None:
    return file_digest(path) if path and Path(path).is_file() else None


def fit_bradley_terry(diff: np.ndarray, l2: float) -> np.ndarray:
    """Weights ``w`` maximising ``mean log sigmoid(diff @ w) - l2 |w * std|^2`` for winner-minus-loser
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


def _folds(n: int, folds: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n) % folds


def _hits(z: np.ndarray) -> float:
    return float((z > 0).sum() + 0.5 * (z == 0).sum())


def cv_accuracy_per_l2(diff: np.ndarray, grid: Sequence[float], folds: int = FOLDS, seed: int = 0) -> dict[float, float]:
    """K-fold pair accuracy of :func:`fit_bradley_terry` for every L2 strength in ``grid``."""
    fold = _folds(len(diff), folds, seed)
    hits = dict.fromkeys(grid, 0.0)
    for k in range(folds):
        for l2 in grid:
            hits[l2] += _hits(diff[fold == k] @ fit_bradley_terry(diff[fold != k], l2))
    return {l2: h / len(diff) for l2, h in hits.items()}


def choose_l2(diff: np.ndarray, grid: Sequence[float], folds: int = FOLDS, seed: int = 0) -> float:
    """The L2 strength of ``grid`` with the best cross-validated accuracy (ties: the strongest)."""
    if len(grid) == 1:
        return float(grid[0])
    acc = cv_accuracy_per_l2(diff, grid, folds, seed)
    return float(max(sorted(grid, reverse=True), key=lambda l2: acc[l2]))


def cross_validated_accuracy(diff: np.ndarray, l2: float | Sequence[float], folds: int = FOLDS, seed: int = 0) -> float:
    """K-fold pair accuracy on winner-minus-loser features (NaN under 2 folds' worth of pairs): what the
    reward model's accuracy on new pairs from the same annotators will be. With several ``l2`` values
    the strength is chosen inside every training fold (nested), so the figure is not the best of a sweep."""
    grid = [float(l2)] if np.isscalar(l2) else [float(v) for v in l2]
    if len(diff) < 2 * folds:
        return float("nan")
    fold = _folds(len(diff), folds, seed)
    hits = 0.0
    for k in range(folds):
        train = diff[fold != k]
        inner = choose_l2(train, grid, folds - 1, seed + 1) if len(train) >= 2 * (folds - 1) else max(grid)
        hits += _hits(diff[fold == k] @ fit_bradley_terry(train, inner))
    return hits / len(diff)


def fit_ensemble(diff: np.ndarray, l2: float, members: int, seed: int = 0) -> np.ndarray:
    """``(members, F)`` weights: member 0 on every pair, the others on bootstrap resamples."""
    rng = np.random.default_rng(seed)
    rows = [fit_bradley_terry(diff, l2)]
    rows += [fit_bradley_terry(diff[rng.integers(0, len(diff), len(diff))], l2) for _ in range(members - 1)]
    return np.stack(rows)


def fit_reward_model(classifier: SketchClassifier | None, winners: np.ndarray, losers: np.ndarray,
                     labels: np.ndarray, cfg: RewardConfig, encoder=None, encoder_path: str = "") -> RewardModel:
    """Fit on (winner, loser) sketch pairs ``(P, 32, 4, 2)`` of classes ``labels`` ``(P,)``; ``encoder``
    (a flow model, saved at ``encoder_path``) is needed when ``cfg.embedding_t`` is set."""
    featurizer = SketchFeaturizer(cfg, classifier, encoder, encoder_path)
    diff = featurizer(winners, labels) - featurizer(losers, labels)
    if not np.isfinite(diff).all():
        raise RewardError("reward model: non-finite features (NaN sketches?)")
    if len(diff) == 0:
        raise RewardError("reward model: no pairs to fit")
    l2 = choose_l2(diff, cfg.l2) if len(diff) >= 2 * FOLDS else max(cfg.l2)
    rm = RewardModel(featurizer, fit_ensemble(diff, l2, cfg.ensemble))
    rm.metrics.update(train_pairs=len(labels), l2=l2, ensemble=cfg.ensemble, features=len(featurizer.names),
                      train_accuracy=_hits(diff @ rm.weights.mean(axis=0)) / len(diff),
                      cv_accuracy=cross_validated_accuracy(diff, cfg.l2))
    return rm


def pair_probabilities(models: RewardModel | Sequence[RewardModel], beziers_a: np.ndarray, beziers_b: np.ndarray,
                       labels: np.ndarray) -> np.ndarray:
    """``(M, N)``: P(a preferred to b) under every ensemble member of every model in ``models``."""
    models = [models] if isinstance(models, RewardModel) else list(models)
    if not models:
        raise RewardError("pair_probabilities: no reward model")
    rows = [m.member_scores(beziers_a, labels) - m.member_scores(beziers_b, labels) for m in models]
    return 1.0 / (1.0 + np.exp(-np.concatenate(rows)))


def pair_uncertainty(models: RewardModel | Sequence[RewardModel], beziers_a: np.ndarray, beziers_b: np.ndarray,
                     labels: np.ndarray, kind: str = "entropy") -> np.ndarray:
    """``(N,)`` in [0, 1], higher = the reward model(s) less sure which of a pair wins.

    ``entropy``: binary entropy (bits) of the ensemble's mean P(a > b): 1 for a coin flip, either because
    every member calls it close or because members disagree. ``disagreement``: twice the standard
    deviation of the members' P(a > b) (epistemic only: 0 for a single member). ``bald``: entropy of the
    mean minus the mean entropy of the members (mutual information, BALD)."""
    p = np.clip(pair_probabilities(models, beziers_a, beziers_b, labels), 1e-12, 1 - 1e-12)

    def entropy(q):
        return -(q * np.log2(q) + (1 - q) * np.log2(1 - q))

    if kind == "entropy":
        return entropy(p.mean(axis=0))
    if kind == "disagreement":
        return np.minimum(1.0, 2.0 * p.std(axis=0))
    if kind == "bald":
        return np.maximum(0.0, entropy(p.mean(axis=0)) - entropy(p).mean(axis=0))
    raise RewardError(f"pair_uncertainty: unknown kind {kind!r} (entropy, disagreement, bald)")
