"""Sampler speed against quality: the default sampler before and after the speed work, and other solvers.

    python benchmarks/bench_sampler.py --checkpoint runs/base-builtin/model.pt --data builtin \
        --classifier runs/eval/clf_builtin.pt --per-class 20 --num-threads 2
    python benchmarks/bench_sampler.py ... --device cuda          # the same rows on a GPU
    python benchmarks/bench_sampler.py ... --solvers              # also Euler / midpoint / Heun step counts

Every row samples the same classes from the same noise, so recognizability, continuity and Frechet
distance compare sketch for sketch; speeds are means over ``--repeats`` interleaved runs (min-max in
brackets) in one process, so their ratios hold on a busy machine (the load average is printed too).

Rows: ``before`` is the default sampler (midpoint, 10 steps, CFG 2) as it ran before the first speed
change: float32, attention through ``nn.MultiheadAttention``'s fast path; ``fp32`` the same arithmetic
through ``scaled_dot_product_attention``; ``bf16`` the previous default (bfloat16 attention and MLP
products through ``F.linear``, batches one after another, torch's intra-op threads); ``default`` what
``generate_beziers`` does now (``precision="auto"``: on a CPU with native bf16 the products packed for
oneDNN with GELU fused, and with n torch threads n batches solved at once by n Python threads of one
torch thread each). Every row runs with each of ``--num-threads`` (e.g. ``1,2``).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import time

import numpy as np
import torch

from driftsketch import generate_beziers, load_model
from driftsketch import model as model_module
from driftsketch import sampling as sampling_module
from driftsketch.data import load_dataset
from driftsketch.evaluation.classifier import SketchClassifier
from driftsketch.evaluation.evaluate import evaluate_samples
from driftsketch.sampling import native_bf16
from driftsketch.train_config import SamplingConfig

SOLVER_SETTINGS = [("euler", 50), ("euler", 20), ("midpoint", 20), ("heun", 10), ("euler", 10)]


def _legacy_block_forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``DiTBlock.forward`` before this change: attention through ``nn.MultiheadAttention``."""
    shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)
    h = model_module.modulate(self.norm1(x), shift1, scale1)
    h, _ = self.attn(h, h, h, need_weights=False)
    x = x + gate1.unsqueeze(1) * h
    h = self.mlp(model_module.modulate(self.norm2(x), shift2, scale2))
    return x + gate2.unsqueeze(1) * h


@contextlib.contextmanager
def legacy_attention():
    """Run the model as it ran before (for the ``before`` row only)."""
    new = model_module.DiTBlock.forward
    model_module.DiTBlock.forward = _legacy_block_forward
    try:
        yield
    finally:
        model_module.DiTBlock.forward = new


def _serial_batches(fn, count, batch_size, device):
    """``sampling.map_batches`` before this change: one batch after another, intra-op threads."""
    for start in range(0, count, batch_size):
        yield fn(slice(start, start + batch_size))


@contextlib.contextmanager
def previous_default():
    """Run the sampler as the previous default did (for the ``bf16`` row only)."""
    new_copy, new_map = sampling_module.inference_copy, sampling_module.map_batches
    sampling_module.inference_copy = lambda model, dtype: new_copy(model, dtype, packed=False)
    sampling_module.map_batches = _serial_batches
    try:
        yield
    finally:
        sampling_module.inference_copy, sampling_module.map_batches = new_copy, new_map


def load_line() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def sample(model, labels: np.ndarray, noise: np.ndarray, solver: str, steps: int, precision: str,
           cfg_scale: float, legacy: str = "") -> tuple[np.ndarray, float]:
    """The sketches and the seconds they took (a device sync included)."""
    patch = {"attention": legacy_attention, "previous": previous_default}.get(legacy, contextlib.nullcontext)
    with patch():
        if model.pos_emb.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        x, _ = generate_beziers(model, labels.tolist(), len(labels), num_steps=steps, solver=solver,
                                cfg_scale=cfg_scale, noise=noise, precision=precision)
        return x, time.perf_counter() - start  # generate_beziers returns numpy: the device is synced


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--classifier", required=True)
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--cfg-scale", type=float, default=SamplingConfig().cfg_scale)
    p.add_argument("--num-threads", default="1,2", help="torch CPU threads, one or a comma-separated list")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per row (interleaved)")
    p.add_argument("--solvers", action="store_true", help="also time other solvers and step counts (fp32)")
    args = p.parse_args()
    threads = [int(n) for n in str(args.num_threads).split(",")]
    device = torch.device(args.device)
    model = load_model(args.checkpoint).to(device)
    real, clf = load_dataset(args.data), SketchClassifier.load(args.classifier)
    labels = np.repeat(np.arange(len(model.class_names)), args.per_class)
    noise = torch.randn((len(labels), 32, 8), generator=torch.Generator().manual_seed(0)).numpy()
    default = (SamplingConfig().solver, SamplingConfig().num_steps)  # configs/train.yaml sampling
    rows = [("before", *default, "fp32", "attention"), ("fp32", *default, "fp32", ""),
            ("bf16", *default, "auto", "previous"), ("default", *default, "auto", "")]
    if args.solvers:
        rows += [(f"{s}{n}", s, n, "fp32", "") for s, n in SOLVER_SETTINGS]
    print(f"{len(labels)} sketches a run, threads {threads}, device {device} (native bf16: "
          f"{native_bf16(device)}); {load_line()}", flush=True)
    sample(model, labels[:8], noise[:8], *default, "auto", args.cfg_scale)  # warm-up
    seconds: dict[tuple, list[float]] = {(r[0], n): [] for r in rows for n in threads}
    cpu: dict[tuple, list[float]] = {k: [] for k in seconds}
    sketches: dict[tuple, np.ndarray] = {}
    for _ in range(args.repeats):
        for n in threads:
            torch.set_num_threads(n)
            for name, solver, steps, precision, legacy in rows:
                c0 = time.process_time()
                sketches[name, n], sec = sample(model, labels, noise, solver, steps, precision, args.cfg_scale,
                                                legacy)
                seconds[name, n].append(sec)
                cpu[name, n].append(time.process_time() - c0)
    print(f"{'row':>10} {'threads':>7} {'solver':>9} {'steps':>5} {'precision':>9} {'sketches/s (min-max)':>22} "
          f"{'per CPU s':>9} {'x before':>8} {'x bf16':>6} {'recog':>6} {'contin':>6} {'FD':>6}")
    for n in threads:
        base_rate = len(labels) / np.mean(seconds["before", n])
        prev_rate = len(labels) / np.mean(seconds["bf16", n])
        for name, solver, steps, precision, _ in rows:
            rates = len(labels) / np.asarray(seconds[name, n])
            per_cpu = len(labels) * len(cpu[name, n]) / np.sum(cpu[name, n])
            m = evaluate_samples(sketches[name, n], labels, real, clf)
            print(f"{name:>10} {n:>7} {solver:>9} {steps:>5} {precision:>9} {rates.mean():>8.1f} "
                  f"({rates.min():.1f}-{rates.max():.1f}){'':>3} {per_cpu:>9.1f} {rates.mean() / base_rate:>7.2f}x "
                  f"{rates.mean() / prev_rate:>5.2f}x {m['recognizability']:>6.3f} {m['continuity']:>6.3f} "
                  f"{m['frechet_distance']:>6.2f}", flush=True)
    n = threads[-1]
    for other in ("bf16", "before"):
        diff = np.abs(sketches["default", n] - sketches[other, n])
        print(f"default vs {other} on the same noise ({n} threads): mean |difference| {diff.mean():.5f}, "
              f"max {diff.max():.4f} (coordinates in [-1, 1])")
    if len(threads) > 1:
        same = all(np.array_equal(sketches["default", threads[0]], sketches["default", k]) for k in threads)
        print(f"default: the same sketches with {threads} threads: {same}")
    print(f"real held-out: recognizability {m['recognizability_real']:.3f}, continuity {m['continuity_real']:.3f}, "
          f"FD floor {m['frechet_distance_real_floor']:.2f}; {load_line()}")


if __name__ == "__main__":
    main()
