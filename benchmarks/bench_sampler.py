"""Sampler speed against quality: which solver and step count to use by default.

    python benchmarks/bench_sampler.py --checkpoint runs/base-builtin/model.pt --data builtin \
        --classifier runs/eval/clf_builtin.pt --per-class 20

For each sampler setting it generates the same classes from the same noise and prints sketches/s,
recognizability, continuity and Frechet distance (all in one run, so speed ratios hold on a busy
machine). The default (``driftsketch.sampling``) should match 50 Euler steps' quality at less cost.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from driftsketch import generate_beziers, load_model
from driftsketch.data import load_dataset
from driftsketch.evaluation.classifier import SketchClassifier
from driftsketch.evaluation.evaluate import evaluate_samples

SETTINGS = [("euler", 50), ("euler", 20), ("midpoint", 20), ("midpoint", 10), ("heun", 10), ("euler", 10)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--classifier", required=True)
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--cfg-scale", type=float, default=2.0)
    p.add_argument("--num-threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.num_threads)
    model, real, clf = load_model(args.checkpoint), load_dataset(args.data), SketchClassifier.load(args.classifier)
    labels = np.repeat(np.arange(len(model.class_names)), args.per_class)
    noise = torch.randn((len(labels), 32, 8), generator=torch.Generator().manual_seed(0)).numpy()
    print(f"{'solver':>9} {'steps':>5} {'NFE':>4} {'sketch/s':>9} {'recog':>6} {'contin':>6} {'FD':>6}")
    for solver, steps in SETTINGS:
        start = time.perf_counter()
        sketches, _ = generate_beziers(model, labels.tolist(), len(labels), num_steps=steps, solver=solver,
                                       cfg_scale=args.cfg_scale, noise=noise)
        rate = len(labels) / (time.perf_counter() - start)
        m = evaluate_samples(sketches, labels, real, clf)
        nfe = steps * (1 if solver == "euler" else 2)
        print(f"{solver:>9} {steps:>5} {nfe:>4} {rate:>9.2f} {m['recognizability']:>6.3f} {m['continuity']:>6.3f} "
              f"{m['frechet_distance']:>6.2f}", flush=True)
    print(f"real held-out: recognizability {m['recognizability_real']:.3f}, continuity {m['continuity_real']:.3f}, "
          f"FD floor {m['frechet_distance_real_floor']:.2f}")


if __name__ == "__main__":
    main()
