"""The online round's promotion gate, as the preference suite applies it (benchmarks/preference_suite.py).

The product's round (flows/online_dpo.py) promotes a candidate only when ``gate`` in configs/round.yaml
passes: held-out preference accuracy on the round's held-out human pairs, recognizability and Frechet
distance against the current model and against the original base. The suite decides with the same
function (:func:`driftsketch.registry.apply_gate`) and the same gate settings, on metrics measured the way
the round measures them, with one difference forced by the suite's data hygiene: the gate's classifier is
the reward model's (data part 1), as the suite has no fifth part; the evaluation classifier (part 3) that
scores the suite's figures never decides anything.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dpo.config import DPOConfig
from dpo.records import PreferenceRecord
from dpo.trainer import heldout_accuracy
from driftsketch.evaluation.classifier import SketchClassifier
from driftsketch.evaluation.frechet import frechet_distance
from driftsketch.registry import PromotionGate, apply_gate
from driftsketch.sampling import generate_beziers


@dataclass
class SuiteGate:
    """Gate metrics of a model from fixed noise (``noise_seed``), its own, not the evaluation's."""

    gate: PromotionGate
    classifier: SketchClassifier
    real_feats: np.ndarray      # the gate classifier's features of real held-out sketches
    labels: np.ndarray          # the classes sampled, ``per_class`` each
    noise_seed: int
    sampler: dict               # num_steps, cfg_scale, solver
    cache: dict = field(default_factory=dict)  # checkpoint id -> metrics

    def metrics(self, model) -> dict[str, float]:
        """``recognizability`` and ``frechet_distance`` of ``model``'s samples (cached per checkpoint id)."""
        key = str(model.checkpoint_id)
        if key not in self.cache:
            x, _ = generate_beziers(model, self.labels.tolist(), len(self.labels), seed=self.noise_seed, **self.sampler)
            self.cache[key] = {"recognizability": self.classifier.accuracy(x, self.labels),
                               "frechet_distance": frechet_distance(self.classifier.features(x), self.real_feats)}
        return self.cache[key]

    def decide(self, candidate, current, base, records: list[PreferenceRecord], cfg: DPOConfig) -> dict:
        """The round's decision on ``candidate`` (fine-tuned from ``current`` on ``records`` with ``cfg``):
        ``{promoted, reason, candidate, current, base}`` (the metrics behind it)."""
        cand = {**self.metrics(candidate), **heldout_accuracy(candidate, current, records, cfg)}
        cur, anchor = self.metrics(current), self.metrics(base)
        promoted, reason = apply_gate(self.gate, cand, cur, anchor)
        return {"promoted": promoted, "reason": reason, "candidate": cand, "current": cur, "base": anchor}
