"""Typed configuration of base training; defaults come from ``configs/train.yaml``."""
from __future__ import annotations

from dataclasses import dataclass, field

from driftsketch.augment import AugmentConfig
from driftsketch.config import CONFIG_DIR, load_config
from driftsketch.model import ModelConfig
from driftsketch.sampling import DEFAULT_CFG_SCALE, DEFAULT_SOLVER, DEFAULT_STEPS

DEFAULT_TRAIN_CONFIG = CONFIG_DIR / "train.yaml"


@dataclass
class SamplingConfig:
    num_steps: int = DEFAULT_STEPS
    solver: str = DEFAULT_SOLVER
    cfg_scale: float = DEFAULT_CFG_SCALE


@dataclass
class TrainConfig:
    data: str = "builtin"
    checkpoint_dir: str = "runs/base"
    max_steps: int = 3000
    max_minutes: float = 0.0
    max_cpu_minutes: float = 0.0
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    class_dropout: float = 0.1
    holdout_fraction: float = 0.1
    seed: int = 0
    num_threads: int = 0
    log_every: int = 50
    sample_every: int = 1000
    checkpoint_every: int = 500
    wandb: bool = True
    wandb_project: str = "driftsketch"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)  # num_classes is taken from the data set
    augment: AugmentConfig = field(default_factory=AugmentConfig)


def load_train_config(path=DEFAULT_TRAIN_CONFIG, overrides=()) -> TrainConfig:
    """Load ``TrainConfig`` from YAML plus dotted overrides (``["model.depth=4"]``)."""
    return load_config(TrainConfig, path, overrides)
