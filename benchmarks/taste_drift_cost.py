"""What the round's taste-drift check costs as the store grows: seconds per check at 1,000-8,000 answered pairs.

The check (dpo/taste_drift.py) fits one reward per split on the pairs answered before it, at most
``taste_drift.max_older_pairs`` of them. This grows a store to each size by copying a real run's answered pairs
(fresh sample files and ids, later times, so each copy counts as new pairs) and times ``check_store`` with the
product's defaults, and with one uncapped split (the check before splits and the cap) for comparison.

    python benchmarks/taste_drift_cost.py runs/research/suite-nochange/mnist/quality/s0/prefs \
        --model runs/research/base-mnist/model.pt \
        --reward-classifier runs/research/suite-nochange/mnist/setup/reward_classifier.pt --pairs 1000 2000 4000 8000

Prints one row per size and setting; timings are from one run on a noisy machine: compare within a size. The uncapped
split at 8,000 pairs takes about 8 minutes on 2 cores (``--settings defaults`` leaves it out).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dpo.config import load_dpo_config  # noqa: E402
from dpo.records import PreferenceRecord  # noqa: E402
from dpo.store import PreferenceStore  # noqa: E402
from dpo.taste_drift import check_store  # noqa: E402

SETTINGS = {"defaults": [], "one uncapped split": ["taste_drift.splits=1", "taste_drift.max_older_pairs=1000000"]}


def answered_pairs(store: PreferenceStore) -> list[PreferenceRecord]:
    """The store's pairwise answers that a copy can stand for (no updates of earlier answers)."""
    return [r for r in store.records() if r.comparison_type == "pairwise" and r.supersedes is None]


def grow(src: PreferenceStore, dst: PreferenceStore, pairs: int) -> None:
    """Append copies of ``src``'s answered pairs to ``dst`` until it holds ``pairs`` of them."""
    records = answered_pairs(src)
    span = max(r.timestamp for r in records) - min(r.timestamp for r in records) + timedelta(minutes=1)
    have = len(answered_pairs(dst)) if dst.sessions_dir.is_dir() else 0
    batch = []
    with dst.batch_writes():
        for n in range(have, pairs):
            copy, rec = divmod(n, len(records))
            batch.append(copied(src, dst, records[rec], copy, span))
    dst.append(batch, session=f"copies-{have}-{pairs}")


def copied(src: PreferenceStore, dst: PreferenceStore, rec: PreferenceRecord, copy: int,
           span: timedelta) -> PreferenceRecord:
    """``rec`` as copy number ``copy``: its sketches (and noise) saved anew, answered ``copy`` spans later."""
    update = {"id": f"c{copy}-{rec.id}", "timestamp": rec.timestamp + copy * span,
              "source": {**rec.source, "copy": copy}, "supersedes": None}
    for side in ("a", "b"):
        bez = np.load(src.root / getattr(rec, f"beziers_{side}"))
        rel_noise = getattr(rec, f"noise_{side}")
        noise = np.load(src.root / rel_noise) if rel_noise else None
        update[f"beziers_{side}"], update[f"noise_{side}"] = dst.save_sample(f"c{copy}-{rec.id}-{side}", bez, noise)
    return rec.model_copy(update=update)


def growth_parser(doc: str, pairs: list[int]) -> argparse.ArgumentParser:
    """The arguments of a cost benchmark on a grown store: the store to copy, the model, the classifier, the sizes."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("store", type=Path, help="a preference store whose answered pairs are copied")
    p.add_argument("--model", required=True, help="the current model (the reward's embedding)")
    p.add_argument("--reward-classifier", required=True, help="amplify.reward.classifier")
    p.add_argument("--pairs", type=int, nargs="+", default=pairs)
    return p


def grown_stores(store: Path, sizes: list[int]) -> Iterator[tuple[int, PreferenceStore]]:
    """One store, in a temporary folder, grown from ``store``'s answered pairs to each of ``sizes`` in turn."""
    src = PreferenceStore(store)
    with tempfile.TemporaryDirectory() as tmp:
        dst = PreferenceStore(Path(tmp) / "prefs")
        for pairs in sorted(sizes):
            grow(src, dst, pairs)
            yield pairs, dst


def main(argv=None) -> None:
    p = growth_parser(__doc__, [1000, 2000, 4000, 8000])
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    print("| answered pairs | setting | splits | pairs per fit | seconds |\n|---|---|---|---|---|")
    for pairs, dst in grown_stores(args.store, args.pairs):
        for name in args.settings:
            cfg = load_dpo_config(overrides=[f"amplify.reward.classifier={args.reward_classifier}",
                                             f"preference_dir={dst.root}", *SETTINGS[name]])
            t0 = time.perf_counter()
            check = check_store(cfg, args.model)
            fits = ", ".join(str(s["older_pairs"]) for s in check.get("splits", []))
            print(f"| {pairs} | {name} | {len(check.get('splits', []))} | {fits} | "
                  f"{time.perf_counter() - t0:.1f} |", flush=True)


if __name__ == "__main__":
    main()
