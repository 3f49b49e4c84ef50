"""Pull completed Label Studio annotations into the preference store, exactly once.

One preference record per annotation (pairwise: ``preference`` a/b/tie + ``both_bad``; rating: 1-5),
with the annotator's e-mail, the checkpoint, ``lead_time`` and ``source`` = {system, url, project,
task, annotation, updated_at}.

Exactly once, in this order: (1) fetch the tasks changed since the saved cursor (minus a safety
margin) from the server; (2) drop annotations already stored, recognised by (project, annotation id,
updated_at), which does not depend on the URL, so a server that moved to another port is still the same;
(3) append all new records in one write + fsync; (4) save the cursor atomically. A pull killed before (3)
wrote nothing and its re-run fetches the same annotations; killed between (3) and (4) it re-fetches them
and (2) drops them. The cursor only makes fetches small; the stored keys make them exact.

Skipped / cancelled annotations are not preferences. An annotation edited after it was pulled is a new
record whose ``supersedes`` names the record of its previous version (records already trained on are
never changed). Several annotators on one task give several records (see :mod:`labeling.agreement`).
An annotator whose account was deleted (Label Studio then sets ``completed_by`` to null) keeps the
e-mail of the annotation's stored earlier version, or becomes ``deleted-user:p<project>-a<annotation>``:
never lumped together with other vanished accounts, never a reason to drop the answer.

No poison pills: an annotation that cannot become a stored record (its task's arrays are missing, the
task data lacks our fields because another tool made it, the record schema refuses a field, ...) never
blocks the others. It goes to the store's quarantine file (``quarantine.jsonl``, append-only: project,
task, annotation, updated_at, reason), the good ones are stored and the cursor moves on. Every later pull
fetches the quarantined tasks again by id and stores them once the cause is fixed (exactly once, by the
same keys); an annotation that was deleted or skipped meanwhile is marked dropped.
``driftsketch-labelstudio quarantine`` lists what is held back.

    report = pull_annotations(ls, {"pairwise": 3, "rating": 4}, PreferenceStore("data/preferences"),
                              cursor_path="data/labelstudio/pull_cursor.json")
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from pydantic import ValidationError

from dpo.records import PreferenceRecord
from dpo.store import PreferenceStore
from driftsketch.errors import DriftSketchError
from driftsketch.fileio import atomic_write_text, clean_stale_temps, exclusive_lock
from labeling.agreement import agreement_report
from labeling.client import client_url, with_retries
from labeling.export import ExportedTask, export_annotated_tasks
from labeling.projects import BOTH_BAD, control_names, project_kind

CURSOR_MARGIN = timedelta(minutes=2)  # re-read this much before the cursor: late commits are not lost
TASK_FIELDS = ("beziers_a", "class_label", "class_name", "checkpoint")


class ForeignTask(DriftSketchError, ValueError):
    """A task without the fields a driftsketch push writes (made by another tool in the same project)."""


@dataclass
class PullReport:
    new_records: int = 0
    fetched_tasks: int = 0  # tasks read from the server (changed since the cursor, minus the margin)
    superseding: int = 0  # new records that replace an earlier version of the same annotation
    already_stored: int = 0
    skipped: int = 0  # cancelled / skipped / empty annotations
    unusable: list[str] = field(default_factory=list)  # annotations we cannot turn into records, and why
    quarantined: int = 0  # annotations newly held back in the quarantine this pull
    retried: int = 0  # quarantined annotations fetched again
    released: int = 0  # quarantined annotations stored this pull (their cause was fixed)
    quarantine_open: int = 0  # annotations still held back after this pull
    record_ids: list[str] = field(default_factory=list)
    agreement: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class AnnotationError(DriftSketchError, ValueError):
    """An annotation or task from Label Studio that cannot become a preference record; names the field."""


def _parse_time(value) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str):
        raise AnnotationError(f"updated_at {str(value)[:40]!r} is not an ISO time")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):
        raise AnnotationError(f"updated_at {value[:40]!r} is not an ISO time") from None


def _as_int(value, what: str) -> int:
    """``value`` as an id or label: an int (not a bool) or a string of digits; else AnnotationError."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise AnnotationError(f"{what} {str(value)[:40]!r} is not a whole number")
    try:
        return int(value)
    except ValueError:
        raise AnnotationError(f"{what} {value[:40]!r} is not a whole number") from None


def _iso(value) -> str:
    return _parse_time(value).astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def load_cursor(path: str | Path) -> dict:
    """The saved cursor (``{}`` if none); removes the temporary files a killed pull left beside it. A cursor
    that is not a JSON object (damaged by hand or by a disk fault) is ignored with a warning: the cursor only
    makes fetches small, the stored keys keep a full fetch exact, so nothing is lost or stuck."""
    path = Path(path)
    clean_stale_temps(path.parent)
    if not path.is_file():
        return {}
    try:
        cursor = json.loads(path.read_bytes())
    except (ValueError, RecursionError):
        cursor = None
    projects = cursor.get("projects", {}) if isinstance(cursor, dict) else None
    if not isinstance(projects, dict) or not all(isinstance(v, str) for v in projects.values()):
        warnings.warn(f"{path}: unreadable pull cursor ignored; fetching every annotated task again "
                      "(already stored annotations are recognised and not stored twice)", stacklevel=2)
        return {}
    return cursor


def save_cursor(path: str | Path, cursor: dict) -> None:
    """Atomic write (tmp + fsync + replace): a crash leaves the old or the new cursor, never half."""
    atomic_write_text(path, json.dumps(cursor, indent=1, sort_keys=True))


def fetch_changed_tasks(ls: LabelStudio, project_id: int, since: str | None, page_size: int = 100,
                        attempts: int = 5, backoff_s: float = 1.0) -> list:
    """All tasks of ``project_id`` whose ``updated_at`` is after ``since`` minus the margin (all annotated
    ones, from the export when the server has it, if None), with their annotations. Any failure (after
    retries) raises before anything is written."""
    query = None
    if not since:
        exported = export_annotated_tasks(ls, project_id, attempts, backoff_s)
        if exported is not None:
            return exported
    else:
        after = _iso(_parse_time(since) - CURSOR_MARGIN)
        query = json.dumps({"filters": {"conjunction": "and", "items": [
            {"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime", "value": after}]}})
    return with_retries(lambda: list(ls.tasks.list(project=project_id, fields="all", query=query,
                                                   page_size=page_size)),
                        client_url(ls), attempts, backoff_s)


def annotation_key(project: int, annotation: int, updated_at) -> str:
    """Identity of one version of one annotation (URL-independent)."""
    return f"{_as_int(project, 'project')}:{_as_int(annotation, 'annotation id')}:{_iso(updated_at)}"


def _stored_versions(stored: list[PreferenceRecord]
                     ) -> tuple[set[str], dict[tuple[int, int], tuple[str, PreferenceRecord, int]]]:
    """Keys of stored Label Studio annotations, and per (project, annotation) the latest stored record
    as (updated_at, record, number of versions stored)."""
    keys, latest = set(), {}
    for rec in stored:
        s = rec.source
        if s.get("system") != "label-studio" or "annotation" not in s:
            continue
        keys.add(annotation_key(s["project"], s["annotation"], s["updated_at"]))
        k = (int(s["project"]), int(s["annotation"]))
        when, (last_when, last, count) = _iso(s["updated_at"]), latest.get(k, ("", None, 0))
        latest[k] = (when, rec, count + 1) if last is None or when > last_when else (last_when, last, count + 1)
    return keys, latest


def _value(item, name: str | None) -> dict | None:
    """The ``value`` of the result item from control ``name``; AnnotationError when it is not an object."""
    if not isinstance(item, dict):
        raise AnnotationError("result item is not a JSON object")
    if not name or item.get("from_name") != name:
        return None
    value = item.get("value")
    if not isinstance(value, dict):
        raise AnnotationError(f"result item of {name!r} has no 'value' object")
    return value


def _choices(result: list[dict], name: str | None) -> list[str]:
    for item in result:
        value = _value(item, name)
        if value is not None:
            choices = value.get("choices", [])
            if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
                raise AnnotationError(f"result of {name!r}: choices must be a list of strings")
            return list(choices)
    return []


def _judgement(kind: str, result: list[dict], names: dict, data: dict) -> dict | None:
    """Record fields from an annotation result, or None when it holds no usable judgement;
    :class:`AnnotationError` naming the field for a result of the wrong shape."""
    if kind == "rating":
        for item in result:
            value = _value(item, names["rating"])
            if value is not None:
                rating = value.get("rating")
                if isinstance(rating, float) and rating.is_integer():
                    rating = int(rating)
                if not isinstance(rating, int) or isinstance(rating, bool):
                    raise AnnotationError(f"result of {names['rating']!r}: rating {str(rating)[:20]!r} is not a "
                                          "whole number")
                return {"rating": rating}
        return None
    choice = _choices(result, names["preference"])
    if not choice or choice[0] not in ("A", "B", "tie"):
        return None
    left = data.get("left")
    if left not in ("a", "b"):
        raise AnnotationError(f"task data 'left' is {str(left)[:20]!r}, expected 'a' or 'b'")
    right = "b" if left == "a" else "a"
    pref = {"A": left, "B": right, "tie": "tie"}[choice[0]]
    return {"preference": pref, "left": left, "both_bad": BOTH_BAD in _choices(result, names.get("flags"))}


def annotator_name(ann: dict, project_id: int, users: dict[int, str], previous: PreferenceRecord | None) -> str:
    """Who made ``ann``: the user's e-mail; for a deleted account (``completed_by`` null) the e-mail of the
    annotation's stored earlier version, else one name per annotation; an unknown id: ``user-<id>``."""
    uid = ann.get("completed_by")
    if uid is None:
        return previous.annotator if previous is not None else \
            f"deleted-user:p{_as_int(project_id, 'project')}-a{_as_int(ann.get('id'), 'annotation id')}"
    if isinstance(uid, dict):  # some exports expand the user
        uid = uid.get("id")
    uid = _as_int(uid, "completed_by")
    return users.get(uid, f"user-{uid}")


def make_record(kind: str, project_id: int, task, ann: dict, names: dict, users: dict[int, str],
                url: str, supersedes: str | None, annotator: str | None = None,
                version: int = 1) -> PreferenceRecord | None:
    """The preference record of the ``version``-th stored version of one annotation, or None when the
    annotation is not a judgement. Its id is ``ls-p<project>-a<annotation>-v<version>``: no clock time in
    it, so the same answers pulled again (a demo or a study re-run against a fresh server) get the same
    ids, and with them the same held-out split and round ids. Anything of the wrong shape in the
    annotation or its task raises :class:`AnnotationError` naming the project, task, annotation and field
    (never a KeyError or a pydantic error)."""
    where = f"project {project_id} task {str(getattr(task, 'id', '?'))[:20]}"
    if not isinstance(ann, dict):
        raise AnnotationError(f"{where}: annotation is not a JSON object")
    where += f" annotation {str(ann.get('id'))[:20]}"
    try:
        return _make_record(kind, project_id, task, ann, names, users, url, supersedes, annotator, version)
    except AnnotationError as exc:
        raise AnnotationError(f"{where}: {exc}") from None
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in exc.errors()[:3])
        raise AnnotationError(f"{where}: the record schema refuses it: {fields}") from None


def _make_record(kind: str, project_id: int, task, ann: dict, names: dict, users: dict[int, str],
                 url: str, supersedes: str | None, annotator: str | None, version: int) -> PreferenceRecord | None:
    data, result = task.data, ann.get("result") or []
    if not isinstance(data, dict):
        raise AnnotationError("task data is not a JSON object")
    if not isinstance(result, list):
        raise AnnotationError("result is not a list")
    fields = _judgement(kind, result, names, data)
    if fields is None:
        return None
    missing = [f for f in ("class_label", "class_name", "beziers_a") if f not in data]
    if missing:
        raise AnnotationError(f"task data lacks {missing}")
    ann_id, updated = _as_int(ann.get("id"), "annotation id"), ann.get("updated_at")
    source = {"system": "label-studio", "url": url, "project": _as_int(project_id, "project"),
              "task": _as_int(task.id, "task id"), "annotation": ann_id, "updated_at": _iso(updated)}
    rid = f"ls-p{_as_int(project_id, 'project')}-a{ann_id}-v{_as_int(version, 'version')}"
    lead_time = ann.get("lead_time")
    if lead_time is not None and (isinstance(lead_time, bool) or not isinstance(lead_time, (int, float))
                                  or not math.isfinite(lead_time) or lead_time < 0):
        lead_time = None  # a timer Label Studio did not fill in properly is not a reason to lose the answer
    return PreferenceRecord(
        id=rid, timestamp=_parse_time(updated),
        comparison_type="pairwise" if kind == "pairwise" else "absolute",
        class_label=_as_int(data["class_label"], "class_label"), class_name=str(data["class_name"]),
        beziers_a=data["beziers_a"], beziers_b=data.get("beziers_b") if kind == "pairwise" else None,
        noise_a=data.get("noise_a"), noise_b=data.get("noise_b") if kind == "pairwise" else None,
        checkpoint=data.get("checkpoint"), round_id=data.get("round_id"),
        annotator=annotator or annotator_name(ann, project_id, users, None),
        source=source, lead_time=lead_time, supersedes=supersedes, **fields)


def _user_emails(ls: LabelStudio, url: str, attempts: int, backoff_s: float) -> dict[int, str]:
    return with_retries(lambda: {u.id: u.email for u in ls.users.list()}, url, attempts, backoff_s)


def pull_annotations(ls: LabelStudio, projects: dict[str, int] | list[int], store: PreferenceStore, *,
                     cursor_path: str | Path, session: str = "labelstudio", page_size: int = 100,
                     retries: int = 4, backoff_s: float = 1.0,
                     on_stage: Callable[[str], None] | None = None) -> PullReport:
    """Append a record for every new completed annotation of ``projects``; see the module docstring.

    ``on_stage`` is called with "fetched" (everything read, nothing written) and "written" (records
    appended, cursor not yet saved): the two points where a crash must lose and duplicate nothing.
    Pulls into one store take turns (a lock file in the store, released by the kernel if a pull dies):
    the second reads the cursor and the records the first saved, instead of failing on its duplicates.
    """
    with exclusive_lock(store.root / ".pull.lock"):
        return _pull(ls, projects, store, cursor_path, session, page_size, retries, backoff_s, on_stage)


def _pull(ls: LabelStudio, projects: dict[str, int] | list[int], store: PreferenceStore, cursor_path: str | Path,
          session: str, page_size: int, retries: int, backoff_s: float,
          on_stage: Callable[[str], None] | None) -> PullReport:
    url, attempts = client_url(ls), retries + 1
    project_ids = list(projects.values()) if isinstance(projects, dict) else list(projects)
    saved = load_cursor(cursor_path)
    # A cursor from another URL (another server, or the local one on a new port) is not trusted: one full
    # fetch, made exact by the stored keys.
    cursor = saved.get("projects", {}) if saved.get("url") == url else {}
    fetched, report = {}, PullReport()
    for pid in project_ids:  # (1) read everything first: a server failure leaves nothing partial
        config = with_retries(lambda: ls.projects.get(pid).label_config, url, attempts, backoff_s)
        tasks = fetch_changed_tasks(ls, pid, cursor.get(str(pid)), page_size, attempts, backoff_s)
        fetched[pid] = (project_kind(config), control_names(config), tasks)
        report.fetched_tasks += len(tasks)
    users = _user_emails(ls, url, attempts, backoff_s)
    if on_stage:
        on_stage("fetched")
    records, new_cursor = [], dict(cursor)  # {project id: newest task updated_at}
    stored = store.records()  # read once: at 50k records a read costs seconds
    keys, latest = _stored_versions(stored)  # (2)
    held = open_quarantine(store.quarantine_entries(), latest)
    held = {k: e for k, e in held.items() if k[0] in fetched}
    retry = _refetch_quarantined(ls, fetched, held, url, attempts, backoff_s, report)  # also read before writing
    seen_anns: set[tuple[int, int]] = set()  # a task both changed and re-fetched is read once
    quarantine: list[dict] = []
    for pid, (kind, names, tasks) in fetched.items():
        for task, again in [(t, False) for t in tasks] + [(t, True) for t in retry.get(pid, [])]:
            if not again:  # the cursor follows the changed-since fetch only
                new_cursor[str(pid)] = max(new_cursor.get(str(pid), ""), _iso(task.updated_at))
            for ann in task.annotations or []:
                aid = _safe_int(ann.get("id") if isinstance(ann, dict) else None)
                if (pid, aid) in seen_anns:
                    continue
                seen_anns.add((pid, aid))
                try:
                    rec = _new_record(kind, pid, task, ann, names, users, url, keys, latest, report)
                    if rec is not None:
                        store.check_record(rec)  # arrays present and valid, else quarantined
                except (KeyError, TypeError, ValueError, DriftSketchError) as exc:
                    quarantine.append(_quarantine_entry(url, pid, task, ann, exc))
                    continue
                if rec is not None:
                    records.append(rec)
    now_bad = {_akey(e) for e in quarantine}
    released = {(int(r.source["project"]), int(r.source["annotation"])) for r in records} & set(held)
    dropped = [_dropped_entry(e) for k, e in held.items() if k not in now_bad and k not in released]
    fresh = [e for e in quarantine if _qkey(e) not in {_qkey(h) for h in held.values()}]
    store.add_quarantine(fresh + dropped)  # before the records: a crash re-fetches, nothing is lost
    store.append(records, session=session)  # (3) one write + fsync
    if on_stage:
        on_stage("written")
    save_cursor(cursor_path, {"url": url, "projects": new_cursor})  # (4)
    report.new_records, report.record_ids = len(records), [r.id for r in records]
    report.superseding = sum(r.supersedes is not None for r in records)
    report.quarantined = len(fresh)
    report.released, report.quarantine_open = len(released), len(now_bad)
    report.unusable = [f"{url}: project {e['project']} task {e['task']} annotation {e['annotation']}: {e['reason']}"
                       for e in quarantine]
    report.agreement = agreement_report(stored + records)
    return report


def _qkey(e: dict) -> tuple:
    return int(e["project"]), int(e["annotation"]), str(e.get("updated_at")), str(e.get("reason"))


def _akey(e: dict) -> tuple[int, int]:
    return int(e["project"]), int(e["annotation"])


def _quarantine_entry(url: str, pid: int, task, ann: dict, exc: Exception) -> dict:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, KeyError):
        reason = f"task data or annotation lacks {exc}"
    try:
        updated = _iso(ann["updated_at"])
    except (KeyError, TypeError, ValueError, DriftSketchError):
        updated = None
    return {"event": "quarantined", "system": "label-studio", "url": url, "project": int(pid),
            "task": _safe_int(getattr(task, "id", None)), "annotation": _safe_int(ann.get("id")),
            "updated_at": updated,
            "reason": f"{type(exc).__name__}: {reason}", "at": datetime.now(timezone.utc).isoformat()}


def _safe_int(value) -> int:
    """An id as int; -1 for a missing or malformed one (still quarantined, never a crash)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _dropped_entry(e: dict) -> dict:
    return {**e, "event": "dropped", "reason": "the annotation is gone, skipped or empty in Label Studio",
            "at": datetime.now(timezone.utc).isoformat()}


def _newest_entries(entries: list[dict]) -> dict[tuple[int, int], dict]:
    """The newest quarantine entry of each (project, annotation); entries without a usable key are ignored."""
    newest: dict[tuple[int, int], dict] = {}
    for e in entries:
        try:
            newest[_akey(e)] = e
        except (KeyError, TypeError, ValueError):
            continue
    return newest


def open_quarantine(entries: list[dict], latest: dict[tuple[int, int], tuple[str, PreferenceRecord, int]]
                    ) -> dict[tuple[int, int], dict]:
    """The quarantined annotations still held back, by (project, annotation): the newest entry of each,
    unless it was dropped or a version at least as new is stored."""
    newest = _newest_entries(entries)
    out = {}
    for k, e in newest.items():
        if e.get("event") != "quarantined":
            continue
        stored = latest.get(k)
        if stored is not None and stored[0] >= str(e.get("updated_at")):
            continue
        out[k] = e
    return out


def _refetch_quarantined(ls: LabelStudio, fetched: dict, held: dict, url: str, attempts: int, backoff_s: float,
                         report: PullReport) -> dict[int, list]:
    """The tasks of held-back annotations that the changed-since fetch did not bring, fetched by id; a task
    deleted meanwhile is left out (its annotations are then dropped)."""
    have = {(pid, int(t.id)) for pid, (_, _, tasks) in fetched.items() for t in tasks}
    out: dict[int, list] = {}
    for pid, tid in sorted({(k[0], int(e["task"])) for k, e in held.items()} - have):
        try:
            task = with_retries(lambda: ls.tasks.get(tid), url, attempts, backoff_s)
        except ApiError as exc:
            if exc.status_code == 404:
                continue
            raise
        out.setdefault(pid, []).append(_as_task(task))
    report.retried = len(held)
    return out


def _as_task(task):
    """A task from ``tasks.get`` with plain-dict annotations, like the task list's."""
    anns = [a if isinstance(a, dict) else a.dict() if hasattr(a, "dict") else dict(a) for a in task.annotations or []]
    return ExportedTask(int(task.id), dict(task.data or {}), str(task.updated_at), anns)


def _new_record(kind, pid, task, ann, names, users, url, keys, latest, report) -> PreferenceRecord | None:
    if ann.get("was_cancelled") or not ann.get("result"):
        report.skipped += 1
        return None
    key = annotation_key(pid, ann["id"], ann["updated_at"])
    if key in keys:
        report.already_stored += 1
        return None
    missing = [f for f in TASK_FIELDS if f not in task.data]
    if missing:
        raise ForeignTask(f"task data lacks {missing} (not pushed by driftsketch)")
    _, previous, versions = latest.get((int(pid), int(ann["id"])), ("", None, 0))
    rec = make_record(kind, pid, task, ann, names, users, url, previous.id if previous else None,
                      annotator_name(ann, pid, users, previous), version=versions + 1)
    if rec is None:
        report.skipped += 1
        return None
    keys.add(key)
    return rec


def quarantine_rows(store: PreferenceStore, include_closed: bool = False) -> list[dict]:
    """One row per quarantined annotation (its newest entry): status ``held`` (still held back),
    ``released`` (stored since) or ``dropped`` (gone from Label Studio); only held ones by default."""
    _, latest = _stored_versions(store.scan().records)
    entries = store.quarantine_entries()
    held = open_quarantine(entries, latest)
    newest = _newest_entries(entries)
    rows = []
    for k, e in newest.items():
        status = "held" if k in held else ("dropped" if e.get("event") == "dropped" else "released")
        if status == "held" or include_closed:
            rows.append({"status": status, **{f: e.get(f) for f in ("project", "task", "annotation", "updated_at",
                                                                     "reason", "url", "at")}})
    return rows

