"""Measure the model-minus-reference gap that Flow-DPO training produces, to choose beta.

    python benchmarks/bench_dpo_beta.py --base-checkpoint runs/base-builtin/model.pt \\
        --preference-dir runs/bench_dpo/prefs --set epochs=10

Why this works: with Adam the size of each parameter step is set by ``lr``, not by the gradient's scale,
so while ``beta * gap`` is small (the linear part of the sigmoid) the trajectory does not depend on
beta. Training at ``beta = 1`` therefore measures the gap
``D = (ref_w - model_w) - (ref_l - model_l)`` (velocity MSE, codec space) that the optimiser budget
(lr x steps) produces. The logit is ``beta * D``; choosing ``beta = target / |D|_end`` puts the logit
at ``target`` (default 2: sigmoid 0.88) at the end of training, so the preference signal drives the
whole run and the sigmoid only damps already-won pairs near the end (reward_diff stays in (-3, 3)).
Also prints the velocity-MSE scale of the reference, against which the gap is tiny.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dpo.config import DEFAULT_DPO_CONFIG, load_dpo_config
from dpo.trainer import train_dpo


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-checkpoint", required=True)
    p.add_argument("--preference-dir", required=True)
    p.add_argument("--out", default="runs/bench_dpo_beta")
    p.add_argument("--config", default=str(DEFAULT_DPO_CONFIG))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--target-logit", type=float, default=2.0)
    p.add_argument("--num-threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.num_threads)
    over = list(args.set) + [(["base_checkpoint"], args.base_checkpoint), (["preference_dir"], args.preference_dir),
                             (["checkpoint_dir"], args.out), (["wandb"], False), (["beta"], 1.0),
                             (["early_stopping_patience"], 0), (["sft_weight"], 0.0), (["num_threads"], args.num_threads)]
    cfg = load_dpo_config(args.config, over)
    res = train_dpo(cfg, progress=False)
    print(f"lr {cfg.lr}, sft_weight {cfg.sft_weight}, num_t {cfg.num_t}, batch {cfg.batch_size}")
    print("epoch  D_train_mean  D_train_std  D_heldout_mean  ref_mse_w   model-ref mse_w")
    for row in res.history[1:]:
        print(f"{row['epoch']:5d}  {row['train/reward_diff_mean']:+.3e}   {row['train/reward_diff_std']:.3e}   "
              f"{row.get('heldout/reward_diff_mean', float('nan')):+.3e}     {row['train/ref_mse_w']:.4f}    "
              f"{row['train/mse_gap_w']:+.3e}")
    end = res.history[-1]
    scale = max(abs(end["train/reward_diff_mean"]), 1e-12)
    beta = args.target_logit / scale
    print(f"|D| at the end of training: {scale:.3e} -> beta = {args.target_logit} / |D| = {beta:.0f}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "beta.json").write_text(json.dumps({"beta": beta, "D_end": scale, "history": res.history},
                                                         indent=2, default=str))


if __name__ == "__main__":
    main()
