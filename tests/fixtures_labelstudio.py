"""A real Label Studio server for the tests (session scope), started from a pre-migrated template.

The first run migrates a fresh data dir once into ``data/labelstudio-template`` (~50 s); every test
session copies it to a temporary dir and starts from there (~5 s). Needs ``.venv-labelstudio``
(scripts/install_labelstudio.sh).
"""
from __future__ import annotations

import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from labeling.client import Connection, connect
from labeling.config import ServerConfig
from labeling.server import DB_NAME, REPO_ROOT, ServerInfo, copy_template, start_server, stop_server

TEMPLATE_DIR = REPO_ROOT / "data" / "labelstudio-template"
_LS_ENV = ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "DRIFTSKETCH_LS_USERNAME", "DRIFTSKETCH_LS_PASSWORD",
           "DRIFTSKETCH_LS_TOKEN")


@dataclass
class LabelStudioServer:
    info: ServerInfo
    cfg: ServerConfig
    conn: Connection
    email: str
    password: str

    def client(self):
        return connect(self.conn)


def ensure_template(template_dir: Path = TEMPLATE_DIR) -> Path:
    """Migrate a fresh data dir once (start + stop); later sessions copy it. A lock file keeps two
    test runs in the same tree from building it at the same time."""
    template_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(template_dir.with_name(template_dir.name + ".lock"), "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if (template_dir / DB_NAME).is_file() and (template_dir / "credentials.json").is_file():
            return template_dir
        shutil.rmtree(template_dir, ignore_errors=True)
        cfg = ServerConfig(data_dir=str(template_dir), port=0, admin_email="admin@driftsketch.test")
        start_server(cfg)
        stop_server(cfg)
        (template_dir / "labelstudio.log").unlink(missing_ok=True)
    return template_dir


def start_copy(data_dir: Path) -> LabelStudioServer:
    """Start a server on a fresh copy of the template in ``data_dir``."""
    import json

    copy_template(ensure_template(), data_dir)
    cfg = ServerConfig(data_dir=str(data_dir), port=0)
    info = start_server(cfg)
    creds = json.loads((data_dir / "credentials.json").read_text())
    return LabelStudioServer(info, cfg, Connection(info.url, creds["token"]), creds["email"], creds["password"])


@pytest.fixture(scope="session")
def labelstudio(tmp_path_factory) -> LabelStudioServer:
    """A running Label Studio (own data dir, 127.0.0.1, free port) shared by the session."""
    saved = {k: os.environ.pop(k) for k in _LS_ENV if k in os.environ}  # tests must not reach a real server
    server = start_copy(tmp_path_factory.mktemp("labelstudio"))
    try:
        yield server
    finally:
        stop_server(server.cfg)
        os.environ.update(saved)
