"""Typed settings of the Label Studio integration; defaults live in ``configs/labelstudio.yaml``.

    cfg = load_labelstudio_config(overrides=["server.port=8090"])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from driftsketch.config import CONFIG_DIR, load_config

DEFAULT_LABELSTUDIO_CONFIG = CONFIG_DIR / "labelstudio.yaml"


@dataclass
class PostgresConfig:
    """Label Studio's PostgreSQL: one we start (``managed``) or the user's own."""

    managed: bool = True
    data_dir: str | None = None  # None: <server.data_dir>/postgres
    host: str = "127.0.0.1"
    port: int = 5433
    name: str = "labelstudio"
    user: str = "labelstudio"
    password_env: str = "DRIFTSKETCH_PG_PASSWORD"
    os_user: str = "postgres"
    start_timeout_s: float = 60.0


@dataclass
class ServerConfig:
    venv: str = ".venv-labelstudio"
    data_dir: str = "data/labelstudio"
    template_dir: str = "data/labelstudio-template"
    host: str = "127.0.0.1"
    port: int = 8080
    start_timeout_s: float = 240.0
    admin_email: str = "admin@driftsketch.local"
    database: str = "sqlite"
    files_root: str = "data/labelstudio-files"
    postgres: PostgresConfig = field(default_factory=PostgresConfig)


@dataclass
class ProjectsConfig:
    pairwise_title: str = "DriftSketch pairwise"
    rating_title: str = "DriftSketch rating"
    image_width: str = "320px"


@dataclass
class PushConfig:
    store_root: str = "data/preferences"
    image_mode: str = "url"
    svg_dir: str | None = None  # None: <server.files_root>/svg
    png_dir: str | None = None  # None: <server.files_root>/png
    image_size: int = 256
    batch_size: int = 100
    seed: int = 0


@dataclass
class PullConfig:
    store_root: str = "data/preferences"
    cursor_path: str = "data/labelstudio/pull_cursor.json"
    session: str = "labelstudio"
    page_size: int = 100
    retries: int = 4
    backoff_s: float = 1.0


@dataclass
class BotConfig:
    email: str = "bot@driftsketch.local"
    judge: str = "labelling"
    classifier: str | None = None
    noise: float = 0.1
    tie_margin: float = 0.02
    tie_rate: float = 0.0
    careless_share: float = 0.0
    always_left_share: float = 0.0
    lead_time_s: float = 3.0
    seed: int = 0


@dataclass
class GoldConfig:
    share: float = 0.1
    data: str = "builtin"
    kinds: list[str] = field(default_factory=lambda: ["scrambled", "wrong_class", "noise"])
    noise_std: float = 0.25
    seed: int = 0


@dataclass
class LabelStudioConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    projects: ProjectsConfig = field(default_factory=ProjectsConfig)
    push: PushConfig = field(default_factory=PushConfig)
    pull: PullConfig = field(default_factory=PullConfig)
    bot: BotConfig = field(default_factory=BotConfig)
    gold: GoldConfig = field(default_factory=GoldConfig)


def load_labelstudio_config(path: str | Path | None = DEFAULT_LABELSTUDIO_CONFIG,
                            overrides: Iterable[str] = ()) -> LabelStudioConfig:
    """Load :class:`LabelStudioConfig` from YAML (default configs/labelstudio.yaml) plus dotted overrides."""
    return load_config(LabelStudioConfig, path, overrides)
