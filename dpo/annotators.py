"""Annotator quality and reliability, from the pairwise answers in the preference store.

Per annotator: answers, gold accuracy with a 95 % Wilson interval (gold pairs: :mod:`dpo.gold`), tie
rate, left-position rate (share of decided answers that picked the sketch shown on the left),
median lead time, the estimated accuracy when the better sketch is on the left and when it is on the
right (two-coin Dawid-Skene over pairs several people answered, gold answers known; or from gold alone),
and from them the training weight ``left_acc + right_acc - 1`` (0 for a coin-flipper and for someone who
always picks the left sketch, 1 for a perfect annotator). Agreement: Cohen's kappa for every two
annotators on the pairs both answered, Krippendorff's alpha (nominal) over all pairs answered at least twice.

An answer is the newest version of one annotator's judgement of one pair of sketches (an edited Label
Studio annotation supersedes its earlier version; the same annotator judging the same pair again
replaces the older answer). Pairs are identified by their two sketch files, whichever side they were on.

    answers = collect_answers(store.records())
    report = assess_annotators(answers, GoldSet(store).entries(), AnnotatorsConfig())
    report.weights          # {annotator: weight}; 0 for annotators excluded from training
    print(format_table(report))
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from typing import Iterable

import numpy as np

from dpo.config import AnnotatorsConfig
from dpo.gold import pair_key
from dpo.records import PreferenceRecord, latest_of_chains
from driftsketch.stats import wilson_interval

FIRST, SECOND, TIE = 1, -1, 0  # an answer about the pair key (path_1, path_2): path_1 better, path_2, tie


@dataclass(frozen=True)
class Answer:
    """One annotator's latest judgement of one pair, oriented to the pair key (sorted sketch paths)."""

    annotator: str
    key: tuple[str, str]
    choice: int  # FIRST | SECOND | TIE
    both_bad: bool
    picked_left: bool | None  # None: a tie, or the record does not say which side was left
    lead_time: float | None
    record: PreferenceRecord


def orient(rec: PreferenceRecord) -> tuple[tuple[str, str], int]:
    """(pair key, choice about it) of a pairwise record."""
    key = pair_key(rec.beziers_a, rec.beziers_b)
    if rec.preference == "tie":
        return key, TIE
    winner = rec.beziers_a if rec.preference == "a" else rec.beziers_b
    return key, FIRST if winner == key[0] else SECOND


def collect_answers(records: Iterable[PreferenceRecord]) -> list[Answer]:
    """The latest answer of every (annotator, pair) among the pairwise records, in file order."""
    kept, _ = latest_of_chains([r for r in records if r.comparison_type == "pairwise"])
    latest: dict[tuple[str, tuple[str, str]], tuple[int, PreferenceRecord]] = {}
    for order, rec in enumerate(kept):
        k = (rec.annotator, pair_key(rec.beziers_a, rec.beziers_b))
        if k not in latest or rec.timestamp >= latest[k][1].timestamp:
            latest[k] = (order, rec)
    out = []
    for _, rec in sorted(latest.values(), key=lambda x: x[0]):
        key, choice = orient(rec)
        left = None if choice == TIE or rec.left is None else rec.preference == rec.left
        out.append(Answer(rec.annotator, key, choice, rec.both_bad, left, rec.lead_time, rec))
    return out


def cohen_kappa(x: list[int], y: list[int]) -> float:
    """Cohen's kappa of two annotators' labels on the same items (nan when chance agreement is 1)."""
    if not x:
        return float("nan")
    cats = sorted(set(x) | set(y))
    xa, ya = np.asarray(x), np.asarray(y)
    p_o = float(np.mean(xa == ya))
    p_e = float(sum(np.mean(xa == c) * np.mean(ya == c) for c in cats))
    return float("nan") if p_e == 1.0 else (p_o - p_e) / (1.0 - p_e)


def krippendorff_alpha(items: list[list[int]]) -> float:
    """Krippendorff's alpha, nominal, over items each labeled by >= 2 annotators (others ignored)."""
    items = [v for v in items if len(v) >= 2]
    cats = sorted({c for v in items for c in v})
    if not items or len(cats) < 2:
        return float("nan")
    idx = {c: i for i, c in enumerate(cats)}
    coinc = np.zeros((len(cats), len(cats)))
    for v in items:
        counts = np.bincount([idx[c] for c in v], minlength=len(cats)).astype(float)
        coinc += (np.outer(counts, counts) - np.diag(counts)) / (len(v) - 1)
    n_c, n = coinc.sum(axis=1), coinc.sum()
    d_o = n - np.trace(coinc)
    d_e = (n * n - (n_c ** 2).sum()) / (n - 1)
    return float("nan") if d_e == 0 else float(1.0 - d_o / d_e)


def gold_scores(answers: list[Answer], gold: dict) -> dict[str, tuple[int, int]]:
    """``{annotator: (correct, answered)}`` on gold pairs; a tie on a gold pair is wrong."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for a in answers:
        entry = gold.get(a.key)
        if entry is None:
            continue
        right = FIRST if entry["good"] == a.key[0] else SECOND
        out[a.annotator][0] += int(a.choice == right)
        out[a.annotator][1] += 1
    return {k: (c, n) for k, (c, n) in out.items()}


def _left_is_first(a: Answer) -> bool:
    """Whether the pair key's first sketch was on the left (records without ``left``: assume so)."""
    rec = a.record
    if rec is None or rec.left is None:
        return True
    return (rec.beziers_a if rec.left == "a" else rec.beziers_b) == a.key[0]


def _beta_mean(hits: float, seen: float, prior: float, strength: float) -> float:
    return min(max((prior * strength + hits) / (strength + seen), 0.01), 0.99)


def dawid_skene(answers: list[Answer], gold: dict, prior_accuracy: float, prior_strength: float,
                iterations: int = 50) -> dict[str, tuple[float, float]]:
    """Two-coin Dawid-Skene on the screen: each annotator picks the left sketch when it is the better
    one with probability ``left_acc``, the right one when that is better with ``right_acc``.

    Returns ``{annotator: (left_acc, right_acc)}``. A coin-flipper has both near 1/2, someone who always
    picks the left sketch has 1 and 0: either way ``left_acc + right_acc - 1`` (Youden's J, the weight)
    is 0, which a one-coin model (one accuracy) cannot see when two left-pickers agree with each other.
    EM over the pairs two or more people decided (ties carry no information and are left out) plus the
    gold pairs, whose truth is known. Beta priors (mean ``prior_accuracy``, worth ``prior_strength``
    answers) keep annotators with little evidence near the prior; one person alone keeps the prior.
    """
    by_item: dict[tuple, list[Answer]] = defaultdict(list)
    for a in answers:
        if a.choice != TIE:
            by_item[a.key].append(a)
    truth = {k: (1.0 if gold[k]["good"] == k[0] else 0.0) for k in by_item if k in gold}
    items = {k: v for k, v in by_item.items() if k in truth or len(v) >= 2}
    acc = {n: (prior_accuracy, prior_accuracy) for n in sorted({a.annotator for a in answers})}
    for _ in range(iterations):
        post = {k: truth[k] if k in truth else _posterior(v, acc) for k, v in items.items()}
        counts = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])  # left hits, left seen, right hits, right seen
        for k, votes in items.items():
            for a in votes:
                q = post[k] if _left_is_first(a) else 1.0 - post[k]  # P(the left sketch is the better one)
                picked_left = (a.choice == FIRST) == _left_is_first(a)
                c = counts[a.annotator]
                c[0] += q * picked_left
                c[1] += q
                c[2] += (1.0 - q) * (not picked_left)
                c[3] += 1.0 - q
        new = {n: (_beta_mean(counts[n][0], counts[n][1], prior_accuracy, prior_strength),
                   _beta_mean(counts[n][2], counts[n][3], prior_accuracy, prior_strength)) for n in acc}
        done = max((abs(new[n][i] - acc[n][i]) for n in acc for i in (0, 1)), default=0.0) < 1e-6
        acc = new
        if done:
            break
    return acc


def _posterior(votes: list[Answer], acc: dict[str, tuple[float, float]]) -> float:
    """P(the pair key's first sketch is the better one | the votes)."""
    logit = 0.0
    for a in votes:
        left_acc, right_acc = acc[a.annotator]
        first_left = _left_is_first(a)
        # likelihood of this vote if the first sketch is better, and if the second is
        p_first = (left_acc if first_left else right_acc) if a.choice == FIRST else \
            (1 - left_acc if first_left else 1 - right_acc)
        p_second = (1 - right_acc if first_left else 1 - left_acc) if a.choice == FIRST else \
            (right_acc if first_left else left_acc)
        logit += math.log(p_first / p_second)
    return 1.0 / (1.0 + math.exp(-max(min(logit, 50.0), -50.0)))


def gold_sides(answers: list[Answer], gold: dict, prior_accuracy: float,
               prior_strength: float) -> dict[str, tuple[float, float]]:
    """``{annotator: (left_acc, right_acc)}`` from gold answers alone (real drawing on the left / right)."""
    counts = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for a in answers:
        entry = gold.get(a.key)
        if entry is None:
            continue
        right = FIRST if entry["good"] == a.key[0] else SECOND
        real_left = (right == FIRST) == _left_is_first(a)
        c = counts[a.annotator]
        c[0 if real_left else 2] += float(a.choice == right)
        c[1 if real_left else 3] += 1.0
    return {a.annotator: (_beta_mean(counts[a.annotator][0], counts[a.annotator][1], prior_accuracy, prior_strength),
                          _beta_mean(counts[a.annotator][2], counts[a.annotator][3], prior_accuracy, prior_strength))
            for a in answers}


@dataclass
class AnnotatorQuality:
    """One row of the annotator table."""

    annotator: str
    answers: int
    gold_answers: int = 0
    gold_correct: int = 0
    gold_accuracy: float = float("nan")
    gold_ci: tuple[float, float] = (float("nan"), float("nan"))
    tie_rate: float = float("nan")
    left_rate: float = float("nan")  # of decided answers with a known left side
    median_lead_time: float = float("nan")
    shared_pairs: int = 0  # pairs this annotator answered together with someone else
    mean_kappa: float = float("nan")  # Cohen's kappa with the others, averaged over shared-pair partners
    accuracy: float = float("nan")  # estimated chance of picking the better sketch, mean of both sides
    left_accuracy: float = float("nan")  # ... when the better one is on the left
    right_accuracy: float = float("nan")  # ... when it is on the right
    weight: float = 1.0
    excluded: bool = False
    reason: str = ""


@dataclass
class AnnotatorReport:
    """Everything :func:`assess_annotators` measured, and the training decision."""

    rows: list[AnnotatorQuality]
    kappas: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)  # (a, b) -> (shared, kappa)
    alpha: float = float("nan")
    multi_pairs: int = 0  # pairs with answers from two or more annotators
    weighting: str = "none"

    @property
    def weights(self) -> dict[str, float]:
        return {r.annotator: r.weight for r in self.rows}

    @property
    def excluded(self) -> dict[str, str]:
        return {r.annotator: r.reason for r in self.rows if r.excluded}

    def to_dict(self) -> dict:
        """JSON-ready form (round summary, wandb)."""
        rows = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in r.__dict__.items()} for r in self.rows]
        return {"annotators": rows, "krippendorff_alpha": self.alpha, "multi_pairs": self.multi_pairs,
                "weighting": self.weighting,
                "kappa": [{"a": a, "b": b, "shared": n, "kappa": k} for (a, b), (n, k) in self.kappas.items()]}


def pair_kappas(answers: list[Answer]) -> dict[tuple[str, str], tuple[int, float]]:
    """Cohen's kappa (over first / second / tie) for every two annotators with a shared pair."""
    by_ann: dict[str, dict[tuple, int]] = defaultdict(dict)
    for a in answers:
        by_ann[a.annotator][a.key] = a.choice
    out = {}
    for x, y in combinations(sorted(by_ann), 2):
        shared = sorted(set(by_ann[x]) & set(by_ann[y]))
        if shared:
            out[(x, y)] = (len(shared), cohen_kappa([by_ann[x][k] for k in shared], [by_ann[y][k] for k in shared]))
    return out


def _row(name: str, mine: list[Answer], gold: tuple[int, int], kappas: dict) -> AnnotatorQuality:
    decided = [a for a in mine if a.choice != TIE]
    sided = [a.picked_left for a in decided if a.picked_left is not None]
    leads = [a.lead_time for a in mine if a.lead_time is not None]
    partners = [(n, k) for pair, (n, k) in kappas.items() if name in pair and not math.isnan(k)]
    correct, answered = gold
    return AnnotatorQuality(
        annotator=name, answers=len(mine), gold_answers=answered, gold_correct=correct,
        gold_accuracy=correct / answered if answered else float("nan"), gold_ci=wilson_interval(correct, answered),
        tie_rate=1 - len(decided) / len(mine) if mine else float("nan"),
        left_rate=float(np.mean(sided)) if sided else float("nan"),
        median_lead_time=float(np.median(leads)) if leads else float("nan"),
        shared_pairs=sum(n for pair, (n, _) in kappas.items() if name in pair),
        mean_kappa=float(np.mean([k for _, k in partners])) if partners else float("nan"))


def assess_annotators(answers: list[Answer], gold: dict, cfg: AnnotatorsConfig) -> AnnotatorReport:
    """Quality table, agreement, reliability and the training weight of every annotator."""
    kappas = pair_kappas(answers)
    golds = gold_scores(answers, gold)
    by_ann: dict[str, list[Answer]] = defaultdict(list)
    by_item: dict[tuple, list[int]] = defaultdict(list)
    for a in answers:
        by_ann[a.annotator].append(a)
        by_item[a.key].append(a.choice)
    rows = [_row(n, by_ann[n], golds.get(n, (0, 0)), kappas) for n in sorted(by_ann)]
    estimate = dawid_skene if cfg.weighting == "dawid_skene" else gold_sides  # "none": shown, not used
    sides = estimate(answers, gold, cfg.prior_accuracy, cfg.prior_strength)
    for r in rows:
        r.left_accuracy, r.right_accuracy = sides[r.annotator]
        r.accuracy = (r.left_accuracy + r.right_accuracy) / 2
        weight = r.left_accuracy + r.right_accuracy - 1.0
        r.weight = 1.0 if cfg.weighting == "none" else (weight if weight >= cfg.min_weight else 0.0)
        _decide_exclusion(r, cfg)
    multi = [v for v in by_item.values() if len(v) >= 2]
    return AnnotatorReport(rows, kappas, krippendorff_alpha(multi), len(multi), cfg.weighting)


def _decide_exclusion(row: AnnotatorQuality, cfg: AnnotatorsConfig) -> None:
    """Exclude from training (weight 0; nothing in the store changes) when the whole 95 % interval of
    the gold accuracy lies below ``min_gold_accuracy``: a bad annotator, not an unlucky good one."""
    if cfg.min_gold_accuracy is None or row.gold_answers < cfg.min_gold_answers:
        return
    if row.gold_ci[1] < cfg.min_gold_accuracy:
        row.excluded, row.weight = True, 0.0
        lo, hi = row.gold_ci
        row.reason = (f"gold accuracy {row.gold_accuracy:.2f} ({row.gold_correct}/{row.gold_answers}), 95 % interval "
                      f"[{lo:.2f}, {hi:.2f}] below min_gold_accuracy {cfg.min_gold_accuracy:.2f}")


def _cell(v, fmt: str = "{:.2f}") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return fmt.format(v)


TABLE_COLUMNS = ("annotator", "answers", "gold", "gold acc [95% CI]", "kappa", "ties", "left", "lead s",
                 "acc left/right", "weight", "training")


def table_rows(report: AnnotatorReport) -> list[list[str]]:
    """The annotator table as rows of strings (:data:`TABLE_COLUMNS`)."""
    out = []
    for r in report.rows:
        gold_acc = "-" if not r.gold_answers else f"{r.gold_accuracy:.2f} [{r.gold_ci[0]:.2f}, {r.gold_ci[1]:.2f}]"
        out.append([r.annotator, str(r.answers), str(r.gold_answers), gold_acc, _cell(r.mean_kappa),
                    _cell(r.tie_rate), _cell(r.left_rate), _cell(r.median_lead_time, "{:.1f}"),
                    f"{_cell(r.left_accuracy)}/{_cell(r.right_accuracy)}", _cell(r.weight),
                    "excluded" if r.excluded else "used"])
    return out


def format_table(report: AnnotatorReport, markdown: bool = False) -> str:
    """The annotator table as aligned text (or markdown), then agreement and exclusions."""
    rows = [list(TABLE_COLUMNS)] + table_rows(report)
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        lines.insert(1, "|" + "---|" * len(TABLE_COLUMNS))
    else:
        widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_COLUMNS))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append("")
    lines.append(f"pairs answered by two or more annotators: {report.multi_pairs}; Krippendorff's alpha "
                 f"{_cell(report.alpha, '{:.3f}')}; weighting: {report.weighting}")
    for (a, b), (n, k) in report.kappas.items():
        lines.append(f"Cohen's kappa {a} / {b}: {_cell(k, '{:.3f}')} on {n} shared pairs")
    for name, reason in report.excluded.items():
        lines.append(f"excluded from training: {name}: {reason}")
    return "\n".join(lines)
