"""Model registry: a folder of checkpoints plus ``registry.json`` with lineage, metrics and a ``current`` pointer.

    reg = Registry("runs/registry")
    reg.add_model("runs/base/model.pt", "base-3f2a", kind="base")
    reg.promote("base-3f2a", reason="bootstrap")
    reg.current_path()          # -> runs/registry/checkpoints/base-3f2a.pt

Layout::

    runs/registry/
      registry.json             the state below, replaced atomically (tmp + fsync + os.replace)
      registry.lock             flock held around every read-modify-write
      round.lock                flock held by a whole online round (one round at a time per registry)
      checkpoints/<model_id>.pt

Every mutation is idempotent: adding a model that is already registered returns the existing entry,
promoting the current model changes nothing, deciding a round twice keeps the first decision. A round
is keyed by :func:`round_id_for` (the parent model plus the set of preference record ids it trains on),
so a re-run after a crash finds its own half-done round instead of training twice on the same data.
Pure Python: no torch, no Prefect.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from driftsketch.config import Config
from driftsketch.errors import DriftSketchError
from driftsketch.fileio import atomic_copy, atomic_write_text, clean_stale_temps, exclusive_lock
from driftsketch.stats import wilson_interval

REGISTRY_FILE = "registry.json"
ROUND_LOCK = "round.lock"
CHECKPOINT_DIR = "checkpoints"

ModelStatus = Literal["candidate", "promoted", "rejected", "rolled_back"]
RoundStatus = Literal["started", "trained", "promoted", "rejected"]


class RegistryError(DriftSketchError, RuntimeError):
    """A registry operation that cannot be carried out (unknown id, nothing to roll back to, bad file)."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelEntry(_Strict):
    id: str
    path: str  # relative to the registry root
    kind: Literal["base", "dpo"] = "dpo"
    parent: str | None = None
    round_id: str | None = None
    round_index: int = 0  # 0 for a base model, n for the model trained in round n
    num_preferences: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)
    status: ModelStatus = "candidate"
    reason: str | None = None  # why it was promoted / rejected / rolled back
    created_at: str = Field(default_factory=now_iso)
    decided_at: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class RoundEntry(_Strict):
    id: str
    index: int
    parent: str  # model the round fine-tuned from
    reference: str  # model used as the frozen DPO reference
    record_ids: list[str]
    candidate: str | None = None
    status: RoundStatus = "started"
    reason: str | None = None
    started_at: str = Field(default_factory=now_iso)
    finished_at: str | None = None


class Event(_Strict):
    at: str = Field(default_factory=now_iso)
    action: Literal["promote", "reject", "rollback"]
    model: str
    previous: str | None = None  # the current model before this event
    reason: str | None = None


class RegistryState(_Strict):
    version: int = 1
    current: str | None = None
    models: dict[str, ModelEntry] = Field(default_factory=dict)
    rounds: dict[str, RoundEntry] = Field(default_factory=dict)
    history: list[Event] = Field(default_factory=list)


def round_id_for(parent: str, record_ids: list[str] | set[str], reference: str | None = None) -> str:
    """Stable id of a round: sha256 over the parent model, the reference model and the sorted record ids."""
    payload = json.dumps({"parent": parent, "reference": reference or parent,
                          "records": sorted(set(record_ids))}, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class Registry:
    """Checkpoints and their lineage under one folder; see the module docstring."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.file = self.root / REGISTRY_FILE

    # -- reading -------------------------------------------------------------------------------
    def load(self) -> RegistryState:
        """The current state (an empty one if the registry does not exist yet)."""
        if not self.file.exists():
            return RegistryState()
        try:
            return RegistryState.model_validate_json(self.file.read_text())
        except ValidationError as exc:
            raise RegistryError(f"{self.file}: not a valid registry file: {exc}") from None

    @property
    def current(self) -> str | None:
        return self.load().current

    def get(self, model_id: str) -> ModelEntry:
        state = self.load()
        return self._entry(state, model_id)

    def path_of(self, model_id: str) -> Path:
        """Absolute checkpoint path of a registered model (checked to stay inside the registry)."""
        return self._resolve(self.get(model_id).path)

    def current_path(self) -> Path | None:
        cur = self.current
        return None if cur is None else self.path_of(cur)

    def ancestry(self, model_id: str) -> list[str]:
        """``model_id`` and its ancestors by ``parent``, newest first, without the base they descend from."""
        out, entry = [], self.get(model_id)
        while entry.parent is not None:
            out.append(entry.id)
            entry = self.get(entry.parent)
        return out

    def promoted_since(self, since: datetime) -> set[str]:
        """The models promoted after ``since`` (an aware datetime). Events keep whole seconds, so a promotion in the
        second of ``since`` counts as before it."""
        return {e.model for e in self.load().history
                if e.action == "promote" and datetime.fromisoformat(e.at) > since}

    def checkpoint_path_for(self, model_id: str) -> Path:
        """Where :meth:`add_model` stores ``model_id``; a trainer may write there directly (atomically)."""
        _check_id(model_id)
        return self.root / CHECKPOINT_DIR / f"{model_id}.pt"

    def decided_rounds(self) -> list[RoundEntry]:
        """The rounds with a decision (promoted or rejected); a round killed before its decision is not one."""
        return [r for r in self.load().rounds.values() if r.status in ("promoted", "rejected")]

    def last_decided_round_index(self) -> int:
        """Index of the newest decided (promoted or rejected) round, 0 before the first."""
        return max((r.index for r in self.decided_rounds()), default=0)

    def used_record_ids(self) -> set[str]:
        """Preference record ids of the decided rounds (promoted or rejected). A round killed before its
        decision (started, or trained) does not count: its re-run selects the same records, finds the same
        round and candidate, and decides it; counting a trained round left its candidate undecided forever."""
        return {record_id for rnd in self.decided_rounds() for record_id in rnd.record_ids}

    # -- writing -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[RegistryState]:
        """Lock, load, yield the state for editing, then write it back atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / CHECKPOINT_DIR).mkdir(exist_ok=True)
        for folder in (self.root, self.root / CHECKPOINT_DIR):  # temporary files a killed writer left
            clean_stale_temps(folder)
        with exclusive_lock(self.root / "registry.lock"):
            state = self.load()
            before = state.model_dump_json()
            yield state
            after = state.model_dump_json(indent=2)
            if json.loads(after) != json.loads(before):
                atomic_write_text(self.file, after + "\n")

    @contextlib.contextmanager
    def round_lock(self) -> Iterator[None]:
        """Hold ``round.lock`` for a whole round, so two rounds never work on one registry at once (a manual
        run during the deployment's, two deployments on one registry). Another holder: RegistryError naming
        it, and nothing done. The kernel drops the lock of a killed holder."""
        with contextlib.ExitStack() as stack:
            try:
                fh = stack.enter_context(exclusive_lock(self.root / ROUND_LOCK, wait=False))
            except BlockingIOError:
                holder = (self.root / ROUND_LOCK).read_text().strip() or "a process that did not say who it is"
                raise RegistryError(f"{self.root / ROUND_LOCK}: another round is running on this registry ({holder}); "
                                    "this one did nothing, run it again when that one has ended") from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {socket.gethostname()} since {now_iso()}\n")
            fh.flush()
            yield

    def add_model(self, checkpoint: str | Path, model_id: str, *, kind: Literal["base", "dpo"] = "dpo",
                  parent: str | None = None, round_id: str | None = None, round_index: int = 0,
                  num_preferences: int = 0, metrics: dict[str, float] | None = None,
                  extra: dict[str, Any] | None = None) -> ModelEntry:
        """Copy ``checkpoint`` into the registry as ``model_id`` (no-op if already registered)."""
        dst = self.checkpoint_path_for(model_id)
        src = Path(checkpoint)
        if not src.is_file():
            raise RegistryError(f"checkpoint not found: {src}")
        with self.transaction() as state:
            if model_id in state.models:
                return state.models[model_id]
            if parent is not None and parent not in state.models:
                raise RegistryError(f"parent {parent!r} is not in the registry {self.file}")
            if src.resolve() != dst.resolve():
                atomic_copy(src, dst)
            entry = ModelEntry(id=model_id, path=f"{CHECKPOINT_DIR}/{dst.name}", kind=kind, parent=parent,
                               round_id=round_id, round_index=round_index, num_preferences=num_preferences,
                               metrics=dict(metrics or {}), extra=dict(extra or {}))
            state.models[model_id] = entry
            return entry

    def set_metrics(self, model_id: str, metrics: dict[str, float]) -> None:
        """Merge ``metrics`` into a model's entry."""
        with self.transaction() as state:
            self._entry(state, model_id).metrics.update({k: float(v) for k, v in metrics.items()})

    def promote(self, model_id: str, reason: str = "manual") -> bool:
        """Make ``model_id`` current. Returns False (and changes nothing) if it already is."""
        with self.transaction() as state:
            return _promote(state, self._entry(state, model_id), reason)

    def reject(self, model_id: str, reason: str) -> bool:
        """Record that a candidate failed the gate. Returns False if it was already decided."""
        with self.transaction() as state:
            return _reject(state, self._entry(state, model_id), reason)

    def rollback(self, reason: str = "manual rollback") -> str:
        """Point ``current`` back at the model that was current before the current one was promoted."""
        with self.transaction() as state:
            cur = state.current
            if cur is None:
                raise RegistryError(f"{self.file}: no current model to roll back from")
            promos = [e for e in state.history if e.action == "promote" and e.model == cur]
            previous = promos[-1].previous if promos else None
            if previous is None:
                raise RegistryError(f"{cur} was the first promoted model: nothing to roll back to")
            _revert(state, previous, [cur], reason)
            return previous

    def revert_to(self, model_id: str, rolled_back: list[str], reason: str) -> bool:
        """Make the older model ``model_id`` current again and mark ``rolled_back`` (the models that descend
        from it and were current since) as rolled back, in one event. False (nothing changes) if it is current."""
        with self.transaction() as state:
            self._entry(state, model_id)
            if state.current == model_id:
                return False
            for m in rolled_back:
                self._entry(state, m)
            _revert(state, model_id, rolled_back, reason)
            return True

    # -- rounds --------------------------------------------------------------------------------
    def start_round(self, parent: str, reference: str, record_ids: list[str]) -> RoundEntry:
        """Find or create the round for (parent, reference, record ids); its index is fixed at creation."""
        rid = round_id_for(parent, record_ids, reference)
        with self.transaction() as state:
            if rid in state.rounds:
                return state.rounds[rid]
            index = 1 + max((r.index for r in state.rounds.values() if r.status != "started"), default=0)
            rnd = RoundEntry(id=rid, index=index, parent=parent, reference=reference,
                             record_ids=sorted(set(record_ids)))
            state.rounds[rid] = rnd
            return rnd

    def finish_training(self, round_id: str, candidate: str) -> None:
        """Mark a round trained (its preferences count as used once it is decided)."""
        with self.transaction() as state:
            rnd = self._round(state, round_id)
            self._entry(state, candidate)
            if rnd.status == "started":
                rnd.status, rnd.candidate = "trained", candidate

    def decide_round(self, round_id: str, promote: bool, reason: str) -> bool:
        """Apply the gate's decision to a trained round, once, in one atomic write.

        Returns False (changing nothing) if the round was already decided.
        """
        with self.transaction() as state:
            rnd = self._round(state, round_id)
            if rnd.status in ("promoted", "rejected"):
                return False
            if rnd.status != "trained" or rnd.candidate is None:
                raise RegistryError(f"round {round_id} has no trained candidate yet (status {rnd.status})")
            entry = self._entry(state, rnd.candidate)
            _promote(state, entry, reason) if promote else _reject(state, entry, reason)
            rnd.status = "promoted" if promote else "rejected"
            rnd.reason, rnd.finished_at = reason, now_iso()
            return True

    # -- helpers -------------------------------------------------------------------------------
    def _entry(self, state: RegistryState, model_id: str) -> ModelEntry:
        if model_id not in state.models:
            known = ", ".join(sorted(state.models)) or "none"
            raise RegistryError(f"unknown model {model_id!r} in {self.file} (known: {known})")
        return state.models[model_id]

    def _round(self, state: RegistryState, round_id: str) -> RoundEntry:
        if round_id not in state.rounds:
            raise RegistryError(f"unknown round {round_id!r} in {self.file}")
        return state.rounds[round_id]

    def _resolve(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise RegistryError(f"{self.file}: path {rel!r} leaves the registry folder")
        return path


def _promote(state: RegistryState, entry: ModelEntry, reason: str) -> bool:
    if state.current == entry.id:
        return False
    state.history.append(Event(action="promote", model=entry.id, previous=state.current, reason=reason))
    state.current = entry.id
    entry.status, entry.reason, entry.decided_at = "promoted", reason, now_iso()
    return True


def _revert(state: RegistryState, model_id: str, rolled_back: list[str], reason: str) -> None:
    state.history.append(Event(action="rollback", model=model_id, previous=state.current, reason=reason))
    state.current = model_id
    for m in rolled_back:
        entry = state.models[m]
        entry.status, entry.reason, entry.decided_at = "rolled_back", reason, now_iso()


def _reject(state: RegistryState, entry: ModelEntry, reason: str) -> bool:
    if entry.status != "candidate":
        return False
    state.history.append(Event(action="reject", model=entry.id, previous=state.current, reason=reason))
    entry.status, entry.reason, entry.decided_at = "rejected", reason, now_iso()
    return True


def _check_id(model_id: str) -> None:
    if not model_id or "/" in model_id or "\\" in model_id or model_id.startswith("."):
        raise RegistryError(f"invalid model id {model_id!r}: use letters, digits, '-' and '_'")


class PromotionGate(Config):
    """When a candidate replaces the current model (``gate`` in configs/round.yaml). Metrics are compared
    candidate vs current (one round's change) and, where the ``*_base`` limits are set, candidate vs the
    original base model (the drift of every round so far together: each round may pass the per-round checks
    while many rounds add up to a model far from the base).

    Keys used: ``recognizability`` (higher is better), ``frechet_distance`` (to the data; lower is better),
    ``heldout_accuracy`` (candidate's implicit accuracy on held-out preferences) and, if set,
    ``win_rate`` (candidate over current under an automatic judge).
    """

    defaults_from: ClassVar[str] = "round.yaml:gate"
    min_heldout_accuracy: float = Field(
        description="held-out preference accuracy not shown below this (its 95 % interval reaches it)")
    max_recognizability_drop: float = Field(description="recognizability may fall at most this much")
    max_fd_ratio: float = Field(description="Frechet distance at most this times the current model's")
    max_recognizability_drop_from_base: float | None = Field(
        description="recognizability at most this much below the original base's (off if null)")
    max_fd_ratio_to_base: float | None = Field(
        description="Frechet distance at most this times the original base's (off if null)")
    min_win_rate: float | None = Field(description="judge win rate over current at least this (off if null)")
    human_veto_min_pairs: int | None = Field(
        ge=1,
        description="roll back the newest models once the annotators' evaluation pairs against the base, at least "
                    "this many, call them worse (the 95 % interval below 50 %); off if null")

    @property
    def anchored(self) -> bool:
        """Whether a decision needs the original base model's metrics."""
        return self.max_recognizability_drop_from_base is not None or self.max_fd_ratio_to_base is not None


def _need(metrics: dict[str, float], key: str, who: str) -> float:
    if key not in metrics:
        raise RegistryError(f"promotion gate needs metric {key!r} for the {who} model; got {sorted(metrics)}")
    return float(metrics[key])


def _heldout_check(candidate: dict[str, float], minimum: float) -> tuple[bool, str]:
    """The candidate's held-out preference accuracy must not be *shown* below ``minimum``: the upper end of its
    95 % Wilson interval over ``heldout_pairs`` reaches it. A round of 50-100 pairs holds out 5-10: their point
    accuracy is mostly noise (0.4 on 5 pairs says nothing), while a fine-tune that learned the labels backwards
    still fails. Without ``heldout_pairs`` the point value is compared; with no held-out pair there is no
    evidence and the check passes."""
    acc = _need(candidate, "heldout_accuracy", "candidate")
    if "heldout_pairs" not in candidate:
        return acc >= minimum, f"heldout_accuracy {acc:.3f} >= {minimum}"
    n = int(candidate["heldout_pairs"])
    if n == 0 or math.isnan(acc):
        return True, "no held-out pairs"
    upper = wilson_interval(acc * n, n)[1]
    return upper >= minimum, f"heldout_accuracy {acc:.3f} on {n} pairs (95 % interval up to {upper:.3f}) >= {minimum}"


def _quality_checks(candidate: dict[str, float], other: dict[str, float], who: str, max_drop: float | None,
                    max_ratio: float | None) -> list[tuple[bool, str]]:
    """Recognizability and Frechet distance of the candidate against ``other`` (the current model or the base)."""
    label = "" if who == "current" else f" ({who})"
    checks: list[tuple[bool, str]] = []
    if max_drop is not None:
        rec_c, rec_o = _need(candidate, "recognizability", "candidate"), _need(other, "recognizability", who)
        checks.append((rec_c >= rec_o - max_drop, f"recognizability {rec_c:.3f} >= {rec_o:.3f} - {max_drop}{label}"))
    if max_ratio is not None:
        fd_c, fd_o = _need(candidate, "frechet_distance", "candidate"), _need(other, "frechet_distance", who)
        checks.append((fd_c <= fd_o * max_ratio, f"frechet_distance {fd_c:.3f} <= {max_ratio} x {fd_o:.3f}{label}"))
    return checks


def apply_gate(gate: PromotionGate, candidate: dict[str, float], current: dict[str, float],
               base: dict[str, float] | None = None) -> tuple[bool, str]:
    """Decide promotion; the reason lists every check with its numbers so the registry says why. ``base``
    (the original base model's metrics, same evaluation) is required when the gate is :attr:`~PromotionGate.anchored`."""
    checks = [_heldout_check(candidate, gate.min_heldout_accuracy)]
    checks += _quality_checks(candidate, current, "current", gate.max_recognizability_drop, gate.max_fd_ratio)
    if gate.anchored:
        if base is None:
            raise RegistryError("promotion gate has limits relative to the base model but got no base metrics")
        checks += _quality_checks(candidate, base, "base", gate.max_recognizability_drop_from_base,
                                  gate.max_fd_ratio_to_base)
    if gate.min_win_rate is not None:
        win = _need(candidate, "win_rate", "candidate")
        checks.append((win >= gate.min_win_rate, f"win_rate {win:.3f} >= {gate.min_win_rate}"))
    failed = [text for ok, text in checks if not ok]
    if failed:
        return False, "gate failed: not " + "; not ".join(failed)
    return True, "gate passed: " + "; ".join(text for _, text in checks)
