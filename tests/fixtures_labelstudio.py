"""A real Label Studio server for the tests (session scope), started from a pre-migrated template.

The first run migrates a fresh data dir once into ``data/labelstudio-template`` (~50 s); every test
session copies it to a temporary dir and starts from there (~5 s). Needs ``.venv-labelstudio``
(scripts/install_labelstudio.sh).
"""
from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from labeling.client import Connection, connect
from labeling.config import PostgresConfig, ServerConfig
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


def start_copy(data_dir: Path, **server: object) -> LabelStudioServer:
    """Start a server on a fresh copy of the template in ``data_dir`` (its files root: ``<data_dir>-files``);
    ``server`` overrides ServerConfig fields."""
    copy_template(ensure_template(), data_dir)
    return _start(ServerConfig(**{"data_dir": str(data_dir), "port": 0, "files_root": f"{data_dir}-files", **server}))


def _start(cfg: ServerConfig) -> LabelStudioServer:
    import json

    info = start_server(cfg)
    creds = json.loads((Path(cfg.data_dir) / "credentials.json").read_text())
    return LabelStudioServer(info, cfg, Connection(info.url, creds["token"]), creds["email"], creds["password"])


def pg_server_config(root: Path) -> ServerConfig:
    """A Label Studio on its own managed PostgreSQL (free ports) under ``root``; the PostgreSQL dump
    template lives beside the SQLite one, so only the first run anywhere migrates."""
    return ServerConfig(data_dir=str(root / "ls"), port=0, files_root=str(root / "files"), database="postgresql",
                        template_dir=str(TEMPLATE_DIR), postgres=PostgresConfig(port=0))


def traversable_tmpdir(prefix: str) -> Path:
    """A temp dir PostgreSQL's own OS user can reach (pytest's are 0700 under /tmp/pytest-of-root)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o711)
    return root


@pytest.fixture(scope="session")
def labelstudio_pg() -> LabelStudioServer:
    """A running Label Studio on PostgreSQL (managed: its own cluster, 127.0.0.1, free ports)."""
    saved = {k: os.environ.pop(k) for k in _LS_ENV if k in os.environ}
    root = traversable_tmpdir("driftsketch-pg-")
    server = _start(pg_server_config(root))
    try:
        yield server
    finally:
        stop_server(server.cfg)
        shutil.rmtree(root, ignore_errors=True)
        os.environ.update(saved)


@pytest.fixture(scope="session")
def tiny_judge():
    """A labeling judge around a 10-step classifier: any judge will do where a test compares the bot
    with its own judge."""
    import torch

    from driftsketch.data import load_dataset
    from driftsketch.evaluation.classifier import ClassifierConfig, train_classifier
    from driftsketch.evaluation.judges import LabelingJudge

    torch.manual_seed(0)
    cfg = ClassifierConfig(steps=10, resolution=32, widths=[8, 16], batch_size=32, holdout_fraction=0.9,
                           augment=False)
    return LabelingJudge(train_classifier(load_dataset("builtin"), cfg, progress=False))


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
