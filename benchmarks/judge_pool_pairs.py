"""Upper bound for reward amplification: best-of-k pairs picked by the *noise-free labeling judge*.

    python benchmarks/judge_pool_pairs.py --pool runs/bench_dpo/final/prefs runs/bench_dpo/pairs_seed1/prefs \\
        --base-checkpoint runs/bench_dpo/base_final.pt --classifier runs/bench_dpo/classifier.pt \\
        --group-size 8 --out runs/bench_dpo/judge8
    python benchmarks/bench_dpo_winrate.py ... --out runs/bench_dpo/judge8 --pairs 3164 --name def --no-control

Every distinct sketch in the ``--pool`` stores (base samples from earlier benchmark runs) is grouped by
class into random groups of ``--group-size``; the judge's best of each group is paired with every other
member (preference ``a``) in ``OUT/prefs``, which ``bench_dpo_winrate.py`` then trains on unchanged. A
perfect reward model would label like this; the real one (dpo/reward.py) agrees with the judge on 81 %
of pairs, so this bounds what amplification can do with this learner.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from dpo.records import PreferenceRecord
from dpo.store import PreferenceStore
from driftsketch.checkpoint import load_model
from driftsketch.evaluation import LabelingJudge, SketchClassifier


def load_pool(roots: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(beziers, class labels, noise) of every distinct sketch referenced by the stores' records."""
    xs, ys, ns, seen = [], [], [], set()
    for root in roots:
        store = PreferenceStore(root)
        for rec in store.records():
            for side, rel in (("a", rec.beziers_a), ("b", rec.beziers_b)):
                if rel is None or (root, rel) in seen:
                    continue
                seen.add((root, rel))
                xs.append(store.load_beziers(rec, side))
                ns.append(store.load_noise(rec, side))
                ys.append(rec.class_label)
    return np.stack(xs), np.array(ys), np.stack(ns)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pool", nargs="+", required=True, help="preference stores whose sketches form the pool")
    p.add_argument("--base-checkpoint", required=True, help="the model the pool came from (class names, id)")
    p.add_argument("--classifier", required=True, help="the labeling judge's classifier")
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    x, y, noise = load_pool(args.pool)
    model = load_model(args.base_checkpoint)
    scores = LabelingJudge(SketchClassifier.load(args.classifier)).score(x, y)
    store, rng, recs = PreferenceStore(Path(args.out) / "prefs"), np.random.default_rng(args.seed), []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        for g in range(len(idx) // args.group_size):
            group = idx[g * args.group_size:(g + 1) * args.group_size]
            best = group[np.argmax(scores[group])]
            wa, wn = store.save_sample(f"s{best:05d}", x[best], noise[best])
            for j in group[group != best]:
                la, ln = store.save_sample(f"s{j:05d}", x[j], noise[j])
                recs.append(PreferenceRecord(comparison_type="pairwise", class_label=int(c),
                                             class_name=model.class_names[int(c)], beziers_a=wa, beziers_b=la,
                                             noise_a=wn, noise_b=ln, preference="a", checkpoint=model.checkpoint_id,
                                             annotator="noise-free-labeling-judge",
                                             source={"system": "judge_pool_pairs", "class": int(c), "group": g,
                                                     "other": int(j)}))
    store.append(recs, session="judge-pool")
    for cached in Path(args.pool[0]).parent.glob("base_eval_*.npy"):  # reuse the base's evaluation samples
        shutil.copy(cached, args.out)
    print(f"pool: {len(x)} sketches; {len(recs)} pairs in {store.root}")


if __name__ == "__main__":
    main()
