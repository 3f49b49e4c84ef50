"""Real-data anchor: a plain flow-matching loss on real sketches beside the Flow-DPO loss.

Every online round fine-tunes the newest model on pairs of its own samples (and its ``sft_weight`` term
trains on the winners among them), so whatever those samples get slightly wrong, the next model learns a
little more of: in the preference suite the share of connected joints fell round after round under every
annotator, including the one whose reward rewards connected joints (docs/dpo.md, "The real-data anchor").
``anchor.data`` adds ``anchor.weight`` x the CFM loss on a batch of real training sketches to every step,
the way RLHF mixes pre-training gradients into PPO (InstructGPT's "PPO-ptx") and the way self-consuming
generative loops are kept stable by fresh real data. Only the training side of ``driftsketch-train``'s
split (configs/train.yaml ``holdout_fraction``, ``seed``) is used, so held-out figures such as FD stay
held out.

    anchor = load_anchor(cfg.anchor, model.class_names)      # None when anchor.data is ""
    x1, y = anchor.draw(generator)                           # (batch_size, 32, 8), (batch_size,)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from driftsketch.config import yaml_defaults
from driftsketch.data import load_dataset
from driftsketch.errors import DriftSketchError

from dpo.config import AnchorConfig


class AnchorError(DriftSketchError, ValueError):
    """``anchor.data`` cannot anchor this model (missing classes, no sketches)."""


@dataclass
class AnchorBatches:
    """Real training sketches in the model's class order; :meth:`draw` samples a batch with replacement."""

    beziers: torch.Tensor  # (N, 32, 8) float32
    labels: torch.Tensor  # (N,) long, indices into the model's class names
    batch_size: int

    def draw(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.labels), (self.batch_size,), generator=generator)
        return self.beziers[idx], self.labels[idx]


def load_anchor(cfg: AnchorConfig, class_names: list[str]) -> AnchorBatches | None:
    """The training side of ``cfg.data`` for a model with ``class_names``; ``None`` when the anchor is off.
    Sketches of classes the model does not draw are left out; a model class with no sketch is an error."""
    if not cfg.data:
        return None
    split = yaml_defaults("train.yaml")
    train, _ = load_dataset(cfg.data).split(split["holdout_fraction"], seed=split["seed"])
    index = {name: i for i, name in enumerate(class_names)}
    to_model = np.array([index.get(name, -1) for name in train.class_names], dtype=np.int64)
    labels = to_model[train.labels]
    missing = sorted(set(class_names) - {train.class_names[c] for c in np.unique(train.labels)})
    if missing:
        raise AnchorError(f"anchor.data {cfg.data!r}: no training sketches of the model's classes {missing}")
    keep = labels >= 0
    x = torch.from_numpy(np.ascontiguousarray(train.beziers[keep], dtype=np.float32).reshape(-1, 32, 8))
    return AnchorBatches(x, torch.from_numpy(labels[keep]), cfg.batch_size)
