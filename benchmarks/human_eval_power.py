"""Does the annotators' own verdict on evaluation pairs (dpo/human_eval.py) track the true win, and how many
answered pairs does it take? Measured on the preference suite's finished runs.

    python benchmarks/human_eval_power.py --out runs/research/suite-refbase \\
        --data builtin=builtin:runs/research/base-builtin/model.pt \\
        --data mnist=data/mnist1000.npz:runs/research/base-mnist/model.pt --json docs/human_eval_power.json

For every run of the suite folder ``--out`` (its newest model, after its last evaluated round), the tuned
model and the base sample the suite's evaluation pairs again (same noise, 24 per class), and:
- the **exact win** is the suite's figure (the annotator's noise-free score; checked against the stored one);
- the **annotators' win** is what the round would report: each pair answered once by the simulated
  annotator as it answers training pairs (10 % flipped, ties within its margin and 5 % at random), the
  candidate's sketch on side a, a tie counting half, with the Wilson interval of dpo.human_eval;
- for 10, 30, 100 and all 240 answered pairs (400 random subsets of the 240 each): how often the interval says
  "better than the base" (all of it above 50 %) or "worse" (all below).
A control run (random answers, no taste) is a model that should be called neither: it is scored under every
annotator of its data set. Deterministic: every draw is seeded by (data, run, seed, annotator, k).

It also measures the round's veto (``gate.human_veto_min_pairs``, :func:`dpo.human_eval.lineage_verdict`) as
the loop would meet it: the pairs arrive ``--veto-per-round`` at a time (10: ``human_eval.share`` of 100 pairs),
the verdict is asked again after every round, and the share of 400 random orders in which it has fired by
rounds 5, 10 and 24 is reported, with the median round it fired. The model stays the same across the rounds;
in the loop each promoted model starts its own count, and the veto pools the newest ones.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from annotators import OUTCOME, answer  # noqa: E402
from preference_suite import base_eval, data_arg, eval_labels, prepare, sample, setup_arguments, stable_int  # noqa: E402

from dpo.human_eval import lineage_verdict, mean_interval  # noqa: E402
from driftsketch.checkpoint import load_model  # noqa: E402
from driftsketch.fileio import atomic_write_text  # noqa: E402
from driftsketch.registry import PromotionGate  # noqa: E402

SUBSETS = (10, 30, 100, 240)  # 240: all of a run's evaluation pairs
VETO_ROUNDS = (5, 10, 24)  # rounds of --veto-per-round answered pairs (24 x 10: all 240)
POWER_READS = (0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50)  # the annotators' read of a model, for the power curve
DRAWS = 400


def newest_evaluated(run: Path) -> dict | None:
    """The last round of a run that has an evaluation (its ``checkpoint`` is the model evaluated), or None."""
    rows = [json.loads(p.read_text()) for p in sorted(run.glob("round_*.json"))]
    rows = [r for r in rows if "eval" in r]
    return rows[-1] if rows and Path(rows[-1]["checkpoint"]).is_file() else None


def verdicts(outcomes: np.ndarray, k: int, rng: np.random.Generator) -> dict:
    """Share of ``DRAWS`` random subsets of ``k`` pairs whose Wilson interval lies above / below 50 %."""
    better = worse = 0
    for _ in range(DRAWS):
        lo, hi = mean_interval(list(rng.choice(outcomes, size=k, replace=False)))["ci95"]
        better += lo > 0.5
        worse += hi < 0.5
    return {"better": better / DRAWS, "worse": worse / DRAWS}


def first_veto(order: np.ndarray, per_round: int, min_pairs: int) -> int | None:
    """The first round after which the veto fires on answers arriving ``per_round`` at a time, or None."""
    for r in range(1, min(VETO_ROUNDS[-1], len(order) // per_round) + 1):
        seen = order[:r * per_round]
        verdict = lineage_verdict({"m": {"pairs": len(seen), "win_rate": float(seen.mean())}}, ["m"], min_pairs)
        if verdict and verdict["worse"]:
            return r
    return None


def fired_by(first: list[int | None]) -> dict:
    """Share of orders in which the veto fired by each of ``VETO_ROUNDS``, and the median round it fired."""
    done = [r for r in first if r is not None]
    return {**{f"by{n}": sum(r <= n for r in done) / len(first) for n in VETO_ROUNDS},
            "median_round": float(np.median(done)) if done else None}


def veto_rounds(outcomes: np.ndarray, per_round: int, min_pairs: int, rng: np.random.Generator) -> dict:
    """The veto asked after every round of ``per_round`` of a case's answered pairs, over ``DRAWS`` random orders
    (:func:`fired_by`)."""
    return fired_by([first_veto(rng.permutation(outcomes), per_round, min_pairs) for _ in range(DRAWS)])


def power_curve(ties: float, per_round: int, min_pairs: int) -> list[dict]:
    """The veto's power against how the annotators read a model (``POWER_READS`` that ``ties`` allow): ``DRAWS``
    runs of independent answers, ``ties`` of them ties and the rest wins and losses in the proportion that gives
    that read."""
    rows, n = [], VETO_ROUNDS[-1] * per_round
    for read in (r for r in POWER_READS if ties / 2 <= r <= 1 - ties / 2):  # reads these ties allow
        win = (read - 0.5 * ties) / (1 - ties)
        rng = np.random.default_rng(stable_int("power", read, ties, per_round, min_pairs))
        draws = rng.choice([1.0, 0.5, 0.0], size=(DRAWS, n), p=[(1 - ties) * win, ties, (1 - ties) * (1 - win)])
        rows.append({"read": float(draws.mean()), **fired_by([first_veto(d, per_round, min_pairs) for d in draws])})
    return rows


def measure_case(ann, tuned: np.ndarray, base: np.ndarray, labels: np.ndarray, key: tuple, args) -> dict:
    """Exact and annotators' win of ``tuned`` over ``base`` under ``ann``, and the verdicts per subset size."""
    d = ann.score(tuned, labels) - ann.score(base, labels)
    exact = float(((d > 0) + 0.5 * (d == 0)).mean())
    rng = np.random.default_rng(stable_int(*key, "answers"))
    outcomes = np.array([OUTCOME[c] for c in answer(ann, tuned, base, labels, rng, args.label_noise, args.tie_rate)])
    row = {"exact": exact, "annotators": float(outcomes.mean()), "ties": float((outcomes == 0.5).mean()),
           "ci95_all": mean_interval(list(outcomes))["ci95"], "pairs": len(outcomes)}
    for k in SUBSETS:
        row[f"k{k}"] = verdicts(outcomes, k, np.random.default_rng(stable_int(*key, k)))
    row["veto"] = veto_rounds(outcomes, args.veto_per_round, args.veto_min_pairs,
                              np.random.default_rng(stable_int(*key, "veto")))
    return row


def measure(setup, out: Path, args) -> list[dict]:
    """Every finished run of ``setup``'s data set: one case per run, or per annotator for a control run."""
    labels, cases = eval_labels(setup, args), []
    by_name = {a.name: a for a in setup.annotators}
    for run in sorted((out / setup.name).glob("*/s*")):
        cell, seed = run.parent.name, int(run.name[1:])
        if cell not in by_name and cell != "control":
            continue
        row = newest_evaluated(run)
        if row is None:
            continue
        tuned = sample(load_model(row["checkpoint"]), labels, 10_000 + seed, args)[0]
        base = base_eval(setup, seed, args)
        for ann in (setup.annotators if cell == "control" else [by_name[cell]]):
            case = measure_case(ann, tuned, base, labels, (setup.name, cell, seed, ann.name), args)
            stored = row["eval"]["annotators"][ann.name]["win_rate"]
            cases.append({"data": setup.name, "run": cell, "seed": seed, "annotator": ann.name, "kind": ann.kind,
                          "labels": row["labels"], "stored_exact": stored, **case})
            print(f"{setup.name}/{cell}/s{seed} under {ann.name}: exact {case['exact']:.3f} (stored {stored:.3f}), "
                  f"annotators {case['annotators']:.3f}", flush=True)
    return cases


def group_of(case: dict) -> str:
    if case["run"] == "control":
        return "controls (no taste)"
    if case["kind"] == "style":
        return "styles"
    if case["exact"] < 0.45:
        return "tastes, exact win < 45 % (worse than the base)"
    return "tastes, exact win >= 60 %" if case["exact"] >= 0.6 else "tastes, exact win < 60 %"


def summarize(cases: list[dict]) -> list[dict]:
    """Per group: cases, mean exact and annotators' win, their mean gap, and the verdict shares per subset size."""
    rows = []
    for group in sorted({group_of(c) for c in cases}):
        g = [c for c in cases if group_of(c) == group]
        row = {"group": group, "cases": len(g), "exact": float(np.mean([c["exact"] for c in g])),
               "annotators": float(np.mean([c["annotators"] for c in g])),
               "gap_sd": float(np.std([c["annotators"] - c["exact"] for c in g], ddof=1)) if len(g) > 1 else 0.0}
        for k in SUBSETS:
            row[f"k{k}"] = {v: float(np.mean([c[f"k{k}"][v] for c in g])) for v in ("better", "worse")}
        row["veto"] = {f"by{n}": float(np.mean([c["veto"][f"by{n}"] for c in g])) for n in VETO_ROUNDS}
        medians = [c["veto"]["median_round"] for c in g if c["veto"]["median_round"] is not None]
        row["veto"]["median_round"] = float(np.median(medians)) if medians else None
        rows.append(row)
    return rows


def markdown(rows: list[dict], cases: list[dict]) -> str:
    head = "| group | cases | exact win | annotators' win (240 pairs) | " + " | ".join(
        f"{k} pairs: better / worse" for k in SUBSETS) + " |"
    lines = [head, "|---" * (4 + len(SUBSETS)) + "|"]
    for r in rows:
        lines.append(f"| {r['group']} | {r['cases']} | {100 * r['exact']:.1f} | {100 * r['annotators']:.1f} | "
                     + " | ".join(f"{100 * r[f'k{k}']['better']:.0f} % / {100 * r[f'k{k}']['worse']:.0f} %"
                                  for k in SUBSETS) + " |")
    lines += ["", "The veto, asked after every round of answered evaluation pairs (share of orders in which it fired):",
              "", "| group | cases | " + " | ".join(f"by round {n}" for n in VETO_ROUNDS) + " | median round |",
              "|---" * (3 + len(VETO_ROUNDS)) + "|"]
    for r in rows:
        med = r["veto"]["median_round"]
        lines.append(f"| {r['group']} | {r['cases']} | " + " | ".join(
            f"{100 * r['veto'][f'by{n}']:.1f} %" for n in VETO_ROUNDS) + f" | {'-' if med is None else med:} |")
    taste = [c for c in cases if c["run"] != "control"]
    if len(taste) > 2:
        x, y = np.array([c["exact"] for c in taste]) - 0.5, np.array([c["annotators"] for c in taste]) - 0.5
        lines += ["", f"Annotators' win - 50 against exact win - 50 over the {len(taste)} taste runs: slope "
                  f"{float(x @ y / (x @ x)):.2f} (noise-free answers would give 1; 10 % flips alone 0.8)."]
    mismatch = [c for c in cases if abs(c["exact"] - c["stored_exact"]) > 1e-9]
    lines.append(f"Exact wins that differ from the suite's stored ones: {len(mismatch)} of {len(cases)}.")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = setup_arguments(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("--data", action="append", default=[], metavar="NAME=SPEC:BASE_CHECKPOINT")
    p.add_argument("--label-noise", type=float, default=0.1)
    p.add_argument("--tie-rate", type=float, default=0.05)
    p.add_argument("--veto-per-round", type=int, default=10, help="evaluation pairs answered per round")
    p.add_argument("--veto-min-pairs", type=int, default=None,
                   help="the veto's pair count (default: configs/round.yaml's gate.human_veto_min_pairs)")
    p.add_argument("--json", default=None, help="write the cases and the summary here")
    args = p.parse_args(argv)
    if args.veto_min_pairs is None:
        args.veto_min_pairs = PromotionGate().human_veto_min_pairs
        if args.veto_min_pairs is None:
            p.error("configs/round.yaml has the veto off (gate.human_veto_min_pairs: null): give --veto-min-pairs")
    out, cases = Path(args.out), []
    for item in args.data:
        cases += measure(prepare(*data_arg(item), out, args), out, args)
    rows = summarize(cases)
    ties = float(np.mean([c["ties"] for c in cases if c["run"] != "control"]))
    power = power_curve(ties, args.veto_per_round, args.veto_min_pairs)
    print(markdown(rows, cases))
    print(f"\nThe veto's power against the annotators' read of a model ({100 * ties:.0f} % ties, the taste runs' "
          f"mean; {args.veto_per_round} pairs a round, {args.veto_min_pairs} to decide):\n\n"
          "| annotators' read | " + " | ".join(f"by round {n}" for n in VETO_ROUNDS) + " | median round |\n"
          + "|---" * (2 + len(VETO_ROUNDS)) + "|")
    for r in power:
        print(f"| {100 * r['read']:.1f} % | " + " | ".join(f"{100 * r[f'by{n}']:.1f} %" for n in VETO_ROUNDS)
              + f" | {'-' if r['median_round'] is None else r['median_round']} |")
    if args.json:
        atomic_write_text(args.json, json.dumps({"summary": rows, "cases": cases, "power": power,
                                                 "power_ties": ties}, indent=1) + "\n")


if __name__ == "__main__":
    main()
