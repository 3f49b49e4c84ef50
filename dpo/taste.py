"""Taste marks: the moments a lab tells the loop that its annotators' taste changed.

A lab rewrites its instructions, or new people replace the first ones. The preference store keeps every answer
(append-only), but the answers given before the change no longer say what the annotators want now. Measured on a
reversed taste (docs/online_loop.md): a reward fitted on every stored pair remembers the old taste, and the
annotators' veto, pooling old and new answers, went back to the model the old taste liked best.

``taste/marks.jsonl`` in the store (append-only, one JSON line per mark) records such moments; the newest ``at``
is in force. From it on, training pairs, the reward model's pairs, the uncertainty ensemble's pairs and the
human evaluation (with the veto built on it) read only the answers given at or after it; the veto also goes back
past models approved only before it (:func:`dpo.human_eval.veto_target`). A mark set by mistake is withdrawn by a
line of its own (``withdraws``: the mark's ``at``), never by an edit.

    marks = TasteMarks(store)
    marks.add("new instructions: neat lines count more than likeness")   # now, or at=datetime(..., tzinfo=...)
    marks.since()                     # the mark in force (a datetime), or None
    marks.withdraw(at, "the taste had not changed")   # a mark set by mistake
    answered_since(records, since)    # the records answered at or after it

What counts is when an answer was given (its record's ``timestamp``: Label Studio's time of the annotation), not
when it was pulled: a task pushed before the mark and answered after it was answered under the new taste. Nothing
is deleted: the older answers stay in the store, and gold answers still measure every annotator over the whole
store (a careless annotator stays careless whatever the instructions say).
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable

from dpo.records import PreferenceRecord
from dpo.store import PreferenceStore, StoreError, _append_bytes, read_jsonl
from driftsketch.fileio import exclusive_lock

MARKS_FILE = "taste/marks.jsonl"
CLOCK_SLACK = timedelta(minutes=5)  # a mark further ahead of this machine's clock is refused


class TasteMarks:
    """The taste marks of one preference store (``taste/marks.jsonl``)."""

    def __init__(self, store: PreferenceStore | str | Path):
        self.store = store if isinstance(store, PreferenceStore) else PreferenceStore(store)
        self.path = self.store.root / MARKS_FILE

    def entries(self) -> list[dict]:
        """Every well-formed line in file order: marks (``at``) and withdrawals (``withdraws``), times as aware
        datetimes; a malformed line is skipped with a warning naming ``file:line`` (one bad line never hides the
        others)."""
        return read_jsonl(self.path, _parse_entry, "taste mark")

    def withdrawn(self, entries: list[dict] | None = None) -> dict[datetime, str]:
        """The withdrawn marks' times, each with the reason it was withdrawn (of ``entries``, default the file's)."""
        entries = self.entries() if entries is None else entries
        return {e["withdraws"]: e.get("reason", "") for e in entries if "withdraws" in e}

    def marks(self, entries: list[dict] | None = None) -> list[dict]:
        """The marks not withdrawn, in file order (of ``entries``, default the file's, read once: a bad line warns
        once)."""
        entries = self.entries() if entries is None else entries
        gone = self.withdrawn(entries)
        return [e for e in entries if "at" in e and e["at"] not in gone]

    def in_force(self, entries: list[dict] | None = None) -> dict | None:
        """The mark in force (the latest ``at`` not withdrawn; the first line of that time), or None (of ``entries``,
        default the file's)."""
        return max(reversed(self.marks(entries)), key=lambda m: m["at"], default=None)

    def since(self) -> datetime | None:
        """The time of the mark in force, or None when the store has none."""
        mark = self.in_force()
        return None if mark is None else mark["at"]

    def add(self, reason: str, at: datetime | None = None) -> dict:
        """Append a mark at ``at`` (default: now); StoreError for an empty reason or a time in the future.
        The same ``at`` and reason again append nothing (a re-run of the same command); returns the mark."""
        reason = _reason(reason, "a taste mark needs a reason (what changed: new instructions, new annotators)")
        now = _now()
        at = now if at is None else (at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc))
        if at > now + CLOCK_SLACK:
            raise StoreError(f"taste mark at {at.isoformat()}: in the future (now {now.isoformat(timespec='seconds')})")
        entry = {"at": at.isoformat(), "reason": reason, "marked_at": now.isoformat()}
        with self._writing():
            if not any(m.get("at") == at and m.get("reason") == reason for m in self.entries()):
                self._append(entry)
        return {**entry, "at": at}

    def withdraw(self, at: datetime, reason: str) -> dict:
        """Withdraw the mark at ``at`` (set by mistake): it counts for nothing from now on and the newest mark left is
        in force. StoreError for an empty reason or when no mark is at ``at``; a mark already withdrawn appends
        nothing (a re-run of the same command). Returns the withdrawal, with ``in_force``: the mark in force after it
        (or None), from the same read of the file (a bad line warns once)."""
        reason = _reason(reason, "withdrawing a taste mark needs a reason (why it was wrong)")
        at = at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)
        entry = {"withdraws": at.isoformat(), "reason": reason, "marked_at": _now().isoformat()}
        with self._writing():
            entries = self.entries()
            if not any(e.get("at") == at for e in entries):
                known = ", ".join(e["at"].isoformat() for e in entries if "at" in e) or "none"
                raise StoreError(f"no taste mark at {at.isoformat()} in {self.path} (marks: {known})")
            if not any(e.get("withdraws") == at for e in entries):
                self._append(entry)
                entries.append({**entry, "withdraws": at})
        return {**entry, "withdraws": at, "in_force": self.in_force(entries)}

    def _writing(self):
        """One writer at a time: the check that a line is not there yet and its append happen under one lock (two
        commands at once appended the same withdrawal twice)."""
        return exclusive_lock(self.path.with_name(self.path.name + ".lock"))

    def _append(self, entry: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _append_bytes(self.path, (json.dumps(entry, sort_keys=True) + "\n").encode())


def _now() -> datetime:
    return datetime.now(timezone.utc)


def fold_reason(text: str) -> str:
    """A reason as marks store it: whitespace folded to single spaces."""
    return " ".join(text.split())


def _reason(text: str, missing: str) -> str:
    """``text`` with its whitespace folded; StoreError(``missing``) when nothing is left."""
    reason = fold_reason(text)
    if not reason:
        raise StoreError(missing)
    return reason


def _parse_entry(entry: dict) -> dict:
    if "withdraws" in entry:
        return {**entry, "withdraws": parse_time(entry["withdraws"])}
    return {**entry, "at": parse_time(entry["at"])}


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (``Z`` allowed) as an aware datetime; a time without a zone is UTC. ValueError otherwise."""
    if not isinstance(text, str):
        raise TypeError(f"a time must be ISO 8601 text, not {type(text).__name__}")
    at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)


def answered_since(records: Iterable[PreferenceRecord], since: datetime | None) -> list[PreferenceRecord]:
    """The records answered at or after ``since`` (all of them when None)."""
    return list(records) if since is None else [r for r in records if r.timestamp >= since]
