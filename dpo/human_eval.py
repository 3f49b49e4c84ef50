"""Human evaluation pairs: the tuned model against the base, from the same noise, judged by the annotators.

The preference suite measures a tuned model's win over its base with a simulated annotator's exact score.
People have no exact score; what they can give is the same comparison, asked as an ordinary pairwise task:
the current model's sketch and the base model's sketch from one noise, sides drawn at random. Which tasks
are evaluation pairs lives only in the preference store, ``evaluation/pairs.jsonl`` (append-only, one JSON
line per pair: ``candidate`` and ``base`` sketch paths, their model ids, the class), never in the task data.
Their answers are pulled like any other and never trained on (:mod:`dpo.dataset`).

    EvalSet(store).register([{"candidate": path_a, "base": path_b, "candidate_model": "r002-...",
                              "base_model": "base-...", "class_name": "circle"}])
    human_win_rates(collect_answers(store.records()), EvalSet(store).entries(), excluded={"careless"})
    # {"r002-...": {"base_model": ..., "pairs": 18, "answers": 36, "win_rate": 0.61, "ci95": [0.39, 0.80], ...}}

The win rate counts a tie (and "both bad") as half a win, like the suite's; it is the mean over pairs of
each pair's mean answer, so a pair that three people judged weighs as much as one judged once, and its
95 % interval is Wilson's with one observation per pair (answers to one pair are not independent draws).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from dpo.annotators import FIRST, TIE, Answer
from dpo.gold import PairRegistry
from driftsketch.stats import wilson_interval

EVAL_FILE = "evaluation/pairs.jsonl"


class EvalSet(PairRegistry):
    """The evaluation pairs registered in a preference store (``evaluation/pairs.jsonl``)."""

    FILE = EVAL_FILE
    kind = "evaluation"
    fields = ("candidate", "base")


def answer_outcome(answer: Answer, entry: dict) -> float:
    """1 when ``answer`` preferred the entry's candidate sketch, 0 the base's, 0.5 a tie."""
    if answer.choice == TIE:
        return 0.5
    picked = answer.key[0] if answer.choice == FIRST else answer.key[1]
    return 1.0 if picked == entry["candidate"] else 0.0


def human_win_rates(answers: list[Answer], entries: dict[tuple[str, str], dict],
                    excluded: set[str] | frozenset[str] = frozenset()) -> dict[str, dict]:
    """Per candidate model: how often the annotators (but the ``excluded``) preferred it to the base on its
    evaluation pairs. ``win_rate`` is the mean over pairs of each pair's mean outcome (:func:`answer_outcome`)."""
    per_pair: dict[tuple[str, str], list[float]] = defaultdict(list)
    counts: dict[str, dict] = defaultdict(lambda: {"wins": 0, "losses": 0, "ties": 0, "both_bad": 0})
    for a in answers:
        entry = entries.get(a.key)
        if entry is None or a.annotator in excluded:
            continue
        outcome = answer_outcome(a, entry)
        per_pair[a.key].append(outcome)
        c = counts[entry["candidate_model"]]
        c["wins" if outcome == 1.0 else "losses" if outcome == 0.0 else "ties"] += 1
        c["both_bad"] += int(a.both_bad)
    by_model: dict[str, list[float]] = defaultdict(list)
    for key, outcomes in per_pair.items():
        by_model[entries[key]["candidate_model"]].append(float(np.mean(outcomes)))
    return {model: {"base_model": _base_of(entries, model), "pairs": len(v), "answers": sum(counts[model][k] for k in
                    ("wins", "losses", "ties")), **counts[model], **mean_interval(v)}
            for model, v in sorted(by_model.items())}


def mean_interval(values: list[float]) -> dict:
    """``win_rate`` (the mean of per-pair outcomes in [0, 1]) and its 95 % Wilson interval ``ci95`` with one
    observation per pair. Outcomes in [0, 1] with mean p vary at most p(1 - p), so the interval is conservative
    for ties and split pairs, and stays honest at 0 or 1 wins (3 of 3 pairs: 44-100 %)."""
    mean = float(np.mean(values))
    return {"win_rate": mean, "ci95": list(wilson_interval(mean * len(values), len(values)))}


def _base_of(entries: dict, model: str) -> str:
    return next(e["base_model"] for e in entries.values() if e["candidate_model"] == model)


def format_win_rates(rates: dict[str, dict]) -> list[str]:
    """One line per candidate model, for the round report and the CLI."""
    return [f"{model} over {r['base_model']}: {100 * r['win_rate']:.1f} % "
            f"(95 % interval {100 * r['ci95'][0]:.1f}-{100 * r['ci95'][1]:.1f}; {r['pairs']} pairs, "
            f"{r['answers']} answers: {r['wins']} for it, {r['losses']} for the base, {r['ties']} ties)"
            for model, r in rates.items()]
