"""Fault injection: SIGKILL each step at seeded random moments, re-run it, count what was lost or broken.

    .venv/bin/python benchmarks/bench_faults.py                       # every fault, 20 trials each
    .venv/bin/python benchmarks/bench_faults.py --faults pull push --trials 5 --seed 1
    .venv/bin/python benchmarks/bench_faults.py --json out.json       # also the raw rows
    .venv/bin/python benchmarks/bench_faults.py --faults round round-worker worker worker-host two-rounds \
        two-rounds-direct --trials 20 --worker-trials 3 --together-trials 3   # whole rounds (fault_rounds.py)

Prints a markdown table (docs/faults.md holds a copy): per fault the trials, how many kills landed
before the command ended by itself, and records lost, duplicated, torn lines, orphan tasks or arrays,
temporary files left, corrupt JSON or checkpoints, and re-runs that failed (stuck state). The comparison
is always with a run that was never killed. The machinery is benchmarks/fault_injection.py; the real
Label Studio is started the way the tests start it (tests/fixtures_labelstudio.py).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fault_injection import COLUMNS, FAULTS, FaultEnv, hung_server_give_up  # noqa: E402
from fault_rounds import ROUND_FAULTS, SELECTION, RoundEnv  # noqa: E402

ALL = {**FAULTS, **ROUND_FAULTS}


def table(rows) -> str:
    head = "| fault | " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " | kills at (s) | time |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 3)]
    for r in rows:
        lines.append(f"| {r.fault} | " + " | ".join(str(getattr(r, c)) for c in COLUMNS)
                     + f" | {r.window[0]}-{r.window[1]} | {r.seconds:.0f} s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--faults", nargs="+", choices=list(ALL), default=list(ALL))
    p.add_argument("--together-trials", type=int, default=5, help="trials of two pulls / two bots at once")
    p.add_argument("--disk-trials", type=int, default=10, help="trials of a full disk (needs root: tmpfs mounts)")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--server-trials", type=int, default=10, help="trials of Label Studio killed mid-pull")
    p.add_argument("--worker-trials", type=int, default=3,
                   help="trials of a round killed through the worker, and of the worker killed (~1-2 min each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--selection", choices=sorted(SELECTION), default="random",
                   help="the killed rounds' pair selection (uncertain: an ensemble fit on the store's pairs)")
    p.add_argument("--workdir", default=None, help="keep everything here (default: a temporary folder)")
    p.add_argument("--no-hung", action="store_true", help="skip the hung-server measurement (~25 s)")
    p.add_argument("--json", default=None, help="write the rows here too")
    args = p.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="driftsketch-faults-"))
    t0 = time.monotonic()
    env = FaultEnv.start(work)
    print(f"setup (Label Studio from the template, tiny model, classifier, 40 annotated pairs): "
          f"{time.monotonic() - t0:.0f} s; work dir {work}", flush=True)
    rows, renv = [], None
    try:
        for i, name in enumerate(args.faults):
            trials = {"server": args.server_trials, "two-pulls": args.together_trials,
                      "two-bots": args.together_trials, "disk-pull": args.disk_trials,
                      "disk-checkpoint": args.disk_trials, "round-worker": args.worker_trials,
                      "worker": args.worker_trials, "worker-host": args.worker_trials,
                      "two-rounds": args.together_trials, "two-rounds-direct": args.together_trials,
                      }.get(name, args.trials)
            if name in ROUND_FAULTS:
                renv = renv or RoundEnv.start(env, args.selection)  # a Prefect server and the round's classifiers
                rows.append(ROUND_FAULTS[name](renv, trials, args.seed + 1000 * i))
            else:
                rows.append(FAULTS[name](env, trials, args.seed + 1000 * i))
            r = rows[-1]
            print(f"{r.fault}: " + ", ".join(f"{c} {getattr(r, c)}" for c in COLUMNS) + f" ({r.seconds:.0f} s)",
                  flush=True)
            for note in r.notes:
                print(f"  {note}", flush=True)
    finally:
        if renv is not None:
            renv.stop()
        env.stop()
    hung = None if args.no_hung else hung_server_give_up()
    print()
    print(table(rows))
    if hung:
        print(f"\nhung server (accepts, never answers), default timeouts: pull gave up after {hung['seconds']} s, "
              f"exit {hung['exit']}, wrote {hung['wrote'] or 'nothing'}: {hung['message']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": [r.to_dict() for r in rows], "hung": hung,
                                               "seed": args.seed, "trials": args.trials,
                                               "selection": args.selection}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
