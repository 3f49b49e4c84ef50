"""Cost of one Flow-DPO step relative to one plain CFM training step at the same batch size.

    python benchmarks/bench_dpo_step.py                          # model size of configs/train.yaml
    python benchmarks/bench_dpo_step.py --checkpoint runs/base-builtin/model.pt --batch 32 --num-threads 1

A DPO step of B pairs runs the policy forward+backward on 2 B sketches (winner and loser) times
``num_t`` time draws and the frozen reference forward on as many; a plain step runs B sketches. Both
are timed interleaved in one process, so the ratio holds on a busy machine.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

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
    args = p.parse_args()
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
    for _ in range(args.repeats):  # interleaved, so load changes hit all variants alike
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["plain"])
    print(f"params {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M, batch {b} (pairs for DPO), "
          f"threads {args.num_threads}, median of {args.repeats}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:14s} {med * 1000:8.1f} ms/step   x{med / base:.2f} of a plain step")


if __name__ == "__main__":
    main()
