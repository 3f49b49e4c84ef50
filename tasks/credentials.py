"""Label Studio URL and token: a Prefect Secret block or the environment, never a config file.

Tasks call :func:`labelstudio_connection` themselves instead of taking the token as a parameter, so the
token never appears in flow or task run parameters (which Prefect stores and shows in its UI).
"""
from __future__ import annotations

import os

from driftsketch.errors import DriftSketchError
from labeling.client import URL_ENV, Connection, resolve_connection
from labeling.config import ServerConfig


class CredentialsError(DriftSketchError, RuntimeError):
    """The configured Prefect Secret block does not exist."""


def labelstudio_connection(url: str | None, token_env: str, token_secret_block: str | None,
                           server: ServerConfig | None = None) -> Connection:
    """Token: the Secret block ``token_secret_block`` if set, else ``$token_env``; URL: ``url``, else
    ``$LABEL_STUDIO_URL``. Whatever is still missing comes from the local server started by
    ``driftsketch-labelstudio start`` (its ``server.json`` / ``credentials.json``)."""
    token = os.environ.get(token_env) or None
    if token_secret_block:
        from prefect.blocks.system import Secret

        try:
            token = Secret.load(token_secret_block).get()
        except ValueError as exc:
            raise CredentialsError(f"Prefect Secret block {token_secret_block!r} not found: {exc}") from None
    url = url or os.environ.get(URL_ENV) or None
    if url and token:
        return Connection(url.rstrip("/"), token)
    local = resolve_connection(server)
    return Connection((url or local.url).rstrip("/"), token or local.api_key)
