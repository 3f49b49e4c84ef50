"""The annotators' veto, as the preference suite applies it (benchmarks/preference_suite.py ``--human-veto``).

The product's round asks people about ``human_eval.share`` of every pushed batch: the current model's sketch
against the base's from the same noise (dpo/human_eval.py). Before it trains, it pools the answers of the current
model's line of descent and, when 30 of them call those models worse than the base, goes back to the model
before them (``gate.human_veto_min_pairs``, :func:`dpo.human_eval.lineage_verdict`; docs/online_loop.md).

The suite does the same with its simulated annotator: after each round, ``pairs`` evaluation pairs of the model
then current (on top of the round's 100 training pairs, so a run without the veto trains on the same pairs)
answered as training pairs are answered (10 % flips, ties); before each round, the verdict on the line. Each
round's row records the line after the round, the evaluation answers and any verdict, so a resumed run rebuilds
the state. Evaluation noise and answers are seeded by (data set, cell, seed, round).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from annotators import OUTCOME, Annotator, answer_or_random
from dpo.human_eval import lineage_verdict, passed_over, veto_target


@dataclass
class LineOfDescent:
    """The promoted models of one run, newest first, without the base, and their evaluation answers; after a taste
    mark (:meth:`mark`) only the answers given since, and ``approved`` the models promoted since."""

    min_pairs: int
    line: list[str] = field(default_factory=list)
    outcomes: dict[str, list[float]] = field(default_factory=dict)
    approved: set[str] | None = None

    def figures(self) -> dict[str, dict]:
        """Per model: answered pairs and win rate, as :func:`dpo.human_eval.human_win_rates` gives them."""
        return {m: {"pairs": len(o), "win_rate": float(np.mean(o))} for m, o in self.outcomes.items() if o}

    def judge(self) -> dict | None:
        """The round's verdict before it trains; when the line is called worse, drops the models it names, so
        :attr:`current` is the model before them (None: the base)."""
        verdict = lineage_verdict(self.figures(), self.line, self.min_pairs)
        if verdict and verdict["worse"]:
            target = veto_target(self.line, verdict["models"], self.approved)
            verdict["passed"] = passed_over(self.line, verdict["models"], target)
            self.line = self.line[self.line.index(target):] if target else []
        return verdict

    def mark(self) -> None:
        """A taste mark (:mod:`dpo.taste`): the answers given so far no longer count, nor the approvals."""
        self.outcomes, self.approved = {}, set()

    @property
    def current(self) -> str | None:
        return self.line[0] if self.line else None

    def promoted(self, checkpoint: str) -> None:
        self.line.insert(0, checkpoint)
        if self.approved is not None:
            self.approved.add(checkpoint)

    def answered(self, checkpoint: str, outcomes: list[float]) -> None:
        self.outcomes.setdefault(checkpoint, []).extend(outcomes)

    def record(self, verdict: dict | None, checkpoint: str | None, outcomes: list[float]) -> dict:
        """What a round's row keeps: enough to rebuild the state on resume (:meth:`replay`)."""
        return {"min_pairs": self.min_pairs, "verdict": verdict, "line": list(self.line),
                "eval_model": checkpoint, "outcomes": outcomes,
                "approved": None if self.approved is None else sorted(self.approved)}

    def replay(self, kept: dict) -> None:
        """Resume: the state after a finished round, from its row's :meth:`record` (after :meth:`mark` where the
        run marked the taste before that round)."""
        self.line = list(kept["line"])
        if kept.get("approved") is not None:  # earlier rows do not say (no mark)
            self.approved = set(kept["approved"])
        if kept["eval_model"] is not None:
            self.answered(kept["eval_model"], kept["outcomes"])


def eval_answers(ann: Annotator | None, current: np.ndarray, base: np.ndarray, labels: np.ndarray,
                 rng: np.random.Generator, noise: float, tie_rate: float) -> list[float]:
    """The annotator's answers to evaluation pairs (``current`` on side a, ``base`` on side b, one noise) as
    outcomes for the current model; the control answers them as it answers training pairs, with no taste."""
    return [OUTCOME[c] for c in answer_or_random(ann, current, base, labels, rng, noise, tie_rate)]
