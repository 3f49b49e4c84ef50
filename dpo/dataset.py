"""Training pairs from the preference store.

    ds = PreferenceDataset("data/preferences", class_names=model.class_names)
    train, held = ds.split(holdout_fraction=0.1, seed=0)
    print(ds.summary())      # pairs, ties, synthesised, skipped (with reasons), ...
    item = ds[0]             # {"winner_beziers": (32, 8), "loser_beziers": (32, 8), "class_label": int,
                             #  "winner_noise": (32, 8), "loser_noise": (32, 8)}   (noise when stored)

Which records train: the newest record of each ``supersedes`` chain; pairwise records with a preference
``a``/``b`` (ties and ``both_bad`` pairs are counted, not trained on); pairs synthesised from absolute
ratings of the same class (optionally the same checkpoint) whose ratings differ by ``>= min_margin``.
"""
from __future__ import annotations

import hashlib
import itertools
import random
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from dpo.records import PreferenceRecord
from dpo.store import PreferenceStore, StoreError, StoreWarning


@dataclass(frozen=True)
class Pair:
    """One training pair: which record (and side) won and lost."""

    winner: PreferenceRecord
    winner_side: str
    loser: PreferenceRecord
    loser_side: str
    class_label: int
    synthesised: bool


def unit_hash(text: str) -> float:
    """Deterministic hash of ``text`` into [0, 1)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2.0**64


def latest_of_chains(records: list[PreferenceRecord]) -> tuple[list[PreferenceRecord], int]:
    """Keep the newest record of every ``supersedes`` chain; return (kept, number dropped).

    Records are grouped by the root of their chain (following ``supersedes`` to a record that
    supersedes nothing, or to an id that is not stored), so an update linking to the original and an
    update linking to the previous update resolve the same way. Newest = latest timestamp, then file order.
    """
    by_id = {r.id: r for r in records}

    def root(rec: PreferenceRecord) -> str:
        seen = {rec.id}
        while rec.supersedes is not None and rec.supersedes in by_id and rec.supersedes not in seen:
            rec = by_id[rec.supersedes]
            seen.add(rec.id)
        return rec.supersedes if rec.supersedes is not None else rec.id

    newest: dict[str, tuple[int, PreferenceRecord]] = {}
    for order, rec in enumerate(records):
        key = root(rec)
        if key not in newest or (rec.timestamp, order) >= (newest[key][1].timestamp, newest[key][0]):
            newest[key] = (order, rec)
    kept = [rec for _, rec in sorted(newest.values(), key=lambda x: x[0])]
    return kept, len(records) - len(kept)


class PreferenceDataset(Dataset):
    """Winner/loser pairs for Flow-DPO (see module docstring)."""

    def __init__(self, store: PreferenceStore | str | Path, class_names: list[str] | None = None, *,
                 min_margin: int = 1, synthesise: bool = True, same_checkpoint: bool = False,
                 max_synthesised: int | None = None, use_noise: bool = True, seed: int = 0,
                 records: list[PreferenceRecord] | None = None):
        """Load and select records.

        Args:
            class_names: the base model's classes; records are mapped by ``class_name`` and an unknown
                class raises ``ValueError`` listing it. ``None`` trusts each record's ``class_label``.
            min_margin: smallest rating difference that makes a synthesised pair.
            same_checkpoint: synthesise only from ratings of sketches made by the same checkpoint.
            max_synthesised: cap on synthesised pairs (a seeded random subset), ``None`` = all.
            use_noise: return the stored generation noise when every pair has it for both sides.
            records: use these records instead of reading the store (``split`` uses this).
        """
        self.store = store if isinstance(store, PreferenceStore) else PreferenceStore(store)
        self.class_names = list(class_names) if class_names is not None else None
        self.options = dict(min_margin=min_margin, synthesise=synthesise, same_checkpoint=same_checkpoint,
                            max_synthesised=max_synthesised, use_noise=use_noise, seed=seed)
        self.stats: Counter = Counter()
        self.skipped: Counter = Counter()
        if records is None:
            scan = self.store.scan()
            for msg in scan.issues:
                warnings.warn(msg, StoreWarning, stacklevel=2)
            if scan.issues:
                self.skipped["malformed or torn line"] += len(scan.issues)
            records = scan.records
        self.stats["records"] = len(records)
        self.records = self._select(records)
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
        self._check_classes(kept)
        return kept

    def _check_classes(self, records: list[PreferenceRecord]) -> None:
        if self.class_names is None:
            return
        unknown = sorted({r.class_name for r in records} - set(self.class_names))
        if unknown:
            example = next(r.id for r in records if r.class_name == unknown[0])
            raise ValueError(f"preference records use class(es) {unknown} that the base model does not know "
                             f"(e.g. record {example}); model classes: {', '.join(self.class_names)}")

    def label_of(self, rec: PreferenceRecord) -> int:
        """The model's class id for ``rec`` (by class name when the model's names are known)."""
        return self.class_names.index(rec.class_name) if self.class_names is not None else rec.class_label

    def _pairwise(self) -> list[Pair]:
        pairs, seen = [], set()
        for rec in self.records:
            if rec.comparison_type != "pairwise":
                continue
            if rec.preference == "tie":
                self.stats["ties"] += 1
                continue
            if rec.both_bad:
                self.stats["both_bad"] += 1
                continue
            key = (rec.annotator, frozenset((rec.beziers_a, rec.beziers_b)))
            if key in seen:  # the same annotator judged the same two sketches again (a re-push)
                self.skipped["duplicate pair from the same annotator"] += 1
                continue
            seen.add(key)
            w, l = ("a", "b") if rec.preference == "a" else ("b", "a")
            pairs.append(Pair(rec, w, rec, l, self.label_of(rec), False))
        return pairs

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
                "class_label": p.class_label}
        if self.with_noise:
            item["winner_noise"] = self._tensor(p.winner, p.winner_side, "noise")
            item["loser_noise"] = self._tensor(p.loser, p.loser_side, "noise")
        return item

    def split(self, holdout_fraction: float = 0.1, seed: int = 0) -> tuple["PreferenceDataset", "PreferenceDataset"]:
        """(train, held-out): the ``round(holdout_fraction * records)`` records whose ids hash lowest
        with ``seed`` are held out.

        The size is exact, not binomial, so a small store cannot lose most of its training pairs to
        an unlucky draw. Records (not pairs) are split, so a synthesised pair only joins ratings from
        one side and no sketch of a held-out record is trained on.
        """
        if not 0.0 <= holdout_fraction <= 1.0:
            raise ValueError(f"holdout_fraction must be in [0, 1], got {holdout_fraction}")
        order = sorted(range(len(self.records)), key=lambda i: unit_hash(f"{seed}:{self.records[i].id}"))
        held_ids = set(order[:int(holdout_fraction * len(self.records) + 0.5)])
        held = [i in held_ids for i in range(len(self.records))]
        make = lambda recs: PreferenceDataset(self.store, self.class_names, records=recs, **self.options)  # noqa: E731
        return (make([r for r, h in zip(self.records, held) if not h]),
                make([r for r, h in zip(self.records, held) if h]))

    def summary(self) -> dict:
        """Counts: pairs, synthesised, ties, both_bad, superseded, skipped (reason -> count), per class."""
        synth = sum(p.synthesised for p in self.pairs)
        names = self.class_names
        per_class = Counter(names[p.class_label] if names else str(p.class_label) for p in self.pairs)
        return {"records": self.stats["records"], "pairs": len(self.pairs), "pairwise": len(self.pairs) - synth,
                "synthesised": synth, "ties": self.stats["ties"], "both_bad": self.stats["both_bad"],
                "ratings": self.stats["ratings"], "superseded": self.stats["superseded"],
                "skipped": dict(self.skipped), "per_class": dict(per_class), "noise": self.with_noise}
