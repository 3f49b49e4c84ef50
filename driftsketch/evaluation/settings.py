"""Typed settings of ``driftsketch-eval``; every default lives in ``configs/eval.yaml``."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Iterable

from driftsketch.config import CONFIG_DIR, Config, Count, NonNegativeFloat, NonNegativeInt, load_config
from driftsketch.device import Device
from driftsketch.evaluation.classifier import ClassifierConfig
from driftsketch.evaluation.judges import HiddenJudgeConfig, LabelingJudgeConfig
from driftsketch.evaluation.metrics import MetricsConfig
from driftsketch.render import RenderConfig

DEFAULT_EVAL_CONFIG = CONFIG_DIR / "eval.yaml"


class EvaluateConfig(Config):
    defaults_from: ClassVar[str] = "eval.yaml:evaluate"
    num_per_class: Count  # generated sketches per class
    num_steps: Count | None  # None: driftsketch.sampling's default
    cfg_scale: float | None
    solver: str | None
    seed: int
    snap_eps: NonNegativeFloat | None  # documented post-processing; continuity is reported as measured
    grid_per_class: NonNegativeInt  # sketches shown in each class's sample grid
    device: Device  # where the model samples; the classifier and the metrics run on the CPU


CLASSIFIER_SECTIONS = ("classifier", "hidden_classifier", "annotator_classifier", "reward_classifier")


class EvalConfig(Config):
    defaults_from: ClassVar[str] = "eval.yaml"
    classifier: ClassifierConfig  # metrics and the online round's gate: part 0 of the training split
    hidden_classifier: ClassifierConfig  # the hidden judge's: part 0
    annotator_classifier: ClassifierConfig  # the simulated annotator's: part 1
    reward_classifier: ClassifierConfig  # behind the reward model's class-confidence features: part 2
    evaluate: EvaluateConfig
    render: RenderConfig
    metrics: MetricsConfig
    labeling_judge: LabelingJudgeConfig
    hidden_judge: HiddenJudgeConfig


def load_eval_config(path: str | Path | None = DEFAULT_EVAL_CONFIG, overrides: Iterable[str] = ()) -> EvalConfig:
    """Load :class:`EvalConfig` from YAML (default configs/eval.yaml) with dotted overrides."""
    return load_config(EvalConfig, path, overrides)
