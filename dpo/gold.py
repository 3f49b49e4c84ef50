"""Gold pairs: tasks with a known answer that a person cannot miss, to measure each annotator.

A gold pair is a real drawing of the asked class against a corrupted copy of it:

- ``scrambled``: every segment of the drawing moved to a random place (the strokes fall apart);
- ``wrong_class``: a real drawing of another class ("Which is the better circle?" circle vs house);
- ``noise``: heavy Gaussian noise on every control point (a scribble).

Gold tasks look exactly like the others (same task fields, generation-noise files included, sides
drawn at random). Which pairs are gold lives only in the preference store, ``gold/pairs.jsonl``
(one JSON line per pair, append-only), never in the task data an annotator can see. Their answers are
pulled like any other, scored by :mod:`dpo.annotators`, and never trained on (:mod:`dpo.dataset`).

    batch = make_gold_pairs(data.beziers, data.labels, data.class_names, model.class_names, 20, rng)
    gold = GoldSet(store)                    # data/preferences/gold/pairs.jsonl
    gold.add(store, batch)                   # saves the arrays, registers the pairs (idempotent)
    gold.expected(record)                    # "a" | "b" (the real drawing's side) | None: not gold
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dpo.records import PreferenceRecord, check_relpath
from dpo.store import PreferenceStore, _append_bytes, read_jsonl
from driftsketch.errors import DriftSketchError

GOLD_KINDS = ("scrambled", "wrong_class", "noise")
GOLD_FILE = "gold/pairs.jsonl"


class GoldError(DriftSketchError, ValueError):
    """Gold pairs that cannot be made (no real drawings of a class, unknown kind)."""


@dataclass
class GoldBatch:
    """``n`` gold pairs: ``good`` real drawings and ``bad`` corrupted copies ``(n, 32, 4, 2)`` of the
    asked classes ``labels`` (ids of the *model's* classes), with the corruption ``kinds``."""

    good: np.ndarray
    bad: np.ndarray
    labels: np.ndarray
    kinds: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def pair_key(path_a: str, path_b: str) -> tuple[str, str]:
    """Order-free identity of a pair of sketches (their store paths, sorted)."""
    return (path_a, path_b) if path_a <= path_b else (path_b, path_a)


def scramble(sketch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every segment translated so its start lands at a random point: same strokes, no drawing."""
    x = np.array(sketch, dtype=np.float32)
    target = rng.uniform(-0.7, 0.7, size=(len(x), 1, 2)).astype(np.float32)
    return np.clip(x - x[:, :1, :] + target, -1.0, 1.0)


def add_noise(sketch: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    """Gaussian noise of ``std`` on every control point (``[-1, 1]`` units), clipped to the canvas."""
    return np.clip(sketch + rng.normal(0.0, std, size=sketch.shape), -1.0, 1.0).astype(np.float32)


def make_gold_pairs(real: np.ndarray, real_labels: np.ndarray, real_names: list[str], class_names: list[str],
                    n: int, rng: np.random.Generator, kinds: tuple[str, ...] | list[str] = GOLD_KINDS,
                    noise_std: float = 0.25) -> GoldBatch:
    """``n`` gold pairs for a model with ``class_names`` from real drawings ``real`` ``(N, 32, 4, 2)``
    labeled ``real_labels`` over ``real_names``. Classes cycle from a random start; kinds cycle."""
    unknown = sorted(set(kinds) - set(GOLD_KINDS))
    if unknown or not kinds:
        raise GoldError(f"gold kinds {unknown or list(kinds)}: choose from {list(GOLD_KINDS)}")
    by_name = {name: np.flatnonzero(real_labels == i) for i, name in enumerate(real_names)}
    usable = [c for c, name in enumerate(class_names) if len(by_name.get(name, ())) > 0]
    if not usable:
        raise GoldError(f"gold pairs: the real data (classes {real_names}) has no drawing of any model class "
                        f"({class_names})")
    if "wrong_class" in kinds and len(usable) < 2:
        raise GoldError("gold kind wrong_class needs real drawings of at least two of the model's classes")
    start = int(rng.integers(len(usable)))
    good, bad, labels, made = [], [], [], []
    for i in range(n):
        c, kind = usable[(start + i) % len(usable)], kinds[i % len(kinds)]
        x = real[rng.choice(by_name[class_names[c]])]
        if kind == "scrambled":
            y = scramble(x, rng)
        elif kind == "noise":
            y = add_noise(x, rng, noise_std)
        else:
            other = usable[(usable.index(c) + 1 + int(rng.integers(len(usable) - 1))) % len(usable)]
            y = real[rng.choice(by_name[class_names[other]])]
        good.append(x)
        bad.append(y)
        labels.append(c)
        made.append(kind)
    shape = (0, 32, 4, 2)
    return GoldBatch(np.stack(good) if good else np.zeros(shape, np.float32),
                     np.stack(bad) if bad else np.zeros(shape, np.float32), np.asarray(labels, np.int64), made)


def gold_count(num_tasks: int, share: float, name: str = "gold") -> int:
    """How many of ``num_tasks`` pushed pairwise tasks are gold pairs (or the pairs of another ``name``d share)."""
    if not 0.0 <= share < 1.0:
        raise GoldError(f"{name} share must lie in [0, 1), got {share}")
    return int(round(num_tasks * share))


def special_pair_counts(need: int, gold_share: float, eval_share: float, evaluate: bool) -> tuple[int, int]:
    """(gold, evaluation) pairs among ``need`` pushed ones, leaving at least one generated pair; none of a kind
    whose share would take every pair."""
    n_gold = gold_count(need, gold_share)
    n_gold = n_gold if n_gold < need else 0
    n_eval = gold_count(need, eval_share, "human_eval") if evaluate else 0
    n_eval = n_eval if n_gold + n_eval < need else 0
    return n_gold, n_eval


def fake_noise(beziers: np.ndarray) -> np.ndarray:
    """Generation-noise stand-in ``(32, 8)`` for a gold sketch, so its task carries the same fields as
    a generated one (seeded by the sketch itself: the same sketch always gets the same noise)."""
    seed = int.from_bytes(hashlib.sha256(np.ascontiguousarray(beziers, np.float32).tobytes()).digest()[:8], "big")
    return np.random.default_rng(seed).standard_normal((32, 8)).astype(np.float32)


class PairRegistry:
    """Pairs of stored sketches registered in an append-only JSONL file of a preference store, one JSON line per
    pair naming its two sketch paths under ``fields``; what else a line holds is the registry's own business."""

    FILE: str = ""
    kind: str = ""  # in warnings: "malformed <kind> entry"
    fields: tuple[str, str] = ("", "")
    required: tuple[str, ...] = ()  # other keys an entry must have

    def __init__(self, store: PreferenceStore | str | Path):
        self.store = store if isinstance(store, PreferenceStore) else PreferenceStore(store)
        self.path = self.store.root / self.FILE

    def entries(self) -> dict[tuple[str, str], dict]:
        """``{pair_key: entry}``; a malformed line is skipped with a warning naming ``file:line``."""
        return dict(self.lines())

    def lines(self) -> list[tuple[tuple[str, str], dict]]:
        """``(pair_key, entry)`` of every well-formed line in file order, a pair registered twice included (what a
        crash test counts); a malformed line is skipped with a warning naming ``file:line``."""
        return read_jsonl(self.path, self._parse, f"{self.kind} entry")

    def _parse(self, e: dict) -> tuple[tuple[str, str], dict]:
        first, second = (check_relpath(e[f]) for f in self.fields)
        missing = [k for k in self.required if not isinstance(e.get(k), str)]
        if missing:
            raise KeyError(f"no {', '.join(missing)}")
        return pair_key(first, second), e

    def register(self, pairs: list[dict]) -> int:
        """Append the entries not yet registered (by their pair of paths); returns how many."""
        known = self.entries()
        new, seen = [], set(known)
        for p in pairs:
            key = pair_key(*(p[f] for f in self.fields))
            if key not in seen:
                seen.add(key)
                new.append(p)
        if new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _append_bytes(self.path, "".join(json.dumps(p, sort_keys=True) + "\n" for p in new).encode())
        return len(new)

    def side_of(self, record: PreferenceRecord, field: str, entries: dict | None = None) -> str | None:
        """The side (``"a"``/``"b"``) of ``record`` that holds the entry's ``field`` sketch, or None when
        ``record`` is not a pairwise answer about a registered pair."""
        if record.comparison_type != "pairwise":
            return None
        e = (self.entries() if entries is None else entries).get(pair_key(record.beziers_a, record.beziers_b))
        if e is None:
            return None
        return "a" if record.beziers_a == e[field] else "b"


class GoldSet(PairRegistry):
    """The gold pairs registered in a preference store (``gold/pairs.jsonl``): entries
    ``{"good": path, "bad": path, "kind": ..., "class_name": ...}``."""

    FILE = GOLD_FILE
    kind = "gold"
    fields = ("good", "bad")

    def expected(self, record: PreferenceRecord, entries: dict | None = None) -> str | None:
        """The side (``"a"``/``"b"``) holding the real drawing when ``record`` judged a gold pair, else None."""
        return self.side_of(record, "good", entries)
