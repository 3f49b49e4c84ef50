"""A small receiver for Label Studio's webhooks: one callback per new annotation, answered at once.

Label Studio (without Redis, as here) sends a webhook *inside* the request that created the annotation,
with a 1-second timeout (``WEBHOOK_TIMEOUT``) and no retry: a slow receiver slows every annotator's
submit, a down one loses the notification (never the annotation: the pull reads Label Studio itself).
So the receiver only checks the shared secret, parses the body, queues the annotation ids and answers
``200``; a background thread hands them to ``on_annotations`` (e.g. Prefect events, tasks/events.py).

The secret travels as ``Authorization: Bearer <secret>`` (Label Studio stores the webhook's headers in
its database); a request without it, or with another, is answered ``403`` and logged with its client
address, never with what it sent.

    receiver = WebhookReceiver(secret, on_annotations=print, host="127.0.0.1", port=8765)
    receiver.start()
    register_webhook(ls, project_id, receiver.url, secret)   # idempotent: updates the existing one
"""
from __future__ import annotations

import hmac
import json
import logging
import queue
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from label_studio_sdk import LabelStudio

from labeling.client import client_url, with_retries

log = logging.getLogger("driftsketch.webhook")
ACTIONS = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED")
MAX_BODY = 64 * 1024 * 1024


@dataclass(frozen=True)
class NewAnnotation:
    project: int
    annotation: int
    task: int | None


@dataclass
class ReceiverStats:
    accepted: int = 0  # webhook requests with the right secret
    refused: int = 0  # wrong or missing secret
    annotations: int = 0  # annotations handed to the callback
    errors: list[str] = field(default_factory=list)


def annotations_in(body: dict) -> list[NewAnnotation]:
    """The new annotations a Label Studio webhook body announces (one, or many for a bulk import)."""
    if body.get("action") not in ACTIONS:
        return []
    items = body.get("annotation")
    items = items if isinstance(items, list) else [items] if isinstance(items, dict) else []
    project = (body.get("project") or {}).get("id")
    out = []
    for ann in items:
        pid = ann.get("project", project)
        task = ann.get("task")
        task = task.get("id") if isinstance(task, dict) else task
        if pid is not None and ann.get("id") is not None:
            out.append(NewAnnotation(int(pid), int(ann["id"]), None if task is None else int(task)))
    return out


class WebhookReceiver:
    """Threaded HTTP receiver on ``host:port`` (0: a free port); see the module docstring."""

    def __init__(self, secret: str, on_annotations: Callable[[list[NewAnnotation]], None],
                 host: str = "127.0.0.1", port: int = 0, path: str = "/labelstudio"):
        if not secret:
            raise ValueError("the webhook receiver needs a non-empty shared secret")
        self.path, self.stats = path, ReceiverStats()
        self._expected = f"Bearer {secret}".encode()
        self._queue: queue.Queue = queue.Queue()
        self._on_annotations = on_annotations
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.path}"

    def start(self) -> WebhookReceiver:
        self._threads = [threading.Thread(target=self._server.serve_forever, daemon=True, name="webhook-http"),
                         threading.Thread(target=self._deliver, daemon=True, name="webhook-deliver")]
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking requests, deliver what is queued, then return."""
        self._server.shutdown()
        self._server.server_close()
        self._queue.put(None)
        self._threads[1].join(timeout)

    def serve_forever(self) -> None:
        """Run in the foreground until interrupted (the CLI)."""
        if not self._threads:
            self.start()
        try:
            self._threads[0].join()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def _deliver(self) -> None:
        while (batch := self._queue.get()) is not None:
            try:
                self._on_annotations(batch)
                self.stats.annotations += len(batch)
            except Exception as exc:  # keep receiving; the pull still finds every annotation
                self.stats.errors.append(f"{type(exc).__name__}: {exc}")
                log.error("could not hand on %d annotations: %s", len(batch), exc)

    def _accept(self, handler: BaseHTTPRequestHandler) -> int:
        """The HTTP status for one request; queues its annotations when accepted."""
        if handler.path.split("?", 1)[0] != self.path:
            return 404
        given = handler.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, self._expected):
            self.stats.refused += 1
            log.warning("refused a webhook from %s: wrong or missing secret", handler.client_address[0])
            return 403
        size = int(handler.headers.get("Content-Length") or 0)
        if size > MAX_BODY:
            return 413
        try:
            body = json.loads(handler.rfile.read(size) or b"{}")
        except ValueError:
            return 400
        self.stats.accepted += 1
        found = annotations_in(body)
        if found:
            self._queue.put(found)
        return 200

    def _handler_class(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                status = receiver._accept(self)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):  # quiet: one line per refused request comes from _accept
                pass

        return Handler


def register_webhook(ls: LabelStudio, project_id: int, url: str, secret: str) -> int:
    """A webhook of ``project_id`` posting new annotations to ``url`` with the secret (created, or the
    existing one for ``url`` updated: a restarted receiver may bring a new secret)."""
    base = client_url(ls)
    headers = {"Authorization": f"Bearer {secret}"}
    kw = dict(url=url, headers=headers, send_payload=True, send_for_all_actions=False, actions=list(ACTIONS),
              is_active=True)
    for hook in with_retries(lambda: list(ls.webhooks.list(project=str(project_id))), base):
        if hook.url == url and getattr(hook, "project", None) == project_id:
            with_retries(lambda: ls.webhooks.update(hook.id, **kw), base)
            return hook.id
    return with_retries(lambda: ls.webhooks.create(project=project_id, **kw), base).id
