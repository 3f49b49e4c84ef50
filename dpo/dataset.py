"""Training pairs from the preference store.

    ds = PreferenceDataset("data/preferences", class_names=model.class_names)
    train, held = ds.split(holdout_fraction=0.1, seed=0)
    print(ds.summary())      # pairs, ties, synthesised, skipped (with reasons), annotators, ...
    item = ds[0]             # {"winner_beziers": (32, 8), "loser_beziers": (32, 8), "class_label": int,
                             #  "target": float, "weight": float,
                             #  "winner_noise": (32, 8), "loser_noise": (32, 8)}   (noise when stored)

Which records train: the newest record of each ``supersedes`` chain, and of each annotator's answers
to one pair of sketches; pairwise answers, except answers to gold pairs (:mod:`dpo.gold`), to evaluation
pairs (the tuned model against the base, :mod:`dpo.human_eval`) and answers
of annotators excluded for low gold accuracy (:mod:`dpo.annotators`); pairs synthesised from absolute
ratings of the same class (optionally the same checkpoint) whose ratings differ by ``>= min_margin``.

Several answers to one pair become one training pair (``annotators.aggregate``): each answer counts
with its annotator's weight; ``both_bad`` answers holding half the weight or more drop the pair
(counted as ``both_bad``); of the rest, a vote for a sketch counts 1, a tie 1/2 to each side; a share
nearer 1/2 than ``min_vote_margin`` drops the pair (counted as a tie: two trusted people who disagree
are no preference to train toward, and a label-smoothed target near 1/2 would pull the pair's margin to 0). ``majority`` trains the pair toward the side with more than
half (target 1), ``soft`` toward it with target = its share of the votes (a label-smoothed Flow-DPO
loss), ``each`` keeps every answer as its own pair with its annotator's weight (ties and both-bad
answers counted, not trained on). One answer per pair gives the same pairs under all three rules.
"""
from __future__ import annotations

import itertools
import random
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
from torch.utils.data import Dataset

from dpo.annotators import TIE, AnnotatorReport, Answer, assess_annotators, collect_answers
from dpo.config import AnnotatorsConfig
from dpo.gold import GoldSet, pair_key
from dpo.human_eval import EvalSet
from dpo.records import PreferenceRecord, latest_of_chains
from dpo.store import PreferenceStore, StoreError, StoreWarning
from dpo.taste import TasteMarks, answered_since
from driftsketch.split import holdout_mask


@dataclass(frozen=True)
class Pair:
    """One training pair: which record (and side) won and lost, with the probability ``target`` that
    the winner is the better one and the pair's loss ``weight``."""

    winner: PreferenceRecord
    winner_side: str
    loser: PreferenceRecord
    loser_side: str
    class_label: int
    synthesised: bool
    target: float = 1.0
    weight: float = 1.0
    answers: int = 1


class PreferenceDataset(Dataset):
    """Winner/loser pairs for Flow-DPO (see module docstring)."""

    def __init__(self, store: PreferenceStore | str | Path, class_names: list[str] | None = None, *,
                 min_margin: int = 1, synthesise: bool = True, same_checkpoint: bool = False,
                 max_synthesised: int | None = None, use_noise: bool = True, seed: int = 0,
                 records: list[PreferenceRecord] | None = None, annotators: AnnotatorsConfig | None = None,
                 assessment: AnnotatorReport | None = None, soft_amplified: bool = False):
        """Load and select records.

        Args:
            class_names: the base model's classes; records are mapped by ``class_name`` and an unknown
                class raises ``ValueError`` listing it. ``None`` trusts each record's ``class_label``.
            min_margin: smallest rating difference that makes a synthesised pair.
            same_checkpoint: synthesise only from ratings of sketches made by the same checkpoint.
            max_synthesised: cap on synthesised pairs (a seeded random subset), ``None`` = all.
            use_noise: return the stored generation noise when every pair has it for both sides.
            records: use these records instead of reading the store (``split`` uses this).
            annotators: how answers are aggregated and weighted (configs/dpo.yaml ``annotators``).
            assessment: annotator weights and exclusions to use; ``None`` assesses every answer in the
                store (gold pairs included), also when ``records`` is a subset of it.
            soft_amplified: a reward-amplified pair trains toward the probability its record stores
                (``source.probability``, clipped to [1/2, 1]) instead of 1.
        """
        self.store = store if isinstance(store, PreferenceStore) else PreferenceStore(store)
        self.class_names = list(class_names) if class_names is not None else None
        self.annotators = annotators or AnnotatorsConfig()
        self.options = dict(min_margin=min_margin, synthesise=synthesise, same_checkpoint=same_checkpoint,
                            max_synthesised=max_synthesised, use_noise=use_noise, seed=seed,
                            annotators=self.annotators, soft_amplified=soft_amplified)
        self.stats: Counter = Counter()
        self.skipped: Counter = Counter()
        self.gold = GoldSet(self.store).entries()
        self.evaluation = EvalSet(self.store).entries()
        everything = None
        if records is None:
            scan = self.store.scan()
            for msg in scan.issues:
                warnings.warn(msg, StoreWarning, stacklevel=2)
            if scan.issues:
                self.skipped["malformed or torn line"] += len(scan.issues)
            records = everything = scan.records
        self.stats["records"] = len(records)
        self.records = self._select(records)
        if assessment is None:
            pool = self.records if everything is not None else self._select_quiet(self.store.scan().records)
            assessment = assess_annotators(collect_answers(pool), self.gold, self.annotators)
        self.assessment = assessment
        self.records = self._since_taste_mark(self.records)
        self.pairs = self._pairwise() + self._synthesise()
        self._arrays: dict[tuple[str, str], torch.Tensor] = {}
        self.pairs = [p for p in self.pairs if self._load_pair(p)]
        self.with_noise = bool(use_noise and self.pairs and all(self._has_noise(p) for p in self.pairs))

    # ---- selection ------------------------------------------------------------------------------
    def _select(self, records: list[PreferenceRecord]) -> list[PreferenceRecord]:
        unique, seen_ids, seen_src = [], set(), set()
        for rec in records:
            if rec.id in seen_ids or rec.source_key in seen_src:
                self.skipped["duplicate id or source"] += 1
                continue
            seen_ids.add(rec.id)
            seen_src.add(rec.source_key)
            unique.append(rec)
        kept, dropped = latest_of_chains(unique)
        self.stats["superseded"] = dropped
        return self._known_classes(kept)

    def _since_taste_mark(self, records: list[PreferenceRecord]) -> list[PreferenceRecord]:
        """The records answered at or after the store's taste mark in force (:mod:`dpo.taste`); the older ones are
        counted (``before_taste_mark``), not trained on. Annotators are assessed before this, on every answer."""
        self.taste_since = TasteMarks(self.store).since()
        kept = answered_since(records, self.taste_since)
        self.stats["before_taste_mark"] += len(records) - len(kept)
        return kept

    @staticmethod
    def _select_quiet(records: list[PreferenceRecord]) -> list[PreferenceRecord]:
        """Latest versions of every stored record (for assessing annotators over the whole store)."""
        seen, unique = set(), []
        for rec in records:
            if rec.id not in seen:
                seen.add(rec.id)
                unique.append(rec)
        return latest_of_chains(unique)[0]

    def _known_classes(self, records: list[PreferenceRecord]) -> list[PreferenceRecord]:
        """The records of classes the model draws; the others are skipped and counted per class (one record
        of a class the model never learned must not stop training on the rest)."""
        if self.class_names is None:
            return records
        known = set(self.class_names)
        for rec in records:
            if rec.class_name not in known:
                self.skipped[f"class the model does not know: {rec.class_name}"] += 1
        return [r for r in records if r.class_name in known]

    def label_of(self, rec: PreferenceRecord) -> int:
        """The model's class id for ``rec`` (by class name when the model's names are known)."""
        return self.class_names.index(rec.class_name) if self.class_names is not None else rec.class_label

    def _pairwise(self) -> list[Pair]:
        pairwise = [r for r in self.records if r.comparison_type == "pairwise"]
        answers = collect_answers(pairwise)
        if len(pairwise) > len(answers):  # the same annotator judged the same two sketches again: newest counts
            self.skipped["duplicate pair from the same annotator"] += len(pairwise) - len(answers)
        excluded, groups = self.assessment.excluded, defaultdict(list)
        for a in answers:
            if a.key in self.gold:
                self.stats["gold_answers"] += 1
            elif a.key in self.evaluation:
                self.stats["evaluation_answers"] += 1
            elif a.annotator in excluded:
                self.stats["excluded_answers"] += 1
            else:
                groups[a.key].append(a)
        self.stats["answers"] = sum(map(len, groups.values()))
        self.stats["multi_answer_pairs"] = sum(len(g) > 1 for g in groups.values())
        pairs = []
        for group in groups.values():
            if self.annotators.aggregate == "each":
                pairs += [p for a in group if (p := self._vote([a])) is not None]
            elif (p := self._vote(group)) is not None:
                pairs.append(p)
        return pairs

    def _weight(self, annotator: str) -> float:
        return self.assessment.weights.get(annotator, 1.0)

    def _vote(self, group: list[Answer]) -> Pair | None:
        """One training pair from the answers to one pair of sketches, or None (counted) when there is
        no preference to learn: no weight, mostly "both bad", or an even vote."""
        weights = [self._weight(a.annotator) for a in group]
        total = sum(weights)
        if total <= 0:
            self.stats["zero_weight"] += 1
            return None
        if sum(w for a, w in zip(group, weights) if a.both_bad) >= 0.5 * total:
            self.stats["both_bad"] += 1
            return None
        votes = [(w, 0.5 if a.choice == TIE else float(a.choice > 0)) for a, w in zip(group, weights) if not a.both_bad]
        share = sum(w * v for w, v in votes) / sum(w for w, _ in votes)  # of the first sketch of the key
        if abs(share - 0.5) < max(self.annotators.min_vote_margin - 1e-9, 1e-9):  # 3/5 - 1/2 is not < 0.1
            self.stats["ties"] += 1
            return None
        rec, key = group[0].record, group[0].key
        won = key[0] if share > 0.5 else key[1]
        w_side = "a" if rec.beziers_a == won else "b"
        l_side = "b" if w_side == "a" else "a"
        target = max(share, 1.0 - share) if self.annotators.aggregate == "soft" else 1.0
        if self.options["soft_amplified"] and len(group) == 1 and "probability" in rec.source:
            target = min(1.0, max(0.5, float(rec.source["probability"])))
        weight = total if self.annotators.aggregate == "each" else 1.0
        return Pair(rec, w_side, rec, l_side, self.label_of(rec), False, target, weight, len(group))

    def _synthesise(self) -> list[Pair]:
        opts = self.options
        rated = [r for r in self.records if r.comparison_type == "absolute"]
        self.stats["ratings"] = len(rated)
        if not opts["synthesise"]:
            return []
        groups: dict[tuple, list[PreferenceRecord]] = defaultdict(list)
        for r in rated:
            groups[(r.class_name, r.checkpoint if opts["same_checkpoint"] else None)].append(r)
        pairs, seen = [], set()
        for group in groups.values():
            for a, b in itertools.combinations(group, 2):
                if abs(a.rating - b.rating) < opts["min_margin"] or a.beziers_a == b.beziers_a:
                    continue
                w, l = (a, b) if a.rating > b.rating else (b, a)
                if (w.beziers_a, l.beziers_a) in seen:
                    continue
                seen.add((w.beziers_a, l.beziers_a))
                pairs.append(Pair(w, "a", l, "a", self.label_of(w), True))
        if opts["max_synthesised"] is not None and len(pairs) > opts["max_synthesised"]:
            pairs = random.Random(opts["seed"]).sample(pairs, opts["max_synthesised"])
        return pairs

    # ---- arrays ---------------------------------------------------------------------------------
    def _tensor(self, rec: PreferenceRecord, side: str, kind: str) -> torch.Tensor | None:
        key = (rec.id, kind + side)
        if key not in self._arrays:
            arr = (self.store.load_beziers(rec, side).reshape(32, 8) if kind == "beziers"
                   else self.store.load_noise(rec, side))
            self._arrays[key] = None if arr is None else torch.from_numpy(arr.copy())
        return self._arrays[key]

    def _load_pair(self, pair: Pair) -> bool:
        try:
            for rec, side in ((pair.winner, pair.winner_side), (pair.loser, pair.loser_side)):
                self._tensor(rec, side, "beziers")
                self._tensor(rec, side, "noise")
        except StoreError as exc:
            warnings.warn(f"skipping pair: {exc}", StoreWarning, stacklevel=3)
            self.skipped["invalid arrays"] += 1
            return False
        return True

    def _has_noise(self, pair: Pair) -> bool:
        return (self._tensor(pair.winner, pair.winner_side, "noise") is not None
                and self._tensor(pair.loser, pair.loser_side, "noise") is not None)

    # ---- Dataset API ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        p = self.pairs[i]
        item = {"winner_beziers": self._tensor(p.winner, p.winner_side, "beziers"),
                "loser_beziers": self._tensor(p.loser, p.loser_side, "beziers"),
                "class_label": p.class_label, "target": torch.tensor(p.target, dtype=torch.float32),
                "weight": torch.tensor(p.weight, dtype=torch.float32)}
        if self.with_noise:
            item["winner_noise"] = self._tensor(p.winner, p.winner_side, "noise")
            item["loser_noise"] = self._tensor(p.loser, p.loser_side, "noise")
        return item

    def split(self, holdout_fraction: float = 0.1, seed: int = 0) -> tuple["PreferenceDataset", "PreferenceDataset"]:
        """(train, held-out): the ``round(holdout_fraction * groups)`` groups of records whose ids hash
        lowest with ``seed`` are held out. A group is every answer to one pair of sketches (named by its
        first record's id) or one rating record, so one record per group splits exactly as by record.

        The size is exact, not binomial, so a small store cannot lose most of its training pairs to
        an unlucky draw. Records (not pairs) are split, so a synthesised pair only joins ratings from
        one side, no sketch of a held-out record is trained on, and several annotators' answers to one
        pair stay together.
        """
        group_of: dict[tuple, str] = {}
        names = [group_of.setdefault(_group(r), r.id) for r in self.records]
        held = holdout_mask(names, holdout_fraction, seed)
        return (self._with([r for r, h in zip(self.records, held) if not h]),
                self._with([r for r, h in zip(self.records, held) if h]))

    def excluding(self, other: "PreferenceDataset") -> "PreferenceDataset":
        """This dataset without any record of a group (pair of sketches, or rating) that ``other`` holds:
        what the reward model may fit on when ``other`` is the trainer's held-out part."""
        groups = {_group(r) for r in other.records}
        return self._with([r for r in self.records if _group(r) not in groups])

    def split_newest(self, n: int) -> tuple["PreferenceDataset", "PreferenceDataset"]:
        """(older, newest): the ``n`` pairs of sketches answered last (by the latest answer to each) with every
        rating given since the first of them, and the rest. A group's answers stay together. Everything is
        older when there are ``n`` or fewer pairs of sketches."""
        latest: dict[tuple, datetime] = {}
        for r in self.records:
            g = _group(r)
            latest[g] = max(latest.get(g, r.timestamp), r.timestamp)
        paired = sorted(t for g, t in latest.items() if len(g) > 1)  # pair keys; a rating's group is (id,)
        if len(paired) <= n:
            return self._with(self.records), self._with([])
        cut = paired[-n]
        return (self._with([r for r in self.records if latest[_group(r)] < cut]),
                self._with([r for r in self.records if latest[_group(r)] >= cut]))

    def newest(self, n: int | None) -> "PreferenceDataset":
        """The ``n`` pairs of sketches answered last, as :meth:`split_newest` counts them (all of them when there are
        no more, or ``n`` is None): a fit on them stays the same size however large the store grows."""
        if n is None:
            return self
        newest = self.split_newest(n)[1]
        return newest if len(newest) else self

    def _with(self, records: list[PreferenceRecord]) -> "PreferenceDataset":
        return PreferenceDataset(self.store, self.class_names, records=records, assessment=self.assessment,
                                 **self.options)

    def summary(self) -> dict:
        """Counts: pairs, synthesised, ties, both_bad, superseded, skipped (reason -> count), per class."""
        synth = sum(p.synthesised for p in self.pairs)
        names = self.class_names
        per_class = Counter(names[p.class_label] if names else str(p.class_label) for p in self.pairs)
        return {"records": self.stats["records"], "pairs": len(self.pairs), "pairwise": len(self.pairs) - synth,
                "synthesised": synth, "ties": self.stats["ties"], "both_bad": self.stats["both_bad"],
                "ratings": self.stats["ratings"], "superseded": self.stats["superseded"],
                "skipped": dict(self.skipped), "per_class": dict(per_class), "noise": self.with_noise,
                "answers": self.stats["answers"], "multi_answer_pairs": self.stats["multi_answer_pairs"],
                "gold_answers": self.stats["gold_answers"],
                "evaluation_answers": self.stats["evaluation_answers"], "excluded_answers": self.stats["excluded_answers"],
                "zero_weight": self.stats["zero_weight"], "before_taste_mark": self.stats["before_taste_mark"],
                "taste_since": None if self.taste_since is None else self.taste_since.isoformat(),
                "aggregate": self.annotators.aggregate,
                "excluded_annotators": self.assessment.excluded}


def _group(rec: PreferenceRecord) -> tuple:
    """Records answering the same pair of sketches form one group; a rating record is its own."""
    return pair_key(rec.beziers_a, rec.beziers_b) if rec.comparison_type == "pairwise" else (rec.id,)
