"""Base training of the flow-matching sketch model.

    driftsketch-train --data builtin --max-steps 3000 --checkpoint-dir runs/base
    driftsketch-train --data data/mnist.npz --set model.depth=8 --set lr=5e-4 --no-wandb
    driftsketch-train --checkpoint-dir runs/base --resume          # continue from runs/base/last.pt

Leaves ``DIR/model.pt`` (EMA weights + everything needed to resume), ``DIR/last.pt`` while
running, and sample grids ``DIR/samples_stepN.png``.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from driftsketch.augment import random_affine
from driftsketch.checkpoint import CheckpointError, load_checkpoint, model_config_of, save_checkpoint
from driftsketch.config import add_training_flags, cli_overrides, replace_config, to_dict
from driftsketch.device import require_device
from driftsketch.ema import EMA
from driftsketch.errors import check_out_dir, count_arg, non_negative_arg, non_negative_float_arg, run_cli
from driftsketch.flow import cfm_loss
from driftsketch.model import SketchFlowTransformer
from driftsketch.sketch import to_flat
from driftsketch.tracking import RunLogger
from driftsketch.train_config import DEFAULT_TRAIN_CONFIG, TrainConfig, load_train_config


def dataset_id_of(data) -> str:
    """Stable id of a data set: its recorded id, else a hash of its arrays."""
    meta = getattr(data, "meta", {}) or {}
    if meta.get("dataset_id"):
        return str(meta["dataset_id"])
    digest = hashlib.sha256(np.ascontiguousarray(data.beziers).tobytes())
    digest.update(np.ascontiguousarray(data.labels).tobytes())
    return digest.hexdigest()[:16]


def training_progress(cfg: TrainConfig, step: int, elapsed_s: float, cpu_s: float = 0.0) -> float:
    """Fraction of the budget used: steps, wall-clock time (``max_minutes``) or CPU time
    (``max_cpu_minutes``, all threads of this process; fair on a shared machine), whichever is largest."""
    by_steps = step / max(1, cfg.max_steps)
    by_time = elapsed_s / (60.0 * cfg.max_minutes) if cfg.max_minutes > 0 else 0.0
    by_cpu = cpu_s / (60.0 * cfg.max_cpu_minutes) if cfg.max_cpu_minutes > 0 else 0.0
    return min(1.0, max(by_steps, by_time, by_cpu))


def lr_factor(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay (over the budget) to ``min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return (step + 1) / max(1, cfg.warmup_steps)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def write_sample_grid(model, class_names: list[str], cfg: TrainConfig, path: Path, per_class: int = 4) -> Path:
    """Generate ``per_class`` sketches of every class with fixed noise and save a grid PNG."""
    from driftsketch.render import plot_bezier_sketches
    from driftsketch.sampling import generate_beziers

    labels = [c for c in range(len(class_names)) for _ in range(per_class)]
    sketches, _ = generate_beziers(model, labels, len(labels), num_steps=cfg.sampling.num_steps,
                                   cfg_scale=cfg.sampling.cfg_scale, solver=cfg.sampling.solver, seed=1234)
    titles = [class_names[c] for c in labels]
    plot_bezier_sketches(sketches, path, titles=titles, ncols=per_class * 2)
    return path


class _State:
    """Everything that changes during training, kept together for checkpointing."""

    def __init__(self, model, ema, opt, step: int = 0, elapsed_s: float = 0.0, cpu_s: float = 0.0):
        self.model, self.ema, self.opt, self.step, self.elapsed_s = model, ema, opt, step, elapsed_s
        self.cpu_s = cpu_s
        self.progress = 0.0

    def save(self, path: Path, class_names, dataset_id: str, cfg: TrainConfig, parent: str | None = None) -> str:
        return save_checkpoint(path, self.model, class_names, step=self.step, ema_state=self.ema.state_dict(),
                               optimizer_state=self.opt.state_dict(),
                               scheduler_state={"elapsed_s": self.elapsed_s, "cpu_s": self.cpu_s,
                                                "progress": self.progress},
                               dataset_id=dataset_id, parent=parent,
                               extra={"train_config": to_dict(cfg), "ema_updates": self.ema.num_updates})


def _init_state(cfg: TrainConfig, class_names: list[str], resume_from: Path | None,
                device: torch.device) -> _State:
    model = SketchFlowTransformer(replace_config(cfg.model, num_classes=len(class_names))).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    ema = EMA(model, cfg.ema_decay)
    state = _State(model, ema, opt)
    if resume_from is not None:
        ckpt = load_checkpoint(resume_from)
        check_resumable(ckpt, model.config, class_names, resume_from)
        try:
            model.load_state_dict(ckpt["model_state_dict"])
            ema.load_state_dict(ckpt["ema"], int(ckpt["extra"].get("ema_updates", ckpt["step"])))
            opt.load_state_dict(ckpt["optimizer_state_dict"])
            state.step = int(ckpt["step"])
            clock = ckpt.get("scheduler_state_dict") or {}
            state.elapsed_s, state.cpu_s = float(clock.get("elapsed_s", 0.0)), float(clock.get("cpu_s", 0.0))
        except Exception as exc:  # noqa: BLE001 - a damaged resume state, whatever the library raises
            raise CheckpointError(f"--resume: {resume_from} cannot be resumed ({type(exc).__name__}: "
                                  f"{' '.join(str(exc).split())[:200]})") from None
        state.progress = training_progress(cfg, state.step, state.elapsed_s, state.cpu_s)
    return state


def check_resumable(ckpt: dict, model_config, class_names: list[str], path: Path) -> None:
    """:class:`CheckpointError` when ``ckpt`` was trained with another model config or other classes than
    this run (``--resume`` would fail halfway or silently train a different model)."""
    stored = model_config_of(ckpt, str(path))
    if stored != model_config:
        changed = [f"model.{k}={getattr(stored, k)!r} (now {getattr(model_config, k)!r})"
                   for k in type(model_config).model_fields if getattr(stored, k) != getattr(model_config, k)]
        raise CheckpointError(f"--resume: {path} was trained with another model config: {', '.join(changed)}; "
                              "use the same settings or another --checkpoint-dir")
    stored_names = list(ckpt["config"].get("class_names") or [])
    if stored_names != list(class_names):
        raise CheckpointError(f"--resume: {path} was trained on other classes ({stored_names[:8]}) than the "
                              f"data set ({list(class_names)[:8]}); use the same --data or another --checkpoint-dir")


def train_base(cfg: TrainConfig, resume: bool = False, data=None, progress: bool = True) -> Path:
    """Train a base model as configured; returns the path of ``checkpoint_dir/model.pt``."""
    from driftsketch.data import load_dataset

    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    device = require_device(cfg.device)
    torch.manual_seed(cfg.seed)
    out_dir = check_out_dir(cfg.checkpoint_dir, "checkpoint_dir (--checkpoint-dir)")
    data = data if data is not None else load_dataset(cfg.data)
    train_set, _ = data.split(cfg.holdout_fraction, seed=cfg.seed)
    x_all = torch.from_numpy(to_flat(np.asarray(train_set.beziers, dtype=np.float32)))
    y_all = torch.from_numpy(np.asarray(train_set.labels, dtype=np.int64))
    class_names, ds_id = list(data.class_names), dataset_id_of(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    last = out_dir / "last.pt"
    if resume and not last.is_file():
        raise CheckpointError(f"--resume: no {last} to resume from")
    state = _init_state(cfg, class_names, last if resume else None, device)
    logger = RunLogger(cfg.wandb, cfg.wandb_project, out_dir, to_dict(cfg), job_type="base-train")
    gen = torch.Generator().manual_seed(cfg.seed + state.step)
    bar = tqdm(total=cfg.max_steps, initial=state.step, desc="train", disable=not progress, dynamic_ncols=True)
    t_start, seen, elapsed0 = time.perf_counter(), 0, state.elapsed_s
    cpu_start, cpu0 = time.process_time(), state.cpu_s
    while state.progress < 1.0:
        idx = torch.randint(0, len(x_all), (cfg.batch_size,), generator=gen)  # batches drawn on the CPU: the
        x1 = random_affine(x_all[idx], cfg.augment, gen).to(device)           # same data stream on every device
        loss = _train_step(state, cfg, x1, y_all[idx].to(device), gen)
        state.step += 1
        seen += cfg.batch_size
        state.elapsed_s = elapsed0 + time.perf_counter() - t_start
        state.cpu_s = cpu0 + time.process_time() - cpu_start
        state.progress = training_progress(cfg, state.step, state.elapsed_s, state.cpu_s)
        bar.update(1)
        if state.step % cfg.log_every == 0 or state.progress >= 1.0:
            loss = float(loss)  # the only wait for the GPU between logs
            rate, lr = seen / (time.perf_counter() - t_start), state.opt.param_groups[0]["lr"]
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", sps=f"{rate:.0f}")
            logger.log({"train/loss": loss, "train/lr": lr, "train/samples_per_s": rate,
                        "train/cpu_minutes": state.cpu_s / 60}, state.step)
        if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
            state.save(last, class_names, ds_id, cfg)
        if cfg.sample_every and state.step % cfg.sample_every == 0 and state.progress < 1.0:
            grid = write_sample_grid(_ema_model(state, class_names), class_names, cfg, out_dir / f"samples_step{state.step}.png")
            logger.log_image("samples", grid, state.step)
    bar.close()
    final = out_dir / "model.pt"
    state.save(final, class_names, ds_id, cfg)
    state.save(last, class_names, ds_id, cfg)
    grid = write_sample_grid(_ema_model(state, class_names), class_names, cfg, out_dir / f"samples_step{state.step}.png")
    logger.log_image("samples", grid, state.step)
    logger.finish()
    return final


def _ema_model(state: _State, class_names: list[str]):
    model = state.ema.shadow
    model.class_names = class_names
    return model


def _train_step(state: _State, cfg: TrainConfig, x1: torch.Tensor, y: torch.Tensor,
                gen: torch.Generator) -> torch.Tensor:
    state.model.train()
    for group in state.opt.param_groups:
        group["lr"] = cfg.lr * lr_factor(cfg, state.step, state.progress)
    loss = cfm_loss(state.model, x1, y, cfg.class_dropout, generator=gen)
    state.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
    state.opt.step()
    state.ema.update(state.model)
    return loss.detach()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="driftsketch-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_TRAIN_CONFIG), help="YAML config (default: %(default)s)")
    p.add_argument("--data", help="'builtin' or a .npz from `driftsketch-data import`")
    p.add_argument("--max-steps", type=count_arg)
    p.add_argument("--max-minutes", type=non_negative_float_arg, help="wall-clock budget; the LR schedule follows it")
    p.add_argument("--max-cpu-minutes", type=non_negative_float_arg,
                   help="CPU-time budget (all threads); the LR schedule follows it")
    p.add_argument("--batch-size", type=count_arg)
    p.add_argument("--lr", type=float)
    p.add_argument("--checkpoint-dir")
    p.add_argument("--seed", type=int)
    p.add_argument("--num-threads", type=non_negative_arg)
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps (configs/train.yaml: device)")
    add_training_flags(p, "model.depth=4")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    flags = ("data", "max_steps", "max_minutes", "max_cpu_minutes", "batch_size", "lr", "checkpoint_dir", "seed",
             "num_threads", "device")
    return load_train_config(args.config, cli_overrides(args, flags))


def main(argv=None) -> int:
    """Entry point of ``driftsketch-train``; bad input is one line on stderr and exit code 2."""
    return run_cli("driftsketch-train", lambda: _main(argv))


def _main(argv) -> int:
    args = parse_args(argv)
    cfg = config_from_args(args)
    path = train_base(cfg, resume=args.resume)
    print(f"checkpoint: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
