"""How well does each reward model variant learn each simulated annotator from N noisy pairs?

    python benchmarks/reward_probe.py --out runs/suite --data builtin=builtin:runs/research/base-builtin/model.pt \\
        --pairs 100 300 1000

For every annotator of the preference suite (benchmarks/annotators.py): ``max(--pairs)`` training pairs
and 1,000 test pairs of base samples, the training pairs answered like a person (10 % flipped, ties); the
reward model is fit on the first N non-tie answers and reports its nested cross-validated accuracy (the
gate's figure) and its agreement with the annotator's *noise-free* choice on the test pairs, for each
input variant: the hand-made features only (the first version), the flow embedding only, both, and (named
with ``--variants``) both with the local-geometry features (today's default, also ``default``), and with the
shape or the point-pair features as well. Uses the suite's setup (classifiers,
annotators) from ``--out``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from annotators import answer  # noqa: E402
from preference_suite import data_arg, prepare, sample, save_arrays, setup_arguments, stable_int  # noqa: E402

from dpo.config import load_dpo_config  # noqa: E402
from dpo.reward import (  # noqa: E402
    SketchFeaturizer,
    cross_validated_accuracy,
    fit_ensemble,
    input_sets,
    row_scores,
    select,
    standardise,
)
from driftsketch.checkpoint import load_model  # noqa: E402
from driftsketch.config import replace_config  # noqa: E402
from driftsketch.evaluation import SketchClassifier  # noqa: E402
from driftsketch.fileio import atomic_write_text  # noqa: E402

NO_GEOMETRY = dict(local_features=0, shape_features=0, pair_features=0)
VARIANTS = {"hand": dict(embedding_t=[], **NO_GEOMETRY), "embedding": dict(hand_features=False, **NO_GEOMETRY),
            "both": NO_GEOMETRY, "both+local": dict(NO_GEOMETRY, local_features=4096),  # docs/dpo.md
            "both+local+shape": dict(NO_GEOMETRY, local_features=4096, shape_features=1024),
            "both+local+pairs": dict(NO_GEOMETRY, local_features=4096, pair_features=2048), "default": {}}
DEFAULT_VARIANTS = ["hand", "embedding", "both"]


def pairs_from_base(base, n: int, n_cls: int, seed: int, args):
    labels = np.arange(n) % n_cls
    return sample(base, labels, seed, args)[0], sample(base, labels, seed + 1, args)[0], labels


def probe_pairs(base, name: str, n_train: int, n_cls: int, args) -> tuple[tuple, tuple]:
    """(training pairs, test pairs) of base samples, each ``(a, b, labels)``, cached under ``--out``: the
    same pairs for every input variant, annotator and script (reward_probe, reward_ceiling)."""
    cache = Path(args.out) / name / f"probe_pairs_s{args.seed}_{n_train}x{args.test_pairs}_{base.checkpoint_id}.npz"
    if cache.is_file():
        z = np.load(cache)
        return (z["a"], z["b"], z["y"]), (z["ta"], z["tb"], z["ty"])
    tr = pairs_from_base(base, n_train, n_cls, stable_int("probe", name, args.seed), args)
    te = pairs_from_base(base, args.test_pairs, n_cls, stable_int("probe-test", name, args.seed), args)
    save_arrays(cache, a=tr[0], b=tr[1], y=tr[2], ta=te[0], tb=te[1], ty=te[2])
    return tr, te


def probe_parser(doc: str) -> argparse.ArgumentParser:
    """The suite's setup arguments (the same annotators) plus the data set, seed and test pair count."""
    p = setup_arguments(argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--data", required=True, metavar="NAME=SPEC:BASE_CHECKPOINT")
    p.add_argument("--test-pairs", type=int, default=1000)
    p.add_argument("--annotators", nargs="*", default=None)
    p.add_argument("--seed", type=int, default=0)
    return p


def probe_setup(args, n_train: int):
    """``--data`` parsed, the suite's setup (the same annotators) and the probe's pairs:
    ``(name, setup, base model, training pairs, test pairs)``."""
    torch.set_num_threads(1)
    name, spec, base_path = data_arg(args.data)
    setup = prepare(name, spec, base_path, Path(args.out), args)
    base = load_model(base_path)
    tr, te = probe_pairs(base, name, n_train, len(setup.class_names), args)
    return name, setup, base, tr, te


def noisy_answers(ann, name: str, tr: tuple, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``ann``'s noisy answers to the training pairs, ties left out: winners, losers, class labels."""
    rng = np.random.default_rng(stable_int("probe-answers", name, ann.name, seed))
    choice = np.array(answer(ann, tr[0], tr[1], tr[2], rng))
    keep, a_won = choice != "tie", (choice == "a")[:, None, None, None]
    return np.where(a_won, tr[0], tr[1])[keep], np.where(a_won, tr[1], tr[0])[keep], tr[2][keep]


def main(argv=None) -> None:
    p = probe_parser(__doc__)
    p.add_argument("--pairs", type=int, nargs="+", default=[100, 300, 1000])
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="amplify.reward overrides")
    p.add_argument("--cv-up-to", type=int, default=10**9, metavar="N",
                   help="cross-validate only fits of at most N answers (the gate's figure costs about the fit again)")
    args = p.parse_args(argv)
    name, setup, base, tr, te = probe_setup(args, max(args.pairs))
    reward_cfg = load_dpo_config(overrides=[f"amplify.reward.{kv}" for kv in args.set]).amplify.reward
    reward_cfg = replace_config(reward_cfg, classifier=setup.reward_classifier)
    clf = SketchClassifier.load(setup.reward_classifier)
    results = {}
    for ann in setup.annotators:
        if args.annotators and ann.name not in args.annotators:
            continue
        w, lo, y = noisy_answers(ann, name, tr, args.seed)
        ts, tt = ann.score(te[0], te[2]), ann.score(te[1], te[2])
        clear = ts != tt
        row = {}
        for var in args.variants:
            feats = SketchFeaturizer(replace_config(reward_cfg, **VARIANTS[var]), clf, base)
            diff = feats(w, y) - feats(lo, y)
            test = feats(te[0][clear], te[2][clear]) - feats(te[1][clear], te[2][clear])
            sets = input_sets(feats.blocks)
            grid = [0.0, *reward_cfg.class_heads]
            for n in args.pairs:
                t0 = time.perf_counter()
                pick = select(standardise(diff[:n])[0], sets, reward_cfg.l2, y[:n], grid)
                heads, devs = fit_ensemble(diff[:n], pick.l2, reward_cfg.ensemble, sets[pick.inputs], classes=y[:n],
                                           class_weight=pick.class_weight)
                scores = row_scores(test, heads.mean(axis=0), None if devs is None else devs.mean(axis=0), te[2][clear])
                agree = float(((scores > 0) == (ts[clear] > tt[clear])).mean())
                fit_s, t0 = time.perf_counter() - t0, time.perf_counter()
                cv = (cross_validated_accuracy(diff[:n], reward_cfg.l2, reward_cfg.cv_folds, sets, classes=y[:n],
                                               class_grid=grid) if n <= args.cv_up_to else float("nan"))
                row[f"{var}@{n}"] = {"cv": round(cv, 3), "agree": round(agree, 3), "inputs": pick.inputs,
                                     "l2": pick.l2, "class_weight": pick.class_weight, "pairs": len(diff[:n]),
                                     "fit_seconds": round(fit_s, 1), "cv_seconds": round(time.perf_counter() - t0, 1)}
        results[ann.name] = row
        print(f"{ann.name:13s} " + "  ".join(f"{k}: cv {v['cv']:.2f} agree {v['agree']:.2f}" for k, v in row.items()),
              flush=True)
    named = args.variants != DEFAULT_VARIANTS or args.annotators or args.set
    tag = "_" + "_".join(args.variants + (args.annotators or []) + [re.sub(r"\W+", "-", kv) for kv in args.set]) if named else ""
    atomic_write_text(Path(args.out) / name / f"reward_probe_s{args.seed}{tag}.json", json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
