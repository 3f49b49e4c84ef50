"""The online round's promotion gate, as the preference suite applies it (benchmarks/preference_suite.py).

The product's round (flows/online_dpo.py) promotes a candidate only when ``gate`` in configs/round.yaml
passes: held-out preference accuracy on the round's held-out human pairs, recognizability and Frechet
distance against the current model and against the original base. The suite decides with the same
function (:func:`driftsketch.registry.apply_gate`) and the same gate settings, on metrics measured the way
the round measures them, with one difference forced by the suite's data hygiene: the gate's classifier is
the reward model's (data part 1), as the suite has no fifth part; the evaluation classifier (part 3) that
scores the suite's figures never decides anything.

Each round draws its own gate noise, as the product's round does: a candidate promoted because it happened
to score high on one set of noise would otherwise stay the bar on that same noise for every later round
(the winner's curse; the suite's runs of 4 December refused 7 of 10 rounds of one cell that way).
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


# the limits the suite's gate applies; the annotators' veto (human_veto_min_pairs) is --human-veto (suite_veto.py)
SUITE_GATE_KEYS = {"min_heldout_accuracy", "max_recognizability_drop", "max_fd_ratio",
                   "max_recognizability_drop_from_base", "max_fd_ratio_to_base", "min_win_rate"}


@dataclass
class SuiteGate:
    """Gate metrics of a model from fixed noise (``noise_seed``), its own, not the evaluation's."""

    gate: PromotionGate
    classifier: SketchClassifier
    real_feats: np.ndarray      # the gate classifier's features of real held-out sketches
    labels: np.ndarray          # the classes sampled, ``per_class`` each
    noise_seed: int             # round r samples from noise_seed + r
    sampler: dict               # num_steps, cfg_scale, solver
    cache: dict = field(default_factory=dict)  # (checkpoint id, noise seed) -> metrics

    def metrics(self, model, round_index: int) -> dict[str, float]:
        """``recognizability`` and ``frechet_distance`` of ``model``'s samples on round ``round_index``'s noise."""
        seed = self.noise_seed + round_index
        key = (str(model.checkpoint_id), seed)
        if key not in self.cache:
            x, _ = generate_beziers(model, self.labels.tolist(), len(self.labels), seed=seed, **self.sampler)
            self.cache[key] = {"recognizability": self.classifier.accuracy(x, self.labels),
                               "frechet_distance": frechet_distance(self.classifier.features(x), self.real_feats)}
        return self.cache[key]

    def decide(self, candidate, current, base, records: list[PreferenceRecord], cfg: DPOConfig,
               round_index: int) -> dict:
        """Round ``round_index``'s decision on ``candidate`` (fine-tuned from ``current`` on ``records`` with
        ``cfg``): ``{promoted, reason, candidate, current, base, noise_seed, per_class, settings}`` (the metrics
        behind it and the gate's limits)."""
        cand = {**self.metrics(candidate, round_index), **heldout_accuracy(candidate, current, records, cfg)}
        cur, anchor = self.metrics(current, round_index), self.metrics(base, round_index)
        promoted, reason = apply_gate(self.gate, cand, cur, anchor)
        return {"promoted": promoted, "reason": reason, "candidate": cand, "current": cur, "base": anchor,
                "noise_seed": self.noise_seed + round_index, "per_class": int(np.bincount(self.labels).max()),
                "settings": self.gate.model_dump(include=SUITE_GATE_KEYS)}
