"""Cost of one Flow-DPO step relative to one plain CFM training step at the same batch size.

    python benchmarks/bench_dpo_step.py                          # model size of configs/train.yaml
    python benchmarks/bench_dpo_step.py --checkpoint runs/base-builtin/model.pt --batch 32 --num-threads 1

A DPO step of B pairs runs the policy forward+backward on 2 B sketches (winner and loser) times
``num_t`` time draws and the frozen reference forward on as many; a plain step runs B sketches. Both
are timed interleaved in one process, so the ratio holds on a busy machine.

    python benchmarks/bench_dpo_step.py --num-threads 2 --compare-wait-policy   # OpenMP spinning vs sleeping

``--compare-wait-policy`` runs the measurement in child processes with ``OMP_WAIT_POLICY=ACTIVE`` (waiting
torch threads spin, PyTorch's usual behaviour) and ``PASSIVE`` (they sleep: what ``import driftsketch``
sets unless the variable is set; this script imports torch first, so without the flag it runs with
whatever the environment says), alternately, and prints wall and CPU milliseconds per step of each.
"""
from __future__ import annotations

import argparse
import copy
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from dpo.loss import flow_dpo_loss
from driftsketch.checkpoint import load_model
from driftsketch.flow import cfm_loss
from driftsketch.model import ModelConfig, SketchFlowTransformer
from driftsketch.train_config import load_train_config


def make_model(checkpoint: str | None) -> SketchFlowTransformer:
    if checkpoint:
        return load_model(checkpoint)
    m = load_train_config().model
    return SketchFlowTransformer(ModelConfig(num_classes=8, dim=m.dim, depth=m.depth, heads=m.heads,
                                             mlp_ratio=m.mlp_ratio, codec=m.codec))


def step_plain(model, opt, x, y) -> None:
    loss = cfm_loss(model, x, y, 0.1)
    opt.zero_grad()
    loss.backward()
    opt.step()


def step_dpo(model, ref, opt, x_w, x_l, y, num_t: int, sft_weight: float) -> None:
    loss, _ = flow_dpo_loss(model, ref, x_w, x_l, y, beta=1000.0, num_t=num_t, sft_weight=sft_weight)
    opt.zero_grad()
    loss.backward()
    opt.step()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--num-t", type=int, nargs="+", default=[1, 4])
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--compare-wait-policy", action="store_true",
                   help="time OMP_WAIT_POLICY=ACTIVE against PASSIVE in child processes")
    args = p.parse_args()
    if args.compare_wait_policy:
        compare_wait_policy(args)
        return
    torch.set_num_threads(args.num_threads)
    model = make_model(args.checkpoint).train()
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    b, n_cls = args.batch, model.config.num_classes
    x_w, x_l, y = torch.rand(b, 32, 8) * 2 - 1, torch.rand(b, 32, 8) * 2 - 1, torch.randint(0, n_cls, (b,))
    fns = {"plain": lambda: step_plain(model, opt, x_w, y)}
    for k in args.num_t:
        fns[f"dpo num_t={k}"] = lambda k=k: step_dpo(model, ref, opt, x_w, x_l, y, k, 1.0)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for name, fn in fns.items():  # warm-up
        fn()
    cpu0 = time.process_time()
    for _ in range(args.repeats):  # interleaved, so load changes hit all variants alike
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["plain"])
    print(f"params {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M, batch {b} (pairs for DPO), "
          f"threads {args.num_threads}, median of {args.repeats}")
    cpu_ms = 1000 * (time.process_time() - cpu0) / (args.repeats * len(fns))
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:14s} {med * 1000:8.1f} ms/step   x{med / base:.2f} of a plain step")
    print(f"CPU {cpu_ms:.1f} ms per step (mean over all variants; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')})")


def compare_wait_policy(args) -> None:
    """Wall and CPU per step with spinning (ACTIVE) and sleeping (PASSIVE) OpenMP threads, alternately."""
    cmd = [sys.executable, __file__, "--batch", str(args.batch), "--repeats", str(args.repeats),
           "--num-threads", str(args.num_threads), "--num-t", *map(str, args.num_t)]
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    rows: dict[str, list[tuple[float, float]]] = {"ACTIVE": [], "PASSIVE": []}
    for _ in range(2):
        for policy in rows:
            t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            out = subprocess.run(cmd, env={**os.environ, "OMP_WAIT_POLICY": policy}, capture_output=True,
                                 text=True, check=True).stdout
            c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            step = [ln for ln in out.splitlines() if ln.startswith("dpo num_t=")][0]
            rows[policy].append((float(step.split()[2]), float(out.split("CPU ")[1].split()[0])))
            print(f"{policy:8s} {step}; {out.split('CPU ')[1].split(' (')[0]}; child process: "
                  f"{time.perf_counter() - t0:.1f} s wall, {c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime:.1f}"
                  f" s CPU", flush=True)
    act, pas = (np.mean(rows[k], axis=0) for k in ("ACTIVE", "PASSIVE"))
    one, five, _ = os.getloadavg()
    print(f"PASSIVE vs ACTIVE ({args.num_threads} threads): {act[0] / pas[0]:.2f}x faster DPO step (wall), "
          f"{act[1] / pas[1]:.2f}x less CPU per step; load average {one:.1f} / {five:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
