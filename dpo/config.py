"""Typed configuration of Flow-DPO fine-tuning; the defaults live in ``configs/dpo.yaml``."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import model_validator

from driftsketch.augment import AugmentConfig
from driftsketch.config import (CONFIG_DIR, Config, Count, Fraction, NonNegativeFloat, NonNegativeInt,
                                PositiveFloat, load_config)
from driftsketch.device import Device

DEFAULT_DPO_CONFIG = CONFIG_DIR / "dpo.yaml"


class RewardConfig(Config):
    """How the reward model is built (``amplify.reward`` in configs/dpo.yaml)."""

    defaults_from: ClassVar[str] = "dpo.yaml:amplify.reward"
    classifier: str  # SketchClassifier behind the class-confidence features
    continuity_eps: list[float]
    hand_features: bool  # the seven hand-made features (classifier confidence, continuity, ...)
    embedding_t: list[float]  # the flow model's hidden states at these t ([] = none)
    encoder: str  # checkpoint whose hidden states embed sketches; "" = the model being tuned
    local_features: NonNegativeInt  # random ReLU features of local segment geometry (0 = none)
    shape_features: NonNegativeInt  # random ReLU features of the segments' places around the centre (0 = none)
    pair_features: NonNegativeInt  # random ReLU features of every two segments' places around the centre (0 = none)
    class_heads: list[NonNegativeFloat]  # per-class heads' weights to try besides 0 (one shared head); [] = off
    l2: list[float]  # ridge strengths (x mean row norm); chosen by leave-one-out
    ensemble: Count  # Bradley-Terry heads on bootstrap resamples (uncertainty)
    cv_folds: Count  # folds of the gate's nested cross-validation
    fit_on: Literal["all", "training"]  # every stored human pair, or only this run's training pairs
    max_pairs: Count | None  # fit on at most this many pairs of sketches, those answered last (None: all)


class AmplifyConfig(Config):
    """``amplify`` in configs/dpo.yaml: whether and how to amplify the human pairs with a reward model."""

    defaults_from: ClassVar[str] = "dpo.yaml:amplify"
    enabled: bool
    reward: RewardConfig
    groups_per_class: Count
    group_size: Count
    min_pair_probability: Fraction  # keep a best-vs-other pair only when the ensemble's P(best wins) reaches this
    soft_targets: bool  # train each amplified pair toward that P instead of 1 (label-smoothed Flow-DPO)
    min_accuracy: NonNegativeFloat  # 5-fold cross-validated pair accuracy below which the reward is not used (> 1: never)
    keep_human_pairs: bool  # train on the human pairs too
    num_steps: Count  # the generator's sampler defaults (driftsketch/sampling.py)
    cfg_scale: float
    solver: str
    seed: int
    draw_seed_stride: Count  # draw j of every group: seed * draw_seed_stride + j
    seed_per_model: bool  # mix the model's checkpoint id into the seed: each online round ranks fresh draws
    model_seed_range: Count  # ... as seed + unit_hash(checkpoint id) * model_seed_range

    @model_validator(mode="after")
    def _check(self):
        if self.group_size < 2 or self.groups_per_class < 1:
            raise ValueError(f"amplify: need group_size >= 2 and groups_per_class >= 1, got "
                             f"{self.group_size} and {self.groups_per_class}")
        return self


class AnnotatorsConfig(Config):
    """``annotators`` in configs/dpo.yaml: how several answers per pair become one training signal."""

    defaults_from: ClassVar[str] = "dpo.yaml:annotators"
    aggregate: Literal["each", "majority", "soft"]  # soft: target = weighted share of votes
    weighting: Literal["none", "gold", "dawid_skene"]  # weight left_acc + right_acc - 1 per annotator
    prior_accuracy: float  # Beta prior of an annotator's accuracy on each side (mean) ...
    prior_strength: float  # ... worth this many answers
    min_weight: Fraction  # weights below this (no better than chance) count as 0
    min_vote_margin: Fraction  # |vote share - 1/2| below this: the pair is a tie (dropped, counted)
    min_gold_accuracy: Fraction | None  # gold-accuracy interval entirely below: not trained on; null = off
    min_gold_answers: NonNegativeInt  # gold answers needed before that decision is taken

    @model_validator(mode="after")
    def _check(self):
        if not 0.5 < self.prior_accuracy < 1.0 or self.prior_strength <= 0:
            raise ValueError(f"annotators: need 0.5 < prior_accuracy < 1 and prior_strength > 0, got "
                             f"{self.prior_accuracy} and {self.prior_strength}")
        if self.min_vote_margin >= 0.5:
            raise ValueError(f"annotators.min_vote_margin must be below 0.5 (every pair would be a tie), "
                             f"got {self.min_vote_margin}")
        return self


class AnchorConfig(Config):
    """``anchor`` in configs/dpo.yaml: a CFM loss on real training sketches beside the preference loss."""

    defaults_from: ClassVar[str] = "dpo.yaml:anchor"
    data: str  # a data spec (``builtin`` or an imported .npz); "" = off
    weight: NonNegativeFloat  # x the CFM loss on one batch of real sketches per step
    batch_size: Count


class TasteDriftConfig(Config):
    """``taste_drift`` in configs/dpo.yaml: the round's check that the newest answers still agree with a reward
    fitted on the answers before them (dpo/taste_drift.py)."""

    defaults_from: ClassVar[str] = "dpo.yaml:taste_drift"
    enabled: bool
    newest_pairs: Count  # the newest this many answered pairs are checked ...
    min_older_pairs: Count  # ... against a reward fitted on at least this many pairs answered before them
    splits: Count  # the newest newest_pairs, then 2x, 4x ... as many: this many splits (alpha shared among them)
    max_older_pairs: Count  # each split's reward is fitted on at most this many pairs answered just before it
    alpha: Fraction  # flagged when P(agreement this low | the taste is unchanged) is below alpha / splits tested


class DPOConfig(Config):
    """Every knob of ``train_dpo``; see configs/dpo.yaml for what each does and why it has its value."""

    defaults_from: ClassVar[str] = "dpo.yaml"
    base_checkpoint: str  # required: the DriftSketch checkpoint to fine-tune
    reference_checkpoint: str | None  # frozen reference; None = the base checkpoint
    preference_dir: str
    checkpoint_dir: str
    beta: PositiveFloat
    sft_weight: NonNegativeFloat
    lr: PositiveFloat
    weight_decay: NonNegativeFloat
    grad_clip: PositiveFloat
    epochs: Count
    batch_size: Count
    num_t: Count
    use_stored_noise: bool
    class_dropout: Fraction
    loss_cfg_scale: float  # 1 = DPO on the conditional velocity; e.g. 2 = on the CFG-guided velocity
    augment: AugmentConfig  # shared by a pair
    anchor: AnchorConfig  # CFM loss on real sketches each step (dpo/anchor.py)
    trainable: list[str]  # glob patterns of parameters to tune; [] = all
    t_min: Fraction  # training t in [t_min, 1]: > 0 skips the noise-dominated start of the path
    t_power: PositiveFloat  # training t = u ** t_power, u ~ U(0, 1); < 1 biases toward t = 1 (data end)
    holdout_fraction: Fraction
    eval_num_t: Count
    early_stopping_patience: NonNegativeInt
    min_pairs: NonNegativeInt
    min_margin: Count
    same_checkpoint: bool
    max_synthesised: NonNegativeInt | None
    amplify: AmplifyConfig  # reward-model amplification (dpo/amplify.py)
    annotators: AnnotatorsConfig  # several answers per pair, weights
    taste_drift: TasteDriftConfig  # did the annotators' taste change? (dpo/taste_drift.py)
    shuffle_labels: bool  # control run: winner/loser swapped at random (fixed per pair)
    seed: int
    eval_seed_offset: int  # held-out evaluation noise and times: seed + eval_seed_offset
    epoch_seed_stride: int  # epoch e: seed * epoch_seed_stride + e
    num_threads: NonNegativeInt
    device: Device
    log_every: Count
    wandb: bool
    wandb_project: str


def load_dpo_config(path=DEFAULT_DPO_CONFIG, overrides=()) -> DPOConfig:
    """Load :class:`DPOConfig` from YAML plus dotted overrides (``["beta=500"]``)."""
    return load_config(DPOConfig, path, overrides)
