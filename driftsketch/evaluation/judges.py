"""Automatic judges: a simulated annotator for labeling and a different, hidden judge for evaluation.

A judge has ``score(beziers (N, 32, 4, 2), class_labels (N,)) -> (N,)`` (higher is better) and
``components(...)`` with the terms of the score.

* :class:`LabelingJudge` — what a person prefers: a sketch recognisable as the asked class AND drawn
  with clean connected strokes. ``score = w_class * p(asked class | 64-px classifier)
  + w_cont * continuity(eps 0.02) - w_off * off-canvas share - w_deg * degenerate share``.
* :class:`HiddenJudge` — for measuring DPO results, so that they are not reward hacking of the
  labeling judge: a *different* classifier (32 px, other widths and seed) and a *different*
  stroke-quality measure, the number of pen strokes (connected components of the segment graph at
  eps 0.05): ``score = w_class * p(asked class | hidden classifier) + w_strokes * (1 - (k - 1) / 31)``.

:func:`prefer` turns a judge into a noisy human: ties when the scores are within ``tie_margin`` or at
random with ``tie_rate``, and the decision flipped with probability ``noise``.

    judge = LabelingJudge.load("runs/classifier.pt")          # HiddenJudge.load("runs/classifier_hidden.pt")
    choices = prefer(judge, sketches_a, sketches_b, labels, np.random.default_rng(0), noise=0.1)
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from driftsketch.config import Config
from driftsketch.evaluation.classifier import SketchClassifier
from driftsketch.evaluation.metrics import continuity_per_sketch, stroke_count_per_sketch, vector_stats_per_sketch
from driftsketch.sketch import NUM_SEGMENTS


class LabelingJudgeConfig(Config):
    """Weights of the labeling judge (``labeling_judge`` in configs/eval.yaml)."""

    defaults_from: ClassVar[str] = "eval.yaml:labeling_judge"
    class_weight: float
    continuity_weight: float
    continuity_eps: float
    off_canvas_weight: float
    degenerate_weight: float


class HiddenJudgeConfig(Config):
    """Weights of the hidden judge (``hidden_judge`` in configs/eval.yaml)."""

    defaults_from: ClassVar[str] = "eval.yaml:hidden_judge"
    class_weight: float
    strokes_weight: float
    connect_eps: float


def _asked_proba(classifier: SketchClassifier, beziers: np.ndarray, class_labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(class_labels, dtype=np.int64).reshape(-1)
    if len(labels) != len(beziers):
        raise ValueError(f"judge: {len(labels)} class labels for {len(beziers)} sketches")
    probs = classifier.predict_proba(beziers)  # (N, C)
    if labels.size and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"judge: class labels must lie in [0, {probs.shape[1]}) ({classifier.class_names})")
    return probs[np.arange(len(labels)), labels]


class _ClassifierJudge:
    """A judge built around one classifier and its weights config (``config_type()`` by default)."""

    name = ""
    config_type: type = object

    def __init__(self, classifier: SketchClassifier, cfg=None):
        self.classifier = classifier
        self.cfg = cfg or self.config_type()

    @classmethod
    def load(cls, classifier_path: str | Path, cfg=None):
        """The judge around a classifier file written by ``driftsketch-eval train-classifier``."""
        return cls(SketchClassifier.load(classifier_path), cfg)


class LabelingJudge(_ClassifierJudge):
    """Classifier confidence in the asked class + continuity, minus off-canvas and degenerate strokes."""

    name = "labeling"
    config_type = LabelingJudgeConfig

    def components(self, beziers: np.ndarray, class_labels: np.ndarray) -> dict[str, np.ndarray]:
        """Per-sketch terms ``(N,)``: class_prob, continuity, off_canvas_share, degenerate_share."""
        x = np.asarray(beziers, dtype=np.float32).reshape(-1, NUM_SEGMENTS, 4, 2)
        stats = vector_stats_per_sketch(x)
        return {"class_prob": _asked_proba(self.classifier, x, class_labels),
                "continuity": continuity_per_sketch(x, self.cfg.continuity_eps),
                "off_canvas_share": stats["off_canvas_share"],
                "degenerate_share": stats["degenerate_share"]}

    def score(self, beziers: np.ndarray, class_labels: np.ndarray) -> np.ndarray:
        """Higher is better: ``(N,)``, roughly in [-2, 2]."""
        c, w = self.components(beziers, class_labels), self.cfg
        return (w.class_weight * c["class_prob"] + w.continuity_weight * c["continuity"]
                - w.off_canvas_weight * c["off_canvas_share"] - w.degenerate_weight * c["degenerate_share"])


class HiddenJudge(_ClassifierJudge):
    """A second classifier's confidence + a pen-stroke-count score (fewer strokes is cleaner)."""

    name = "hidden"
    config_type = HiddenJudgeConfig

    def components(self, beziers: np.ndarray, class_labels: np.ndarray) -> dict[str, np.ndarray]:
        """Per-sketch terms ``(N,)``: class_prob, stroke_count, stroke_score = 1 - (k - 1) / 31."""
        x = np.asarray(beziers, dtype=np.float32).reshape(-1, NUM_SEGMENTS, 4, 2)
        k = stroke_count_per_sketch(x, self.cfg.connect_eps)
        return {"class_prob": _asked_proba(self.classifier, x, class_labels),
                "stroke_count": k.astype(np.float64),
                "stroke_score": 1.0 - (k - 1) / (NUM_SEGMENTS - 1)}

    def score(self, beziers: np.ndarray, class_labels: np.ndarray) -> np.ndarray:
        """Higher is better: ``(N,)`` in [0, 2] with unit weights."""
        c, w = self.components(beziers, class_labels), self.cfg
        return w.class_weight * c["class_prob"] + w.strokes_weight * c["stroke_score"]


def prefer_from_scores(score_a: np.ndarray, score_b: np.ndarray, rng: np.random.Generator,
                       noise: float = 0.1, tie_margin: float = 0.02, tie_rate: float = 0.0) -> list[str]:
    """Simulated human choices from two score arrays: "tie" when ``|a - b| < tie_margin`` or with
    probability ``tie_rate``; otherwise the better one, flipped with probability ``noise``."""
    if not (0.0 <= noise <= 1.0 and 0.0 <= tie_rate <= 1.0 and tie_margin >= 0.0):
        raise ValueError(f"prefer: need 0 <= noise, tie_rate <= 1 and tie_margin >= 0, got "
                         f"noise={noise}, tie_rate={tie_rate}, tie_margin={tie_margin}")
    diff = np.asarray(score_a, dtype=np.float64) - np.asarray(score_b, dtype=np.float64)
    tie = (np.abs(diff) < tie_margin) | (rng.random(diff.shape) < tie_rate)
    a_wins = (diff > 0) ^ (rng.random(diff.shape) < noise)
    return ["tie" if t else ("a" if w else "b") for t, w in zip(tie, a_wins)]


def prefer(judge, beziers_a: np.ndarray, beziers_b: np.ndarray, class_labels: np.ndarray,
           rng: np.random.Generator, noise: float = 0.1, tie_margin: float = 0.02,
           tie_rate: float = 0.0) -> list[str]:
    """Pairwise choices ``"a" | "b" | "tie"`` of a noisy human who judges like ``judge``."""
    return prefer_from_scores(judge.score(beziers_a, class_labels), judge.score(beziers_b, class_labels),
                              rng, noise, tie_margin, tie_rate)


def win_rate(score_a: np.ndarray, score_b: np.ndarray, tie_margin: float = 0.0) -> dict[str, float]:
    """How often A beats B under paired scores: wins, losses, ties, ``win_rate`` = (wins + ties / 2) / n
    with a 95% normal-approximation confidence interval ``ci_low``, ``ci_high``."""
    diff = np.asarray(score_a, dtype=np.float64) - np.asarray(score_b, dtype=np.float64)
    if diff.size == 0:
        raise ValueError("win_rate: no pairs")
    outcome = np.where(np.abs(diff) <= tie_margin, 0.5, (diff > 0).astype(np.float64))
    mean = float(outcome.mean())
    half = 1.96 * float(outcome.std(ddof=1)) / np.sqrt(len(outcome)) if len(outcome) > 1 else float("nan")
    return {"n": int(len(outcome)), "wins": int((outcome == 1).sum()), "losses": int((outcome == 0).sum()),
            "ties": int((outcome == 0.5).sum()), "win_rate": mean,
            "ci_low": max(0.0, mean - half), "ci_high": min(1.0, mean + half)}
