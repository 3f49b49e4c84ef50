"""Which pairs to ask: random pairs or the ones the reward-model ensemble is least sure about?

    python benchmarks/bench_active_selection.py --base-checkpoint runs/base-builtin/model.pt \\
        --classifier runs/classifier.pt --hidden-classifier runs/classifier_hidden.pt \\
        --reward-classifier runs/classifier_reward.pt --budgets 100 200 500 --seeds 0 1 2 --out runs/bench_active

1. A bank of ``--bank-per-class`` base sketches per class, drawn with the online round's generator
   settings (midpoint, 10 steps, CFG 2; configs/round.yaml ``generate``).
2. Labels arrive in batches of ``--batch``, like online rounds. Each batch draws ``--candidates`` x batch
   random same-class pairs from the bank. ``random`` asks about the first ``batch`` of them;
   ``uncertain`` fits ``--ensemble`` Bradley-Terry reward models on bootstrap resamples of the answers
   so far (dpo/selection.py, the code of ``generate.selection: uncertain``) and asks about the pairs
   whose mean preference probability is nearest 1/2, per class. The first batch is random for both (no
   labels yet), and both draw the same candidates and annotator noise for a seed.
3. The annotator is bench_dpo_winrate.py's noisy labeling judge (10 % flips, ties within 0.02 and 5 %
   random ties). A tie costs a label and teaches nothing.
4. After every batch: a reward model fit on all decided answers (the one amplification uses, on a third
   classifier); the win rate it buys (hidden-judge win rate of its best of 8 base sketches against
   another base sketch: best-of-8 sampling; the same evaluation sketches as bench_annotators.py) and its
   agreement with the hidden judge on new base pairs. Mean and spread over ``--seeds``; the number of
   labels ``uncertain`` needs to match ``random`` at the largest budget.
Writes OUT/report.json and prints a markdown table.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
from bench_annotators import eval_set, load_judges
from bench_args import add_model_args, add_sampler_args, start
from bench_dpo_winrate import sample
from preference_sim import PROFILES, FeatureCache, agreement, answers, best_of_8, cached_fitter, mean_spread

from dpo.selection import fit_ensemble, select_uncertain
from driftsketch.checkpoint import load_model
from driftsketch.train_config import SamplingConfig

METHODS = ("random", "uncertain", "disagreement")  # uncertain = generate.selection: uncertain (entropy)


def bank(base, out: Path, args) -> dict:
    """``bank_per_class`` base sketches per class with the round's generator settings (cached)."""
    path = out / f"bank_{base.checkpoint_id}_{args.bank_per_class}_s{args.bank_seed}.npz"
    if not path.is_file():
        gen = copy.copy(args)
        s = SamplingConfig()  # the round's generator: configs/train.yaml sampling (= round.yaml generate)
        gen.num_steps, gen.solver, gen.cfg_scale = s.num_steps, s.solver, s.cfg_scale
        labels = np.repeat(np.arange(len(base.class_names)), args.bank_per_class)
        x = sample(base, labels, 20_000 + args.bank_seed, gen)[0]
        out.mkdir(parents=True, exist_ok=True)
        np.savez(path, x=x, labels=labels)
    z = np.load(path)
    return {"x": z["x"], "labels": z["labels"]}


def draw_candidates(bank_: dict, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random same-class pairs of bank indices (classes cycled from a random start): ``(n, 2)``, labels."""
    classes = np.unique(bank_["labels"])
    labels = classes[(int(rng.integers(len(classes))) + np.arange(n)) % len(classes)]
    idx = np.stack([rng.choice(np.flatnonzero(bank_["labels"] == c), 2, replace=False) for c in labels])
    return idx, labels


def run(method: str, seed: int, bank_: dict, judge_scores: np.ndarray, features: FeatureCache, l2: float,
        ev: dict, args) -> list[dict]:
    """One labeling campaign; a metrics row after every batch."""
    cand_rng, ann_rng = np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])
    fit, x = cached_fitter(features, l2), bank_["x"]
    asked, ties, rows = 0, 0, []
    won: list[tuple[int, int, int]] = []  # decided answers: (winner, loser, class) bank indices
    while asked < max(args.budgets):
        idx, labels = draw_candidates(bank_, args.candidates * args.batch, cand_rng)
        if method != "random" and won:
            w, lo, y = (np.array(c) for c in zip(*won))
            models = fit_ensemble(fit, x[w], x[lo], y, args.ensemble, seed=asked)
            kind = "entropy" if method == "uncertain" else "disagreement"
            keep = select_uncertain(models, x[idx[:, 0]], x[idx[:, 1]], labels, args.batch, kind)
        else:
            keep = np.arange(args.batch)
        idx, labels = idx[keep], labels[keep]
        left = list(ann_rng.choice(["a", "b"], size=len(idx)))
        picks = answers(judge_scores[idx[:, 0]], judge_scores[idx[:, 1]], left, PROFILES["honest"], ann_rng)
        for (i, j), lab, pick in zip(idx, labels, picks):
            asked += 1
            if pick == "tie":
                ties += 1
            else:
                won.append((i, j, lab) if pick == "a" else (j, i, lab))
        w, lo, y = (np.array(c) for c in zip(*won))
        reward = fit(x[w], x[lo], y)
        rows.append({"labels": asked, "decided": len(won), "ties": ties,
                     "best_of_8_hidden_win": best_of_8(reward, ev["x"], ev["labels"], ev["hidden"]),
                     "reward_hidden_agreement": agreement(reward, ev["pa"], ev["pb"], ev["pl"], ev["ptruth"])})
        print(f"{method} seed {seed}: {json.dumps(rows[-1])}", flush=True)
    return rows


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p, out="runs/bench_active")
    p.add_argument("--budgets", type=int, nargs="+", default=[100, 200, 500])
    p.add_argument("--batch", type=int, default=50, help="labels per round")
    p.add_argument("--candidates", type=int, default=4, help="candidate pairs drawn per pair asked")
    p.add_argument("--ensemble", type=int, default=5, help="bootstrap reward models")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--bank-per-class", type=int, default=400)
    p.add_argument("--bank-seed", type=int, default=0)
    p.add_argument("--pair-seed", type=int, default=0, help="evaluation noise, as bench_annotators.py")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    add_sampler_args(p)
    return p


def main(argv=None) -> None:
    args, t0, out, real = start(parser(), argv)
    judge, hidden, reward_cfg, features = load_judges(args, real)
    base = load_model(args.base_checkpoint)
    bank_ = bank(base, out, args)
    judge_scores = judge.score(bank_["x"], bank_["labels"])
    features(bank_["x"], bank_["labels"])  # warm the cache once
    ev = eval_set(base, hidden, out, args)
    curves = {m: {s: run(m, s, bank_, judge_scores, features, reward_cfg.l2, ev, args) for s in args.seeds}
              for m in args.methods}
    summary = summarise(curves, args)
    report = {"args": vars(args), "curves": curves, "summary": summary, "seconds": round(time.perf_counter() - t0, 1)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    print_table(summary, args)
    print(f"report: {out / 'report.json'}")


def summarise(curves: dict, args) -> dict:
    out: dict = {"curves": {}, "labels_to_match_random_at_max": {}}
    for m, by_seed in curves.items():
        budgets = [r["labels"] for r in next(iter(by_seed.values()))]
        out["curves"][m] = {b: {k: mean_spread([rows[i][k] for rows in by_seed.values()])
                                for k in ("best_of_8_hidden_win", "reward_hidden_agreement", "ties")}
                            for i, b in enumerate(budgets)}
    top = max(args.budgets)
    target = out["curves"]["random"][top]["best_of_8_hidden_win"]["mean"] if "random" in out["curves"] else None
    for m, rows in out["curves"].items():
        reach = [b for b, row in rows.items() if target is not None and row["best_of_8_hidden_win"]["mean"] >= target]
        out["labels_to_match_random_at_max"][m] = min(reach) if reach else None
    return out


def print_table(summary: dict, args) -> None:
    methods = list(summary["curves"])
    fmt = lambda s: f"{s['mean']:.3f} +- {s['std']:.3f}"  # noqa: E731
    print("\n| labels | " + " | ".join(f"{m}: best-of-8 hidden win" for m in methods) + " | "
          + " | ".join(f"{m}: agreement with hidden judge" for m in methods) + " | ties (" + " / ".join(methods)
          + ") |\n|---|" + "---|" * (2 * len(methods) + 1))
    for b in summary["curves"][methods[0]]:
        rows = [summary["curves"][m][b] for m in methods]
        print(f"| {b} | " + " | ".join(fmt(r["best_of_8_hidden_win"]) for r in rows) + " | "
              + " | ".join(fmt(r["reward_hidden_agreement"]) for r in rows) + " | "
              + " / ".join(f"{r['ties']['mean']:.0f}" for r in rows) + " |")
    print(f"\nlabels each method needs to reach random's {max(args.budgets)}-label win rate: "
          f"{summary['labels_to_match_random_at_max']}")


if __name__ == "__main__":
    main()
