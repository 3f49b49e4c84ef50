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
from driftsketch.config import add_training_flags, cli_overrides
from driftsketch.errors import count_arg, non_negative_arg, run_cli

# flag -> config key; every default lives in configs/dpo.yaml
FLAGS = {"base_checkpoint": str, "reference_checkpoint": str, "beta": float, "sft_weight": float, "lr": float,
         "epochs": count_arg, "batch_size": count_arg, "num_t": count_arg, "preference_dir": str,
         "checkpoint_dir": str, "seed": int, "num_threads": non_negative_arg, "device": str}


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
    """Entry point of ``driftsketch-train-dpo``; bad input is one line on stderr and exit code 2."""
    return run_cli("driftsketch-train-dpo", lambda: _main(argv))


def _main(argv) -> int:
    args = parse_args(argv)
    from dpo.trainer import train_dpo  # torch import after argument parsing (fast --help)

    cfg = config_from_args(args)
    result = train_dpo(cfg, resume=args.resume)
    last = result.history[-1] if result.history else {}
    print(f"checkpoint: {result.checkpoint_path} (id {result.checkpoint_id}, parent {result.parent_id}, "
          f"best epoch {result.best_epoch}, held-out accuracy {last.get('heldout/implicit_accuracy', float('nan')):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
