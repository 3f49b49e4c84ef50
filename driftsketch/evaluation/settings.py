"""Typed settings of ``driftsketch-eval``; defaults live in ``configs/eval.yaml`` (mirrored here)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from driftsketch.config import CONFIG_DIR, load_config
from driftsketch.evaluation.classifier import ClassifierConfig, hidden_classifier_config
from driftsketch.evaluation.judges import HiddenJudgeConfig, LabellingJudgeConfig

DEFAULT_EVAL_CONFIG = CONFIG_DIR / "eval.yaml"


@dataclass
class EvaluateConfig:
    num_per_class: int = 50  # generated sketches per class
    num_steps: int | None = None  # None: driftsketch.sampling's default
    cfg_scale: float | None = None
    solver: str | None = None
    seed: int = 0
    snap_eps: float | None = None  # documented post-processing; continuity is reported as measured
    grid_per_class: int = 16  # sketches shown in each class's sample grid


CLASSIFIER_SECTIONS = ("classifier", "hidden_classifier", "annotator_classifier", "reward_classifier")


@dataclass
class EvalConfig:
    classifier: ClassifierConfig = field(default_factory=lambda: ClassifierConfig(parts=3, part=0))
    hidden_classifier: ClassifierConfig = field(default_factory=hidden_classifier_config)
    annotator_classifier: ClassifierConfig = field(default_factory=lambda: ClassifierConfig(seed=4, parts=3, part=1))
    reward_classifier: ClassifierConfig = field(default_factory=lambda: ClassifierConfig(
        resolution=48, widths=[16, 32, 64], line_width=1.2, seed=2, parts=3, part=2))
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    labelling_judge: LabellingJudgeConfig = field(default_factory=LabellingJudgeConfig)
    hidden_judge: HiddenJudgeConfig = field(default_factory=HiddenJudgeConfig)


def load_eval_config(path: str | Path | None = DEFAULT_EVAL_CONFIG, overrides: Iterable[str] = ()) -> EvalConfig:
    """Load :class:`EvalConfig` from YAML (default configs/eval.yaml) with dotted overrides."""
    return load_config(EvalConfig, path, overrides)
