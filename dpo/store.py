"""The preference store: append-only JSONL sessions plus the sketch arrays they reference.

    data/preferences/
      sessions/<session>.jsonl   one PreferenceRecord per line, append-only
      beziers/<sample_id>.npy    float32 (32, 4, 2)
      noise/<sample_id>.npy      float32 (32, 8), optional: the x0 that generated the sketch
      quarantine.jsonl           append-only: annotations a pull held back (arrays missing, ...), and why

Crash safety: arrays are written atomically (tmp file + fsync + ``os.replace``) before any record
refers to them; :meth:`PreferenceStore.append` writes all its records in one ``write`` on an
``O_APPEND`` descriptor and fsyncs. A crash can therefore only leave a torn *last* line, which readers
ignore with a warning; a malformed line elsewhere is reported with ``file:line`` and skipped.

    store = PreferenceStore("data/preferences")
    rel_a, noise_a = store.save_sample("r1-0001a", beziers_a, noise_a)
    store.append([PreferenceRecord(...)], session="round-1")
    for rec in store.records(): ...
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal, TypeVar

import numpy as np
from pydantic import ValidationError

from dpo.records import PreferenceRecord, check_safe_name
from driftsketch.errors import DriftSketchError
from driftsketch.fileio import atomic_write_bytes, exclusive_lock, flush_to_disk, fsync_dir
from driftsketch.sketch import FLAT_SHAPE, SketchError, validate_sketch

T = TypeVar("T")

DEFAULT_ROOT = Path("data/preferences")
QUARANTINE_FILE = "quarantine.jsonl"  # annotations a pull could not store, and why (see labeling/pull.py)


class StoreError(DriftSketchError, ValueError):
    """A record or array in the store that cannot be used; the message names the record or file."""


class StoreWarning(UserWarning):
    """A skipped line (torn or malformed) while reading a session file."""


@dataclass
class ReadResult:
    """All valid records in file order, plus one message per skipped line."""

    records: list[PreferenceRecord] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _validate_noise(arr: np.ndarray, where: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.size == FLAT_SHAPE[0] * FLAT_SHAPE[1] and arr.shape in (FLAT_SHAPE, (32, 4, 2)):
        arr = arr.reshape(FLAT_SHAPE)
    if arr.shape != FLAT_SHAPE:
        raise StoreError(f"{where}: expected noise shape {FLAT_SHAPE}, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)):
        raise StoreError(f"{where}: noise must be finite floats")
    return arr.astype(np.float32, copy=False)


class PreferenceStore:
    """Read and append preference records under ``root`` (see module docstring for the layout)."""

    def __init__(self, root: str | Path = DEFAULT_ROOT):
        self.root = Path(root)
        self._deferred_sync = False

    @contextlib.contextmanager
    def batch_writes(self) -> Iterator[None]:
        """Save many samples with one sync at the end instead of a fsync per file: ~0.5 ms instead of
        ~30 ms a sample. Everything written inside is durable when the block exits (also on an error),
        so records appended after it never point at lost arrays; append none inside the block."""
        self._deferred_sync = True
        try:
            yield
        finally:
            self._deferred_sync = False
            flush_to_disk()

    @property
    def sessions_dir(self) -> Path:
        return self.root / "sessions"

    # ---- arrays -------------------------------------------------------------------------------
    def save_sample(self, sample_id: str, beziers: np.ndarray,
                    noise: np.ndarray | None = None) -> tuple[str, str | None]:
        """Write ``beziers/<id>.npy`` (and ``noise/<id>.npy``) atomically; return the relative paths.

        Saving the same id again with identical arrays is a no-op (safe re-runs); different content
        under an existing id raises :class:`StoreError` (a record may already refer to it).
        """
        check_safe_name(sample_id, "sample id")
        try:
            bez = validate_sketch(beziers, where=f"sample {sample_id}")
        except SketchError as exc:
            raise StoreError(str(exc)) from None
        rel_b = f"beziers/{sample_id}.npy"
        self._write_array(rel_b, bez)
        rel_n = None
        if noise is not None:
            rel_n = f"noise/{sample_id}.npy"
            self._write_array(rel_n, _validate_noise(noise, f"sample {sample_id}"))
        return rel_b, rel_n

    def _write_array(self, rel: str, arr: np.ndarray) -> None:
        path = self.root / rel
        if path.exists():
            old = np.load(path, allow_pickle=False)
            if old.shape == arr.shape and np.array_equal(old, arr):
                return
            raise StoreError(f"{path}: already exists with different content; use a new sample id")
        atomic_write_bytes(path, _npy_bytes(arr), durable=not self._deferred_sync)

    def _resolve(self, rel: str | None, record_id: str, field_name: str) -> Path:
        if rel is None:
            raise StoreError(f"record {record_id}: has no {field_name}")
        root = self.root.resolve()
        path = (root / rel).resolve()
        if Path(rel).is_absolute() or not path.is_relative_to(root):
            raise StoreError(f"record {record_id}: {field_name} path {rel!r} leaves the store root {root}")
        if not path.is_file():
            raise StoreError(f"record {record_id}: {field_name} file {rel!r} is missing under {root}")
        return path

    def _load(self, rel: str | None, record_id: str, field_name: str) -> np.ndarray:
        path = self._resolve(rel, record_id, field_name)
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise StoreError(f"record {record_id}: {field_name} file {rel!r} is unreadable: {exc}") from None

    def load_beziers(self, record: PreferenceRecord, which: Literal["a", "b"] = "a") -> np.ndarray:
        """The float32 (32, 4, 2) sketch ``which`` of ``record``; :class:`StoreError` naming the record."""
        name = f"beziers_{which}"
        arr = self._load(getattr(record, name), record.id, name)
        try:
            return validate_sketch(arr, where=f"record {record.id}: {name}")
        except SketchError as exc:
            raise StoreError(str(exc)) from None

    def load_noise(self, record: PreferenceRecord, which: Literal["a", "b"] = "a") -> np.ndarray | None:
        """The float32 (32, 8) generation noise of sketch ``which``, or None when not stored."""
        name = f"noise_{which}"
        rel = getattr(record, name)
        if rel is None:
            return None
        return _validate_noise(self._load(rel, record.id, name), f"record {record.id}: {name}")

    def check_record(self, record: PreferenceRecord) -> None:
        """Raise :class:`StoreError` unless every array ``record`` refers to is present and valid."""
        sides = ("a", "b") if record.comparison_type == "pairwise" else ("a",)
        for side in sides:
            self.load_beziers(record, side)
            self.load_noise(record, side)

    # ---- records ------------------------------------------------------------------------------
    def session_files(self) -> list[Path]:
        """All session files, sorted by name."""
        if not self.sessions_dir.is_dir():
            return []
        return sorted(self.sessions_dir.glob("*.jsonl"))

    def scan(self) -> ReadResult:
        """Read every session; skipped lines go to ``issues`` (no warnings, no exceptions)."""
        out = ReadResult()
        for path in self.session_files():
            recs, issues = _read_session(path)
            out.records.extend(recs)
            out.issues.extend(issues)
        return out

    def records(self) -> list[PreferenceRecord]:
        """All valid records in session-name then line order; skipped lines are warned about."""
        result = self.scan()
        for msg in result.issues:
            warnings.warn(msg, StoreWarning, stacklevel=2)
        return result.records

    def source_keys(self) -> set[str]:
        """Source keys of every stored record."""
        return {r.source_key for r in self.scan().records}

    # ---- quarantine ---------------------------------------------------------------------------
    @property
    def quarantine_path(self) -> Path:
        return self.root / QUARANTINE_FILE

    def add_quarantine(self, entries: list[dict]) -> None:
        """Append ``entries`` (JSON objects: what was held back and why) to the quarantine file in one
        write + fsync; append-only, like the sessions."""
        if not entries:
            return
        self.sessions_dir.mkdir(parents=True, exist_ok=True)
        payload = "".join(json.dumps(e, sort_keys=True, default=str) + "\n" for e in entries).encode()
        with self._lock():
            _append_bytes(self.quarantine_path, payload)

    def quarantine_entries(self) -> list[dict]:
        """Every line of the quarantine file in order (torn or malformed lines skipped)."""
        if not self.quarantine_path.is_file():
            return []
        out = []
        for raw in self.quarantine_path.read_bytes().split(b"\n"):
            try:
                entry = json.loads(raw) if raw.strip() else None
            except ValueError:
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out

    def append(self, records: list[PreferenceRecord], session: str) -> None:
        """Append ``records`` to ``sessions/<session>.jsonl`` in one write + fsync.

        Refuses (StoreError, nothing written) records whose ``source_key`` or ``id`` is already stored or
        repeated in the batch, and records whose arrays are missing or invalid.
        """
        check_safe_name(session, "session name")
        records = list(records)
        if not records:
            return
        for rec in records:
            if not isinstance(rec, PreferenceRecord):
                raise TypeError(f"expected PreferenceRecord, got {type(rec).__name__}")
            self.check_record(rec)
        self.sessions_dir.mkdir(parents=True, exist_ok=True)
        path = self.sessions_dir / f"{session}.jsonl"
        with self._lock():
            self._refuse_duplicates(records)
            payload = "".join(r.to_json_line() for r in records).encode()
            _append_bytes(path, payload)

    def _refuse_duplicates(self, records: list[PreferenceRecord]) -> None:
        existing = self.scan().records
        keys = {r.source_key for r in existing}
        ids = {r.id for r in existing}
        for rec in records:
            if rec.source_key in keys:
                raise StoreError(f"record {rec.id}: source {rec.source_key} is already stored")
            if rec.id in ids:
                raise StoreError(f"record {rec.id}: a record with this id is already stored")
            keys.add(rec.source_key)
            ids.add(rec.id)

    def _lock(self):
        """Advisory lock so two writers (a pull and a bot) cannot interleave their dedup checks."""
        return exclusive_lock(self.sessions_dir / ".lock")


def _append_bytes(path: Path, payload: bytes) -> None:
    """One ``write`` on an O_APPEND descriptor, then fsync; first seal a torn last line if any."""
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":  # a crash left a torn line: end it so ours start cleanly
                    payload = b"\n" + payload
        try:
            written = os.write(fd, payload)
            if written != len(payload):
                raise OSError(f"{path}: short write ({written} of {len(payload)} bytes; disk full?)")
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)  # a full disk must not leave half a line behind: back to what was there
            raise
    finally:
        os.close(fd)
    if new:
        fsync_dir(path.parent)


def read_jsonl(path: Path, parse: Callable[[dict], T], kind: str) -> list[T]:
    """``parse(entry)`` of every well-formed line of an append-only JSON-lines file, in file order (none when the
    file does not exist); a line that is not JSON, or that ``parse`` refuses (ValueError, KeyError, TypeError), is
    skipped with a :class:`StoreWarning` naming ``file:line`` (one bad line never hides the others)."""
    out: list[T] = []
    if not path.is_file():
        return out
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(parse(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            warnings.warn(f"{path}:{i}: malformed {kind} skipped: {exc}", StoreWarning, stacklevel=3)
    return out


def _read_session(path: Path) -> tuple[list[PreferenceRecord], list[str]]:
    data = path.read_bytes()
    lines = data.split(b"\n")
    torn_tail = not data.endswith(b"\n")  # the last element is an unterminated line (or b"")
    records: list[PreferenceRecord] = []
    issues: list[str] = []
    for i, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        is_last = i == len(lines)
        try:
            records.append(PreferenceRecord.model_validate_json(raw))
        except (ValidationError, ValueError, RecursionError) as exc:
            if is_last and torn_tail:
                issues.append(f"{path}:{i}: torn last line ignored (incomplete write)")
            else:
                issues.append(f"{path}:{i}: malformed record{_id_hint(raw)} skipped: {_short(exc)}")
    return records, issues


def _id_hint(raw: bytes) -> str:
    try:
        rid = json.loads(raw).get("id")
    except (ValueError, AttributeError, RecursionError):  # not JSON, not an object, nested too deeply
        return ""
    return f" {rid!r}" if rid else ""


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        errs = exc.errors()
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in errs[:3])
    return str(exc).splitlines()[0]
