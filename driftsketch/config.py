"""Typed configuration: dataclasses loaded from YAML in ``configs/`` with CLI overrides.

One source of truth per default: the YAML file in ``configs/`` (the dataclass defaults mirror it so
library code also works without a file). Unknown keys are an error that names the key and file.

    cfg = load_config(TrainConfig, "configs/train.yaml", overrides=["model.depth=4", "lr=3e-4"])
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from driftsketch.errors import DriftSketchError

T = TypeVar("T")

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(DriftSketchError, ValueError):
    """A configuration file or override that does not match its typed schema."""


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, typ: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    if dataclasses.is_dataclass(typ):
        if isinstance(value, typ):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {typ.__name__}, got {value!r}")
        return from_dict(typ, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(typ)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} matches none of {typ}")
    if origin is typing.Literal:
        if value not in typing.get_args(typ):
            raise ConfigError(f"{where}: {value!r} is not one of {typing.get_args(typ)}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (arg,) = typing.get_args(typ)[:1] or (Any,)
        items = [_coerce(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if typ in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected {typ.__name__}, got {value!r}")
        try:
            out = typ(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {typ.__name__}, got {value!r}") from None
        if typ is int and isinstance(value, float) and value != out:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return out
    if typ is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys raise :class:`ConfigError` naming them."""
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(types_)}")
    kwargs = {k: _coerce(v, types_[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain-dict form of a config dataclass (safe for YAML, JSON and checkpoints)."""
    return dataclasses.asdict(obj)


def replace_config(obj: T, **changes: Any) -> T:
    """A copy of config object ``obj`` with ``changes`` applied (use this, not ``dataclasses.replace``:
    the config classes may change their implementation, this call stays)."""
    return dataclasses.replace(obj, **changes)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b=value`` into (["a", "b"], value) with YAML scalar typing."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE (e.g. model.depth=4)")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else ""


def apply_overrides(data: dict[str, Any], overrides: typing.Iterable[str | tuple[list[str], Any]]) -> dict[str, Any]:
    """Return a copy of nested dict ``data`` with dotted overrides applied."""
    import copy

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


def cli_overrides(args: Any, flag_names: typing.Iterable[str]) -> list:
    """All overrides a training CLI was given: ``--set KEY=VALUE`` first, then the named flags, then
    ``--no-wandb`` (``args.set``, the flags and ``args.no_wandb`` must exist)."""
    overrides = list(args.set) + flag_overrides(args, flag_names)
    if args.no_wandb:
        overrides.append((["wandb"], False))
    return overrides


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: typing.Iterable[Any] = (),
                section: str | None = None) -> T:
    """Load ``cls`` from YAML ``path`` (optionally one top-level ``section``) plus overrides."""
    data: dict[str, Any] = {}
    where = "config"
    if path is not None:
        data = read_yaml(path)
        where = str(path)
        if section is not None:
            data = data.get(section, {}) or {}
            where = f"{path}:{section}"
    data = apply_overrides(data, overrides)
    return from_dict(cls, data, where)
