"""Typed configuration of Flow-DPO fine-tuning; the defaults live in ``configs/dpo.yaml``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from driftsketch.augment import AugmentConfig
from driftsketch.config import CONFIG_DIR, load_config

DEFAULT_DPO_CONFIG = CONFIG_DIR / "dpo.yaml"


@dataclass
class RewardConfig:
    """How the reward model is built (``reward`` in configs/dpo.yaml)."""

    classifier: str = "runs/classifier.pt"  # SketchClassifier behind the class-confidence features
    continuity_eps: list[float] = field(default_factory=lambda: [0.01, 0.02, 0.04])
    hand_features: bool = True  # the seven hand-made features (classifier confidence, continuity, ...)
    embedding_t: list[float] = field(default_factory=lambda: [0.5, 0.8, 1.0])  # flow hidden states at these t
    encoder: str = ""  # checkpoint whose hidden states embed sketches; "" = the model being tuned
    l2: list[float] = field(default_factory=lambda: [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0])  # chosen by CV
    ensemble: int = 5  # Bradley-Terry heads on bootstrap resamples (uncertainty)
    fit_on: Literal["all", "training"] = "all"  # every stored human pair, or only this run's training pairs


@dataclass
class AmplifyConfig:
    """``amplify`` in configs/dpo.yaml: whether and how to amplify the human pairs with a reward model."""

    enabled: bool = False
    reward: RewardConfig = field(default_factory=RewardConfig)
    groups_per_class: int = 16
    group_size: int = 8
    min_accuracy: float = 0.6  # 5-fold cross-validated pair accuracy below which the reward model is not used
    keep_human_pairs: bool = True  # train on the human pairs too
    num_steps: int = 10  # the generator's sampler defaults (driftsketch/sampling.py)
    cfg_scale: float = 2.0
    solver: str = "midpoint"
    seed: int = 0
    seed_per_model: bool = True  # mix the model's checkpoint id into the seed: each online round ranks fresh draws

    def __post_init__(self):
        if self.group_size < 2 or self.groups_per_class < 1:
            raise ValueError(f"amplify: need group_size >= 2 and groups_per_class >= 1, got "
                             f"{self.group_size} and {self.groups_per_class}")


@dataclass
class AnnotatorsConfig:
    """``annotators`` in configs/dpo.yaml: how several answers per pair become one training signal."""

    aggregate: Literal["each", "majority", "soft"] = "soft"  # soft: target = weighted share of votes
    weighting: Literal["none", "gold", "dawid_skene"] = "dawid_skene"  # weight 2 * accuracy - 1 per annotator
    prior_accuracy: float = 0.8  # Beta prior of an annotator's accuracy (mean) ...
    prior_strength: float = 4.0  # ... worth this many answers
    min_gold_accuracy: float | None = 0.7  # below this gold accuracy an annotator is not trained on; null = off
    min_gold_answers: int = 5  # gold answers needed before that decision is taken

    def __post_init__(self):
        if not 0.5 < self.prior_accuracy < 1.0 or self.prior_strength <= 0:
            raise ValueError(f"annotators: need 0.5 < prior_accuracy < 1 and prior_strength > 0, got "
                             f"{self.prior_accuracy} and {self.prior_strength}")


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
    amplify: AmplifyConfig = field(default_factory=AmplifyConfig)  # reward-model amplification (dpo/amplify.py)
    annotators: AnnotatorsConfig = field(default_factory=AnnotatorsConfig)  # several answers per pair, weights
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
