"""``driftsketch-labelstudio taste-mark`` SIGKILLed at random moments, then re-run: the marks file must hold the
mark exactly once, parse without warnings, and put the same mark in force as an unkilled run. Then two processes at
once, and a torn last line (a crash mid-write) before a re-run. ``--withdraw``: the same for ``taste-mark --withdraw``
on a store with two marks: the withdrawal must land once and put the older mark in force.

    python benchmarks/taste_mark_kills.py --trials 30 --seed 0
    python benchmarks/taste_mark_kills.py --trials 30 --seed 1 --withdraw
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
AT = "2026-01-01T03:00:00+00:00"
OLDER = "2026-01-01T01:00:00+00:00"  # --withdraw: the mark that must be in force after AT's is withdrawn


def start(store: Path, withdraw: bool = False) -> subprocess.Popen:
    what = ["--withdraw", AT, "--reason", "false alarm"] if withdraw else ["--reason", "new instructions", "--at", AT]
    return subprocess.Popen([sys.executable, "-m", "labeling.cli", "taste-mark", "--set", f"pull.store_root={store}",
                             "--set", f"push.store_root={store}", *what],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def prepare(store: Path, withdraw: bool) -> None:
    """``--withdraw``: the store holds two marks, OLDER and AT, before the command runs."""
    from dpo.taste import TasteMarks, parse_time

    if withdraw:
        for at in (OLDER, AT):
            TasteMarks(store).add("new instructions", parse_time(at))


def verdict(store: Path, withdraw: bool = False) -> str:
    from dpo.taste import TasteMarks, parse_time

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        entries = TasteMarks(store).entries()
        since = TasteMarks(store).since()
    landed = [e for e in entries if ("withdraws" if withdraw else "at") in e and
              e.get("withdraws", e.get("at")) == parse_time(AT)]
    if len(landed) == 0:
        return "lost"
    if len(landed) > 1:
        return "duplicated"
    return "same" if since == parse_time(OLDER if withdraw else AT) and not caught else "other"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--withdraw", action="store_true", help="kill taste-mark --withdraw instead")
    args = p.parse_args(argv)
    w = args.withdraw
    rng = np.random.default_rng(args.seed)
    out: dict[str, dict] = {"killed": {}, "two_at_once": {}, "torn": {}}
    with tempfile.TemporaryDirectory() as tmp:
        prepare(Path(tmp) / "ref", w)
        t0 = time.perf_counter()
        assert start(Path(tmp) / "ref", w).wait() == 0
        duration = time.perf_counter() - t0
        for i in range(args.trials):
            store = Path(tmp) / f"k{i}"
            prepare(store, w)
            proc = start(store, w)
            time.sleep(float(rng.uniform(0.5, 1.05) * duration))
            proc.kill()
            proc.wait()
            start(store, w).wait()
            v = verdict(store, w)
            out["killed"][v] = out["killed"].get(v, 0) + 1
        for i in range(3):
            store = Path(tmp) / f"p{i}"
            prepare(store, w)
            for pr in [start(store, w), start(store, w)]:
                pr.wait()
            v = verdict(store, w)  # the same at and reason: a second one appends nothing, unless both read first
            out["two_at_once"][v] = out["two_at_once"].get(v, 0) + 1
        store = Path(tmp) / "torn"
        prepare(store, w)
        (store / "taste").mkdir(parents=True, exist_ok=True)
        with open(store / "taste" / "marks.jsonl", "a") as f:
            f.write('{"withdraws": "2026-01-01T03:0' if w else '{"at": "2026-01-01T03:0')  # a crash mid-write
        start(store, w).wait()
        from dpo.taste import TasteMarks
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            good = TasteMarks(store).marks()
        out["torn"] = {"good_marks": len(good), "warnings": len(caught)}
    print(f"unkilled: {duration:.2f} s; {args.trials} SIGKILLs then re-runs: {out['killed']}; two at once: "
          f"{out['two_at_once']}; torn last line then a re-run: {out['torn']}")
    return out


if __name__ == "__main__":
    main()
