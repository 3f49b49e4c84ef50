"""Fuzz every parser of outside data with hypothesis and print, per parser, how many generated inputs it
got and every exception that is not the project's own (a finding). Target: >= 10,000 inputs each, 0 findings.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fuzz_parsers.py                 # 10,000 per parser, seed 0
    .venv/bin/python benchmarks/fuzz_parsers.py --examples 500 --only quickdraw_ndjson,yaml_config

The targets, strategies and properties live in tests/fuzz_targets.py (the unit tests run the same ones
with a few hundred inputs). Outcomes: accepted (well-formed output), refused (a DriftSketchError naming
the problem), skipped (a clean skip that is counted, e.g. a malformed ndjson line). Exit code 1 when
anything else was raised.
"""
from __future__ import annotations

import argparse
import collections
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from fuzz_targets import TARGETS, Target  # noqa: E402


def fuzz(target: Target, examples: int, seed_value: int) -> dict:
    """Run ``target`` on ``examples`` generated inputs; count outcomes and collect findings (not raised)."""
    outcomes: collections.Counter = collections.Counter()
    findings: dict[str, dict] = {}

    @seed(seed_value)
    @settings(max_examples=examples, phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(target.strategy)
    def run(example):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outcomes[target.check(example)] += 1
        except Exception as exc:  # noqa: BLE001 - a finding: record it and go on generating
            outcomes["finding"] += 1
            key = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
            entry = findings.setdefault(key, {"count": 0, "example": repr(example)[:300]})
            entry["count"] += 1

    start = time.perf_counter()
    run()
    return {"inputs": sum(outcomes.values()), "outcomes": dict(outcomes), "findings": findings,
            "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--examples", type=int, default=10_000, help="generated inputs per parser (default 10,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", help="comma-separated target names (default: all)")
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else list(TARGETS)
    print("| parser | what | inputs | accepted | refused | skipped | findings | s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    total_findings = 0
    details = []
    for name in names:
        r = fuzz(TARGETS[name], args.examples, args.seed)
        o = r["outcomes"]
        total_findings += o.get("finding", 0)
        print(f"| {name} | {TARGETS[name].what} | {r['inputs']} | {o.get('accepted', 0)} | {o.get('refused', 0)} | "
              f"{o.get('skipped', 0)} | {o.get('finding', 0)} | {r['seconds']:.0f} |", flush=True)
        details += [f"{name}: {k} (x{v['count']}), e.g. {v['example']}" for k, v in r["findings"].items()]
    for line in details:
        print(line)
    print(f"seed {args.seed}, {args.examples} examples asked per parser; findings: {total_findings}")
    return 1 if total_findings else 0


if __name__ == "__main__":
    sys.exit(main())
