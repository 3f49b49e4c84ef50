"""Training and generation throughput of the sketch model, next to the issue's reference network.

    python benchmarks/bench_core.py                       # default config vs the 8x256 reference
    python benchmarks/bench_core.py --checkpoint runs/base/model.pt --num-threads 2

Prints training samples/s (batch 64), generation sketches/s (50 Euler steps with and without CFG,
and the default sampler), and peak resident memory. Both networks are timed in the same run, so the
ratio holds even when the machine is busy.
"""
from __future__ import annotations

import argparse
import resource
import time

import torch

from driftsketch.flow import cfm_loss
from driftsketch.model import ModelConfig, SketchFlowTransformer
from driftsketch.sampling import generate_beziers
from driftsketch.train_config import SamplingConfig, load_train_config


def train_rate(model, batch: int, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = torch.rand(batch, 32, 8) * 2 - 1, torch.randint(0, model.config.num_classes, (batch,))
    model.train()
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        loss = cfm_loss(model, x, y, 0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - start)


def gen_rate(model, n: int, steps: int, solver: str, cfg_scale: float) -> float:
    model.class_names = [str(i) for i in range(model.config.num_classes)]
    generate_beziers(model, 0, 4, num_steps=2, seed=0)  # warm-up
    start = time.perf_counter()
    generate_beziers(model, 0, n, num_steps=steps, solver=solver, cfg_scale=cfg_scale, seed=0)
    return n / (time.perf_counter() - start)


def measure(name: str, model, args) -> dict:
    s = SamplingConfig()  # the default sampler (configs/train.yaml)
    row = {"model": name, "params_M": model.num_params() / 1e6,
           "train_samples_s": train_rate(model, 64, args.train_steps),
           "gen_euler50_nocfg": gen_rate(model, args.num, 50, "euler", 1.0),
           "gen_euler50_cfg": gen_rate(model, args.num, 50, "euler", s.cfg_scale),
           f"gen_default_{s.solver}{s.num_steps}_cfg": gen_rate(model, args.num, s.num_steps, s.solver, s.cfg_scale)}
    print("  ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-threads", type=int, default=2)
    p.add_argument("--num", type=int, default=64, help="sketches per generation measurement")
    p.add_argument("--train-steps", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(args.num_threads)
    torch.manual_seed(0)
    m = load_train_config().model
    ours = SketchFlowTransformer(ModelConfig(num_classes=10, dim=m.dim, depth=m.depth, heads=m.heads,
                                             mlp_ratio=m.mlp_ratio, codec=m.codec))
    ref = SketchFlowTransformer(ModelConfig(num_classes=10, dim=256, depth=8, heads=8))
    a = measure(f"default({m.dim}x{m.depth})", ours, args)
    b = measure("reference(256x8)", ref, args)
    for key in a:
        if key not in ("model", "params_M"):
            print(f"ratio default/reference {key}: {a[key] / b[key]:.2f}x")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
