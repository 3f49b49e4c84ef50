"""Agreement between annotators on tasks that several of them judged.

Pairwise: observed agreement (share of agreeing annotator pairs per task, averaged over tasks) and
Fleiss' kappa over the categories a / b / tie (variable raters per task). Rating: share of exactly equal
and of within-one ratings over annotator pairs, and the mean absolute difference. Only the latest version
of each annotation counts (records named by another record's ``supersedes`` are left out).

    report = agreement_report(PreferenceStore("data/preferences").records())
"""
from __future__ import annotations

from collections import defaultdict
from itertools import combinations
from typing import Iterable, Sequence

import numpy as np

from dpo.records import PreferenceRecord

CATEGORIES = ("a", "b", "tie")


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa of an ``(items, categories)`` count matrix (each item rated at least twice)."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum(axis=1)
    if counts.size == 0 or np.any(n < 2):
        raise ValueError("fleiss_kappa: every item needs at least two ratings")
    p_item = ((counts ** 2).sum(axis=1) - n) / (n * (n - 1))
    p_cat = counts.sum(axis=0) / n.sum()
    p_e = float((p_cat ** 2).sum())
    p_bar = float(p_item.mean())
    return 1.0 if p_e == 1.0 else (p_bar - p_e) / (1.0 - p_e)


def observed_agreement(labels_per_item: Sequence[Sequence]) -> float:
    """Mean over items of the share of annotator pairs that gave the same label."""
    shares = [np.mean([x == y for x, y in combinations(labels, 2)]) for labels in labels_per_item]
    return float(np.mean(shares))


def _latest_by_item(records: Iterable[PreferenceRecord]) -> dict[tuple, dict[str, PreferenceRecord]]:
    records = [r for r in records if r.source.get("system") == "label-studio" and "task" in r.source]
    superseded = {r.supersedes for r in records if r.supersedes}
    items: dict[tuple, dict[str, PreferenceRecord]] = defaultdict(dict)
    for r in records:
        if r.id not in superseded:
            items[(r.comparison_type, r.source["project"], r.source["task"])][r.annotator] = r
    return {k: v for k, v in items.items() if len(v) >= 2}


def agreement_report(records: Iterable[PreferenceRecord]) -> dict:
    """``{"pairwise": {...}, "rating": {...}}`` for tasks with two or more annotators ({} when none)."""
    out = {}
    items = _latest_by_item(records)
    pair = [[r.preference for r in by.values()] for (kind, *_), by in items.items() if kind == "pairwise"]
    if pair:
        counts = np.array([[labels.count(c) for c in CATEGORIES] for labels in pair])
        out["pairwise"] = {"tasks": len(pair), "judgements": int(counts.sum()),
                           "observed_agreement": observed_agreement(pair), "fleiss_kappa": fleiss_kappa(counts)}
    rate = [[r.rating for r in by.values()] for (kind, *_), by in items.items() if kind == "absolute"]
    if rate:
        diffs = np.array([abs(x - y) for labels in rate for x, y in combinations(labels, 2)], dtype=np.float64)
        out["rating"] = {"tasks": len(rate), "judgements": sum(map(len, rate)),
                         "exact_agreement": observed_agreement(rate),
                         "within_one": float(np.mean(diffs <= 1)), "mean_abs_diff": float(diffs.mean())}
    return out
