"""Command-line arguments shared by the preference benchmarks (bench_dpo_winrate, bench_annotators,
bench_active_selection): the base model and its judges, and the sampler of the evaluation sketches."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from driftsketch.data import load_dataset
from driftsketch.train_config import SamplingConfig


def add_model_args(p: argparse.ArgumentParser, out: str) -> None:
    """``--base-checkpoint`` and the three classifiers (trained on ``--data`` when missing), ``--out``."""
    p.add_argument("--base-checkpoint", required=True)
    p.add_argument("--classifier", default="runs/classifier_annotator.pt",
                   help="the simulated annotator's labeling judge (annotator_classifier of configs/eval.yaml)")
    p.add_argument("--eval-classifier", default="runs/classifier.pt",
                   help="recognizability and FD (classifier of configs/eval.yaml: another part of the data)")
    p.add_argument("--hidden-classifier", default="runs/classifier_hidden.pt", help="hidden judge's classifier")
    p.add_argument("--reward-classifier", default="runs/classifier_reward.pt",
                   help="classifier behind the reward model (neither judge's)")
    p.add_argument("--data", default="builtin", help="real data for FD/recognizability and classifier training")
    p.add_argument("--out", default=out)


def add_sampler_args(p: argparse.ArgumentParser) -> None:
    """The sampler of every sketch a benchmark draws (default: configs/train.yaml ``sampling``)."""
    s = SamplingConfig()
    p.add_argument("--eval-per-class", type=int, default=64, help="evaluation sketches per class")
    p.add_argument("--num-steps", type=int, default=s.num_steps,
                   help="sampler steps (default: configs/train.yaml sampling; docs/dpo.md figures: 20)")
    p.add_argument("--cfg-scale", type=float, default=s.cfg_scale)
    p.add_argument("--solver", default=s.solver)


def start(p: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, float, Path, Any]:
    """Add ``--num-threads`` / ``--quiet``, parse ``argv``, set torch's threads, start the clock and load
    ``--data``: returns ``(args, start time, Path(args.out), real data)``."""
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.num_threads)
    return args, time.perf_counter(), Path(args.out), load_dataset(args.data)
