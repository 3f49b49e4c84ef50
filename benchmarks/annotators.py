"""Simulated annotators with tastes the project does not compute, for the preference suite.

Nothing under ``dpo/`` or ``driftsketch/`` imports this module (a test checks it): whatever these
annotators want, the reward model has to *learn* it from their answers. Every annotator has a noise-free
``score(beziers (N, 32, 4, 2), labels (N,)) -> (N,)`` (higher = preferred) and answers pairs like a
person: :func:`answer` flips 10 % of decisions and calls ties, as the project's benchmarks do.

kinds:
- ``quality``: the project's labeling judge (classifier confidence + continuity): what the loop was
  built for, the one annotator whose criterion the reward's hand-made features contain.
- ``style``: a global direction (every sketch is better with more of it): ``slant`` (italic lean),
  ``wide`` (width over height of the ink).
- ``per-sketch``: "this one is better drawn" by a criterion no feature, judge or reward input of the
  project computes: ``smooth`` (small turning of the pen along each stroke), ``symmetric`` (mirror
  symmetry about the vertical axis), ``proportioned`` (height/width close to the class's typical one in
  reference data), ``mixed`` (a person weighing smoothness, symmetry and the foreign classifier equally).
- ``classifier``: ``foreign``: the asked class's log-odds under a 1-D convolutional network over the
  stroke tokens (no raster, no project code), trained on its own part of the data.

Geometry here is written from scratch (Bezier points, bounding boxes, chamfer distances); the only
project code used is the labeling judge of the ``quality`` annotator and the noisy-answer rule.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from driftsketch.evaluation.judges import LabelingJudge, prefer_from_scores

POINTS = 8  # points per Bezier segment for the geometric criteria
GAP = 0.05  # a pen lift: the next segment starts farther than this from the previous end
_T = np.linspace(0.0, 1.0, POINTS)
_BASIS = np.stack([(1 - _T) ** 3, 3 * (1 - _T) ** 2 * _T, 3 * (1 - _T) * _T ** 2, _T ** 3], axis=1)  # (P, 4)


def curve_points(beziers: np.ndarray) -> np.ndarray:
    """``(N, 32, POINTS, 2)`` points along every segment (Bernstein form)."""
    x = np.asarray(beziers, dtype=np.float64).reshape(-1, 32, 4, 2)
    return np.einsum("pk,nskd->nspd", _BASIS, x)


def bbox_size(beziers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Width and height ``(N,)`` of the ink's bounding box."""
    p = curve_points(beziers).reshape(len(np.asarray(beziers).reshape(-1, 32, 4, 2)), -1, 2)
    size = p.max(axis=1) - p.min(axis=1)
    return size[:, 0], size[:, 1]


def slant(beziers: np.ndarray) -> np.ndarray:
    """Italic lean: ``-cov(x, y) / var(y)`` of the ink points (y points down, so a positive value
    means the top of the drawing sits to the right of its bottom), clipped to [-2, 2]."""
    p = curve_points(beziers).reshape(-1, 32 * POINTS, 2)
    c = p - p.mean(axis=1, keepdims=True)
    cov = (c[..., 0] * c[..., 1]).mean(axis=1)
    return np.clip(-cov / ((c[..., 1] ** 2).mean(axis=1) + 1e-2), -2.0, 2.0)


def log_aspect(beziers: np.ndarray) -> np.ndarray:
    """``log((width + 0.05) / (height + 0.05))`` of the ink."""
    w, h = bbox_size(beziers)
    return np.log((w + 0.05) / (h + 0.05))


def turning(beziers: np.ndarray) -> np.ndarray:
    """Mean absolute turning angle (radians) between successive steps of the pen, inside strokes
    (a jump of more than ``GAP`` between segments is a pen lift, not a turn)."""
    x = np.asarray(beziers, dtype=np.float64).reshape(-1, 32, 4, 2)
    p = curve_points(x)  # (N, 32, P, 2)
    steps = np.diff(p, axis=2).reshape(len(x), -1, 2)  # (N, 32 * (P - 1), 2) in drawing order
    ok = np.linalg.norm(steps, axis=-1) > 1e-4
    a, b = steps[:, :-1], steps[:, 1:]
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)
    angle = np.arccos(np.clip(cos, -1.0, 1.0))
    valid = ok[:, :-1] & ok[:, 1:]
    jump = np.linalg.norm(x[:, 1:, 0] - x[:, :-1, 3], axis=-1) > GAP  # (N, 31) pen lifts
    boundary = np.zeros_like(valid)
    boundary[:, POINTS - 2::POINTS - 1][:, :31] = jump  # the step pair across segment s -> s + 1
    valid &= ~boundary
    return (angle * valid).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)


def asymmetry(beziers: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Chamfer distance between the ink and its mirror image about the vertical line through the
    bounding box's centre, over the box diagonal: 0 for a mirror-symmetric drawing."""
    p = curve_points(beziers).reshape(-1, 32 * POINTS, 2)
    lo, hi = p.min(axis=1), p.max(axis=1)
    cx = (lo[:, 0] + hi[:, 0]) / 2
    q = p.copy()
    q[..., 0] = 2 * cx[:, None] - q[..., 0]
    out = np.empty(len(p))
    for i in range(0, len(p), chunk):
        d = np.linalg.norm(p[i:i + chunk, :, None] - q[i:i + chunk, None], axis=-1)  # (n, M, M)
        out[i:i + chunk] = 0.5 * (d.min(axis=2).mean(axis=1) + d.min(axis=1).mean(axis=1))
    return out / (np.linalg.norm(hi - lo, axis=1) + 1e-3)


class SegmentConvNet(nn.Module):
    """1-D convolutions over the 32 stroke tokens (8 control coordinates each) in drawing order, max over
    positions, linear head: another architecture than the project's raster CNN."""

    def __init__(self, num_classes: int, width: int = 64):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(10, width, 3, padding=1), nn.GELU(),
                                  nn.Conv1d(width, width, 3, padding=1), nn.GELU(),
                                  nn.Conv1d(width, width, 3, padding=2, dilation=2), nn.GELU())
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, beziers: torch.Tensor) -> torch.Tensor:  # (B, 32, 4, 2) -> logits (B, C)
        tok = beziers.reshape(len(beziers), 32, 8)
        gap = torch.cat([torch.zeros_like(tok[:, :1, :2]), tok[:, 1:, :2] - tok[:, :-1, 6:]], dim=1)  # pen moves
        h = self.body(torch.cat([tok, gap], dim=2).transpose(1, 2))
        return self.head(torch.cat([h.max(dim=2).values, h.mean(dim=2)], dim=1))


def train_foreign_classifier(beziers: np.ndarray, labels: np.ndarray, num_classes: int, steps: int = 600,
                             seed: int = 0) -> SegmentConvNet:
    """Train :class:`SegmentConvNet` with its own augmentation (random scale, shear and shift per sketch)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = SegmentConvNet(num_classes)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    x, y = torch.from_numpy(np.asarray(beziers, np.float32)), torch.from_numpy(np.asarray(labels, np.int64))
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        xb = x[idx]
        a = 1 + 0.1 * torch.randn(len(xb), 1, 1, generator=gen)  # scale
        s = 0.1 * torch.randn(len(xb), 1, 1, generator=gen)  # shear
        xb = torch.stack([xb[..., 0] * a + s * xb[..., 1], xb[..., 1] * a], dim=-1)
        xb = xb + 0.05 * torch.randn(len(xb), 1, 1, 2, generator=gen)
        loss = nn.functional.cross_entropy(net(xb), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def foreign_proba(net: SegmentConvNet, beziers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The asked class's probability under the foreign classifier, ``(N,)``."""
    x = torch.from_numpy(np.asarray(beziers, np.float32).reshape(-1, 32, 4, 2))
    p = torch.cat([net(x[i:i + 1024]).softmax(dim=1) for i in range(0, len(x), 1024)]).numpy()
    return p[np.arange(len(p)), np.asarray(labels, np.int64)]


def foreign_margin(net: SegmentConvNet, beziers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The asked class's log-odds under the foreign classifier, ``log p - log(1 - p)``, ``(N,)``, from the
    logits (no float32 saturation): on data it classifies perfectly, p is ~1 for almost every sketch and
    two sketches differ only in how sure the network is, which the log-odds still tell apart."""
    x = torch.from_numpy(np.asarray(beziers, np.float32).reshape(-1, 32, 4, 2))
    y = torch.from_numpy(np.asarray(labels, np.int64))
    with torch.no_grad():
        lp = torch.cat([net(x[i:i + 1024]).log_softmax(dim=1) for i in range(0, len(x), 1024)]).double()
        own = lp[torch.arange(len(lp)), y]
        others = lp.scatter(1, y[:, None], float("-inf")).logsumexp(dim=1)
    return own.numpy() - others.numpy()


@dataclass
class Annotator:
    """A simulated annotator: noise-free ``score`` (higher preferred) and how it answers."""

    name: str
    kind: str  # quality | style | per-sketch | classifier
    score_fn: Callable[[np.ndarray, np.ndarray], np.ndarray]
    description: str
    tie_margin: float = 0.0  # |score difference| below which it calls a tie (set from the base's spread)
    info: dict = field(default_factory=dict)

    def score(self, beziers: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return np.asarray(self.score_fn(np.asarray(beziers, np.float32).reshape(-1, 32, 4, 2),
                                        np.asarray(labels, np.int64)), dtype=np.float64)


def answer(annotator: Annotator, beziers_a: np.ndarray, beziers_b: np.ndarray, labels: np.ndarray,
           rng: np.random.Generator, noise: float = 0.1, tie_rate: float = 0.05) -> list[str]:
    """"a" | "b" | "tie" for each pair: ties within the annotator's margin or at ``tie_rate``, then the
    better one, flipped with probability ``noise`` (the project's noisy-human rule)."""
    return prefer_from_scores(annotator.score(beziers_a, labels), annotator.score(beziers_b, labels), rng,
                              noise=noise, tie_margin=annotator.tie_margin, tie_rate=tie_rate)


def reversed_taste(ann: Annotator) -> Annotator:
    """The same annotator after its taste turned around (``preference_suite.py --taste-change``): it now prefers
    what it disliked, with the same name, noise and tie margin."""
    return replace(ann, score_fn=lambda x, y: -ann.score_fn(x, y), description=f"{ann.description}; reversed",
                   info={**ann.info, "reversed": True})


def added_taste(ann: Annotator, other: Annotator, ref_x: np.ndarray, ref_y: np.ndarray,
                tie_std: float = 0.1) -> Annotator:
    """The same annotator after a criterion joined its taste (``preference_suite.py --new-taste plus-<name>``): equal
    parts its own score and ``other``'s, each z-scored on the base samples ``ref_x, ref_y``; the tie margin is
    ``tie_std`` of the new score's spread on them, as every non-quality annotator's."""
    own, added = _zscore(ann.score, ref_x, ref_y), _zscore(other.score, ref_x, ref_y)
    new = replace(ann, score_fn=lambda x, y: own(x, y) + added(x, y),
                  description=f"{ann.description}; plus {other.description}", info={**ann.info, "added": other.name})
    new.tie_margin = tie_std * float(new.score(ref_x, ref_y).std())
    return new


OUTCOME = {"a": 1.0, "b": 0.0, "tie": 0.5}  # an answer as a win of side a's sketch (a tie counts half)


def answer_or_random(annotator: Annotator | None, beziers_a: np.ndarray, beziers_b: np.ndarray, labels: np.ndarray,
                     rng: np.random.Generator, noise: float = 0.1, tie_rate: float = 0.05) -> list[str]:
    """:func:`answer`, or for the shuffled-label control (``annotator`` None) answers with no taste: a and b 45 %
    each, a tie 10 %."""
    if annotator is None:
        return [["a", "b", "tie"][k] for k in rng.choice(3, len(labels), p=[0.45, 0.45, 0.10])]
    return answer(annotator, beziers_a, beziers_b, labels, rng, noise=noise, tie_rate=tie_rate)


def _zscore(fn, ref_x: np.ndarray, ref_y: np.ndarray):
    v = fn(ref_x, ref_y)
    mu, sd = float(v.mean()), float(v.std() + 1e-9)
    return lambda x, y: (fn(x, y) - mu) / sd


def build_annotators(quality_judge: LabelingJudge, foreign: SegmentConvNet, reference, base_x: np.ndarray,
                     base_y: np.ndarray, tie_std: float = 0.1, quality_tie_margin: float = 0.02) -> list[Annotator]:
    """The suite's eight annotators. ``reference`` (a SketchData, the foreign classifier's part of the data)
    gives the typical proportions per class; ``base_x, base_y`` (base samples) set each non-quality
    annotator's tie margin to ``tie_std`` of its score's spread on them."""
    ref_aspect = np.array([np.median(log_aspect(reference.beziers[reference.labels == c]))
                           for c in range(len(reference.class_names))])

    def proportioned(x, y):
        return -np.abs(log_aspect(x) - ref_aspect[y])

    def smooth(x, y):
        return -turning(x)

    def symmetric(x, y):
        return -asymmetry(x)

    def foreign_score(x, y):
        return foreign_proba(foreign, x, y)

    def foreign_confidence(x, y):
        return foreign_margin(foreign, x, y)

    parts = [_zscore(f, base_x, base_y) for f in (smooth, symmetric, foreign_score)]
    anns = [
        Annotator("quality", "quality", quality_judge.score,
                  "the project's labeling judge: classifier confidence + continuity", quality_tie_margin),
        Annotator("slant", "style", lambda x, y: slant(x), "italic lean of the ink (global direction)"),
        Annotator("wide", "style", lambda x, y: log_aspect(x), "wider drawings (log width/height; global)"),
        Annotator("smooth", "per-sketch", smooth, "small pen turning along strokes"),
        Annotator("symmetric", "per-sketch", symmetric, "mirror symmetry about the vertical axis"),
        Annotator("proportioned", "per-sketch", proportioned, "height/width close to the class's median"),
        Annotator("mixed", "per-sketch", lambda x, y: sum(p(x, y) for p in parts) / 3,
                  "equal parts smooth, symmetric and foreign-classifier confidence (base z-scores)"),
        Annotator("foreign", "classifier", foreign_confidence,
                  "asked-class log-odds of a 1-D conv net over stroke tokens (own data part)"),
    ]
    for ann in anns[1:]:
        ann.tie_margin = tie_std * float(ann.score(base_x, base_y).std())
    return anns


def save_foreign(net: SegmentConvNet, path: Path) -> None:
    torch.save({"state_dict": net.state_dict(), "num_classes": net.head.out_features}, path)


def load_foreign(path: Path) -> SegmentConvNet:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    net = SegmentConvNet(int(blob["num_classes"]))
    net.load_state_dict(blob["state_dict"])
    return net.eval()
