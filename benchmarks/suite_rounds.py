"""Round by round, side by side: what the preference suite's runs did in each round (taste in force, gate decision,
reward model, win under the taste in force, the annotators' veto). For runs that follow one cell past a change
(``--taste-change``), where the mean tables of ``--report-only`` say little.

    python benchmarks/suite_rounds.py runs/research/suite-taste-veto runs/research/suite-taste-mark \
        --names veto "veto + mark" --cell mnist/slant --seeds 0 1 --json docs/taste_mark_rounds.json

Prints one markdown table per seed; ``--json`` keeps the same figures (a few kB: what a later session needs to
compare with, when the run folders are gone).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def round_figures(row: dict) -> dict:
    """The figures of one round's row (benchmarks/preference_suite.py)."""
    amp, veto = row.get("amplify") or {}, (row.get("human_veto") or {}).get("verdict")
    win = next(iter((row.get("eval") or {}).get("annotators", {}).values()), {})
    return {"round": row["round"] + 1, "labels": row["labels"], "taste": row.get("taste", "as set"),
            "promoted": (row.get("gate") or {}).get("promoted"), "model": Path(row["checkpoint"]).parent.name,
            "reward_cv": amp.get("cv_accuracy"), "reward_heldout": amp.get("heldout_accuracy"),
            "amplified": amp.get("used"), "win": win.get("win_rate"), "shift_std": win.get("shift_std"),
            "veto": None if veto is None else {k: veto.get(k) for k in ("pairs", "win_rate", "worse", "passed")}}


def run_rounds(out: Path, cell: str, seed: int) -> list[dict]:
    """Every finished round of one run, in order."""
    return [round_figures(json.loads(p.read_text())) for p in sorted((out / cell / f"s{seed}").glob("round_*.json"))]


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _veto(v: dict | None) -> str:
    if v is None:
        return "-"
    text = f"{_pct(v['win_rate'])} of {v['pairs']}"
    if v["worse"]:
        text += ": worse" + (f", past {len(v['passed'])}" if v.get("passed") else "")
    return text


def table(runs: dict[str, list[dict]]) -> list[str]:
    """Markdown: one line per round, the runs' columns side by side."""
    names = list(runs)
    head = "| round (labels) | taste | " + " | ".join(
        f"{n}: model | {n}: reward CV (amplified?) | {n}: win | {n}: veto before" for n in names) + " |"
    lines = [head, "|---" * (2 + 4 * len(names)) + "|"]
    for i in range(max(map(len, runs.values()), default=0)):
        rows = [runs[n][i] if i < len(runs[n]) else None for n in names]
        first = next(r for r in rows if r is not None)
        cells = []
        for r in rows:
            if r is None:
                cells += ["", "", "", ""]
                continue
            cv = "-" if r["reward_cv"] is None else f"{r['reward_cv']:.2f} ({'yes' if r['amplified'] else 'no'})"
            model = r["model"] + ("" if r["promoted"] in (True, None) else " (refused)")
            cells += [model, cv, _pct(r["win"]), _veto(r["veto"])]
        lines.append(f"| {first['round']} ({first['labels']}) | {first['taste']} | " + " | ".join(cells) + " |")
    return lines


def add_run_args(p: argparse.ArgumentParser) -> None:
    """The suite folders to read side by side, their names, the seeds and ``--json`` (shared with suite_judge.py)."""
    p.add_argument("outs", nargs="+", type=Path, help="suite folders (--out of preference_suite.py)")
    p.add_argument("--names", nargs="+", default=None, help="a name per folder (default: the folder names)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")


def run_names(p: argparse.ArgumentParser, args) -> list[str]:
    """``--names``, or the folder names; a usage error when their count is not the folders'."""
    names = args.names or [o.name for o in args.outs]
    if len(names) != len(args.outs):
        p.error(f"--names: {len(names)} names for {len(args.outs)} folders")
    return names


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_args(p)
    p.add_argument("--cell", default="mnist/slant", help="data set / annotator")
    args = p.parse_args(argv)
    names = run_names(p, args)
    out = {str(s): {n: run_rounds(o, args.cell, s) for n, o in zip(names, args.outs)} for s in args.seeds}
    for seed, runs in out.items():
        print(f"\n{args.cell}, seed {seed}\n")
        print("\n".join(table(runs)))
    if args.json:
        args.json.write_text(json.dumps({"cell": args.cell, "folders": [str(o) for o in args.outs],
                                         "seeds": out}, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
