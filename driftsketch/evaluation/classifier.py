"""A small CNN sketch classifier on rasterised renders: recognizability, Frechet features, judges.

    clf = train_classifier(data, ClassifierConfig())          # trains on data.split()[0]
    clf.metrics["holdout_accuracy"]                           # accuracy on real held-out sketches
    clf.save("runs/classifier.pt"); clf = SketchClassifier.load("runs/classifier.pt")
    probs = clf.predict_proba(beziers)                        # (N, C)
    feats = clf.features(beziers)                             # (N, D) penultimate layer

Two configurations (``classifier`` and ``hidden_classifier`` in configs/eval.yaml): 64 px for the
labeling judge and the eval metrics, and 32 px with other widths and seed for the hidden judge.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from driftsketch.augment import AugmentConfig, random_affine
from driftsketch.checkpoint import atomic_torch_save, check_torch_file
from driftsketch.config import (Config, Count, Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, from_dict,
                                replace_config, to_dict)
from driftsketch.errors import DriftSketchError
from driftsketch.raster import rasterize
from driftsketch.sketch import from_flat, to_flat

FORMAT = "driftsketch-classifier-v1"


class ClassifierError(DriftSketchError, ValueError):
    """A file that is not a loadable DriftSketch classifier; the message names it."""


class ClassifierConfig(Config):
    """The sketch classifier (defaults: ``classifier`` in configs/eval.yaml)."""

    defaults_from: ClassVar[str] = "eval.yaml:classifier"
    resolution: Count  # raster size in pixels
    widths: list[Count]  # conv channels per stage
    line_width: PositiveFloat  # raster line width in pixels
    blur_sigma: NonNegativeFloat  # raster blur in pixels
    dropout: Fraction
    steps: Count  # optimiser steps (the builtin data reaches its loss floor by ~150)
    batch_size: Count
    lr: PositiveFloat
    weight_decay: NonNegativeFloat
    augment: bool  # a small random affine map per sketch, drawn from ``affine``
    affine: AugmentConfig
    seed: int
    holdout_fraction: Fraction  # data.split() arguments: the held-out part is never trained on
    split_seed: int
    parts: Count  # the training split is cut into this many disjoint shares (SketchData.partition) ...
    part: NonNegativeInt  # ... and the classifier trains on this one: judges that must share no data take different parts


class SketchCNN(nn.Module):
    """Conv stages (3x3 conv, BN, ReLU, 2x2 max-pool; the first at 64+ px uses stride 2 instead)
    -> global average pool -> features ``(B, widths[-1])`` -> dropout -> linear logits."""

    def __init__(self, num_classes: int, cfg: ClassifierConfig):
        super().__init__()
        layers: list[nn.Module] = []
        c_in, size = 1, cfg.resolution
        for i, c_out in enumerate(cfg.widths):
            stride = 2 if (i == 0 and cfg.resolution >= 64) else 1
            layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            size //= stride
            if stride == 1 and i < len(cfg.widths) - 1 and size >= 8:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(c_in, num_classes))
        self.to(memory_format=torch.channels_last)  # about 2x faster convolutions on CPU

    def features(self, img: torch.Tensor) -> torch.Tensor:
        img = img.contiguous(memory_format=torch.channels_last)  # (B, 1, R, R)
        return self.body(img).mean(dim=(2, 3))  # (B, C_last)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(img))  # (B, num_classes)


class SketchClassifier:
    """A trained :class:`SketchCNN` with its config, class names and training metrics."""

    def __init__(self, net: SketchCNN, cfg: ClassifierConfig, class_names: list[str],
                 metrics: dict[str, Any] | None = None):
        self.net = net.eval()
        self.cfg = cfg
        self.class_names = list(class_names)
        self.metrics = dict(metrics or {})

    def _raster(self, beziers: np.ndarray) -> torch.Tensor:
        return rasterize(beziers, self.cfg.resolution, blur_sigma=self.cfg.blur_sigma, line_width=self.cfg.line_width)

    @torch.no_grad()
    def _batched(self, beziers: np.ndarray, fn, batch_size: int = 1024) -> np.ndarray:
        x = np.asarray(beziers, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        self.net.eval()
        out = [fn(self._raster(x[i:i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def predict_proba(self, beziers: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, C)`` for ``(N, 32, 4, 2)`` sketches."""
        return self._batched(beziers, lambda img: self.net(img).softmax(dim=1))

    def predict(self, beziers: np.ndarray) -> np.ndarray:
        """Most likely class id ``(N,)``."""
        return self.predict_proba(beziers).argmax(axis=1)

    def features(self, beziers: np.ndarray) -> np.ndarray:
        """Penultimate-layer features ``(N, D)`` (for the Frechet distance)."""
        return self._batched(beziers, self.net.features)

    def accuracy(self, beziers: np.ndarray, labels: np.ndarray) -> float:
        """Share of sketches whose predicted class is ``labels``."""
        return float((self.predict(beziers) == np.asarray(labels)).mean()) if len(labels) else float("nan")

    def save(self, path: str | Path) -> Path:
        """Write ``{format, config, class_names, metrics, state_dict}`` atomically with torch.save."""
        blob = {"format": FORMAT, "config": to_dict(self.cfg), "class_names": self.class_names,
                "metrics": self.metrics, "state_dict": self.net.state_dict()}
        path = Path(path)
        atomic_torch_save(blob, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SketchClassifier":
        """Load a file written by :meth:`save` (``weights_only=True``); other files raise ClassifierError."""
        check_torch_file(Path(path), "DriftSketch classifier", ClassifierError)
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ClassifierError(f"{path}: not a DriftSketch classifier file ({type(exc).__name__}: "
                                  f"{' '.join(str(exc).split())[:200]})") from None
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise ClassifierError(f"{path}: not a DriftSketch classifier file (expected format {FORMAT!r})")
        names = blob.get("class_names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ClassifierError(f"{path}: class_names must be a non-empty list of strings")
        cfg = from_dict(ClassifierConfig, blob.get("config"), where=f"{path}: config")
        try:
            net = SketchCNN(len(names), cfg)
            net.load_state_dict(blob["state_dict"])
        except (KeyError, RuntimeError, TypeError, AttributeError, ValueError) as exc:
            detail = " ".join(str(exc).split())[:200]
            raise ClassifierError(f"{path}: classifier weights do not match its config ({detail})") from None
        return cls(net, cfg, names, blob.get("metrics"))


def fit_classifier(beziers: np.ndarray, labels: np.ndarray, class_names: list[str],
                   cfg: ClassifierConfig | None = None, progress: bool = True) -> SketchClassifier:
    """Train a classifier on ``(N, 32, 4, 2)`` sketches and int labels for ``cfg.steps`` steps."""
    cfg = cfg or ClassifierConfig()
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    net = SketchCNN(len(class_names), cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.15)
    x_all = torch.as_tensor(np.asarray(beziers, dtype=np.float32))
    y_all = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    net.train()
    bar = tqdm(range(cfg.steps), desc="classifier", disable=not progress, mininterval=2.0)
    for _ in bar:
        idx = torch.randint(len(y_all), (min(cfg.batch_size, len(y_all)),), generator=gen)
        x = x_all[idx]
        if cfg.augment:
            x = from_flat(random_affine(to_flat(x), cfg.affine, generator=gen))
        img = rasterize(x, cfg.resolution, blur_sigma=cfg.blur_sigma, line_width=cfg.line_width)
        loss = nn.functional.cross_entropy(net(img), y_all[idx], label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return SketchClassifier(net.eval(), cfg, class_names)


def training_part(data, cfg: ClassifierConfig):
    """The sketches a classifier of ``cfg`` trains on: part ``cfg.part`` of ``cfg.parts`` of the training
    split ``data.split(cfg.holdout_fraction, cfg.split_seed)[0]``. Two configs with the same split and
    ``parts`` but different ``part`` train on disjoint sketches."""
    if not 0 <= cfg.part < cfg.parts:
        raise ValueError(f"classifier: part must lie in [0, parts={cfg.parts}), got {cfg.part}")
    train = data.split(cfg.holdout_fraction, cfg.split_seed)[0]
    return train if cfg.parts == 1 else train.partition(cfg.parts, cfg.split_seed + 1)[cfg.part]


def train_classifier(data, cfg: ClassifierConfig | None = None, progress: bool = True) -> SketchClassifier:
    """Train on :func:`training_part` of ``data`` (a SketchData); the held-out accuracy on real sketches
    (the split's held-out side, never trained on by any part) is in ``clf.metrics["holdout_accuracy"]``."""
    cfg = cfg or ClassifierConfig()
    train, holdout = training_part(data, cfg), data.split(cfg.holdout_fraction, cfg.split_seed)[1]
    if len(train) == 0:
        raise ValueError("train_classifier: the training split is empty")
    start = time.time()
    clf = fit_classifier(train.beziers, train.labels, data.class_names, cfg, progress)
    clf.metrics.update({
        "train_seconds": round(time.time() - start, 1),
        "train_size": len(train), "holdout_size": len(holdout), "part": [cfg.part, cfg.parts],
        "train_accuracy": clf.accuracy(train.beziers[:5000], train.labels[:5000]),
        "holdout_accuracy": clf.accuracy(holdout.beziers, holdout.labels),
        "dataset": str(data.meta.get("source", "")),
    })
    return clf


def config_replace(cfg: ClassifierConfig, **changes: Any) -> ClassifierConfig:
    """A copy of ``cfg`` with some fields changed (unknown names raise TypeError)."""
    return replace_config(cfg, **changes)
