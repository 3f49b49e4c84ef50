"""Would amplification pairs be more often right if a group's draws shared part of their noise?

    python benchmarks/group_noise_probe.py --out runs/research/suite \\
        --data builtin=builtin:runs/research/base-builtin/model.pt --rhos 0 0.7 0.9 0.97

Amplification ranks groups of 8 independent draws of one class with the reward and trains "best vs each other".
The suite's win compares the tuned and the base model on the *same* noise, so what counts is a better sketch for
each noise. Draws that share most of their noise (``rho * z0 + sqrt(1 - rho^2) * eps_j``, one ``z0`` per group)
share their layout and differ in details; if the reward's errors come from layouts it confuses with a taste,
they would cancel inside such a group. For every annotator of the preference suite: the product's reward
(configs/dpo.yaml ``amplify.reward``) fit on ``--answers`` noisy answers of reward_probe's training pairs, then on
fresh groups of base samples (``--groups`` per class, 8 each) at every ``rho``:
- ``acc``: share of the best-vs-other pairs the annotator's noise-free score orders the same way;
- ``gain_sd``: the annotator's score of the reward's pick minus the group's mean, in base standard deviations;
- ``oracle_gain_sd``: the same for the annotator's own pick (what the group offers);
- ``group_spread_sd``: the score's standard deviation inside a group, in base standard deviations.
Writes ``<out>/<data>/group_noise_probe_s<seed>.json``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from amplify_accuracy import amplified_pairs, fitted_rewards  # noqa: E402
from preference_suite import stable_int  # noqa: E402
from reward_probe import probe_parser, probe_setup  # noqa: E402

from dpo.config import load_dpo_config  # noqa: E402
from driftsketch.fileio import atomic_write_text  # noqa: E402
from driftsketch.sampling import generate_beziers  # noqa: E402

GROUP = load_dpo_config().amplify.group_size  # the product's group size (configs/dpo.yaml), not a copy


def correlated_groups(base, labels: np.ndarray, rhos: list[float], seed: int, args) -> dict[float, np.ndarray]:
    """``{rho: (G, GROUP, 32, 4, 2)}``: ``GROUP`` draws per label whose noises share ``rho`` of one group noise."""
    rng = np.random.default_rng(seed)
    z0 = rng.standard_normal((len(labels), 32, 8)).astype(np.float32)
    eps = rng.standard_normal((GROUP, len(labels), 32, 8)).astype(np.float32)
    out = {}
    for rho in rhos:
        draws = [generate_beziers(base, labels.tolist(), len(labels), num_steps=args.num_steps, cfg_scale=args.cfg_scale,
                                  solver=args.solver, noise=(rho * z0 + np.sqrt(1 - rho ** 2) * e).astype(np.float32))[0]
                 for e in eps]
        out[rho] = np.stack(draws, axis=1)
    return out


def group_figures(truth: np.ndarray, reward_members: np.ndarray, sd: float) -> dict:
    """The four figures of one annotator at one ``rho``; ``truth`` ``(G, GROUP)``, ``reward_members`` ``(M, G, GROUP)``."""
    n_groups = truth.shape[0]
    groups = [np.arange(g * GROUP, (g + 1) * GROUP) for g in range(n_groups)]
    rows = amplified_pairs(reward_members.reshape(len(reward_members), -1), truth.reshape(-1), groups)
    pick = reward_members.mean(axis=0).argmax(axis=1)
    mean = truth.mean(axis=1)
    return {"acc": round(float(rows[:, 2].mean()), 3),
            "gain_sd": round(float((truth[np.arange(n_groups), pick] - mean).mean() / sd), 3),
            "oracle_gain_sd": round(float((truth.max(axis=1) - mean).mean() / sd), 3),
            "group_spread_sd": round(float(truth.std(axis=1).mean() / sd), 3)}


def main(argv=None) -> None:
    p = probe_parser(__doc__)
    p.add_argument("--answers", type=int, default=500, help="noisy answers the reward is fit on")
    p.add_argument("--rhos", type=float, nargs="+", default=[0.0, 0.7, 0.9, 0.97])
    p.add_argument("--groups", type=int, default=16, help="groups per class at every rho")
    args = p.parse_args(argv)
    name, setup, base, tr, te = probe_setup(args, 1000)
    labels = np.repeat(np.arange(len(setup.class_names)), args.groups)
    draws = correlated_groups(base, labels, args.rhos, stable_int("group-noise", name, args.seed), args)
    flat_labels = np.repeat(labels, GROUP)
    results = {}
    for ann, rm in fitted_rewards(args, setup, name, tr, base):
        sd = float(np.std(ann.score(np.concatenate([te[0], te[1]]), np.concatenate([te[2], te[2]]))))
        row = {"cv": round(rm.metrics["cv_accuracy"], 3)}
        for rho, x in draws.items():
            flat = x.reshape(-1, 32, 4, 2)
            members = rm.member_scores(flat, flat_labels).reshape(-1, len(labels), GROUP)
            row[f"rho {rho}"] = group_figures(ann.score(flat, flat_labels).reshape(len(labels), GROUP), members, sd)
        results[ann.name] = row
        print(f"{name} {ann.name}: {json.dumps(row)}", flush=True)
    atomic_write_text(Path(args.out) / name / f"group_noise_probe_s{args.seed}.json", json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
