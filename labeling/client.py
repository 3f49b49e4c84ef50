"""The one place that builds the Label Studio SDK client, plus retries for calls that can fail on I/O.

Which Label Studio: ``$LABEL_STUDIO_URL`` + ``$LABEL_STUDIO_API_KEY`` when set (any server, local or
remote, legacy token or personal access token), else the local server started by
``driftsketch-labelstudio start`` (its URL in ``<data_dir>/server.json``, its token in
``<data_dir>/credentials.json``).

    ls = connect(resolve_connection(cfg.server), cfg.client)     # timeouts + retries: labelstudio.yaml:client
    with_retries(lambda: ls.projects.list(), url=client_url(ls))
"""
from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from driftsketch.config import replace_config
from driftsketch.errors import DriftSketchError
from labeling.config import ClientConfig, ServerConfig

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
        stored = json.loads(creds.read_text())
        key = stored.get("token") or os.environ.get(stored.get("token_env", KEY_ENV))
        if not key:  # the server's token came from the environment and was never written
            raise LabelStudioUnavailable(f"no Label Studio token for {url}: set ${stored.get('token_env', KEY_ENV)}")
    return Connection(url.rstrip("/"), key)


_POLICIES: dict[str, ClientConfig] = {}  # base URL -> the timeouts and retries its client was built with


@functools.lru_cache(maxsize=1)
def _default_policy() -> ClientConfig:
    return ClientConfig()


def client_config(url: str) -> ClientConfig:
    """Timeouts and retries for requests to ``url``: those given to :func:`connect` for it, else
    ``labelstudio.yaml:client``."""
    return _POLICIES.get(url.rstrip("/")) or _default_policy()


def connect(conn: Connection, client: ClientConfig | None = None, timeout: float | None = None) -> LabelStudio:
    """An SDK client for ``conn`` with the connect/read timeouts of ``client`` (default
    ``labelstudio.yaml:client``; ``timeout`` overrides both). SDK-level retries are off because
    :func:`with_retries` owns them, with the same settings."""
    cfg = client or _default_policy()
    if timeout is not None:
        cfg = replace_config(cfg, connect_timeout_s=timeout, read_timeout_s=timeout)
    _POLICIES[conn.url.rstrip("/")] = cfg
    http = httpx.Client(timeout=httpx.Timeout(cfg.read_timeout_s, connect=cfg.connect_timeout_s),
                        follow_redirects=True)
    return LabelStudio(base_url=conn.url, api_key=conn.api_key, httpx_client=http, max_retries=0)


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


def with_retries(call: Callable[[], T], url: str, attempts: int | None = None, backoff_s: float | None = None,
                 idempotent: bool = True) -> T:
    """Run ``call``; on connection errors, timeouts and 5xx retry with exponential backoff (1, 2, 4 ... x
    ``backoff_s``), then raise :class:`LabelStudioUnavailable` naming ``url``. No retry starts that would
    end (judged by the failed attempt's duration) past ``give_up_s`` after the first began, so a hung
    server fails within ~30 s by default. ``attempts`` (default ``retries + 1``), ``backoff_s`` and
    ``give_up_s`` come from :func:`client_config`. A rejected token (401/403) fails at once: retrying cannot
    fix it. ``idempotent=False`` (e.g. a task import) retries only when the connection was never made, so
    a request the server may have executed is not sent twice."""
    policy = client_config(url)
    attempts = policy.retries + 1 if attempts is None else attempts
    backoff_s = policy.backoff_s if backoff_s is None else backoff_s
    began = time.monotonic()
    for attempt in range(max(1, attempts)):
        tried = time.monotonic()
        try:
            return call()
        except (httpx.TransportError, ApiError) as exc:
            if isinstance(exc, ApiError) and exc.status_code in (401, 403):
                raise LabelStudioUnavailable(
                    f"Label Studio at {url} rejected the API token (HTTP {exc.status_code}); "
                    f"check ${KEY_ENV} or the local credentials file") from None
            if not _retryable(exc):
                raise
            detail = f"HTTP {exc.status_code}" if isinstance(exc, ApiError) else f"{type(exc).__name__}: {exc}"
            if not idempotent and not isinstance(exc, httpx.ConnectError):
                raise LabelStudioUnavailable(f"Label Studio at {url} failed during a request it may have carried "
                                             f"out ({detail}); not sent again") from None
            now, pause = time.monotonic(), backoff_s * 2 ** attempt
            late = attempt > 0 and now - began + pause + (now - tried) > policy.give_up_s
            if attempt + 1 >= attempts or late:
                raise LabelStudioUnavailable(f"Label Studio at {url} is unreachable after {attempt + 1} attempts "
                                             f"in {now - began:.0f} s ({detail})") from None
            time.sleep(pause)
    raise AssertionError("unreachable")
