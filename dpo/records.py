"""The typed schema of one preference record (one line of ``sessions/<session>.jsonl``).

A record is one human (or simulated) judgement:

- ``pairwise``: two sketches ``a`` and ``b`` of one class; ``preference`` is ``"a"``, ``"b"`` or ``"tie"``
  (``both_bad`` marks a pair where neither is acceptable; it is kept but not trained on);
- ``absolute``: one sketch ``a`` with a 1-5 ``rating``.

Array paths are relative to the store root (``beziers/<sample_id>.npy``, ``noise/<sample_id>.npy``).
``source`` identifies where the judgement came from (e.g. a Label Studio annotation); its canonical
JSON form, :attr:`PreferenceRecord.source_key`, is what makes an annotation stored at most once.
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Sample ids and session names become file names: keep them to a safe alphabet.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")


def check_safe_name(name: str, what: str) -> str:
    """Return ``name`` if it is a safe file-name stem, else raise ``ValueError`` naming ``what``."""
    if not isinstance(name, str) or not SAFE_NAME.match(name) or ".." in name:
        raise ValueError(f"{what} {name!r} is not a safe name (letters, digits, '_', '-', '.'; "
                         "no '..'; at most 200 characters)")
    return name


def check_relpath(path: str | None) -> str | None:
    """Reject absolute paths, ``..`` parts and backslashes in a store-relative path."""
    if path is None:
        return None
    p = PurePosixPath(path)
    if not path or p.is_absolute() or "\\" in path or any(part == ".." for part in p.parts) \
            or re.match(r"^[A-Za-z]:", path):
        raise ValueError(f"path {path!r} must be relative to the store root and stay inside it")
    return path


def _now() -> datetime:
    return datetime.now(timezone.utc)


def content_id(fields: dict[str, Any]) -> str:
    """A record's default id: a hash of everything it says except its timestamp, so the same annotation
    written again (a re-run with the same inputs and seeds) gets the same id, and with it the same
    held-out split and dataset id. Two records that differ only in time are duplicates anyway (the
    store refuses a repeated ``source``)."""
    canonical = json.dumps({k: v for k, v in fields.items() if k != "timestamp"}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class PreferenceRecord(BaseModel):
    """One annotation. Unknown fields are rejected; ``id`` defaults to :func:`content_id`, ``timestamp``
    to now."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    timestamp: datetime = Field(default_factory=_now)
    comparison_type: Literal["pairwise", "absolute"]
    class_label: int = Field(ge=0)
    class_name: str = Field(min_length=1)
    beziers_a: str
    beziers_b: str | None = None
    noise_a: str | None = None
    noise_b: str | None = None
    preference: Literal["a", "b", "tie"] | None = None
    rating: int | None = Field(default=None, ge=1, le=5)
    both_bad: bool = False
    checkpoint: str | None = None  # id of the model that generated the sketches
    annotator: str = Field(min_length=1)
    source: dict[str, Any]
    lead_time: float | None = Field(default=None, ge=0)  # seconds the annotator spent
    supersedes: str | None = None  # id of the record this (updated) annotation replaces
    left: Literal["a", "b"] | None = None  # which sample was shown on the left
    round_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("id") is None:
            return {**data, "id": content_id(data)}
        return data

    @field_validator("id")
    @classmethod
    def _id_safe(cls, v: str) -> str:
        return check_safe_name(v, "record id")

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return v if v.tzinfo is not None else v.replace(tzinfo=timezone.utc)  # naive = UTC

    @field_validator("beziers_a", "beziers_b", "noise_a", "noise_b")
    @classmethod
    def _relpath(cls, v: str | None) -> str | None:
        return check_relpath(v)

    @field_validator("source")
    @classmethod
    def _source_nonempty(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not v:
            raise ValueError("source must identify where the judgement came from (non-empty)")
        try:
            json.dumps(v, sort_keys=True)  # must be JSON-serialisable
        except (TypeError, RecursionError):
            raise ValueError("source must be plain JSON, at most a few hundred levels deep") from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "PreferenceRecord":
        if self.comparison_type == "pairwise":
            missing = [n for n in ("beziers_b", "preference") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"pairwise record needs {missing}")
            if self.rating is not None:
                raise ValueError("pairwise record must not carry a rating")
        else:
            extra = [n for n in ("beziers_b", "noise_b", "preference", "left")
                     if getattr(self, n) is not None]
            if extra or self.both_bad:
                raise ValueError(f"absolute record must not carry {extra or ['both_bad']}")
            if self.rating is None:
                raise ValueError("absolute record needs a rating (1-5)")
        if self.supersedes is not None and self.supersedes == self.id:
            raise ValueError("a record cannot supersede itself")
        return self

    @property
    def source_key(self) -> str:
        """Stable string form of ``source`` (canonical JSON) used to refuse duplicates."""
        return json.dumps(self.source, sort_keys=True, separators=(",", ":"), default=str)

    def to_json_line(self) -> str:
        """The record as one JSON line (with trailing newline)."""
        return self.model_dump_json() + "\n"


def latest_of_chains(records: list[PreferenceRecord]) -> tuple[list[PreferenceRecord], int]:
    """Keep the newest record of every ``supersedes`` chain; return (kept, number dropped).

    Records are grouped by the root of their chain (following ``supersedes`` to a record that
    supersedes nothing, or to an id that is not stored), so an update linking to the original and an
    update linking to the previous update resolve the same way. Newest = latest timestamp, then file order.
    """
    by_id = {r.id: r for r in records}

    def root(rec: PreferenceRecord) -> str:
        seen = {rec.id}
        while rec.supersedes is not None and rec.supersedes in by_id and rec.supersedes not in seen:
            rec = by_id[rec.supersedes]
            seen.add(rec.id)
        return rec.supersedes if rec.supersedes is not None else rec.id

    newest: dict[str, tuple[int, PreferenceRecord]] = {}
    for order, rec in enumerate(records):
        key = root(rec)
        if key not in newest or (rec.timestamp, order) >= (newest[key][1].timestamp, newest[key][0]):
            newest[key] = (order, rec)
    kept = [rec for _, rec in sorted(newest.values(), key=lambda x: x[0])]
    return kept, len(records) - len(kept)
