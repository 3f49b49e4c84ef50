"""Typed settings of the data layer; every default lives in ``configs/data.yaml``.

    cfg = load_data_config(overrides=["fit.tolerance_px=3", "importer.workers=1"])
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Iterable, Optional

from driftsketch.config import CONFIG_DIR, Config, Count, NonNegativeInt, load_config
from driftsketch.data.bezier_fit import FitConfig

DATA_CONFIG = CONFIG_DIR / "data.yaml"


class ImportConfig(Config):
    """Options of the Quick, Draw! / ControlSketch importers."""

    defaults_from: ClassVar[str] = "data.yaml:importer"
    recognized_only: bool
    max_per_class: Optional[Count]
    seed: int
    workers: Count
    max_warnings_per_file: NonNegativeInt
    batch_size: Count  # drawings fitted together (one task of a worker, one resumable piece)
    fit_error_every: Count  # measure the Chamfer fit error on every n-th drawing (1: all)


class BuiltinConfig(Config):
    """The procedural default data set."""

    defaults_from: ClassVar[str] = "data.yaml:builtin"
    classes: list[str]
    per_class: Count
    seed: int


class DataConfig(Config):
    defaults_from: ClassVar[str] = "data.yaml"
    cache_dir: str
    fit: FitConfig
    importer: ImportConfig
    builtin: BuiltinConfig


def load_data_config(path: str | Path | None = DATA_CONFIG, overrides: Iterable[str] = ()) -> DataConfig:
    """``configs/data.yaml`` (or ``path``) plus dotted overrides such as ``fit.tolerance_px=3``."""
    return load_config(DataConfig, path, overrides=list(overrides))
