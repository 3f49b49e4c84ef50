"""How much the promotion gate's recognizability moves between noise draws, at a given number of samples per class.

The round's gate (configs/round.yaml) compares a candidate with the current model and with the base on one draw
of noise, against limits of 2 points. This script measures, for two models (e.g. the base and a fine-tuned
model), their recognizability under one classifier on ``--draws`` independent noise draws per sample size, and
prints the spread of each model's figure and of their paired difference (both models on the same draw, as the
gate compares them). Deterministic: the draws are seeds 0 .. draws-1.

    python benchmarks/gate_noise.py --classifier runs/research/suite/builtin/setup/reward_classifier.pt \\
        --base runs/research/base-builtin/model.pt --model runs/some/tuned.pt --per-class 32 128 --draws 12
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from driftsketch.checkpoint import load_model
from driftsketch.evaluation.classifier import SketchClassifier
from driftsketch.sampling import generate_beziers


def recognizability_draws(model, clf: SketchClassifier, per_class: int, draws: int, sampler: dict) -> np.ndarray:
    """Recognizability of ``model`` on noise seeds 0 .. draws-1, ``per_class`` samples of every class each."""
    labels = np.repeat(np.arange(len(clf.class_names)), per_class)
    out = []
    for seed in range(draws):
        x, _ = generate_beziers(model, labels.tolist(), len(labels), seed=seed, **sampler)
        out.append(clf.accuracy(x, labels))
    return np.array(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classifier", required=True, help="the gate's classifier (.pt)")
    p.add_argument("--base", required=True, help="first model (.pt)")
    p.add_argument("--model", required=True, help="second model (.pt), compared with the first on each draw")
    p.add_argument("--per-class", type=int, nargs="+", default=[32, 128])
    p.add_argument("--draws", type=int, default=12)
    p.add_argument("--num-steps", type=int, default=10)
    p.add_argument("--cfg-scale", type=float, default=2.0)
    p.add_argument("--solver", default="midpoint")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    clf = SketchClassifier.load(args.classifier)
    base, model = load_model(args.base), load_model(args.model)
    sampler = {"num_steps": args.num_steps, "cfg_scale": args.cfg_scale, "solver": args.solver}
    for per in args.per_class:
        a = recognizability_draws(base, clf, per, args.draws, sampler)
        b = recognizability_draws(model, clf, per, args.draws, sampler)
        d = b - a
        print(f"{per} per class, {args.draws} draws: first {a.mean():.3f} (sd {100 * a.std(ddof=1):.2f} points), "
              f"second {b.mean():.3f} (sd {100 * b.std(ddof=1):.2f}), paired difference {100 * d.mean():+.2f} "
              f"(sd {100 * d.std(ddof=1):.2f} points)", flush=True)


if __name__ == "__main__":
    main()
