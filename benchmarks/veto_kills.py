"""The annotators' veto (tasks.models.human_veto) under SIGKILL, and two processes at once.

A registry base -> r1 -> r2 -> r3 whose evaluation pairs call r3 and r2 worse than the base (r1's own are fine):
one veto goes back to r1 in one rollback event. Each trial copies that world, starts the veto in a subprocess,
SIGKILLs it at a seeded random moment between 0.6 and 1.05 times an unkilled run's duration (most of a run is
importing; the registry is written at its end), re-runs it unkilled, and compares the
registry with the unkilled reference (timestamps aside): a lost veto (r3 still current), a duplicated one (two
rollback events, or a second step back past r1), a stuck registry (the re-run fails, a lock or temporary file
left), or an unreadable registry file. Then ``--pairs`` trials start two vetoes at the same moment.
With ``--taste-mark`` the annotators' taste was marked after r2's promotion (dpo/taste.py): the veto then goes
back past r1, promoted only before the mark, to the base, still in one rollback event.

    python benchmarks/veto_kills.py --trials 40 --pairs 10 --seed 0
    python benchmarks/veto_kills.py --trials 40 --pairs 10 --seed 1 --taste-mark
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RATES = {"r3": {"pairs": 12, "win_rate": 0.2}, "r2": {"pairs": 20, "win_rate": 0.25},
         "r1": {"pairs": 40, "win_rate": 0.9}}
CHILD = ("import json, sys; from driftsketch.registry import PromotionGate; from tasks.models import human_veto; "
         "human_veto.fn(sys.argv[1], PromotionGate(human_veto_min_pairs=30), json.loads(sys.argv[2]), sys.argv[3] or None)")
PROMOTED_AT = {"base": "2026-01-01T00:00:00+00:00", "r1": "2026-01-01T01:00:00+00:00",
               "r2": "2026-01-01T02:00:00+00:00", "r3": "2026-01-01T04:00:00+00:00"}
MARK = "2026-01-01T03:00:00+00:00"  # --taste-mark: after r2's promotion, before r3's


def make_world(root: Path) -> Path:
    """A registry with the base and three promoted models, each the parent of the next."""
    sys.path.insert(0, str(REPO))
    from driftsketch.registry import Registry

    root.mkdir(parents=True)
    reg = Registry(root / "registry")
    for i, (name, parent) in enumerate((("base", None), ("r1", "base"), ("r2", "r1"), ("r3", "r2"))):
        (root / name).write_bytes(name.encode())
        reg.add_model(root / name, name, kind="dpo" if parent else "base", parent=parent, round_index=i)
        reg.promote(name, "round")
    with reg.transaction() as st:  # fixed promotion times, so a taste mark falls between r2's and r3's
        for event in st.history:
            event.at = PROMOTED_AT[event.model]
    return reg.root


def start(registry: Path, since: str = "") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(registry), json.dumps(RATES), since], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def state(registry: Path) -> dict:
    """The registry without timestamps; ``unreadable`` when its file does not parse."""
    try:
        raw = json.loads((registry / "registry.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {"unreadable": True}
    for m in raw["models"].values():
        m.pop("created_at", None), m.pop("decided_at", None)
    for e in raw["history"]:
        e.pop("at", None)
    return raw


def leftovers(registry: Path) -> list[str]:
    """Temporary files a killed writer left (the registry's lock file itself stays by design)."""
    return [p.name for p in registry.rglob("*") if ".tmp" in p.name]


def classify(after: dict, reference: dict, rerun_rc: int, left: list[str]) -> str:
    if after.get("unreadable"):
        return "unreadable"
    if rerun_rc != 0 or left:
        return "stuck"
    rollbacks = sum(e["action"] == "rollback" for e in after["history"])
    if after["current"] == "r3":
        return "lost"
    if rollbacks > 1 or after["current"] != reference["current"]:
        return "duplicated"
    return "same" if after == reference else "other"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--pairs", type=int, default=10, help="trials with two vetoes started at once")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--taste-mark", action="store_true", help="the veto runs with a taste mark between r2 and r3")
    args = p.parse_args(argv)
    since = MARK if args.taste_mark else ""
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        world = make_world(Path(tmp) / "world")
        ref = Path(tmp) / "reference"
        shutil.copytree(world.parent, ref)
        t0 = time.perf_counter()
        if start(ref / "registry", since).wait() != 0:
            raise SystemExit("the unkilled veto failed")
        duration = time.perf_counter() - t0
        reference = state(ref / "registry")
        counts: dict[str, int] = {}
        changed_before_rerun = 0
        for i in range(args.trials):
            trial = Path(tmp) / f"kill{i}"
            shutil.copytree(world.parent, trial)
            proc = start(trial / "registry", since)
            time.sleep(float(rng.uniform(0.6, 1.05) * duration))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            changed_before_rerun += state(trial / "registry").get("current") != "r3"
            rc = start(trial / "registry", since).wait()
            out = classify(state(trial / "registry"), reference, rc, leftovers(trial / "registry"))
            counts[out] = counts.get(out, 0) + 1
            shutil.rmtree(trial)
        both: dict[str, int] = {}
        for i in range(args.pairs):
            trial = Path(tmp) / f"pair{i}"
            shutil.copytree(world.parent, trial)
            rcs = [pr.wait() for pr in [start(trial / "registry", since), start(trial / "registry", since)]]
            out = classify(state(trial / "registry"), reference, max(rcs), leftovers(trial / "registry"))
            both[out] = both.get(out, 0) + 1
            shutil.rmtree(trial)
    print(f"unkilled veto: {duration:.2f} s, current {reference['current']}, "
          f"{sum(e['action'] == 'rollback' for e in reference['history'])} rollback event")
    print(f"{args.trials} SIGKILLs at random moments, each re-run: {counts} "
          f"({changed_before_rerun} killed after the registry was written or the run ended, "
          f"{args.trials - changed_before_rerun} before)")
    print(f"{args.pairs} trials of two vetoes at once: {both}")
    return {"killed": counts, "written_before_kill": changed_before_rerun, "two_at_once": both,
            "current": reference["current"]}


if __name__ == "__main__":
    main()
