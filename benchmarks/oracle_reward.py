"""A perfect reward for the preference suite: the simulated annotator's own noise-free score.

    with oracle_reward(annotator):        # benchmarks/preference_suite.py --oracle-reward
        train_dpo(cfg, records=recs)      # amplification ranks groups by annotator.score, always passes its gate

The suite's loop fits a reward model on the noisy human pairs and, when its cross-validated accuracy passes
``amplify.min_accuracy``, ranks fresh samples with it. Swapping in the annotator's noise-free score
measures what the loop could reach with a reward that orders every sketch exactly as the annotator does:
the upper bound of any reward model, so it separates "the reward cannot see this taste" from "Flow-DPO
cannot learn it from these pairs". Research only: nothing in the product imports this module, and the
human pairs are answered (with flips and ties) exactly as in an ordinary suite run.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Iterator

import numpy as np

import dpo.trainer
from annotators import Annotator
from dpo.amplify import dataset_arrays
from dpo.reward import RewardModel
from driftsketch.fileio import atomic_write_text


class OracleReward(RewardModel):
    """A :class:`dpo.reward.RewardModel` whose one input column is ``annotator.score`` and whose one ensemble
    member has weight 1: ``score``, ``member_scores`` and ``pair_accuracy`` are the reward model's own."""

    def __init__(self, annotator: Annotator, metrics: dict):  # no featurizer: the annotator is the input
        self.annotator, self.metrics = annotator, metrics
        self.weights, self.class_weights = np.ones((1, 1)), None

    def features(self, beziers: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return self.annotator.score(beziers, labels)[:, None]

    def digest(self) -> str:
        return hashlib.sha256(f"oracle:{self.annotator.name}".encode()).hexdigest()[:12]

    def describe(self) -> dict[str, float]:
        return {}

    def save(self, path: str | Path) -> Path:
        blob = {"format": "oracle", "annotator": self.annotator.name, "metrics": self.metrics}
        return atomic_write_text(path, json.dumps(blob, indent=2))


@contextlib.contextmanager
def oracle_reward(annotator: Annotator) -> Iterator[None]:
    """Within the block, every reward fit of :func:`dpo.trainer.train_dpo` returns an :class:`OracleReward`
    for ``annotator``: cross-validated accuracy 1 (the gate always passes); its accuracy on the noisy human
    pairs is recorded as ``train_accuracy`` / ``heldout_accuracy``."""
    fit = dpo.trainer.fit_on_dataset

    def oracle_fit(classifier, train, held, cfg, encoder=None, encoder_path=""):
        rm = OracleReward(annotator, {"cv_accuracy": 1.0, "oracle": annotator.name})
        rm.metrics["train_pairs"], rm.metrics["train_accuracy"] = len(train), rm.pair_accuracy(*dataset_arrays(train))
        rm.metrics["heldout_pairs"], rm.metrics["heldout_accuracy"] = len(held), rm.pair_accuracy(*dataset_arrays(held))
        return rm

    dpo.trainer.fit_on_dataset = oracle_fit
    try:
        yield
    finally:
        dpo.trainer.fit_on_dataset = fit
