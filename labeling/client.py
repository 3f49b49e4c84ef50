"""The one place that builds the Label Studio SDK client, plus retries for calls that can fail on I/O.

Which Label Studio: ``$LABEL_STUDIO_URL`` + ``$LABEL_STUDIO_API_KEY`` when set (any server, local or
remote, legacy token or personal access token), else the local server started by
``driftsketch-labelstudio start`` (its URL in ``<data_dir>/server.json``, its token in
``<data_dir>/credentials.json``).

    ls = connect(*resolve_connection(cfg.server))
    with_retries(lambda: ls.projects.list(), url=ls_url(ls), attempts=5)
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from driftsketch.errors import DriftSketchError
from labeling.config import ServerConfig

T = TypeVar("T")
URL_ENV = "LABEL_STUDIO_URL"
KEY_ENV = "LABEL_STUDIO_API_KEY"


class LabelStudioUnavailable(DriftSketchError, RuntimeError):
    """Label Studio could not be reached, or refused the token; the message names the URL."""


@dataclass(frozen=True)
class Connection:
    url: str
    api_key: str

    def __repr__(self) -> str:  # never show the token in logs or tracebacks
        return f"Connection(url={self.url!r}, api_key=***)"


def resolve_connection(server: ServerConfig | None = None) -> Connection:
    """URL and token from the environment, else from the local server's files under ``server.data_dir``."""
    url, key = os.environ.get(URL_ENV), os.environ.get(KEY_ENV)
    if url and key:
        return Connection(url.rstrip("/"), key)
    server = server or ServerConfig()
    data_dir = Path(server.data_dir)
    info, creds = data_dir / "server.json", data_dir / "credentials.json"
    if not url:
        if not info.is_file():
            raise LabelStudioUnavailable(
                f"no Label Studio URL: set ${URL_ENV} (and ${KEY_ENV}) or start the local server with "
                f"`driftsketch-labelstudio start` (expected {info})")
        url = json.loads(info.read_text())["url"]
    if not key:
        if not creds.is_file():
            raise LabelStudioUnavailable(f"no Label Studio token for {url}: set ${KEY_ENV} (expected {creds})")
        key = json.loads(creds.read_text())["token"]
    return Connection(url.rstrip("/"), key)


def connect(conn: Connection, timeout: float = 30.0) -> LabelStudio:
    """An SDK client for ``conn``; SDK-level retries are off because :func:`with_retries` owns them."""
    return LabelStudio(base_url=conn.url, api_key=conn.api_key, timeout=timeout, max_retries=0)


def client_url(ls: LabelStudio) -> str:
    """The base URL an SDK client talks to."""
    return ls._client_wrapper.get_base_url()


def api_key_of(ls: LabelStudio) -> str:
    """The API token an SDK client was made with (to derive secrets from, never to print)."""
    return ls._client_wrapper._tokens_client.api_key


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, ApiError) and exc.status_code is not None and exc.status_code >= 500


def with_retries(call: Callable[[], T], url: str, attempts: int = 5, backoff_s: float = 1.0,
                 idempotent: bool = True) -> T:
    """Run ``call``; on connection errors and 5xx retry with exponential backoff (1, 2, 4 ... x
    ``backoff_s``), then raise :class:`LabelStudioUnavailable` naming ``url``. A rejected token (401/403)
    fails at once: retrying cannot fix it. ``idempotent=False`` (e.g. a task import) retries only when
    the connection was never made, so a request the server may have executed is not sent twice."""
    for attempt in range(max(1, attempts)):
        try:
            return call()
        except (httpx.TransportError, ApiError) as exc:
            if isinstance(exc, ApiError) and exc.status_code in (401, 403):
                raise LabelStudioUnavailable(
                    f"Label Studio at {url} rejected the API token (HTTP {exc.status_code}); "
                    f"check ${KEY_ENV} or the local credentials file") from None
            if not _retryable(exc) or (not idempotent and not isinstance(exc, httpx.ConnectError)):
                raise
            if attempt + 1 >= attempts:
                detail = f"HTTP {exc.status_code}" if isinstance(exc, ApiError) else type(exc).__name__
                raise LabelStudioUnavailable(
                    f"Label Studio at {url} is unreachable after {attempts} attempts ({detail}: {exc})"
                    if not isinstance(exc, ApiError) else
                    f"Label Studio at {url} failed after {attempts} attempts ({detail})") from None
            time.sleep(backoff_s * 2 ** attempt)
    raise AssertionError("unreachable")
