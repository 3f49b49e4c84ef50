"""New Label Studio annotations as Prefect events: the receiver behind the ``round`` deployment's trigger.

    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python -m tasks.events                 # registers the webhook on the pairwise project, then serves

Label Studio posts every new annotation of the pairwise project to this receiver (labeling/webhook.py),
which answers at once and emits one Prefect event per annotation::

    event     driftsketch.annotation.created
    resource  driftsketch.labelstudio.project.<project id>   (+ labelstudio.url, labelstudio.annotation)
    id        uuid5 of (Label Studio URL, annotation id): a repeated delivery is the same event, and
              Prefect's triggers skip events they have already seen

The ``round`` deployment in prefect.yaml has a trigger counting these events (``threshold`` N within
``within`` seconds) beside its nightly schedule, and a concurrency limit of 1. The shared secret comes
from ``$DRIFTSKETCH_WEBHOOK_SECRET`` or is generated per run and kept in memory only (the receiver
re-registers the webhook with it at every start).
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import secrets
import sys
import uuid
from pathlib import Path

from labeling.webhook import NewAnnotation, WebhookReceiver, register_webhook

EVENT = "driftsketch.annotation.created"
DRIFT_EVENT = "driftsketch.taste.drift-suspected"  # emitted by the round when its taste-drift check flags
SECRET_ENV = "DRIFTSKETCH_WEBHOOK_SECRET"


def event_id(ls_url: str, annotation: int) -> uuid.UUID:
    """The same annotation always makes the same event id (a re-delivered webhook is not counted twice)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{ls_url.rstrip('/')}/annotations/{int(annotation)}")


def annotation_event(ls_url: str, ann: NewAnnotation) -> dict:
    """The keyword arguments of ``prefect.events.emit_event`` for one new annotation."""
    ls_url = ls_url.rstrip("/")
    return {"event": EVENT, "id": event_id(ls_url, ann.annotation),
            "resource": {"prefect.resource.id": f"driftsketch.labelstudio.project.{ann.project}",
                         "labelstudio.url": ls_url, "labelstudio.annotation": str(ann.annotation),
                         "labelstudio.task": str(ann.task)}}


def taste_drift_event(preference_dir: str, check: dict) -> dict:
    """The keyword arguments of ``prefect.events.emit_event`` for a flagged taste-drift check (dpo/taste_drift.py):
    event ``driftsketch.taste.drift-suspected`` on the preference store, id from the store and the time of its
    first newest answer (a retried round emits the same event), the check's figures as payload. A Prefect
    automation on it can notify the lab."""
    root = str(Path(preference_dir).resolve())
    figures = ("older_pairs", "newest_pairs", "agree", "agreement", "older_loo_accuracy", "p_value", "newest_since")
    return {"event": DRIFT_EVENT, "id": uuid.uuid5(uuid.NAMESPACE_URL, f"file://{root}#taste-drift@{check['newest_since']}"),
            "resource": {"prefect.resource.id": f"driftsketch.preferences.{hashlib.sha256(root.encode()).hexdigest()[:16]}",
                         "driftsketch.preference_dir": root},
            "payload": {k: check[k] for k in figures}}


def prefect_emitter(ls_url: str):
    """A callback emitting one Prefect event per annotation (to ``$PREFECT_API_URL``)."""
    from prefect.events import emit_event

    def emit(batch: list[NewAnnotation]) -> None:
        for ann in batch:
            emit_event(**annotation_event(ls_url, ann))

    return emit


def flush_events(timeout: float = 30.0) -> None:
    """Wait until every event emitted so far has been sent to Prefect."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=timeout)


def serve(ls, project_id: int, host: str, port: int, secret: str) -> WebhookReceiver:
    """Start the receiver and point the project's webhook at it (returns the running receiver)."""
    from labeling.client import client_url

    url = client_url(ls)
    receiver = WebhookReceiver(secret, prefect_emitter(url), host=host, port=port).start()
    register_webhook(ls, project_id, receiver.url, secret)
    return receiver


def main(argv: list[str] | None = None) -> int:
    from driftsketch.errors import run_cli

    return run_cli("driftsketch-annotation-events", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    from labeling.client import connect, resolve_connection
    from labeling.config import DEFAULT_LABELSTUDIO_CONFIG, load_labelstudio_config
    from labeling.projects import setup_projects
    from labeling.server import check_host

    p = argparse.ArgumentParser(prog="driftsketch-annotation-events", description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(DEFAULT_LABELSTUDIO_CONFIG), help="Label Studio settings YAML")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (Label Studio must reach it)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--allow-remote", action="store_true", help="allow a --host other than loopback")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    warning = check_host(args.host, args.allow_remote, "the webhook receiver")
    if warning:
        print(warning, file=sys.stderr)
    cfg = load_labelstudio_config(args.config, args.set)
    ls = connect(resolve_connection(cfg.server), cfg.client)
    pid = setup_projects(ls, cfg.projects, ("pairwise",))["pairwise"]
    secret = os.environ.get(SECRET_ENV) or secrets.token_urlsafe(32)
    receiver = serve(ls, pid, args.host, args.port, secret)
    print(f"receiving Label Studio webhooks of project {pid} at {receiver.url}; emitting {EVENT!r} to Prefect",
          flush=True)
    try:
        receiver.serve_forever()
    finally:
        flush_events()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
