"""Reward amplification (dpo.amplify.amplify) under SIGKILL, and its folder cleaned by a killed process.

A tiny flow model and a reward model fit on toy pairs amplify one session (3 classes x 8 groups of 8: 168 pairs,
384 arrays) into a store. Two kinds of trial, each followed by an unkilled re-run that is compared with an
unkilled reference run (record ids, and every array byte for byte):
- ``amplify``: the amplifying process is SIGKILLed at a seeded random moment between 0.3 and 1.05 times an
  unkilled run's duration;
- ``clean-up``: a finished session's arrays are being deleted file by file (as ``shutil.rmtree`` does when the
  preference suite clears a round; 0.5 ms apart, a slow disk) by a process SIGKILLed at a random moment.
Outcomes: ``same`` (every record once, every array as in the reference), ``lost`` (a record or array missing),
``duplicated`` (a record id twice), ``other`` (an array differs), ``stuck`` (the re-run fails).

    python benchmarks/amplify_kills.py --trials 20 --seed 0
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import sys, torch
from dpo.amplify import amplify
from dpo.config import AmplifyConfig
from dpo.reward import RewardModel
from dpo.store import PreferenceStore
from driftsketch.checkpoint import load_model
world, store = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
amplify(load_model(world + "/model.pt"), RewardModel.load(world + "/reward.json"), PreferenceStore(store),
        AmplifyConfig(enabled=True, groups_per_class=8, group_size=8, num_steps=2), session="s", progress=False)
"""
CLEANER = ("import sys, time; from pathlib import Path\n"  # file by file, as rmtree does, 0.5 ms apart (a slow disk)
           "for p in sorted(Path(sys.argv[1]).glob('[bn]*/*.npy')):\n    p.unlink(); time.sleep(0.0005)")


def make_world(root: Path) -> Path:
    """A tiny untrained flow model (3 classes) and a reward model on local-geometry features of toy pairs."""
    sys.path.insert(0, str(REPO))
    import torch

    from dpo.config import RewardConfig
    from dpo.reward import fit_reward_model
    from driftsketch.checkpoint import save_checkpoint
    from driftsketch.model import ModelConfig, SketchFlowTransformer

    root.mkdir(parents=True)
    torch.manual_seed(0)
    save_checkpoint(root / "model.pt", SketchFlowTransformer(ModelConfig(num_classes=3, dim=32, depth=2, heads=2)),
                    ["circle", "square", "zigzag"], step=1)
    rng = np.random.default_rng(0)
    smooth = rng.uniform(-0.5, 0.5, (60, 1, 1, 2)) + np.linspace(-0.3, 0.3, 128).reshape(1, 32, 4, 1) * [1, 0.5]
    rough = smooth + rng.normal(0, 0.05, smooth.shape)
    cfg = RewardConfig(hand_features=False, embedding_t=[], local_features=64)
    fit_reward_model(None, smooth.astype(np.float32), rough.astype(np.float32), np.arange(60) % 3, cfg).save(
        root / "reward.json")
    return root


def start(code: str, *args: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def snapshot(store: Path) -> dict:
    """Record ids (with repeats) and a digest of every array file."""
    ids = [line.split('"id":')[1].split('"')[1] for f in sorted((store / "sessions").glob("*.jsonl"))
           for line in f.read_text().splitlines() if '"id":' in line]
    arrays = {str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
              for d in ("beziers", "noise") for p in sorted((store / d).glob("*.npy"))}
    return {"ids": ids, "arrays": arrays}


def classify(after: dict, reference: dict, rerun_rc: int) -> str:
    if rerun_rc != 0:
        return "stuck"
    if len(after["ids"]) != len(set(after["ids"])):
        return "duplicated"
    if set(after["ids"]) != set(reference["ids"]) or set(after["arrays"]) != set(reference["arrays"]):
        return "lost"
    return "same" if after["arrays"] == reference["arrays"] else "other"


def trial(world: Path, store: Path, killed: subprocess.Popen, delay: float, reference: dict) -> tuple[str, int]:
    """The re-run's outcome, and how many arrays the killed process had left."""
    time.sleep(delay)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    left = len(snapshot(store)["arrays"]) if store.is_dir() else 0
    rc = start(CHILD, world, store).wait()
    return classify(snapshot(store), reference, rc), left


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=20, help="trials of each kind")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        world = make_world(Path(tmp) / "world")
        t0 = time.perf_counter()
        if start(CHILD, world, Path(tmp) / "reference").wait() != 0:
            raise SystemExit("the unkilled amplification failed")
        duration = time.perf_counter() - t0
        reference = snapshot(Path(tmp) / "reference")
        shutil.copytree(Path(tmp) / "reference", Path(tmp) / "timing")
        t0 = time.perf_counter()
        start(CLEANER, Path(tmp) / "timing").wait()
        clean_s = time.perf_counter() - t0
        counts: dict[str, dict[str, int]] = {"amplify": {}, "clean-up": {}}
        left: dict[str, list[int]] = {"amplify": [], "clean-up": []}
        for i in range(args.trials):
            for kind in counts:
                store = Path(tmp) / f"{kind}{i}"
                if kind == "amplify":
                    out, n = trial(world, store, start(CHILD, world, store),
                                   float(rng.uniform(0.3, 1.05) * duration), reference)
                else:
                    shutil.copytree(Path(tmp) / "reference", store)
                    out, n = trial(world, store, start(CLEANER, store), float(rng.uniform(0.3, 1.05) * clean_s),
                                   reference)
                counts[kind][out] = counts[kind].get(out, 0) + 1
                left[kind].append(n)
                shutil.rmtree(store)
    total = len(reference["arrays"])
    print(f"unkilled amplification: {duration:.2f} s, {len(reference['ids'])} records, {total} arrays; "
          f"an unkilled clean-up: {clean_s:.2f} s")
    for kind, c in counts.items():
        part = sum(0 < n < total for n in left[kind])
        print(f"{args.trials} SIGKILLs during {kind}, each re-run: {c} ({part} kills left part of the arrays, "
              f"{left[kind].count(0)} none, {left[kind].count(total)} all)")
    return {"counts": counts, "arrays_left": left}


if __name__ == "__main__":
    main()
