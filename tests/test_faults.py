"""Faults a user meets: a hung Label Studio, writers killed mid-write, credentials from the environment,
template copies, a server on a non-loopback address. Fast tests use real sockets and real processes; the
slow ones a real Label Studio."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from driftsketch.fileio import atomic_write_text, remove_stale_temps
from driftsketch.registry import Registry
from labeling.client import Connection, LabelStudioUnavailable, connect, with_retries
from labeling.config import ClientConfig, ServerConfig
from labeling.server import ServerError, check_host, load_or_create_credentials

REPO = Path(__file__).resolve().parent.parent


class HungServer:
    """A socket that accepts connections and never answers (a hung, not dead, server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def hung():
    server = HungServer()
    yield server
    server.close()


def _give_up_time(url: str, client: ClientConfig | None) -> tuple[float, str]:
    ls = connect(Connection(url, "t"), client)
    t0 = time.monotonic()
    with pytest.raises(LabelStudioUnavailable) as err:
        with_retries(lambda: ls.projects.list().items, url)
    return time.monotonic() - t0, str(err.value)


def test_a_hung_server_is_given_up_on_by_the_budget(hung):
    cfg = ClientConfig(read_timeout_s=0.4, connect_timeout_s=0.4, backoff_s=0.05, retries=4, give_up_s=1.2)
    took, msg = _give_up_time(hung.url, cfg)
    # 0.4 + 0.05 + 0.4 = 0.85 s; a third attempt would end at ~1.35 s > 1.2 s, so it is not started
    assert 0.8 <= took < 1.2 and hung.accepted == 2
    assert f"{hung.url} is unreachable after 2 attempts" in msg and "ReadTimeout" in msg


@pytest.mark.slow
def test_a_hung_server_is_given_up_on_within_30_s_by_default(hung):
    took, msg = _give_up_time(hung.url, None)  # configs/labelstudio.yaml:client
    assert took < 30 and hung.accepted >= 2, (took, msg)


def test_a_hung_server_is_given_up_on_by_the_pull_cli(hung, tmp_path, monkeypatch):
    from labeling.cli import main

    monkeypatch.setenv("LABEL_STUDIO_URL", hung.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "t")
    sets = ["client.read_timeout_s=0.3", "client.backoff_s=0.05", "client.give_up_s=1",
            f"pull.store_root={tmp_path / 'prefs'}", f"pull.cursor_path={tmp_path / 'cursor.json'}"]
    t0 = time.monotonic()
    assert main(["pull", *[a for s in sets for a in ("--set", s)]]) == 2
    assert time.monotonic() - t0 < 5 and not (tmp_path / "prefs").exists() and not (tmp_path / "cursor.json").exists()


# -- temporary files of atomic writes left by a killed writer ------------------------------------------

WRITER = """
import sys, time
from driftsketch.fileio import atomic_writer
with atomic_writer(sys.argv[1]) as fh:
    fh.write(b"half of the new")
    print("writing", flush=True)
    time.sleep(600)
"""


def _kill_mid_write(path: Path) -> Path:
    """Start a writer of ``path``, SIGKILL it while its temporary file exists; returns that file."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, cwd=REPO)
    try:
        assert proc.stdout.readline() == b"writing\n"
        (tmp,) = path.parent.glob(f".{path.name}.{proc.pid}.*.tmp")
        assert remove_stale_temps(path.parent) == [] and tmp.exists()  # a live writer's file is kept
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert tmp.exists()
    return tmp


def test_a_killed_writers_temporary_file_goes_at_the_next_write(tmp_path):
    path = tmp_path / "state.json"
    atomic_write_text(path, "old")
    tmp = _kill_mid_write(path)
    assert path.read_text() == "old"
    out = subprocess.run([sys.executable, "-c", "import sys; from driftsketch.fileio import atomic_write_text; "
                          "atomic_write_text(sys.argv[1], 'new')", str(path)], cwd=REPO)
    assert out.returncode == 0 and not tmp.exists() and path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_the_registry_and_the_pull_cursor_clean_up_when_they_start(tmp_path):
    reg = Registry(tmp_path / "reg")
    with reg.transaction():
        pass  # creates the folders
    atomic_write_text(reg.file, json.dumps(reg.load().model_dump()))
    before = reg.file.read_text()
    tmp = _kill_mid_write(reg.file)
    rerun = "import sys; from driftsketch.registry import Registry; Registry(sys.argv[1]).transaction().__enter__()"
    assert subprocess.run([sys.executable, "-c", rerun, str(reg.root)], cwd=REPO).returncode == 0
    assert not tmp.exists() and reg.file.read_text() == before  # a re-run that changed nothing removed it
    cursor = tmp_path / "ls" / "pull_cursor.json"
    atomic_write_text(cursor, '{"url": "x"}')
    tmp = _kill_mid_write(cursor)
    rerun = "import sys; from labeling.pull import load_cursor; print(load_cursor(sys.argv[1]))"
    out = subprocess.run([sys.executable, "-c", rerun, str(cursor)], cwd=REPO, capture_output=True, text=True)
    assert out.stdout.strip() == "{'url': 'x'}" and not tmp.exists()


# -- credentials and addresses -----------------------------------------------------------------------

def test_credentials_from_the_environment_are_never_written(tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFTSKETCH_LS_TOKEN", "tok-from-env-123")
    monkeypatch.setenv("DRIFTSKETCH_LS_PASSWORD", "pw-from-env-456")
    cfg = ServerConfig(data_dir=str(tmp_path / "ls"))
    creds = load_or_create_credentials(cfg)
    assert creds["token"] == "tok-from-env-123" and creds["password"] == "pw-from-env-456"
    text = (tmp_path / "ls" / "credentials.json").read_text()
    stored = json.loads(text)
    assert "from-env" not in text
    assert stored["token_env"] == "DRIFTSKETCH_LS_TOKEN" and "token" not in stored and stored["secret_key"]
    monkeypatch.delenv("DRIFTSKETCH_LS_TOKEN")
    with pytest.raises(ServerError, match=r"came from \$DRIFTSKETCH_LS_TOKEN"):
        load_or_create_credentials(cfg)
    monkeypatch.delenv("DRIFTSKETCH_LS_PASSWORD")
    other = ServerConfig(data_dir=str(tmp_path / "ls2"))  # generated ones stay in the 0600 file
    generated = load_or_create_credentials(other)
    path = tmp_path / "ls2" / "credentials.json"
    assert json.loads(path.read_text())["token"] == generated["token"] and path.stat().st_mode & 0o777 == 0o600


def test_a_non_loopback_address_needs_allow_remote(tmp_path, capsys):
    from labeling.cli import main

    assert check_host("127.0.0.1", False) is None and check_host("::1", False) is None
    assert check_host("localhost", False) is None
    with pytest.raises(ServerError, match="--allow-remote"):
        check_host("0.0.0.0", False)
    assert "WARNING" in check_host("192.168.1.5", True)
    data_dir = tmp_path / "ls"
    assert main(["start", "--host", "0.0.0.0", "--set", f"server.data_dir={data_dir}"]) == 2
    assert "--allow-remote" in capsys.readouterr().err and not data_dir.exists()  # nothing started or written


def _web_login(url: str, email: str, password: str) -> bool:
    """Log in through Label Studio's login form, as a person would; True if it let us in."""
    import httpx

    with httpx.Client(base_url=url, timeout=30) as web:
        web.get("/user/login/")
        form = {"email": email, "password": password, "csrfmiddlewaretoken": web.cookies.get("csrftoken", "")}
        resp = web.post("/user/login/", data=form, headers={"Referer": f"{url}/user/login/"})
        return resp.status_code == 302 and "login" not in resp.headers.get("location", "")


def _files_holding(root: Path, secret: str) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and secret.encode() in p.read_bytes())


@pytest.mark.slow
def test_start_uses_the_template_with_fresh_credentials_and_env_secrets_stay_off_disk(tmp_path, monkeypatch):
    """`start` on a fresh data dir copies the migrated template (no migrations run) and gives it its own
    admin password and token (here from the environment); the template's login no longer opens it; after a
    start, a push and a pull no file holds the environment's password, and only Label Studio's own
    database holds its token."""
    import numpy as np
    from fixtures_labelstudio import _LS_ENV, ensure_template

    from dpo.store import PreferenceStore
    from labeling.cli import main
    from labeling.config import ProjectsConfig
    from labeling.projects import setup_projects
    from labeling.pull import pull_annotations
    from labeling.push import PairBatch, push_tasks
    from labeling.server import read_info

    for key in _LS_ENV:
        monkeypatch.delenv(key, raising=False)
    template = ensure_template()
    old = json.loads((template / "credentials.json").read_text())
    token, password = os.urandom(20).hex(), "pw-" + os.urandom(12).hex()
    monkeypatch.setenv("DRIFTSKETCH_LS_TOKEN", token)
    monkeypatch.setenv("DRIFTSKETCH_LS_PASSWORD", password)
    data_dir = tmp_path / "ls"
    opts = [a for s in (f"server.data_dir={data_dir}", f"server.template_dir={template}", "server.port=0",
                        f"server.files_root={tmp_path / 'files'}") for a in ("--set", s)]
    t0 = time.monotonic()
    assert main(["start", *opts]) == 0
    started_s = time.monotonic() - t0
    try:
        url = read_info(ServerConfig(data_dir=str(data_dir)))["url"]
        assert "Applying " not in (data_dir / "labelstudio.log").read_text(), "migrations ran: template not used"
        ls = connect(Connection(url, token))
        email = ServerConfig().admin_email  # server.admin_email, not the template's
        assert ls.users.whoami().email == email != old["email"]
        stored = json.loads((data_dir / "credentials.json").read_text())
        assert stored["token_env"] == "DRIFTSKETCH_LS_TOKEN" and "token" not in stored and "password" not in stored
        assert stored["secret_key"] != old["secret_key"]
        with pytest.raises(LabelStudioUnavailable, match="rejected the API token"):
            with_retries(lambda: connect(Connection(url, old["token"])).users.whoami(), url)
        assert _web_login(url, email, password) and not _web_login(url, email, old["password"])
        assert not _web_login(url, old["email"], old["password"])
        ids = setup_projects(ls, ProjectsConfig())
        store = PreferenceStore(tmp_path / "prefs")
        x = np.zeros((2, 32, 4, 2), np.float32) + np.array([0.1, 0.2], np.float32)[:, None, None, None]
        (tid,) = push_tasks(ls, ids["pairwise"], PairBatch(x[:1], x[1:], np.array([0]), ["c"]), store=store,
                            checkpoint="ck", svg_dir=tmp_path / "svg", image_size=32, progress=False)
        ls.annotations.create(id=tid, result=[{"from_name": "preference", "to_name": "image_left",
                                               "type": "choices", "value": {"choices": ["A"]}}])
        report = pull_annotations(ls, ids, store, cursor_path=data_dir / "pull_cursor.json")
        assert report.new_records == 1
    finally:
        assert main(["stop", *opts]) == 0
    assert _files_holding(tmp_path, password) == []
    assert _files_holding(tmp_path, token) == ["ls/label_studio.sqlite3"]  # Label Studio keeps API tokens so
    print(f"start from the template: {started_s:.1f} s")


# -- seeded kill / re-run trials (benchmarks/fault_injection.py; the full table: benchmarks/bench_faults.py) --

@pytest.fixture(scope="module")
def fault_env(labelstudio, tiny_base_checkpoint, tmp_path_factory):
    sys.path.insert(0, str(REPO / "benchmarks"))
    from fault_injection import FaultEnv

    return FaultEnv.prepare(tmp_path_factory.mktemp("faults"), labelstudio, tiny_base_checkpoint, pairs=8)


@pytest.mark.slow
@pytest.mark.parametrize("fault,trials,kw", [("pull", 2, {}), ("promote", 2, {}), ("finetune", 1, {})])
def test_killed_and_re_run_loses_and_duplicates_nothing(fault_env, fault, trials, kw):
    """A few seeded trials per fault (the bot and push: benchmarks/bench_faults.py only, ~30 s a trial)."""
    from fault_injection import COLUMNS, FAULTS

    row = FAULTS[fault](fault_env, trials, 7, **kw)
    damage = {c: getattr(row, c) for c in COLUMNS if c not in ("trials", "killed")}
    assert row.trials == trials and damage == dict.fromkeys(damage, 0), row.notes


@pytest.mark.slow
def test_a_killed_round_re_run_equals_an_unkilled_one(fault_env, prefect_server):
    """Two seeded SIGKILLs of a whole round (`python -m flows.online_dpo`: pull, fine-tune, evaluate, promote,
    retire, generate, push, reporting to a real Prefect server), each re-run: the preference store, the
    Label Studio project, the queue and the registry are those of a round never killed. The full N, the
    worker and two rounds at once: benchmarks/bench_faults.py --faults round round-worker worker ..."""
    from fault_injection import COLUMNS, run
    from fault_rounds import RoundEnv, fault_round, run_info, zombie_runs

    renv = RoundEnv.prepare(fault_env, prefect_server)
    row = fault_round(renv, 2, 9)  # kills at 87 % and 29 % of an unkilled round (after the flow run exists)
    damage = {c: getattr(row, c) for c in COLUMNS if c not in ("trials", "killed")}
    # A re-run can be quicker than the unkilled round the kill times were scaled to, so the kill at 87 % may
    # come after it ended (seen once in a fresh-clone CI): at least one kill, and no damage in either trial.
    assert row.trials == 2 and row.killed >= 1 and damage == dict.fromkeys(damage, 0), row.notes
    # Nobody reports a SIGKILLed round's end: its run stays Running until the documented recovery (a kill
    # before the flow run's creation leaves none).
    zombies = zombie_runs(renv)
    assert len(zombies) <= row.killed, zombies
    if not zombies:
        return
    out = run([sys.executable, "-m", "flows.recover", *zombies], renv.env)
    assert out.returncode == 0 and {run_info(renv, z)["state_type"] for z in zombies} == {"CRASHED"}, out.stderr
    again = run([sys.executable, "-m", "flows.recover", zombies[0]], renv.env)
    assert again.returncode == 2 and "is CRASHED, not one of RUNNING" in again.stderr


def test_a_full_disk_leaves_no_half_line_in_the_store(tmp_path):
    """An append that does not fit (ENOSPC, or a short write) is undone: the session file is as before."""
    from dpo.store import _append_bytes

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        path = disk / "s.jsonl"
        _append_bytes(path, b'{"id": 1}\n')
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        os.close(fd)
        os.truncate(disk / "filler", (disk / "filler").stat().st_size - 100)  # room for part of a line
        with pytest.raises(OSError):
            _append_bytes(path, b'{"id": 2, "pad": "' + b"x" * 20000 + b'"}\n')
        assert path.read_bytes() == b'{"id": 1}\n'
        (disk / "filler").unlink()
        _append_bytes(path, b'{"id": 2}\n')
        assert path.read_bytes() == b'{"id": 1}\n{"id": 2}\n'
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
