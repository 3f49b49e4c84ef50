"""Checkpoints that carry their own config, class names and lineage.

Format (a plain dict, loadable with ``torch.load(weights_only=True)``)::

    {"format": "driftsketch-checkpoint", "format_version": 1, "id": str, "created": iso8601,
     "model_state_dict": ..., "config": {"model": {...ModelConfig}, "class_names": [...]},
     "ema": state_dict | None, "optimizer_state_dict": ... | None, "scheduler_state_dict": ... | None,
     "step": int, "lineage": {"parent": id | None, "dataset_id": str | None}, "extra": {...}}
"""
from __future__ import annotations

import hashlib
import json
import pickle
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from driftsketch.config import ConfigError, from_dict, to_dict
from driftsketch.errors import DriftSketchError
from driftsketch.fileio import atomic_writer
from driftsketch.model import ModelConfig, SketchFlowTransformer

FORMAT = "driftsketch-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("model_state_dict", "config", "step", "lineage", "id")


class CheckpointError(DriftSketchError, ValueError):
    """A file that is not a loadable DriftSketch checkpoint."""


def content_id(payload: dict[str, Any]) -> str:
    """A checkpoint's id, derived from what it holds: weights (and EMA weights), model config, class
    names, step and lineage. The same training inputs and seeds give the same id, so whatever is seeded
    from an id (reward amplification's draws) repeats too; a different model gets a different one."""
    h = hashlib.sha256(json.dumps({k: payload[k] for k in ("config", "step", "lineage")}, sort_keys=True).encode())
    for states in (payload["model_state_dict"], payload["ema"] or {}):
        for name, tensor in states.items():
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def save_checkpoint(path: str | Path, model: SketchFlowTransformer, class_names: list[str], *, step: int = 0,
                    ema_state: dict | None = None, optimizer_state: dict | None = None,
                    scheduler_state: dict | None = None, parent: str | None = None,
                    dataset_id: str | None = None, extra: dict[str, Any] | None = None,
                    checkpoint_id: str | None = None) -> str:
    """Write a checkpoint atomically (temp file + rename) and return its id (``checkpoint_id`` or
    :func:`content_id`)."""
    if len(class_names) != model.config.num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {model.config.num_classes} classes")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "id": None,
        "created": datetime.now(timezone.utc).isoformat(),
        "model_state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": {"model": to_dict(model.config), "class_names": list(class_names)},
        "ema": ema_state,
        "optimizer_state_dict": optimizer_state,
        "scheduler_state_dict": scheduler_state,
        "step": int(step),
        "lineage": {"parent": parent, "dataset_id": dataset_id},
        "extra": extra or {},
    }
    payload["id"] = ckpt_id = checkpoint_id or content_id(payload)
    atomic_torch_save(payload, Path(path))
    return ckpt_id


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` written atomically and durably (:func:`driftsketch.fileio.atomic_writer`)."""
    with atomic_writer(path) as fh:
        torch.save(obj, fh)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate a checkpoint dict (``weights_only=True``); raise :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable DriftSketch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a DriftSketch checkpoint (no 'format': '{FORMAT}' marker)")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint is missing key(s) {missing}")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {ckpt['format_version']} is newer than this code ({FORMAT_VERSION})")
    return ckpt


def model_config_of(ckpt: dict[str, Any], where: str = "checkpoint") -> ModelConfig:
    try:
        return from_dict(ModelConfig, ckpt["config"]["model"], f"{where}: config.model")
    except (ConfigError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{where}: bad model config: {exc}") from None


def build_model(ckpt: dict[str, Any], use_ema: bool = True, where: str = "checkpoint") -> SketchFlowTransformer:
    """Rebuild the network from a loaded checkpoint dict (EMA weights when present and asked for)."""
    model = SketchFlowTransformer(model_config_of(ckpt, where))
    state = ckpt["ema"] if (use_ema and ckpt.get("ema")) else ckpt["model_state_dict"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{where}: weights do not match the stored config: {exc}") from None
    model.class_names = list(ckpt["config"]["class_names"])
    model.checkpoint_id = ckpt["id"]
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True) -> SketchFlowTransformer:
    """Load a checkpoint (base training or Flow-DPO) as a model in eval mode.

    The model carries ``class_names``, ``checkpoint_id`` and ``checkpoint_path``.
    """
    ckpt = load_checkpoint(path)
    model = build_model(ckpt, use_ema=use_ema, where=str(path))
    model.checkpoint_path = str(path)
    return model.to(device).eval()
