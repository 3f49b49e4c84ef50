"""Judge the models of preference-suite runs under annotators other than the one they learned from.

A run's rows give its win under the taste in force. When that taste is a sum of criteria (``preference_suite.py
--new-taste plus-smooth``: the old style and a per-sketch criterion), the sum hides which part moved. This script
loads the model a run held after the given rounds and measures its paired win over the base, and the shift in base
std, under each named annotator, on the same evaluation noise as the suite (seed 10,000 + seed, ``--eval-per-class``
of each class).

    python benchmarks/suite_judge.py runs/research/suite-taste-plus runs/research/suite-taste-plus-mark \
        --names "no mark" mark --seeds 0 1 --rounds 5 10 --annotators slant smooth \
        --data mnist=data/mnist1000.npz:runs/research/base-mnist/model.pt
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import preference_suite as ps  # noqa: E402
from suite_rounds import add_run_args, run_names  # noqa: E402


def judge_run(setup: ps.Setup, folder: Path, cell: str, seed: int, rounds: list[int], names: list[str],
              suite_args) -> dict[str, dict]:
    """``{round: {annotator: {win_rate, shift_std}} | {"missing": path}}`` for one run."""
    anns = [a for a in setup.annotators if a.name in names]
    labels, base_x = ps.eval_labels(setup, suite_args), ps.base_eval(setup, seed, suite_args)
    out = {}
    for r in rounds:
        row_path = folder / setup.name / cell / f"s{seed}" / f"round_{r - 1:02d}.json"
        if not row_path.is_file():
            out[str(r)] = {"missing": str(row_path)}
            continue
        checkpoint = Path(json.loads(row_path.read_text())["checkpoint"])
        if not checkpoint.is_file():
            out[str(r)] = {"missing": str(checkpoint)}
            continue
        tuned = ps.sample(ps.load_model(str(checkpoint)), labels, 10_000 + seed, suite_args)[0]
        out[str(r)] = ps.compare(setup, tuned, base_x, labels, anns)["annotators"]
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_args(p)
    p.add_argument("--cell", default="slant", help="the annotator whose runs to judge")
    p.add_argument("--rounds", type=int, nargs="+", default=[5, 10], help="after these rounds (1-based)")
    p.add_argument("--annotators", nargs="+", required=True, help="judge under these suite annotators")
    p.add_argument("--data", required=True, help="NAME=SPEC:BASE.pt, as for preference_suite.py")
    args = p.parse_args(argv)
    names = run_names(p, args)
    out: dict = {}
    for name, folder in zip(names, args.outs):
        suite_args = ps.parse_args(["--data", args.data, "--out", str(folder)])
        setup = ps.prepare(*ps.data_arg(args.data), folder, suite_args)
        unknown = set(args.annotators) - {a.name for a in setup.annotators}
        if unknown:
            raise SystemExit(f"--annotators: no annotator named {', '.join(sorted(unknown))}")
        out[name] = {str(s): judge_run(setup, folder, args.cell, s, args.rounds, args.annotators, suite_args)
                     for s in args.seeds}
    print("| run | seed | round | " + " | ".join(f"{a}: win | {a}: shift" for a in args.annotators) + " |")
    print("|---" * (3 + 2 * len(args.annotators)) + "|")
    for name, seeds in out.items():
        for seed, by_round in seeds.items():
            for r, figs in by_round.items():
                cells = (["missing"] * 2 * len(args.annotators) if "missing" in figs else
                         [f"{100 * figs[a]['win_rate']:.1f} % | {figs[a]['shift_std']:+.2f}" for a in args.annotators])
                print(f"| {name} | {seed} | {r} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
