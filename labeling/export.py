"""A project's annotated tasks in one request: Label Studio's export, for a pull that starts from nothing.

The Data Manager's task list (``GET /api/tasks``, what :func:`labeling.pull.fetch_changed_tasks` pages
through) serialises each task for the UI; a first pull of a large project reads every task that way, 100
per request. The export (``GET /api/projects/<id>/export?exportType=JSON``) returns the annotated tasks
with their annotations in one response, measured 2.5x faster (benchmarks/bench_labeling_scale.py).
Label Studio Enterprise answers it with 404 (it wants its asynchronous exports): then None, and the pull
pages through the task list as before.

    tasks = export_annotated_tasks(ls, project_id)   # None: not offered by this server
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from driftsketch.errors import DriftSketchError
from labeling.client import client_config, client_url, with_retries


@dataclass
class ExportedTask:
    """The fields of a task the pull reads (the task list's SDK objects have the same names)."""

    id: int
    data: dict
    updated_at: str
    annotations: list[dict] = field(default_factory=list)


def export_annotated_tasks(ls: LabelStudio, project_id: int, attempts: int = 5,
                           backoff_s: float = 1.0) -> list[ExportedTask] | None:
    """Every task of ``project_id`` with at least one annotation (cancelled ones included), or None when
    the server does not offer this export."""
    timeout_s = client_config(client_url(ls)).export_timeout_s

    def download() -> bytes:
        return b"".join(ls.projects.exports.download_sync(project_id, export_type="JSON", download_all_tasks=False,
                                                          request_options={"timeout_in_seconds": timeout_s}))

    try:
        body = with_retries(download, client_url(ls), attempts, backoff_s)
    except ApiError as exc:
        if exc.status_code in (404, 405):
            return None
        raise
    return parse_export(body, f"{client_url(ls)} project {project_id} export")


class ExportError(DriftSketchError, ValueError):
    """An export body that is not Label Studio's JSON task list; the message names the task and field."""


def parse_export(body: bytes | str, where: str = "export") -> list[ExportedTask]:
    """The tasks of a JSON export body: a list of objects with an integer ``id``, a string ``updated_at``,
    an object ``data`` and a list of annotation objects. Anything else raises :class:`ExportError`
    naming the task and the field (the pull then writes nothing)."""
    try:
        tasks = json.loads(body)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested too deeply
        raise ExportError(f"{where}: not JSON ({type(exc).__name__})") from None
    if not isinstance(tasks, list):
        raise ExportError(f"{where}: expected a JSON list of tasks, got {type(tasks).__name__}")
    out = []
    for i, t in enumerate(tasks):
        if not isinstance(t, dict):
            raise ExportError(f"{where}: task [{i}] is not a JSON object")
        tid, updated, data, anns = t.get("id"), t.get("updated_at"), t.get("data") or {}, t.get("annotations") or []
        if isinstance(tid, bool) or not isinstance(tid, int):
            raise ExportError(f"{where}: task [{i}]: id {str(tid)[:20]!r} is not an integer")
        if not isinstance(updated, str):
            raise ExportError(f"{where}: task {tid}: updated_at is missing or not a string")
        if not isinstance(data, dict):
            raise ExportError(f"{where}: task {tid}: data is not a JSON object")
        if not isinstance(anns, list) or not all(isinstance(a, dict) for a in anns):
            raise ExportError(f"{where}: task {tid}: annotations must be a list of JSON objects")
        out.append(ExportedTask(tid, data, updated, anns))
    return out
