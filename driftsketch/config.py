"""Typed configuration: strict pydantic models whose every default lives in one YAML under ``configs/``.

A config class derives from :class:`Config` and names the YAML section that holds its defaults; its
fields have no defaults in code. Keys not given are taken from that section, merged key by key (nested
sections too), so ``ModelConfig(dim=64)`` is the ``model`` section of configs/train.yaml with ``dim``
changed. Unknown keys and bad values are an error naming the file and the field.

    class ModelConfig(Config):
        defaults_from: ClassVar[str] = "train.yaml:model"
        dim: int
        ...

    cfg = load_config(TrainConfig, "configs/train.yaml", overrides=["model.depth=4", "lr=3e-4"])
    cfg = replace_config(cfg, lr=1e-4); to_dict(cfg)    # never dataclasses.replace / asdict
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from driftsketch.errors import DriftSketchError

T = TypeVar("T")
C = TypeVar("C", bound="Config")

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

# Range-checked field types of the config models: a bad value is an error naming the field
# (``max_steps: Input should be greater than or equal to 1 (got 0)``), never a loop that runs 0 times.
Count = Annotated[int, Field(ge=1)]  # something that must happen at least once: steps, batch size, workers
NonNegativeInt = Annotated[int, Field(ge=0)]  # 0 means "none" or "off": retries, sample_every, patience
PositiveFloat = Annotated[float, Field(gt=0)]  # a scale, a rate or a time limit that cannot be 0
NonNegativeFloat = Annotated[float, Field(ge=0)]  # 0 means "none" or "off": budgets, weights, noise
Fraction = Annotated[float, Field(ge=0, le=1)]  # a share or probability in [0, 1]
Port = Annotated[int, Field(ge=0, le=65535)]  # a TCP port; 0 = any free port


class ConfigError(DriftSketchError, ValueError):
    """A configuration file or override that does not match its typed schema."""


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML text file (not UTF-8)") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


@functools.lru_cache(maxsize=None)
def _default_file(name: str) -> dict[str, Any]:
    return read_yaml(CONFIG_DIR / name)


def yaml_defaults(source: str) -> dict[str, Any]:
    """The mapping at ``"file.yaml:dotted.section"`` (or a whole ``"file.yaml"``) under ``configs/``."""
    name, _, section = source.partition(":")
    node: Any = _default_file(name)
    for key in section.split(".") if section else []:
        node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise ConfigError(f"{CONFIG_DIR / name}: no section {section!r}")
    return copy.deepcopy(node)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, key by key through nested mappings (lists and values are replaced)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class Config(BaseModel):
    """Base of every config class: unknown keys rejected; missing keys from ``defaults_from``."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
    defaults_from: ClassVar[str | None] = None  # "file.yaml:dotted.section" under configs/

    @model_validator(mode="before")
    @classmethod
    def _fill_from_yaml(cls, data: Any) -> Any:
        if cls.defaults_from is None or not isinstance(data, dict):
            return data
        return merge(yaml_defaults(cls.defaults_from), data)

    @classmethod
    def defaults(cls: type[C], section: str | None = None) -> C:
        """The YAML defaults (of ``section`` instead of the class's own, e.g. ``"eval.yaml:hidden_classifier"``)."""
        return cls.model_validate(yaml_defaults(section) if section else {})


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _describe(exc: ValidationError, where: str) -> str:
    msgs = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            msgs.append(f"{field}: unknown key")
        else:
            msgs.append(f"{field}: {err['msg']} (got {_short_repr(err.get('input'))})")
    return f"{where}: " + "; ".join(msgs)


def validate_config(cls: type[C], data: dict[str, Any], where: str = "config") -> C:
    """``cls`` from a plain mapping; errors raise :class:`ConfigError` naming ``where`` and the field."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where)) from None


def from_dict(cls: type[C], data: dict[str, Any], where: str = "config") -> C:
    """Alias of :func:`validate_config` (configs stored as plain dicts, e.g. in checkpoints)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    return validate_config(cls, data, where)


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain-dict form of a config object (safe for YAML, JSON and checkpoints)."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    return dataclasses.asdict(obj)


def replace_config(obj: C, **changes: Any) -> C:
    """A validated copy of config object ``obj`` with ``changes`` applied; unknown names raise ConfigError."""
    data = {name: getattr(obj, name) for name in type(obj).model_fields}
    return validate_config(type(obj), {**data, **changes}, type(obj).__name__)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b=value`` into (["a", "b"], value) with YAML scalar typing."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE (e.g. model.depth=4)")
    key, raw = text.split("=", 1)
    keys = key.strip().split(".")
    if not all(k.strip() for k in keys):
        raise ConfigError(f"override {text!r}: empty key name (expected KEY=VALUE, e.g. model.depth=4)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, RecursionError):
        raise ConfigError(f"override {text!r}: the value is not valid YAML") from None
    return [k.strip() for k in keys], value


def apply_overrides(data: dict[str, Any], overrides: typing.Iterable[str | tuple[list[str], Any]]) -> dict[str, Any]:
    """Return a copy of nested dict ``data`` with dotted overrides applied."""
    out = copy.deepcopy(data)
    for item in overrides:
        keys, value = parse_override(item) if isinstance(item, str) else item
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {'.'.join(keys)}: {k} is not a section")
        node[keys[-1]] = value
    return out


def flag_overrides(args: Any, names: typing.Iterable[str]) -> list[tuple[list[str], Any]]:
    """Overrides from CLI flags that were given: attribute ``name`` of ``args`` -> top-level key ``name``."""
    return [([name], getattr(args, name)) for name in names if getattr(args, name) is not None]


def add_training_flags(parser: Any, example: str) -> None:
    """``--no-wandb``, ``--resume`` and ``--set KEY=VALUE`` of a training CLI (read by :func:`cli_overrides`)."""
    parser.add_argument("--no-wandb", action="store_true", help="do not log to wandb (offline by default)")
    parser.add_argument("--resume", action="store_true", help="continue from CHECKPOINT_DIR/last.pt")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override any config key, e.g. --set {example} (repeatable)")


def cli_overrides(args: Any, flag_names: typing.Iterable[str]) -> list:
    """All overrides a training CLI was given: ``--set KEY=VALUE`` first, then the named flags, then
    ``--no-wandb`` (``args.set``, the flags and ``args.no_wandb`` must exist)."""
    overrides = list(args.set) + flag_overrides(args, flag_names)
    if args.no_wandb:
        overrides.append((["wandb"], False))
    return overrides


def load_config(cls: type[C], path: str | Path | None = None, overrides: typing.Iterable[Any] = (),
                section: str | None = None) -> C:
    """Load ``cls`` from YAML ``path`` (optionally one top-level ``section``) plus overrides; keys the file
    leaves out take the class's YAML defaults. Errors name the file and the field."""
    data: dict[str, Any] = {}
    where = "config"
    if path is not None:
        data = read_yaml(path)
        where = str(path)
        if section is not None:
            data = data.get(section, {}) or {}
            where = f"{path}:{section}"
    overrides = list(overrides)
    if overrides:
        where += " with overrides"
    data = apply_overrides(data, overrides)
    return validate_config(cls, data, where)
