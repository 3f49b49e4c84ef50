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
- ``local_features``: that many random ReLU features of every segment with its two neighbours (control
  points relative to the segment's start), mean- and max-pooled over the 32 segments: a linear head on
  them approximates any average of a smooth function of local geometry (how the pen turns, how long and
  even the segments are), which the flow embedding resolves poorly (docs/dpo.md "Labels or inputs?").
- ``shape_features``: that many random ReLU features of every segment's midpoint relative to the sketch's
  centre (the mean midpoint), mean- and max-pooled: generic global shape (extent, proportions, where the
  ink lies around the centre), which neither the local features nor the embedding read well.
- ``pair_features``: that many random ReLU features of every ordered pair of segment midpoints, both relative
  to the centre of their bounding box, mean- and max-pooled over the 992 pairs (the "shape distribution"
  of shape retrieval): how parts of the drawing lie relative to each other, e.g. mirror images of each
  other (symmetry) or at a given distance (proportions), which a pooled function of single points cannot say.

``P(a preferred to b) = sigmoid(r(a) - r(b))`` with ``r`` linear in those inputs, fit by L2-regularised
logistic regression on the (winner - loser) differences, every input standardised. The L2 strength is
chosen from ``l2`` by cross-validation; ``cv_accuracy`` is *nested* cross-validation (the strength is
chosen inside every outer training fold), so the gate in dpo/trainer.py reads an honest estimate.
``ensemble`` members are fit on bootstrap resamples of the pairs: their spread says where the reward
model is unsure (:func:`pair_uncertainty`, for active pair selection). See docs/dpo.md.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import NamedTuple, Sequence

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
EMBED_NOISE_SEED = 0  # the one fixed x0 every sketch is noised with: the embedding is a function of the sketch
LOCAL_SEED, LOCAL_SCALE = 0, 0.25  # the fixed random projection of the local features; its input scale
SHAPE_SEED, SHAPE_SCALE = 1, 0.25  # ... of the shape features
PAIR_SEED, PAIR_SCALE = 2, 0.25  # ... of the point-pair features
ABSENT_MEANS_OFF = {"local_features": 0, "shape_features": 0, "pair_features": 0,  # inputs and heads a reward model
                    "class_heads": []}                                         # saved before they existed


class RewardError(DriftSketchError, ValueError):
    """A reward model that cannot be fit, loaded or used; the message names the file or field."""


def hand_feature_names(cfg: RewardConfig) -> list[str]:
    """Names of the hand-made features, in column order (none when ``hand_features`` is off)."""
    if not cfg.hand_features:
        return []
    return (["class_prob", "class_logprob"] + [f"continuity@{e:g}" for e in cfg.continuity_eps]
            + ["off_canvas_share", "degenerate_share"])


def embedding_width(encoder, cfg: RewardConfig) -> int:
    """Number of flow-embedding columns: mean and std over tokens of every block, at every t."""
    return len(cfg.embedding_t) * encoder.config.depth * 2 * encoder.config.dim if cfg.embedding_t else 0


def feature_names(cfg: RewardConfig, depth: int = 0, dim: int = 0) -> list[str]:
    """Names of every reward input, in column order: hand-made features, ``flow@t/b<block>/<stat>/i``, then
    ``local/<pool>/i``, ``shape/<pool>/i``, ``pairs/<pool>/i``."""
    return (hand_feature_names(cfg) + [f"flow@{t:g}/b{b}/{stat}/{i}" for t in cfg.embedding_t for b in range(depth)
                                       for stat in ("mean", "std") for i in range(dim)]
            + [f"local/{pool}/{i}" for pool in ("mean", "max") for i in range(cfg.local_features)]
            + [f"shape/{pool}/{i}" for pool in ("mean", "max") for i in range(cfg.shape_features)]
            + [f"pairs/{pool}/{i}" for pool in ("mean", "max") for i in range(cfg.pair_features)])


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
def token_states(encoder, beziers: np.ndarray, labels: np.ndarray, t: float) -> torch.Tensor:
    """Every block's token states ``depth`` x ``(N, 32, D)``, on the encoder's device, for the sketches noised
    to ``t`` with the one fixed noise (``x_t = (1 - t) x0 + t x1`` in codec space) and their asked classes:
    the encoder's own description of them. Call it in eval mode."""
    x = np.asarray(beziers, dtype=np.float32).reshape(-1, 32, 4, 2)
    y = _check_labels(x, labels, encoder.config.num_classes, encoder.class_names)
    device = next(encoder.parameters()).device
    x0 = torch.randn((1, 32, 8), generator=torch.Generator().manual_seed(EMBED_NOISE_SEED)).to(device)
    z1 = encoder.encode(torch.from_numpy(x.reshape(-1, 32, 8)).to(device))
    return encoder.hidden_states((1 - t) * x0 + t * z1, torch.full((len(z1),), float(t), device=device),
                                 torch.from_numpy(y).to(device))


@torch.no_grad()
def flow_embedding(encoder, beziers: np.ndarray, labels: np.ndarray, ts: Sequence[float],
                   batch_size: int = 512) -> np.ndarray:
    """``(N, len(ts) * depth * 2 * D)``: for each sketch noised to each ``t`` (:func:`token_states`), the mean
    and the standard deviation over the 32 stroke tokens of every transformer block's states."""
    x = np.asarray(beziers, dtype=np.float32).reshape(-1, 32, 4, 2)
    y = _check_labels(x, labels, encoder.config.num_classes, encoder.class_names)
    was = encoder.training
    encoder.eval()
    out = []
    for i in range(0, len(x), batch_size):
        cols = [stat for t in ts for h in token_states(encoder, x[i:i + batch_size], y[i:i + batch_size], t)
                for stat in (h.mean(dim=1), h.std(dim=1))]
        out.append(torch.cat(cols, dim=1).double().cpu().numpy())
    encoder.train(was)
    return np.concatenate(out) if out else np.zeros((0, len(ts) * encoder.config.depth * 2 * encoder.config.dim))


def random_relu_pooled(points: np.ndarray, width: int, seed: int, scale: float, batch_size: int = 8) -> np.ndarray:
    """``(N, 2 * width)`` float64: ``ReLU(points @ P / scale + b)`` with a fixed random ``P``, ``b`` (``seed``)
    for every one of the ``S`` rows of ``points`` ``(N, S, D)``, mean- then max-pooled over the rows. Small
    batches keep the hidden layer in cache (9x faster than batches of 256, same digits)."""
    rng = np.random.default_rng(seed)
    proj, bias = rng.normal(size=(points.shape[2], width)) / scale, rng.normal(size=width)
    out = np.empty((len(points), 2 * width))
    for i in range(0, len(points), batch_size):
        h = points[i:i + batch_size] @ proj
        h += bias
        np.maximum(h, 0.0, out=h)
        h.mean(axis=1, out=out[i:i + batch_size, :width])
        h.max(axis=1, out=out[i:i + batch_size, width:])
    return out


def local_geometry_features(beziers: np.ndarray, width: int) -> np.ndarray:
    """``(N, 2 * width)``: random ReLU features of every segment with its two neighbours, control points
    relative to the segment's start, pooled over the 32 segments. Generic: nothing in them is tuned to a
    taste."""
    b = np.asarray(beziers, dtype=np.float64).reshape(-1, 32, 4, 2)
    start = b[:, :, :1, :]
    local = np.concatenate([np.roll(b, 1, axis=1) - start, b - start, np.roll(b, -1, axis=1) - start], axis=2)
    return random_relu_pooled(local.reshape(-1, 32, 24), width, LOCAL_SEED, LOCAL_SCALE)


def _midpoints(beziers: np.ndarray) -> np.ndarray:
    """``(N, 32, 2)`` float64: every segment's curve point at t = 1/2."""
    b = np.asarray(beziers, dtype=np.float64).reshape(-1, 32, 4, 2)
    return (b[:, :, 0] + 3 * b[:, :, 1] + 3 * b[:, :, 2] + b[:, :, 3]) / 8


def shape_features(beziers: np.ndarray, width: int) -> np.ndarray:
    """``(N, 2 * width)``: random ReLU features of every segment's midpoint relative to the mean midpoint,
    pooled over the 32 segments: generic global shape, translation-invariant, not scale-invariant."""
    mid = _midpoints(beziers)
    return random_relu_pooled(mid - mid.mean(axis=1, keepdims=True), width, SHAPE_SEED, SHAPE_SCALE)


_I, _J = np.nonzero(~np.eye(32, dtype=bool))  # the 992 ordered pairs of two different segments


def point_pair_features(beziers: np.ndarray, width: int) -> np.ndarray:
    """``(N, 2 * width)``: random ReLU features of every ordered pair of segment midpoints, both relative to
    the centre of their bounding box, pooled over the 992 pairs: translation-invariant, unchanged when the
    segments are reordered."""
    mid = _midpoints(beziers)
    mid -= (mid.min(axis=1, keepdims=True) + mid.max(axis=1, keepdims=True)) / 2
    pairs = np.concatenate([mid[:, _I], mid[:, _J]], axis=2)  # (N, 992, 4)
    return random_relu_pooled(pairs, width, PAIR_SEED, PAIR_SCALE, batch_size=1)


class SketchFeaturizer:
    """Every input of the reward for a batch of sketches, in the order of ``blocks``: hand-made features, the
    flow embedding, the local-geometry features, the shape features, the point-pair features."""

    def __init__(self, cfg: RewardConfig, classifier: SketchClassifier | None = None, encoder=None,
                 encoder_path: str = ""):
        if cfg.hand_features and classifier is None:
            raise RewardError("reward model: hand_features needs a classifier")
        if cfg.embedding_t and encoder is None:
            raise RewardError("reward model: embedding_t needs an encoder (a DriftSketch flow model)")
        if not (cfg.hand_features or cfg.embedding_t or cfg.local_features or cfg.shape_features
                or cfg.pair_features):
            raise RewardError("reward model: no inputs (hand_features false, embedding_t empty, local_features, "
                              "shape_features and pair_features 0)")
        self.cfg, self.classifier, self.encoder, self.encoder_path = cfg, classifier, encoder, encoder_path
        self.embed_dim = embedding_width(encoder, cfg) if encoder is not None else 0
        shape = (encoder.config.depth, encoder.config.dim) if self.embed_dim else (0, 0)
        self.names = feature_names(cfg, *shape)
        self.blocks = {"hand": len(hand_feature_names(cfg)), "flow": self.embed_dim,
                       "local": 2 * cfg.local_features, "shape": 2 * cfg.shape_features,
                       "pairs": 2 * cfg.pair_features}  # column counts, in order

    def __call__(self, beziers: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``(N, F)`` float64."""
        cols = []
        if self.cfg.hand_features:
            cols.append(sketch_features(self.classifier, beziers, labels, self.cfg))
        if self.cfg.embedding_t:
            cols.append(flow_embedding(self.encoder, beziers, labels, self.cfg.embedding_t))
        if self.cfg.local_features:
            cols.append(local_geometry_features(beziers, self.cfg.local_features))
        if self.cfg.shape_features:
            cols.append(shape_features(beziers, self.cfg.shape_features))
        if self.cfg.pair_features:
            cols.append(point_pair_features(beziers, self.cfg.pair_features))
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
    """``r(x, y) = features(x, y) @ mean(weights + class_weights[y])``: an ensemble of linear Bradley-Terry
    heads.

    ``weights`` is ``(M, F)``, one row per ensemble member; ``class_weights`` ``(M, C, F)`` every member's
    deviation for each class (per-class heads, ``amplify.reward.class_heads``) or None; ``metrics`` holds the
    fit's accuracies."""

    def __init__(self, featurizer: SketchFeaturizer, weights: np.ndarray, metrics: dict | None = None,
                 class_weights: np.ndarray | None = None):
        weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        if weights.shape[1] != len(featurizer.names):
            raise RewardError(f"reward model: {weights.shape[1]} weights per member for {len(featurizer.names)} "
                              "features")
        if class_weights is not None:
            class_weights = np.asarray(class_weights, dtype=np.float64)
            if class_weights.ndim != 3 or class_weights.shape[::2] != weights.shape:
                raise RewardError(f"reward model: class weights of shape {class_weights.shape} for heads of shape "
                                  f"{weights.shape}")
        self.featurizer, self.weights, self.class_weights = featurizer, weights, class_weights
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

    def scores_of(self, features: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``(M, N)``: every ensemble member's reward of sketches with inputs ``features`` ``(N, F)`` of
        classes ``labels``."""
        if self.class_weights is None:
            return self.weights @ features.T
        labels = np.asarray(labels, dtype=np.int64)
        return np.stack([row_scores(features, w, dev, labels) for w, dev in zip(self.weights, self.class_weights)])

    def member_scores(self, beziers: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``(M, N)``: every ensemble member's reward of every sketch."""
        return self.scores_of(self.features(beziers, labels), labels)

    def score(self, beziers: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Reward ``(N,)`` of sketches ``(N, 32, 4, 2)`` of classes ``labels``; higher is preferred."""
        return self.member_scores(beziers, labels).mean(axis=0)

    def pair_accuracy(self, winners: np.ndarray, losers: np.ndarray, labels: np.ndarray) -> float:
        """Share of pairs whose winner gets the higher reward (equal rewards count 0.5)."""
        d = self.score(winners, labels) - self.score(losers, labels)
        return float(((d > 0) + 0.5 * (d == 0)).mean()) if len(d) else float("nan")

    def digest(self) -> str:
        """Short id of the fitted model (inputs, weights, classifier file and encoder)."""
        parts = [self.featurizer.names, self.weights.round(10).tolist(), self.featurizer.identity()]
        if self.class_weights is not None:
            parts.append(self.class_weights.round(10).tolist())
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]

    def describe(self) -> dict[str, float]:
        """Hand-made feature name -> mean weight, and the size (weight norm) of every other block used."""
        w = self.weights.mean(axis=0)
        out = {n: round(float(v), 4) for n, v in zip(hand_feature_names(self.cfg), w)}
        start = self.featurizer.blocks["hand"]
        for block, label in (("flow", "flow_embedding_norm"), ("local", "local_features_norm"),
                             ("shape", "shape_features_norm"), ("pairs", "pair_features_norm")):
            width = self.featurizer.blocks[block]
            if width:
                out[label] = round(float(np.linalg.norm(w[start:start + width])), 4)
            start += width
        if self.class_weights is not None:  # how far the classes' heads stray from the shared one
            out["class_deviation_norm"] = round(float(np.linalg.norm(self.class_weights.mean(axis=0), axis=1).mean()), 4)
        return out

    def save(self, path: str | Path) -> Path:
        """Write the model as JSON (atomic: tmp file + rename)."""
        blob = {"format": FORMAT, "config": to_dict(self.cfg), **self.featurizer.identity(),
                "features": self.featurizer.names, "weights": self.weights.tolist(), "metrics": self.metrics}
        if self.class_weights is not None:
            blob["class_weights"] = self.class_weights.tolist()
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
            cfg = RewardConfig(**{**ABSENT_MEANS_OFF, **blob["config"]})
            weights = np.asarray(blob["weights"], dtype=np.float64)
            class_weights = blob.get("class_weights")
            class_weights = None if class_weights is None else np.asarray(class_weights, dtype=np.float64)
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
        if weights.ndim != 2 or weights.shape[1] != len(featurizer.names):
            raise RewardError(f"{path}: weights of shape {weights.shape} for {len(featurizer.names)} inputs")
        try:
            return cls(featurizer, weights, blob.get("metrics"), class_weights)
        except RewardError as exc:
            raise RewardError(f"{path}: {exc}") from None


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


class RidgePairs:
    """Ridge Bradley-Terry on standardised winner-minus-loser rows ``Z`` ``(n, F)`` in the dual: one
    eigendecomposition of the Gram matrix gives the weights *and* the exact leave-one-out predictions for
    every L2 strength, so choosing it (and the input set) costs no refits.

    ``w(l2) = argmin |Z w - 1|^2 + l2 * m * |w|^2`` with ``m`` the mean squared row norm of ``Z``, so a
    strength means the same for any number of inputs and pairs. For the weak preferences of noisy annotators the
    Bradley-Terry likelihood is nearly linear around 0, where this least-squares fit is its one Newton
    step; the score's scale is then fit by maximum likelihood (:func:`platt_scale`).

    Per-class heads (``class_weight`` s > 0, ``classes`` the class of every row): the weights of class c are
    a shared head plus a deviation of its own, ``w + d_c``, both under the same ridge penalty with the
    deviation's inputs scaled by sqrt(s), i.e. the kernel ``Z Z^T * (1 + s [same class])``. s = 0 is one
    shared head; a large s fits every class on its own pairs."""

    def __init__(self, z: np.ndarray, classes: np.ndarray | None = None, class_weight: float = 0.0):
        self.z, n, f = z, z.shape[0], z.shape[1]
        self.class_weight = float(class_weight) if classes is not None else 0.0
        self.classes = None if classes is None else np.asarray(classes, dtype=np.int64)
        self.primal = f < n and not self.class_weight  # eigendecompose the smaller of Z^T Z and Z Z^T
        if self.primal:
            gram = z.T @ z
        else:
            gram = z @ z.T
            if self.class_weight:
                gram = gram * (1.0 + self.class_weight * (self.classes[:, None] == self.classes[None, :]))
        self.lam_unit = max(float(np.trace(gram)) / max(n, 1), 1e-12)
        s, vecs = np.linalg.eigh(gram)
        self.s = np.clip(s, 0.0, None)
        self.a = z @ vecs if self.primal else vecs * np.sqrt(self.s)  # rows' coordinates: fit = A (A^T 1)/(s + lam)
        self.vecs = vecs
        self.c = self.a.T @ np.ones(n)

    def _dual(self, l2: float) -> np.ndarray:
        return self.vecs @ (self.vecs.T @ np.ones(len(self.z)) / (self.s + l2 * self.lam_unit))

    def weights(self, l2: float) -> np.ndarray:
        """The shared head ``(F,)``."""
        if self.primal:
            return self.vecs @ (self.c / (self.s + l2 * self.lam_unit))
        return self.z.T @ self._dual(l2)

    def class_deviations(self, l2: float, n_cls: int) -> np.ndarray:
        """``(n_cls, F)``: every class's deviation from the shared head (zeros without per-class heads)."""
        dev = np.zeros((n_cls, self.z.shape[1]))
        if self.class_weight:
            alpha = self._dual(l2)
            for c in np.unique(self.classes):
                rows = self.classes == c
                dev[c] = self.class_weight * (self.z[rows].T @ alpha[rows])
        return dev

    def loo_scores(self, l2: float) -> np.ndarray:
        """``z_i . w`` of each row under the fit without that row (exact leave-one-out)."""
        inv = 1.0 / (self.s + l2 * self.lam_unit)
        fit, lev = self.a @ (inv * self.c), (self.a ** 2) @ inv
        return (fit - lev) / np.maximum(1.0 - lev, 1e-9)

    def loo_accuracy(self, l2: float) -> float:
        return _hits(self.loo_scores(l2)) / len(self.z)


def standardise(diff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(diff / per-column std, the std); constant columns get an infinite std, hence weight 0."""
    scale = diff.std(axis=0)
    scale = np.where(scale > 1e-9, scale, np.inf)  # constant inputs get weight 0
    return diff / scale, scale


def input_sets(blocks: dict[str, int]) -> dict[str, np.ndarray]:
    """Candidate column masks: each block alone and every combination of blocks, each block of a combination
    scaled up to the largest one's total variance (so seven hand-made columns are not drowned by thousands)."""
    sizes = [(k, n) for k, n in blocks.items() if n]
    total = sum(n for _, n in sizes)
    alone, start = {}, 0
    for name, n in sizes:
        alone[name] = np.zeros(total)
        alone[name][start:start + n] = 1.0
        start += n
    sets = dict(alone)
    for k in range(2, len(sizes) + 1):
        for combo in itertools.combinations(sizes, k):
            biggest = max(n for _, n in combo)
            sets["+".join(name for name, _ in combo)] = sum(alone[name] * np.sqrt(biggest / n) for name, n in combo)
    return sets


class Choice(NamedTuple):
    """What leave-one-out chose: the input set, the L2 strength, the per-class heads' weight (0 = one shared
    head) and the leave-one-out accuracy it reached."""

    inputs: str
    l2: float
    class_weight: float
    loo: float


def select(z: np.ndarray, sets: dict[str, np.ndarray], grid: Sequence[float], classes: np.ndarray | None = None,
           class_grid: Sequence[float] = (0.0,)) -> Choice:
    """The input set, L2 strength and per-class weight (from ``class_grid``, with the rows' ``classes``) with
    the best leave-one-out accuracy (ties: the first set, within it the strongest L2, then the smallest class
    weight)."""
    best = Choice("", 0.0, 0.0, -1.0)
    weights = sorted(class_grid) if classes is not None else [0.0]
    for name, mask in sets.items():
        ridges = [RidgePairs(z * mask, classes, weight) for weight in weights]
        for l2 in sorted(grid, reverse=True):
            for weight, ridge in zip(weights, ridges):
                acc = ridge.loo_accuracy(l2)
                if acc > best.loo:
                    best = Choice(name, float(l2), float(weight), acc)
    return best


def platt_scale(scores: np.ndarray) -> float:
    """``a`` maximising ``sum log sigmoid(a * scores)`` (scores of winner minus loser), >= 0: the reward's
    scale, so that ``sigmoid(r(a) - r(b))`` is a calibrated probability."""
    a = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-a * scores))
        grad, hess = float(((1 - p) * scores).sum()), float((p * (1 - p) * scores ** 2).sum()) + 1e-9
        a = max(0.0, a + grad / hess)
        if abs(grad / hess) < 1e-8:
            break
    return a


def fit_bradley_terry(diff: np.ndarray, l2: float | Sequence[float]) -> np.ndarray:
    """Weights ``w`` (original units) of the ridge Bradley-Terry fit (:class:`RidgePairs`) on
    winner-minus-loser feature differences ``diff`` ``(P, F)``, scaled by :func:`platt_scale`;
    constant features get weight 0; the scale is fit on leave-one-out scores. Several ``l2`` values: the
    one with the best leave-one-out accuracy."""
    if len(diff) == 0:
        raise RewardError("reward model: no pairs to fit")
    z, scale = standardise(diff)
    if not np.isscalar(l2):
        l2 = select(z, {"all": np.ones(z.shape[1])}, [float(v) for v in l2]).l2
    ridge = RidgePairs(z)
    return ridge.weights(float(l2)) * platt_scale(ridge.loo_scores(float(l2))) / scale


def _folds(n: int, folds: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n) % folds


def _hits(z: np.ndarray) -> float:
    return float((z > 0).sum() + 0.5 * (z == 0).sum())


def row_scores(diff: np.ndarray, weights: np.ndarray, deviations: np.ndarray | None = None,
               classes: np.ndarray | None = None) -> np.ndarray:
    """``(P,)`` scores of rows ``diff`` under a shared head ``weights`` ``(F,)`` plus, where given, the
    deviation ``deviations[c]`` ``(C, F)`` of each row's class ``c`` (classes beyond ``C``: the shared head)."""
    out = diff @ weights
    if deviations is not None:
        for c in np.unique(classes[classes < len(deviations)]):
            rows = classes == c
            out[rows] += diff[rows] @ deviations[c]
    return out


def cross_validated_accuracy(diff: np.ndarray, l2: float | Sequence[float], folds: int,
                             sets: dict[str, np.ndarray] | None = None, seed: int = 0,
                             classes: np.ndarray | None = None, class_grid: Sequence[float] = (0.0,)) -> float:
    """K-fold pair accuracy on winner-minus-loser features (NaN under 2 folds' worth of pairs): what the
    reward model's accuracy on new pairs from the same annotators will be. The L2 strength (from ``l2``), the
    input set (from ``sets``, column masks) and the per-class heads' weight (from ``class_grid``, with the
    pairs' ``classes``) are chosen by leave-one-out inside every training fold (nested), so the figure is not
    the best of a sweep."""
    grid = [float(l2)] if np.isscalar(l2) else [float(v) for v in l2]
    sets = sets or {"all": np.ones(diff.shape[1])}
    if len(diff) < 2 * folds:
        return float("nan")
    fold = _folds(len(diff), folds, seed)
    n_cls = 0 if classes is None else int(classes.max()) + 1
    hits = 0.0
    for k in range(folds):
        train, test = fold != k, fold == k
        z, scale = standardise(diff[train])
        cls = None if classes is None else classes[train]
        pick = select(z, sets, grid, cls, class_grid)
        ridge, mask = RidgePairs(z * sets[pick.inputs], cls, pick.class_weight), sets[pick.inputs]
        dev = ridge.class_deviations(pick.l2, n_cls) * mask / scale if ridge.class_weight else None
        hits += _hits(row_scores(diff[test], ridge.weights(pick.l2) * mask / scale, dev,
                                 None if classes is None else classes[test]))
    return hits / len(diff)


def fit_ensemble(diff: np.ndarray, l2: float, members: int, mask: np.ndarray | None = None, seed: int = 0,
                 classes: np.ndarray | None = None, class_weight: float = 0.0) -> tuple[np.ndarray, np.ndarray | None]:
    """``(members, F)`` shared heads and, with per-class heads (``class_weight`` > 0 and the pairs'
    ``classes``), ``(members, C, F)`` class deviations (else None): member 0 on every pair, the others on
    bootstrap resamples. Each member's scale is fit (:func:`platt_scale`) on pairs it did not train on:
    leave-one-out scores for member 0, out-of-bag pairs for the others, so an overfit member does not claim
    confidence it has not earned."""
    rng = np.random.default_rng(seed)
    mask = np.ones(diff.shape[1]) if mask is None else mask
    per_class = classes is not None and class_weight > 0
    n_cls = int(classes.max()) + 1 if per_class else 0
    heads, devs = [], []
    for m in range(members):
        idx = np.arange(len(diff)) if m == 0 else rng.integers(0, len(diff), len(diff))
        z, scale = standardise(diff[idx])
        ridge = RidgePairs(z * mask, classes[idx] if per_class else None, class_weight)
        w = ridge.weights(l2) * mask / scale
        dev = ridge.class_deviations(l2, n_cls) * mask / scale if per_class else None
        oob = np.setdiff1d(np.arange(len(diff)), idx)
        held = ridge.loo_scores(l2) if m == 0 else row_scores(diff[oob], w, dev, classes[oob] if per_class else None)
        a = platt_scale(held) if len(held) else 1.0
        heads.append(w * a)
        devs.append(dev * a if per_class else None)
    return np.stack(heads), (np.stack(devs) if per_class else None)


def fit_reward_model(classifier: SketchClassifier | None, winners: np.ndarray, losers: np.ndarray,
                     labels: np.ndarray, cfg: RewardConfig, encoder=None, encoder_path: str = "",
                     cross_validate: bool = True) -> RewardModel:
    """Fit on (winner, loser) sketch pairs ``(P, 32, 4, 2)`` of classes ``labels`` ``(P,)``; ``encoder``
    (a flow model, saved at ``encoder_path``) is needed when ``cfg.embedding_t`` is set. The input set
    (every combination of the input blocks), the L2 strength and the per-class heads' weight
    (``cfg.class_heads``) are chosen by leave-one-out accuracy. ``cross_validate``: also measure
    ``metrics['cv_accuracy']`` (the choice repeated in every fold: about as costly again as the fit)."""
    featurizer = SketchFeaturizer(cfg, classifier, encoder, encoder_path)
    diff = featurizer(winners, labels) - featurizer(losers, labels)
    if not np.isfinite(diff).all():
        raise RewardError("reward model: non-finite features (NaN sketches?)")
    if len(diff) == 0:
        raise RewardError("reward model: no pairs to fit")
    classes = np.asarray(labels, dtype=np.int64)
    class_grid = [0.0, *cfg.class_heads]
    sets = input_sets(featurizer.blocks)
    pick = select(standardise(diff)[0], sets, cfg.l2, classes, class_grid)
    heads, devs = fit_ensemble(diff, pick.l2, cfg.ensemble, sets[pick.inputs], classes=classes,
                               class_weight=pick.class_weight)
    rm = RewardModel(featurizer, heads, class_weights=devs)
    train = row_scores(diff, heads.mean(axis=0), None if devs is None else devs.mean(axis=0), classes)
    rm.metrics.update(train_pairs=len(labels), inputs=pick.inputs, l2=pick.l2, class_weight=pick.class_weight,
                      loo_accuracy=pick.loo, ensemble=cfg.ensemble, features=len(featurizer.names),
                      train_accuracy=_hits(train) / len(diff))
    if cross_validate:
        rm.metrics["cv_accuracy"] = cross_validated_accuracy(diff, cfg.l2, cfg.cv_folds, sets, classes=classes,
                                                             class_grid=class_grid)
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
