"""Typed settings of the data layer, loaded from ``configs/data.yaml`` (the one source of defaults).

    cfg = load_data_config(overrides=["fit.tolerance_px=3", "importer.workers=1"])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from driftsketch.config import CONFIG_DIR, load_config
from driftsketch.data.bezier_fit import FitConfig

DATA_CONFIG = CONFIG_DIR / "data.yaml"


@dataclass
class ImportConfig:
    """Options of the Quick, Draw! / ControlSketch importers."""

    recognized_only: bool = False
    max_per_class: Optional[int] = None
    seed: int = 0
    workers: int = 2
    max_warnings_per_file: int = 10
    batch_size: int = 200  # drawings fitted together (one task of a worker, one resumable piece)
    fit_error_every: int = 10  # measure the Chamfer fit error on every n-th drawing (1: all)


@dataclass
class BuiltinConfig:
    """The procedural default data set."""

    classes: list[str] = field(default_factory=lambda: [
        "circle", "square", "triangle", "star", "house", "spiral", "zigzag", "smiley", "heart", "arrow"])
    per_class: int = 400
    seed: int = 0


@dataclass
class DataConfig:
    cache_dir: str = "data/cache"
    fit: FitConfig = field(default_factory=FitConfig)
    importer: ImportConfig = field(default_factory=ImportConfig)
    builtin: BuiltinConfig = field(default_factory=BuiltinConfig)


def load_data_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> DataConfig:
    """``configs/data.yaml`` (or ``path``) plus dotted overrides such as ``fit.tolerance_px=3``."""
    if path is None and DATA_CONFIG.is_file():
        path = DATA_CONFIG
    return load_config(DataConfig, path, overrides=list(overrides))
