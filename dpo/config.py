"""Typed configuration of Flow-DPO fine-tuning; the defaults live in ``configs/dpo.yaml``."""
from __future__ import annotations

from dataclasses import dataclass, field

from driftsketch.augment import AugmentConfig
from driftsketch.config import CONFIG_DIR, load_config

DEFAULT_DPO_CONFIG = CONFIG_DIR / "dpo.yaml"


@dataclass
class DPOConfig:
    """Every knob of ``train_dpo``; see configs/dpo.yaml for what each does and why it has its value."""

    base_checkpoint: str = ""  # required: the DriftSketch checkpoint to fine-tune
    reference_checkpoint: str | None = None  # frozen reference; None = the base checkpoint
    preference_dir: str = "data/preferences"
    checkpoint_dir: str = "runs/dpo"
    beta: float = 1000.0
    sft_weight: float = 1.0
    lr: float = 1e-5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    epochs: int = 4
    batch_size: int = 32
    num_t: int = 2
    use_stored_noise: bool = False
    class_dropout: float = 0.2
    loss_cfg_scale: float = 1.0  # 1 = DPO on the conditional velocity; e.g. 2 = on the CFG-guided velocity
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(enabled=False))  # shared by a pair
    trainable: list[str] = field(default_factory=list)  # glob patterns of parameters to tune; [] = all
    t_min: float = 0.0  # training t in [t_min, 1]: > 0 skips the noise-dominated start of the path
    t_power: float = 1.0  # training t = u ** t_power, u ~ U(0, 1); < 1 biases toward t = 1 (data end)
    holdout_fraction: float = 0.1
    eval_num_t: int = 16
    early_stopping_patience: int = 3
    min_pairs: int = 20
    min_margin: int = 1
    same_checkpoint: bool = False
    max_synthesised: int | None = None
    shuffle_labels: bool = False  # control run: winner/loser swapped at random (fixed per pair)
    seed: int = 0
    num_threads: int = 0
    device: str = "cpu"
    log_every: int = 10
    wandb: bool = True
    wandb_project: str = "driftsketch"


def load_dpo_config(path=DEFAULT_DPO_CONFIG, overrides=()) -> DPOConfig:
    """Load :class:`DPOConfig` from YAML plus dotted overrides (``["beta=500"]``)."""
    return load_config(DPOConfig, path, overrides)
