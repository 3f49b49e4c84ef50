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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from driftsketch.config import ConfigError, from_dict, to_dict
from driftsketch.errors import DriftSketchError
from driftsketch.fileio import atomic_writer
from driftsketch.codec import CODECS
from driftsketch.model import TOKEN_DIM, ModelConfig, SketchFlowTransformer

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
    """``torch.save`` written atomically and durably (:func:`driftsketch.fileio.atomic_writer`). A write that
    fails (a full disk: torch's writer says ``RuntimeError ... unexpected pos``) is an OSError naming
    ``path``; the old file stays as it was."""
    with atomic_writer(path) as fh:
        try:
            torch.save(obj, fh)
        except RuntimeError as exc:
            raise OSError(f"{path}: writing the checkpoint failed, is the disk full? ({exc})") from None


def check_torch_file(path: Path, what: str, error: type[DriftSketchError]) -> None:
    """Raise ``error`` naming ``path`` unless it is a file that starts like a ``torch.save`` archive (a
    zip): a folder, a missing file, text, a pickle or an empty file is refused before ``torch.load``."""
    if path.is_dir():
        raise error(f"{path}: is a folder, not a {what} file")
    if not path.is_file():
        raise error(f"{path}: {what} file not found")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    if head != b"PK\x03\x04":  # torch.save writes a zip archive; text, pickles and .npz files are not one
        kind = "an empty file" if not head else "not a torch file (no zip archive inside)"
        raise error(f"{path}: not a {what}: {kind}")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate a checkpoint dict (``weights_only=True``); raise :class:`CheckpointError`."""
    path = Path(path)
    check_torch_file(path, "DriftSketch checkpoint", CheckpointError)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load of a foreign file raises anything (IndexError, KeyError, ...)
        detail = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"{path}: not a readable DriftSketch checkpoint ({type(exc).__name__}: {detail})") from None
    check_checkpoint(ckpt, str(path))
    return ckpt


def check_checkpoint(ckpt: Any, where: str = "checkpoint") -> None:
    """:class:`CheckpointError` naming ``where`` and the field unless ``ckpt`` (what ``torch.load`` gave) has
    the checkpoint format: the marker, every required key with the right type, a model config that
    validates and as many class names as the config has classes."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{where}: not a DriftSketch checkpoint (no 'format': '{FORMAT}' marker)")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{where}: checkpoint is missing key(s) {missing}")
    version = ckpt.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{where}: format_version must be an integer, got {type(version).__name__}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{where}: checkpoint format {version} is newer than this code ({FORMAT_VERSION})")
    for key, kind in (("id", str), ("step", int), ("lineage", dict), ("config", dict), ("model_state_dict", dict)):
        if not isinstance(ckpt[key], kind) or isinstance(ckpt[key], bool):
            raise CheckpointError(f"{where}: field {key!r} must be {kind.__name__}, got {type(ckpt[key]).__name__}")
    for key in ("model_state_dict", "ema"):
        state = ckpt.get(key)
        if state is not None and (not isinstance(state, dict) or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
            raise CheckpointError(f"{where}: field {key!r} must map parameter names to tensors")
    if not isinstance(ckpt.get("extra", {}), (dict, type(None))):
        raise CheckpointError(f"{where}: field 'extra' must be a dict")
    names = ckpt["config"].get("class_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{where}: config.class_names must be a list of strings")
    cfg = model_config_of(ckpt, where)
    if cfg.num_classes != len(names):
        raise CheckpointError(f"{where}: config.model.num_classes is {cfg.num_classes} but there are "
                              f"{len(names)} class names")
    _check_size(ckpt["model_state_dict"], cfg, where)  # before building: a config's size must match the weights
    expected = _expected_shapes(cfg, where)
    for key in ("model_state_dict", "ema"):
        state = ckpt.get(key)
        if state is None:
            continue
        missing = sorted(set(expected) - set(state))
        extra = sorted(set(state) - set(expected))
        if missing or extra:
            raise CheckpointError(f"{where}: {key} does not match config.model (missing {missing[:3]}, "
                                  f"unexpected {extra[:3]})")
        for name, shape in expected.items():
            if tuple(state[name].shape) != shape:
                raise CheckpointError(f"{where}: {key}.{name} has shape {tuple(state[name].shape)}, "
                                      f"config.model needs {shape}")


def _check_size(state: dict, cfg: ModelConfig, where: str) -> None:
    """The stored width, depth and class count agree with the weights (cheap; no model is built)."""
    width = state.get("input_proj.weight")
    if width is None or tuple(width.shape) != (cfg.dim, TOKEN_DIM):
        raise CheckpointError(f"{where}: model_state_dict.input_proj.weight does not match config.model.dim "
                              f"{cfg.dim}")
    blocks = {k.split(".")[1] for k in state if k.startswith("blocks.") and k.count(".") >= 2}
    if len(blocks) != cfg.depth:
        raise CheckpointError(f"{where}: model_state_dict has {len(blocks)} blocks, config.model.depth is {cfg.depth}")
    emb = state.get("class_emb.weight")
    if emb is None or tuple(emb.shape) != (cfg.num_classes + 1, cfg.dim):
        raise CheckpointError(f"{where}: model_state_dict.class_emb.weight does not match "
                              f"config.model.num_classes {cfg.num_classes}")


def _expected_shapes(cfg: ModelConfig, where: str) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of the network ``cfg`` describes, built on the meta device (no memory, any size)."""
    try:
        with torch.device("meta"):
            model = SketchFlowTransformer(cfg)
    except (ValueError, RuntimeError, AssertionError, OverflowError, TypeError) as exc:  # dim % heads, a size > int64
        raise CheckpointError(f"{where}: the stored model config cannot be built: {exc}") from None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def model_config_of(ckpt: dict[str, Any], where: str = "checkpoint") -> ModelConfig:
    """The :class:`ModelConfig` stored in a checkpoint dict; :class:`CheckpointError` naming ``where``."""
    try:
        cfg = from_dict(ModelConfig, ckpt["config"]["model"], f"{where}: config.model")
    except (ConfigError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{where}: bad model config: {exc}") from None
    if cfg.num_classes is None:
        raise CheckpointError(f"{where}: config.model.num_classes is not set")
    if cfg.codec not in CODECS:
        raise CheckpointError(f"{where}: config.model.codec {cfg.codec!r} is unknown (valid: {CODECS})")
    return cfg


def build_model(ckpt: dict[str, Any], use_ema: bool = True, where: str = "checkpoint") -> SketchFlowTransformer:
    """Rebuild the network from a loaded checkpoint dict (EMA weights when present and asked for)."""
    cfg = model_config_of(ckpt, where)
    try:
        model = SketchFlowTransformer(cfg)
    except (ValueError, RuntimeError, AssertionError, OverflowError, TypeError) as exc:  # e.g. dim % heads != 0
        raise CheckpointError(f"{where}: the stored model config cannot be built: {exc}") from None
    state = ckpt["ema"] if (use_ema and ckpt.get("ema")) else ckpt["model_state_dict"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"{where}: weights do not match the stored config: {detail}") from None
    model.class_names = list(ckpt["config"]["class_names"])
    model.checkpoint_id = ckpt["id"]
    return model


def export_weights(src: str | Path, dst: str | Path, use_ema: bool = True) -> str:
    """Write a weights-only copy of checkpoint ``src`` to ``dst`` (atomically): the weights a model loads
    (EMA when present), its config, class names, step, lineage and id; no optimizer, scheduler or second
    weight set, so a trained model can be shared or shipped at a quarter of the size. Returns the id."""
    ckpt = load_checkpoint(src)
    model = build_model(ckpt, use_ema=use_ema, where=str(src))
    return save_checkpoint(dst, model, model.class_names, step=ckpt["step"], parent=ckpt["lineage"]["parent"],
                           dataset_id=ckpt["lineage"]["dataset_id"],
                           extra={**(ckpt.get("extra") or {}), "weights_only_export": True, "exported_ema": use_ema},
                           checkpoint_id=ckpt["id"])


def load_model(path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True) -> SketchFlowTransformer:
    """Load a checkpoint (base training or Flow-DPO) as a model in eval mode.

    The model carries ``class_names``, ``checkpoint_id`` and ``checkpoint_path``.
    """
    ckpt = load_checkpoint(path)
    model = build_model(ckpt, use_ema=use_ema, where=str(path))
    model.checkpoint_path = str(path)
    return model.to(device).eval()
