"""Typed configuration of base training; every default lives in ``configs/train.yaml``."""
from __future__ import annotations

from typing import ClassVar

from driftsketch.augment import AugmentConfig
from driftsketch.config import (CONFIG_DIR, Config, Count, Fraction, NonNegativeFloat, NonNegativeInt,
                                PositiveFloat, load_config)
from driftsketch.device import Device
from driftsketch.model import ModelConfig

DEFAULT_TRAIN_CONFIG = CONFIG_DIR / "train.yaml"


class SamplingConfig(Config):
    """ODE sampler settings (``sampling`` in configs/train.yaml: the generator's defaults)."""

    defaults_from: ClassVar[str] = "train.yaml:sampling"
    num_steps: Count
    solver: str  # euler | midpoint | heun (driftsketch.solver.SOLVERS)
    cfg_scale: float
    precision: str  # auto | bf16 | fp32 (driftsketch.sampling.PRECISIONS)
    batch_size: Count  # sketches per forward pass (x2 with CFG)


class TrainConfig(Config):
    """Every knob of ``driftsketch-train``; configs/train.yaml says what each does."""

    defaults_from: ClassVar[str] = "train.yaml"
    data: str
    checkpoint_dir: str
    max_steps: Count
    max_minutes: NonNegativeFloat
    max_cpu_minutes: NonNegativeFloat
    batch_size: Count
    lr: PositiveFloat
    weight_decay: NonNegativeFloat
    warmup_steps: NonNegativeInt
    min_lr_ratio: Fraction
    grad_clip: PositiveFloat
    ema_decay: Fraction
    class_dropout: Fraction
    holdout_fraction: Fraction
    seed: int
    num_threads: NonNegativeInt
    device: Device
    log_every: Count
    sample_every: NonNegativeInt
    checkpoint_every: NonNegativeInt
    wandb: bool
    wandb_project: str
    sampling: SamplingConfig
    model: ModelConfig  # num_classes is taken from the data set
    augment: AugmentConfig


def load_train_config(path=DEFAULT_TRAIN_CONFIG, overrides=()) -> TrainConfig:
    """Load ``TrainConfig`` from YAML plus dotted overrides (``["model.depth=4"]``)."""
    return load_config(TrainConfig, path, overrides)
