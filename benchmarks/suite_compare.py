"""Paired comparison of two preference-suite runs: the same cells and seeds, one setting changed.

    python benchmarks/suite_compare.py runs/research/suite-base26 runs/research/suite-g16 \\
        --names "4 groups" "16 groups" --labels 500

For every (data set, annotator, seed) finished in both runs (``benchmarks/preference_suite.py --out A`` and
``--out B``), the win rate after ``--labels`` labels under the annotator's noise-free score, per seed and as
the mean of each arm, the paired difference B - A per cell, the rounds whose reward passed its gate
(amplified) and whose candidate was promoted, the recognizability difference, and FD and continuity of each arm
(evaluation classifier; the drift a change may stop or cause), and the preferred attribute's shift in base std.
Pooled over every paired run but the global styles': mean difference, its sd and standard error, and how many
runs went up, down or stayed. A global style's win sits near 100 % in both arms (any move of the attribute moves
every sample the same way), so styles are compared on their shift instead, on a line of their own. The
shuffled-label controls, seed by seed: their mean and highest win over the annotators that are not styles, and
the styles' drift. Only runs both arms finished count; the script says which ones it left out. Prints markdown.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preference_suite import annotator_kinds, collect, machine_label  # noqa: E402

from driftsketch.fileio import atomic_write_text  # noqa: E402


def rounds_up_to(run: dict, labels: int) -> list[dict]:
    """The run's rounds up to ``labels`` labels, in order."""
    return [run[k] for k in sorted(run, key=int) if int(k) <= labels]


def amplified_rounds(run: dict, labels: int) -> int:
    """The run's rounds up to ``labels`` labels whose reward passed its gate and amplified."""
    return sum(bool(r.get("amplify", {}).get("used")) for r in rounds_up_to(run, labels))


def run_figures(run: dict, cell: str, labels: int) -> dict | None:
    """Win rate, quality metrics and round counts of one run after ``labels`` labels (None: not finished)."""
    if "eval" not in run.get(str(labels), {}):
        return None
    ev, rounds = run[str(labels)]["eval"], rounds_up_to(run, labels)
    return {"win": ev["annotators"][cell]["win_rate"], "recognizability": ev["metrics"]["recognizability"],
            "fd": ev["metrics"].get("fd"), "continuity": ev["metrics"].get("continuity"),
            "shift": ev["annotators"][cell].get("shift_std"),
            "amplified": amplified_rounds(run, labels),
            "promoted": sum(bool(r.get("promoted", True)) for r in rounds), "rounds": len(rounds)}


def paired_runs(a: dict, b: dict, labels: int) -> tuple[dict, list[str]]:
    """``{(data, cell): {seed: (figures A, figures B)}}`` for runs finished in both, and the ones left out."""
    pairs: dict = {}
    missing = []
    for data in sorted(set(a) | set(b)):
        for cell in sorted((set(a.get(data, {})) | set(b.get(data, {}))) - {"control"}):  # no taste of its own
            seeds = set(a.get(data, {}).get(cell, {})) | set(b.get(data, {}).get(cell, {}))
            for seed in sorted(seeds, key=lambda s: int(s[1:])):
                fa = run_figures(a.get(data, {}).get(cell, {}).get(seed, {}), cell, labels)
                fb = run_figures(b.get(data, {}).get(cell, {}).get(seed, {}), cell, labels)
                if fa is None or fb is None:
                    missing.append(f"{data}/{cell}/{seed}")
                else:
                    pairs.setdefault((data, cell), {})[seed] = (fa, fb)
    return pairs, missing


def first_round_repeats(a: dict, b: dict, pairs: dict) -> dict:
    """Paired runs whose first round gave the same win in both arms, and those that did not. Where the setting
    compared does not touch round 0 (the pair selection, the DPO reference) every run should: a difference means
    the arms ran on different CPU kernels, which give other digits for the same seed (docs/preference_suite.md)."""
    same, differ = 0, []
    for (data, cell), by_seed in pairs.items():
        for seed in by_seed:
            ra, rb = a[data][cell][seed], b[data][cell][seed]
            first = min(int(k) for k in ra)
            fa, fb = run_figures(ra, cell, first), run_figures(rb, cell, first)
            if fa is None or fb is None:
                continue
            if fa["win"] == fb["win"]:
                same += 1
            else:
                differ.append(f"{data}/{cell}/{seed}")
    return {"same": same, "differ": differ}


def machines_differ(a: dict, b: dict, pairs: dict, labels: int) -> dict:
    """Paired runs whose arms recorded the machine they ran on (suite rounds since 6 December 2026): how many,
    and those made on different ones (``{run: [machine A, machine B]}``), which compare only on average."""
    recorded, differ = 0, {}
    for (data, cell), by_seed in pairs.items():
        for seed in by_seed:
            ma, mb = (machine_label(x[data][cell][seed], labels) for x in (a, b))
            if "not recorded" in ma or "not recorded" in mb:
                continue
            recorded += 1
            if ma != mb:
                differ[f"{data}/{cell}/{seed}"] = [ma, mb]
    return {"recorded": recorded, "differ": differ}


def control_figures(run: dict, data: str, labels: int, kinds: dict) -> dict | None:
    """A shuffled-label control run after ``labels`` labels: its mean win over the annotators that are not global
    styles, its highest single one, the styles' shifts (base std) and its amplified rounds (None: not finished)."""
    if "eval" not in run.get(str(labels), {}):
        return None
    anns = run[str(labels)]["eval"]["annotators"]
    wins = {k: v["win_rate"] for k, v in anns.items() if kinds.get((data, k)) != "style"}
    shifts = {k: v.get("shift_std") for k, v in anns.items() if kinds.get((data, k)) == "style"}
    return {"win": float(np.mean(list(wins.values()))) if wins else float("nan"),
            "max": max(wins.values(), default=float("nan")), "shifts": shifts,
            "amplified": amplified_rounds(run, labels)}


def control_lines(a: dict, b: dict, names: tuple[str, str], labels: int, kinds: dict) -> tuple[list[str], dict]:
    """Seed by seed, the shuffled-label controls finished in both arms: a setting that amplifies more must not
    turn random answers into a "win" (the issue's limit: 52 % for a per-sketch taste) or into a style's drift."""
    lines, out = [], {}
    for data in sorted(set(a) & set(b)):
        for seed in sorted(set(a[data].get("control", {})) & set(b[data].get("control", {})), key=lambda s: int(s[1:])):
            fa, fb = (control_figures(x[data]["control"][seed], data, labels, kinds) for x in (a, b))
            if fa is None or fb is None:
                continue
            out[f"{data}/{seed}"] = {"a": fa, "b": fb}
            drift = "; ".join(f"{k} {fa['shifts'][k]:+.2f} -> {fb['shifts'].get(k, float('nan')):+.2f}"
                              for k in sorted(fa["shifts"]) if fa["shifts"][k] is not None)
            lines.append(f"- {data} {seed}: mean win {fa['win'] * 100:.1f} -> {fb['win'] * 100:.1f} %, highest "
                         f"{fa['max'] * 100:.1f} -> {fb['max'] * 100:.1f} %, amplified rounds {fa['amplified']} -> "
                         f"{fb['amplified']}" + (f"; style shift (base std) {drift}" if drift else ""))
    if lines:
        lines.insert(0, f"Shuffled-label controls ({labels} labels; {names[0]} -> {names[1]}; win over the annotators "
                        "that are not global styles):")
    return lines, out


def points(x: float) -> float:
    """``x`` (a share) in points, rounded to one decimal, without a negative zero."""
    return round(x * 100, 1) + 0.0


def per_seed(figures: list[dict]) -> str:
    """The win rates in points, seed by seed."""
    return ", ".join(f"{f['win'] * 100:.1f}" for f in figures)


def pooled(diffs: list[float]) -> dict:
    """Mean paired difference in points, its sd and standard error, and the runs up, down and equal."""
    d = np.asarray(diffs, dtype=np.float64) * 100
    sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
    return {"runs": len(d), "mean": float(d.mean()), "sd": sd, "se": sd / np.sqrt(len(d)),
            "up": int((d > 1e-9).sum()), "down": int((d < -1e-9).sum()), "equal": int((np.abs(d) <= 1e-9).sum())}


def arm_means(fa: list[dict], fb: list[dict], key: str, fmt: str) -> str:
    """``mean A -> mean B`` of a metric over the seeds, or n/a where a run did not record it."""
    if any(f[key] is None for f in fa + fb):
        return "n/a"
    return f"{np.mean([f[key] for f in fa]):{fmt}} -> {np.mean([f[key] for f in fb]):{fmt}}"


def markdown(pairs: dict, names: tuple[str, str], labels: int, kinds: dict | None = None) -> tuple[str, dict]:
    """The per-cell table, the pooled line (styles left out) and the styles' shifts, and the same as a dict."""
    na, nb = names
    kinds = kinds or {}
    lines = [f"| data | annotator | {na} (per seed) | {nb} (per seed) | mean {na} -> {nb} | paired {nb} - {na} "
             f"(points) | amplified rounds | promoted rounds | recognizability vs {na} (points) | FD | continuity "
             "| shift (base std) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    out, all_diffs, styles = {"labels": labels, "names": list(names), "cells": {}}, [], []
    for (data, cell), by_seed in pairs.items():
        fa = [v[0] for v in by_seed.values()]
        fb = [v[1] for v in by_seed.values()]
        diffs = [b["win"] - a["win"] for a, b in zip(fa, fb)]
        if kinds.get((data, cell)) == "style":
            styles.append(f"{data}/{cell} {arm_means(fa, fb, 'shift', '+.2f')}")
        else:
            all_diffs += diffs
        rec = float(np.mean([b["recognizability"] - a["recognizability"] for a, b in zip(fa, fb)]))
        n_rounds = sum(f["rounds"] for f in fa)
        wa, wb = per_seed(fa), per_seed(fb)
        lines.append(
            f"| {data} | {cell} | {wa} | {wb} "
            f"| {np.mean([f['win'] for f in fa]) * 100:.1f} -> {np.mean([f['win'] for f in fb]) * 100:.1f} "
            f"| {points(np.mean(diffs)):+.1f} | {sum(f['amplified'] for f in fa)} -> {sum(f['amplified'] for f in fb)} "
            f"of {n_rounds} | {sum(f['promoted'] for f in fa)} -> {sum(f['promoted'] for f in fb)} | {points(rec):+.1f} "
            f"| {arm_means(fa, fb, 'fd', '.2f')} | {arm_means(fa, fb, 'continuity', '.3f')} "
            f"| {arm_means(fa, fb, 'shift', '+.2f')} |")
        out["cells"][f"{data}/{cell}"] = {"seeds": list(by_seed), "a": fa, "b": fb, "diff_points": np.mean(diffs) * 100}
    if all_diffs:
        p = pooled(all_diffs)
        out["pooled"] = p
        lines.append("")
        left = " (global styles left out)" if styles else ""
        lines.append(f"Pooled over {p['runs']} paired runs{left} ({labels} labels): **{points(p['mean'] / 100):+.1f} "
                     f"points (sd {p['sd']:.1f}, SE {p['se']:.1f}; {p['up']} up, {p['down']} down, {p['equal']} equal)**")
    if styles:
        lines += ["", f"Global styles, judged by the preferred attribute's shift (base std, mean over seeds, {na} -> "
                  f"{nb}): " + "; ".join(styles)]
    return "\n".join(lines), out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=Path, help="the first arm's suite --out (the reference)")
    p.add_argument("b", type=Path, help="the second arm's suite --out (the change)")
    p.add_argument("--names", nargs=2, default=["A", "B"], metavar=("A", "B"))
    p.add_argument("--labels", type=int, default=500)
    p.add_argument("--json", type=Path, default=None, help="also write the comparison here")
    args = p.parse_args(argv)
    for d in (args.a, args.b):
        if not d.is_dir():
            raise SystemExit(f"error: {d}: no such suite output (benchmarks/preference_suite.py --out)")
    raw_a, raw_b = collect(args.a), collect(args.b)
    pairs, missing = paired_runs(raw_a, raw_b, args.labels)
    if not pairs:
        raise SystemExit(f"error: no run finished {args.labels} labels in both {args.a} and {args.b}")
    kinds = annotator_kinds(args.a, args.b)
    text, out = markdown(pairs, tuple(args.names), args.labels, kinds)
    print(text)
    if missing:
        print(f"\nLeft out (not finished {args.labels} labels in both): {', '.join(missing)}")
    controls, out["controls"] = control_lines(raw_a, raw_b, tuple(args.names), args.labels, kinds)
    if controls:
        print("\n" + "\n".join(controls))
    first = first_round_repeats(raw_a, raw_b, pairs)
    if first["same"] or first["differ"]:
        print(f"\nThe first round gave the same win in both arms in {first['same']} of "
              f"{first['same'] + len(first['differ'])} paired runs"
              + (f" (not: {', '.join(first['differ'])})" if first["differ"] else "")
              + ". Where the setting compared does not touch round 0, a difference means the arms ran on different "
                "CPU kernels: their runs then compare only on average, not seed by seed.")
    machines = machines_differ(raw_a, raw_b, pairs, args.labels)
    if machines["recorded"]:
        print(f"\nBoth arms recorded their machine in {machines['recorded']} paired runs; "
              + (f"{len(machines['differ'])} ran on different ones: "
                 + "; ".join(f"{k} ({' vs '.join(v)})" for k, v in machines["differ"].items())
                 if machines["differ"] else "all on the same one") + ".")
    if args.json:
        atomic_write_text(args.json, json.dumps({**out, "left_out": missing, "first_round": first,
                                                 "machines": machines}, indent=2))


if __name__ == "__main__":
    main()
