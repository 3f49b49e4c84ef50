"""``driftsketch-labelstudio taste-mark`` SIGKILLed at random moments, then re-run: the marks file must hold the
mark exactly once, parse without warnings, and put the same mark in force as an unkilled run. Then two processes at
once, and a torn last line (a crash mid-write) before a re-run.

    python benchmarks/taste_mark_kills.py --trials 30 --seed 0
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


def start(store: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "labeling.cli", "taste-mark", "--set", f"pull.store_root={store}",
                             "--set", f"push.store_root={store}", "--reason", "new instructions", "--at", AT],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def verdict(store: Path) -> str:
    from dpo.taste import TasteMarks, parse_time

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        marks = TasteMarks(store).marks()
        since = TasteMarks(store).since()
    if len(marks) == 0:
        return "lost"
    if len(marks) > 1:
        return "duplicated"
    return "same" if since == parse_time(AT) and not caught else "other"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    out: dict[str, dict] = {"killed": {}, "two_at_once": {}, "torn": {}}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        assert start(Path(tmp) / "ref").wait() == 0
        duration = time.perf_counter() - t0
        for i in range(args.trials):
            store = Path(tmp) / f"k{i}"
            proc = start(store)
            time.sleep(float(rng.uniform(0.5, 1.05) * duration))
            proc.kill()
            proc.wait()
            start(store).wait()
            v = verdict(store)
            out["killed"][v] = out["killed"].get(v, 0) + 1
        for i in range(3):
            store = Path(tmp) / f"p{i}"
            for pr in [start(store), start(store)]:
                pr.wait()
            v = verdict(store)  # the same at and reason: a second one appends nothing, unless both read first
            out["two_at_once"][v] = out["two_at_once"].get(v, 0) + 1
        store = Path(tmp) / "torn"
        (store / "taste").mkdir(parents=True)
        (store / "taste" / "marks.jsonl").write_text('{"at": "2026-01-01T03:0')  # a crash mid-write
        start(store).wait()
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
