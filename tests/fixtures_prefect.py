"""Prefect fixtures: ``prefect_harness`` (in-process flows against a temporary API) and ``prefect_server``
(a real ``prefect server start`` subprocess for deploy/worker tests). Registered in ``tests/conftest.py``.

Both take ~18 s to become healthy on a 2-core machine, so they are session-scoped and only used by
``@pytest.mark.slow`` tests.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PREFECT_BIN = Path(sys.executable).parent / "prefect"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll ``<url>/health`` until it answers 200; fail early if the server process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with code {proc.returncode} before becoming healthy")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"prefect server at {url} not healthy after {timeout:.0f} s")


@dataclass
class PrefectServer:
    api_url: str
    home: Path
    env: dict[str, str]  # environment for subprocesses (prefect CLI, workers) that talk to this server

    def cli(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``prefect <args>`` from the repo root against this server (a failure shows its output)."""
        out = subprocess.run([str(PREFECT_BIN), *args], cwd=REPO, env=self.env, capture_output=True,
                             text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"prefect {' '.join(args)} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        return out

    def deployment(self, name: str) -> dict:
        """A deployment as the REST API returns it (``prefect deployment inspect -o json`` of a deployment
        with a trigger fails in Prefect 3.9.1: its automations hold a set, which orjson cannot dump)."""
        import httpx

        resp = httpx.get(f"{self.api_url}/deployments/name/{name}", timeout=30)
        resp.raise_for_status()
        return resp.json()


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API for running flows in the test process (``prefect_test_harness``)."""
    from prefect.testing.utilities import prefect_test_harness

    saved = os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"  # its telemetry writes collide with ours in SQLite
    try:
        with prefect_test_harness(server_startup_timeout=180):
            yield
    finally:
        if saved is None:
            os.environ.pop("PREFECT_SERVER_ANALYTICS_ENABLED", None)
        else:
            os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = saved


def start_prefect_server(home: Path) -> tuple[subprocess.Popen, PrefectServer]:
    """A real ``prefect server start`` on 127.0.0.1 (free port) with its own PREFECT_HOME and SQLite database
    in ``home``; waits until it is healthy. Stop it with :func:`stop_prefect_server`."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": api_url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_ENABLED": "false",
           "PREFECT_LOGGING_LEVEL": "WARNING", "WANDB_MODE": "offline"}
    with open(home / "server.log", "w") as log:
        proc = subprocess.Popen([str(PREFECT_BIN), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(api_url, proc)
    except BaseException:
        stop_prefect_server(proc)
        raise
    return proc, PrefectServer(api_url=api_url, home=home, env=env)


def stop_prefect_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real ``prefect server start`` on 127.0.0.1 with its own PREFECT_HOME and SQLite database."""
    proc, server = start_prefect_server(tmp_path_factory.mktemp("prefect-home"))
    try:
        yield server
    finally:
        stop_prefect_server(proc)


TINY_BASE_OVERRIDES = ["max_steps=60", "batch_size=32", "model.dim=32", "model.depth=2", "model.heads=2",
                       "wandb=false", "sample_every=0", "checkpoint_every=0", "warmup_steps=5", "num_threads=1"]


@pytest.fixture(scope="session")
def tiny_base_checkpoint(tmp_path_factory) -> str:
    """A tiny base model trained on the built-in data (~15 s on 2 cores): lineage and plumbing, not quality."""
    from tasks.models import train_base_model

    return train_base_model.fn("configs/train.yaml", TINY_BASE_OVERRIDES, str(tmp_path_factory.mktemp("tiny-base")))
