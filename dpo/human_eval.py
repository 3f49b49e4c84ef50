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
    recent_win_rate(answers, entries, models=5)   # the newest 5 models' pairs pooled (a model's own are few)

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
    required = ("candidate_model", "base_model")


def answer_outcome(answer: Answer, entry: dict) -> float:
    """1 when ``answer`` preferred the entry's candidate sketch, 0 the base's, 0.5 a tie."""
    if answer.choice == TIE:
        return 0.5
    picked = answer.key[0] if answer.choice == FIRST else answer.key[1]
    return 1.0 if picked == entry["candidate"] else 0.0


def pair_outcomes(answers: list[Answer], entries: dict[tuple[str, str], dict],
                  excluded: set[str] | frozenset[str] = frozenset()) -> dict[tuple[str, str], list[tuple[float, bool]]]:
    """``{pair key: [(outcome, both_bad), ...]}`` of the answers (but the ``excluded`` annotators') to
    evaluation pairs."""
    out: dict[tuple[str, str], list[tuple[float, bool]]] = defaultdict(list)
    for a in answers:
        entry = entries.get(a.key)
        if entry is not None and a.annotator not in excluded:
            out[a.key].append((answer_outcome(a, entry), a.both_bad))
    return out


def pooled(outcomes: list[list[tuple[float, bool]]]) -> dict:
    """Counts and the win rate (mean over pairs of each pair's mean outcome, :func:`mean_interval`) of pairs'
    answers."""
    flat = [o for pair in outcomes for o, _ in pair]
    return {"pairs": len(outcomes), "answers": len(flat), "wins": flat.count(1.0), "losses": flat.count(0.0),
            "ties": flat.count(0.5), "both_bad": sum(bad for pair in outcomes for _, bad in pair),
            **mean_interval([float(np.mean([o for o, _ in pair])) for pair in outcomes])}


def models_in_order(entries: dict[tuple[str, str], dict]) -> list[str]:
    """The candidate models of the registered pairs, oldest first (the order they were first registered)."""
    return list(dict.fromkeys(e["candidate_model"] for e in entries.values()))


def human_win_rates(answers: list[Answer], entries: dict[tuple[str, str], dict],
                    excluded: set[str] | frozenset[str] = frozenset()) -> dict[str, dict]:
    """Per candidate model, oldest first: how often the annotators (but the ``excluded``) preferred it to the
    base on its evaluation pairs (:func:`pooled`)."""
    by_pair = pair_outcomes(answers, entries, excluded)
    out = {}
    for model in models_in_order(entries):
        keys = [k for k in by_pair if entries[k]["candidate_model"] == model]
        if keys:
            out[model] = {"base_model": _base_of(entries, model), **pooled([by_pair[k] for k in keys])}
    return out


def recent_win_rate(answers: list[Answer], entries: dict[tuple[str, str], dict], models: int,
                    excluded: set[str] | frozenset[str] = frozenset()) -> dict | None:
    """The newest ``models`` models' evaluation pairs pooled: how the loop's recent models fare against the
    base (each promoted model passed the gate against its parent). None when they have fewer than two models
    with answers, or ``models`` < 2."""
    newest = models_in_order(entries)[-models:] if models >= 2 else []
    by_pair = pair_outcomes(answers, entries, excluded)
    keys = [k for k in by_pair if entries[k]["candidate_model"] in newest]
    answered = [m for m in newest if any(entries[k]["candidate_model"] == m for k in keys)]
    if len(answered) < 2:
        return None
    return {"models": answered, **pooled([by_pair[k] for k in keys])}


def bases_in_order(entries: dict[tuple[str, str], dict]) -> list[str]:
    """The base models the registered pairs compare with, oldest first (the round's is its original base; a push
    by hand may name another, ``driftsketch-labelstudio push --against``)."""
    return list(dict.fromkeys(e["base_model"] for e in entries.values()))


def against(entries: dict[tuple[str, str], dict], base: str) -> dict[tuple[str, str], dict]:
    """The registered pairs whose base model is ``base``."""
    return {k: e for k, e in entries.items() if e["base_model"] == base}


def judgement(answers: list[Answer], entries: dict[tuple[str, str], dict], pool: int,
              excluded: set[str] | frozenset[str] = frozenset(), base: str | None = None) -> dict:
    """What the round report and the CLI show about the pairs against ``base`` (None: every registered pair,
    when they all share one base): ``{"models": per model (:func:`human_win_rates`), "recent": the newest ``pool``
    pooled (:func:`recent_win_rate`), "lines": both as text}``."""
    entries = entries if base is None else against(entries, base)
    rates, recent = human_win_rates(answers, entries, excluded), recent_win_rate(answers, entries, pool, excluded)
    return {"models": rates, "recent": recent, "lines": format_win_rates(rates, recent)}


def lineage_verdict(rates: dict[str, dict], lineage: list[str], min_pairs: int) -> dict | None:
    """Do the annotators call the newest models of one line of descent worse than the base? ``lineage``: the
    current model first, then its parent, and so on (without the base); ``rates``: :func:`human_win_rates`.
    The window is the fewest newest models whose evaluation pairs reach ``min_pairs`` together (one model is
    current for a round or two, ~10 pairs each); their win rates are pooled pair-weighted, as one model's pairs are.
    Returns ``{"models": window, "pairs", "win_rate", "ci95", "worse"}`` (``worse``: the whole 95 % interval
    lies below 50 %), or None while the line's pairs are fewer than ``min_pairs``."""
    window, pairs, wins = [], 0, 0.0
    for model in lineage:
        window.append(model)
        r = rates.get(model)
        if r:
            pairs, wins = pairs + r["pairs"], wins + r["win_rate"] * r["pairs"]
        if pairs >= min_pairs:
            lo, hi = wilson_interval(wins, pairs)
            return {"models": window, "pairs": pairs, "win_rate": wins / pairs, "ci95": [lo, hi], "worse": hi < 0.5}
    return None


def veto_target(lineage: list[str], window: list[str], approved: set[str] | None = None) -> str | None:
    """Where the veto goes back to when it calls ``window`` (the newest models of ``lineage``, :func:`lineage_verdict`)
    worse: the newest older model of the line, or with a taste mark in force (:mod:`dpo.taste`) the newest older one
    in ``approved`` (the models promoted since the mark; those approved only before it were judged by the old
    taste). None: the base."""
    return next((m for m in lineage[len(window):] if approved is None or m in approved), None)


def passed_over(lineage: list[str], window: list[str], target: str | None) -> list[str]:
    """The models of ``lineage`` between the condemned ``window`` and the veto's ``target`` (None: the base): those
    it went back past without judging them (:func:`veto_target`)."""
    return lineage[len(window):lineage.index(target) if target is not None else len(lineage)]


def answers_since(answers: list[Answer], since) -> list[Answer]:
    """The answers given at or after ``since`` (a datetime; None: all), e.g. the taste mark in force."""
    return answers if since is None else [a for a in answers if a.record.timestamp >= since]


def mean_interval(values: list[float]) -> dict:
    """``win_rate`` (the mean of per-pair outcomes in [0, 1]) and its 95 % Wilson interval ``ci95`` with one
    observation per pair. Outcomes in [0, 1] with mean p vary at most p(1 - p), so the interval is conservative
    for ties and split pairs, and stays honest at 0 or 1 wins (3 of 3 pairs: 44-100 %)."""
    mean = float(np.mean(values))
    return {"win_rate": mean, "ci95": list(wilson_interval(mean * len(values), len(values)))}


def _base_of(entries: dict, model: str) -> str:
    return next(e["base_model"] for e in entries.values() if e["candidate_model"] == model)


def format_win_rates(rates: dict[str, dict], recent: dict | None = None) -> list[str]:
    """One line per candidate model, and one for the ``recent`` models pooled, for the round report and the CLI."""
    lines = [f"{model} over {r['base_model']}: {_figures(r)}" for model, r in rates.items()]
    if recent:
        lines.append(f"the newest {len(recent['models'])} models together over the base: {_figures(recent)}")
    return lines


def _figures(r: dict) -> str:
    return (f"{100 * r['win_rate']:.1f} % (95 % interval {100 * r['ci95'][0]:.1f}-{100 * r['ci95'][1]:.1f}; "
            f"{r['pairs']} pairs, {r['answers']} answers: {r['wins']} for it, {r['losses']} for the base, "
            f"{r['ties']} ties)")
