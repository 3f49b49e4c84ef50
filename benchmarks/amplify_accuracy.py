"""How often is an amplified pair right? Accuracy of best-of-group vs other pairs under the annotator's noise-free
score, by how far down the reward's ranking the other sketch sits and by the reward ensemble's probability.

    python benchmarks/amplify_accuracy.py --out runs/research/suite \\
        --data builtin=builtin:runs/research/base-builtin/model.pt --annotators smooth symmetric quality

For every annotator of the preference suite: the product's reward model (configs/dpo.yaml ``amplify.reward``) is
fit on the first ``--answers`` non-tie noisy answers of reward_probe's training pairs; reward_probe's 2 x 1,000 test
sketches (base samples, classes in turn) are cut into groups of ``--group-size`` of one class, and each group gives
the pairs amplification would make: the reward's best against every other sketch. Printed per annotator: the share
of those pairs the annotator's noise-free score orders the same way (pairs it scores equal are left out), for the
other sketch ranked 1st (second best), 2nd, 4th and last below the best, and for the pairs whose probability
``P(best wins)`` (mean over the ensemble's Platt-scaled heads, ``dpo.amplify.best_probability``) reaches 0.6-0.9,
with the share of pairs kept. Writes ``<out>/<data>/amplify_accuracy_s<seed>.json``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reward_probe import noisy_answers, probe_parser, probe_setup  # noqa: E402

from dpo.amplify import best_probability  # noqa: E402
from dpo.config import load_dpo_config  # noqa: E402
from dpo.reward import fit_reward_model  # noqa: E402
from driftsketch.config import replace_config  # noqa: E402
from driftsketch.evaluation import SketchClassifier  # noqa: E402
from driftsketch.fileio import atomic_write_text  # noqa: E402

THRESHOLDS = (0.6, 0.7, 0.8, 0.9)


def groups_of(labels: np.ndarray, size: int) -> list[np.ndarray]:
    """Consecutive groups of ``size`` indices of one class each."""
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        out += [idx[i:i + size] for i in range(0, len(idx) - size + 1, size)]
    return out


def amplified_pairs(members: np.ndarray, truth: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """``(P, 3)``: rank of the other sketch below the best, P(best wins), 1 if the annotator agrees."""
    reward = members.mean(axis=0)
    rows = []
    for g in groups:
        order = g[np.argsort(-reward[g], kind="stable")]
        for rank, other in enumerate(order[1:], 1):
            if truth[order[0]] != truth[other]:
                prob = best_probability(members[:, [order[0], other]], 0, 1)
                rows.append((rank, prob, float(truth[order[0]] > truth[other])))
    return np.array(rows)


def summarise(rows: np.ndarray, group_size: int) -> dict:
    res = {"pairs": len(rows), "all": round(rows[:, 2].mean(), 3)}
    for rank in sorted({1, 2, 4, group_size - 1}):
        res[f"rank {rank}"] = round(rows[rows[:, 0] == rank, 2].mean(), 3)
    for th in THRESHOLDS:
        keep = rows[:, 1] >= th
        res[f"P>={th}"] = {"accuracy": round(rows[keep, 2].mean(), 3) if keep.any() else None,
                           "kept": round(keep.mean(), 3)}
    return res


def fitted_rewards(args, setup, name: str, tr: tuple, base):
    """``(annotator, reward)`` for every annotator of ``setup`` named by ``--annotators`` (all if none): the
    product's reward (configs/dpo.yaml ``amplify.reward``) fit on its first ``--answers`` noisy answers to ``tr``."""
    cfg = replace_config(load_dpo_config().amplify.reward, classifier=setup.reward_classifier)
    clf = SketchClassifier.load(setup.reward_classifier)
    for ann in setup.annotators:
        if args.annotators and ann.name not in args.annotators:
            continue
        win, lose, y_ans = (a[:args.answers] for a in noisy_answers(ann, name, tr, args.seed))
        yield ann, fit_reward_model(clf, win, lose, y_ans, cfg, encoder=base)


def main(argv=None) -> None:
    p = probe_parser(__doc__)
    p.add_argument("--answers", type=int, default=500, help="noisy answers the reward is fit on")
    p.add_argument("--train-pairs", type=int, default=1000, help="reward_probe's cached training pair count")
    p.add_argument("--group-size", type=int, default=8)
    args = p.parse_args(argv)
    name, setup, base, tr, te = probe_setup(args, args.train_pairs)
    x, y = np.concatenate([te[0], te[1]]), np.concatenate([te[2], te[2]])
    groups = groups_of(y, args.group_size)
    results = {}
    for ann, rm in fitted_rewards(args, setup, name, tr, base):
        res = summarise(amplified_pairs(rm.member_scores(x, y), ann.score(x, y), groups), args.group_size)
        res.update(cv=round(rm.metrics["cv_accuracy"], 3), inputs=rm.metrics["inputs"])
        results[ann.name] = res
        print(f"{name} {ann.name}: {json.dumps(res)}", flush=True)
    atomic_write_text(Path(args.out) / name / f"amplify_accuracy_s{args.seed}.json", json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
