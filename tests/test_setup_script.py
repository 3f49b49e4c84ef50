"""scripts/setup.sh: the README's two commands may start together in a fresh clone; one setup runs at a time."""
from __future__ import annotations

import fcntl
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _children(pid: int) -> str:
    return (Path(f"/proc/{pid}/task/{pid}/children")).read_text().strip()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("flock") is None, reason="setup.sh locks with util-linux flock; without it, no lock")
def test_a_second_setup_waits_for_the_first_and_then_finds_everything_installed():
    with open(ROOT / ".setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a setup already running
        proc = subprocess.Popen(["bash", "scripts/setup.sh"], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 10
        while "flock" not in Path(f"/proc/{proc.pid}/cmdline").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        assert proc.poll() is None and _children(proc.pid) == "", "setup started while another one held the lock"
    out, _ = proc.communicate(timeout=600)  # the lock is free: it runs, and everything is already there
    assert proc.returncode == 0, out
    assert "[setup] done" in out and "installing" not in out
