"""``driftsketch-train-dpo``: fine-tune a DriftSketch model on stored preferences with Flow-DPO.

    driftsketch-train-dpo --base-checkpoint runs/base/model.pt --checkpoint-dir runs/dpo
    driftsketch-train-dpo --base-checkpoint runs/base/model.pt --beta 500 --epochs 5 --no-wandb
    driftsketch-train-dpo --base-checkpoint runs/base/model.pt --checkpoint-dir runs/dpo --resume
    driftsketch-train-dpo --config configs/dpo.yaml --base-checkpoint B.pt --set num_t=8

Writes CHECKPOINT_DIR/model.pt (a normal checkpoint: `driftsketch-generate` loads it) and last.pt.
"""
from __future__ import annotations

import argparse
import sys

from dpo.config import DEFAULT_DPO_CONFIG, DPOConfig, load_dpo_config
from dpo.store import StoreError
from driftsketch.checkpoint import CheckpointError
from driftsketch.config import ConfigError, add_training_flags, cli_overrides

# flag -> config key; every default lives in configs/dpo.yaml
FLAGS = {"base_checkpoint": str, "reference_checkpoint": str, "beta": float, "sft_weight": float, "lr": float,
         "epochs": int, "batch_size": int, "num_t": int, "preference_dir": str, "checkpoint_dir": str,
         "seed": int, "num_threads": int}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="driftsketch-train-dpo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_DPO_CONFIG), help="YAML config (default: %(default)s)")
    for name, typ in FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), type=typ, help=f"overrides `{name}` of the config")
    add_training_flags(p, "early_stopping_patience=0")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> DPOConfig:
    return load_dpo_config(args.config, cli_overrides(args, FLAGS))


def main(argv=None) -> int:
    args = parse_args(argv)
    from dpo.trainer import DPOError, train_dpo  # torch import after argument parsing (fast --help)

    try:
        cfg = config_from_args(args)
        result = train_dpo(cfg, resume=args.resume)
    except (ConfigError, CheckpointError, DPOError, StoreError, ValueError, FileNotFoundError) as exc:
        print(f"driftsketch-train-dpo: error: {exc}", file=sys.stderr)
        return 2
    last = result.history[-1] if result.history else {}
    print(f"checkpoint: {result.checkpoint_path} (id {result.checkpoint_id}, parent {result.parent_id}, "
          f"best epoch {result.best_epoch}, held-out accuracy {last.get('heldout/implicit_accuracy', float('nan')):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
