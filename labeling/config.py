"""Typed settings of the Label Studio integration; defaults live in ``configs/labelstudio.yaml``.

    cfg = load_labelstudio_config(overrides=["server.port=8090"])
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Iterable

from pydantic import Field, model_validator

from driftsketch.config import (CONFIG_DIR, Config, Count, Fraction, NonNegativeFloat, NonNegativeInt, Port,
                                PositiveFloat, load_config)

DEFAULT_LABELSTUDIO_CONFIG = CONFIG_DIR / "labelstudio.yaml"


class PostgresConfig(Config):
    """Label Studio's PostgreSQL: one we start (``managed``) or the user's own."""

    defaults_from: ClassVar[str] = "labelstudio.yaml:server.postgres"
    managed: bool
    data_dir: str | None  # None: <server.data_dir>/postgres
    host: str
    port: Port
    name: str
    user: str
    password_env: str
    os_user: str
    start_timeout_s: PositiveFloat


class ServerConfig(Config):
    defaults_from: ClassVar[str] = "labelstudio.yaml:server"
    venv: str
    data_dir: str
    template_dir: str
    host: str
    port: Port
    start_timeout_s: PositiveFloat
    admin_email: str
    database: str
    files_root: str
    postgres: PostgresConfig


class ClientConfig(Config):
    """Timeouts and retries of every request to Label Studio (one place: ``labelstudio.yaml:client``)."""

    defaults_from: ClassVar[str] = "labelstudio.yaml:client"
    connect_timeout_s: PositiveFloat
    read_timeout_s: PositiveFloat
    export_timeout_s: PositiveFloat
    retries: NonNegativeInt
    backoff_s: NonNegativeFloat
    give_up_s: PositiveFloat


class ProjectsConfig(Config):
    defaults_from: ClassVar[str] = "labelstudio.yaml:projects"
    pairwise_title: str
    rating_title: str
    image_width: str
    annotators_per_pair: Count


class PushConfig(Config):
    defaults_from: ClassVar[str] = "labelstudio.yaml:push"
    store_root: str
    image_mode: str
    svg_dir: str | None  # None: <server.files_root>/svg
    png_dir: str | None  # None: <server.files_root>/png
    image_size: Count
    batch_size: Count
    seed: int


class PullConfig(Config):
    defaults_from: ClassVar[str] = "labelstudio.yaml:pull"
    store_root: str
    cursor_path: str
    session: str
    page_size: Count


def check_misbehaviour_shares(careless_share: float, always_left_share: float, reversed_share: float) -> None:
    """The bot's misbehaviour shares are probabilities of disjoint events: each >= 0, their sum <= 1."""
    shares = (careless_share, always_left_share, reversed_share)
    if min(shares) < 0 or sum(shares) > 1:
        raise ValueError(f"bot: careless_share + always_left_share + reversed_share must be <= 1 (each >= 0), "
                         f"got {careless_share} + {always_left_share} + {reversed_share}")


class BotConfig(Config):
    defaults_from: ClassVar[str] = "labelstudio.yaml:bot"
    email: str
    judge: str
    classifier: str | None
    noise: Fraction
    tie_margin: NonNegativeFloat
    tie_rate: Fraction
    careless_share: Fraction
    always_left_share: Fraction
    reversed_share: Fraction
    lead_time_s: NonNegativeFloat
    seed: int

    @model_validator(mode="after")
    def _check(self):
        check_misbehaviour_shares(self.careless_share, self.always_left_share, self.reversed_share)
        return self


PushedShare = Annotated[float, Field(ge=0, lt=1)]  # of a batch's pairwise tasks: at least one generated pair stays


class GoldConfig(Config):
    defaults_from: ClassVar[str] = "labelstudio.yaml:gold"
    share: PushedShare
    data: str
    kinds: list[str]
    noise_std: NonNegativeFloat
    seed: int


class HumanEvalConfig(Config):
    defaults_from: ClassVar[str] = "labelstudio.yaml:human_eval"
    share: PushedShare
    pool: NonNegativeInt


class LabelStudioConfig(Config):
    defaults_from: ClassVar[str] = "labelstudio.yaml"
    server: ServerConfig
    client: ClientConfig
    projects: ProjectsConfig
    push: PushConfig
    pull: PullConfig
    bot: BotConfig
    gold: GoldConfig
    human_eval: HumanEvalConfig


def load_labelstudio_config(path: str | Path | None = DEFAULT_LABELSTUDIO_CONFIG,
                            overrides: Iterable[str] = ()) -> LabelStudioConfig:
    """Load :class:`LabelStudioConfig` from YAML (default configs/labelstudio.yaml) plus dotted overrides."""
    return load_config(LabelStudioConfig, path, overrides)
