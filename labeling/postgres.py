"""PostgreSQL under Label Studio: a managed local server, or the user's own.

``server.database: postgresql`` runs Label Studio on PostgreSQL (Label Studio reads ``DJANGO_DB=default``
and ``POSTGRE_NAME/USER/PASSWORD/HOST/PORT``, core/settings/base.py). With ``server.postgres.managed``
(the default) ``driftsketch-labelstudio start`` first starts a PostgreSQL cluster of its own::

    data/labelstudio/postgres/     the cluster (initdb; mode 0700, owned by the server's OS user)
    data/labelstudio/postgres.json host, port and data dir of the last start (no secrets)
    data/labelstudio/credentials.json  ... "postgres_password": generated, mode 0600, never printed

It listens on 127.0.0.1 only (no Unix socket) with scram-sha-256 passwords. PostgreSQL refuses to run
as root, so as root the cluster belongs to ``server.postgres.os_user`` (Debian's ``postgres``) and
every PostgreSQL program runs as that user (``runuser``). With ``managed: false`` nothing is started:
Label Studio connects to ``host:port/name`` as ``user`` with the password in ``$DRIFTSKETCH_PG_PASSWORD``
(never written anywhere).

Migrations: a fresh Label Studio database takes 50-110 s of Django migrations. For the pinned Label
Studio the migrated database ships as ``labeling/pg_templates/labelstudio-<version>.sql.gz`` (plain
``pg_dump``: schema and the migrations' own rows, no users, no tokens, no secrets; 32 KB); for any other
version the first fresh database is migrated once and dumped the same way to
``<template_dir>-postgres/labelstudio-<version>.sql.gz``. A fresh database is restored from the dump in
a few seconds (the PostgreSQL counterpart of the SQLite template copy). After changing the pin, copy
the generated dump of the new version into labeling/pg_templates/ (and delete the old one).

    env = database_env(cfg.server, creds)   # {} for SQLite; starts PostgreSQL when managed
    postgres_status(cfg.server); stop_postgres(cfg.server)
"""
from __future__ import annotations

import fcntl
import gzip
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from driftsketch.errors import DriftSketchError
from driftsketch.fileio import atomic_write_bytes, atomic_write_text
from labeling.config import ServerConfig

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SHIPPED_DIR = Path(__file__).resolve().parent / "pg_templates"
DATABASES = ("sqlite", "postgresql")


class PostgresError(DriftSketchError, RuntimeError):
    """PostgreSQL could not be started, reached or prepared; the message names the server and why."""


@dataclass(frozen=True)
class PgTarget:
    """Where Label Studio's database is (no password: that one travels only in the environment)."""

    host: str
    port: int
    name: str
    user: str


# ---------------------------------------------------------------------------------------------- paths
def pg_data_dir(cfg: ServerConfig) -> Path:
    return Path(cfg.postgres.data_dir or Path(cfg.data_dir) / "postgres").resolve()


def _info_path(cfg: ServerConfig) -> Path:
    return Path(cfg.data_dir) / "postgres.json"


def template_dump(cfg: ServerConfig, version: str) -> Path:
    """The migrated, user-less Label Studio database of ``version`` made on this machine (gzipped SQL)."""
    tpl = Path(cfg.template_dir)
    return tpl.with_name(tpl.name + "-postgres") / f"labelstudio-{version}.sql.gz"


def shipped_dump(version: str) -> Path:
    """The same, shipped with the code for the pinned Label Studio (scripts/install_labelstudio.sh)."""
    return SHIPPED_DIR / f"labelstudio-{version}.sql.gz"


def pg_bin(program: str) -> str:
    """Path of a PostgreSQL server program (Debian keeps them in /usr/lib/postgresql/<major>/bin)."""
    found = shutil.which(program)
    if found:
        return found
    for d in sorted(Path("/").glob(PG_BIN_GLOB.lstrip("/")), key=lambda p: int(p.parent.name), reverse=True):
        if (d / program).is_file():
            return str(d / program)
    raise PostgresError(f"PostgreSQL's {program} not found (looked on PATH and in {PG_BIN_GLOB}): "
                        "run scripts/install_labelstudio.sh, which installs Debian's postgresql")


# ---------------------------------------------------------------------------------------------- secrets
def pg_password(cfg: ServerConfig) -> str:
    """The database password: ``$<password_env>`` (never written), else for the managed server the one in
    ``credentials.json`` (generated on first use, mode 0600)."""
    env = os.environ.get(cfg.postgres.password_env)
    if env:
        return env
    if not cfg.postgres.managed:
        raise PostgresError(f"PostgreSQL at {cfg.postgres.host}:{cfg.postgres.port}: set ${cfg.postgres.password_env} "
                            f"to the password of role {cfg.postgres.user!r} (server.postgres.managed is false)")
    path = Path(cfg.data_dir) / "credentials.json"
    creds = json.loads(path.read_text()) if path.is_file() else {}
    if not creds.get("postgres_password"):
        creds["postgres_password"] = secrets.token_urlsafe(24)
        atomic_write_text(path, json.dumps(creds, indent=1))  # mkstemp: 0600 from the first byte
    return creds["postgres_password"]


def _pg_env(password: str) -> dict[str, str]:
    """Environment of the PostgreSQL client programs: the password travels here, never in argv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGPASSWORD=password, PGCONNECT_TIMEOUT="5")
    return env


# ---------------------------------------------------------------------------------------------- processes
def _as_server_user(cfg: ServerConfig) -> list[str]:
    """``runuser -u postgres --`` when we are root (PostgreSQL refuses root), else nothing."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(cfg.postgres.os_user)
    except KeyError:
        raise PostgresError(f"server.postgres.os_user {cfg.postgres.os_user!r} does not exist: PostgreSQL "
                            "cannot run as root; install Debian's postgresql (it creates the user)") from None
    return ["runuser", "-u", cfg.postgres.os_user, "--"]


def _run(cmd: list[str], what: str, env: dict | None = None, timeout: float = 120.0, stdin: bytes | None = None) -> str:
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, timeout=timeout, input=stdin if stdin is not None else b"")
    except subprocess.TimeoutExpired:
        raise PostgresError(f"{what}: no answer within {timeout:.0f} s") from None
    if out.returncode != 0:
        detail = " ".join((out.stderr or out.stdout).decode(errors="replace").split())[-600:]
        raise PostgresError(f"{what} failed (exit {out.returncode}): {detail}")
    return out.stdout.decode(errors="replace")


def _port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``port`` (SO_REUSEADDR as PostgreSQL sets it: a port whose old
    connections linger in TIME_WAIT after a stop is free, one with a listener is not)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _postmaster_pid(data_dir: Path) -> int | None:
    """Pid of the running postmaster of ``data_dir`` (from postmaster.pid, checked in /proc), else None."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if b"postgres" in cmdline else None


def _accepts(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------- managed server
def _init_cluster(cfg: ServerConfig, data_dir: Path, password: str) -> None:
    """``initdb`` a fresh cluster owned by the server's OS user; superuser = ``postgres.user``."""
    prefix = _as_server_user(cfg)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    owner = pwd.getpwnam(cfg.postgres.os_user) if prefix else None
    if owner:
        os.chown(data_dir, owner.pw_uid, owner.pw_gid)
        os.chmod(data_dir, 0o700)
    fd, pwfile = tempfile.mkstemp(prefix=".pgpw-", dir=data_dir.parent)  # initdb wants an empty data dir
    try:
        os.write(fd, password.encode() + b"\n")
        os.close(fd)
        if owner:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        _run([*prefix, pg_bin("initdb"), "-D", str(data_dir), "-U", cfg.postgres.user, "--pwfile", pwfile,
              "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"],
             f"initdb of {data_dir} (as {cfg.postgres.os_user if prefix else 'this user'}: its parent folders must "
             "be traversable by it)")
    finally:
        Path(pwfile).unlink(missing_ok=True)


def _choose_port(cfg: ServerConfig) -> int:
    """The configured port; with port 0 the last one used (a restart keeps Label Studio's settings
    valid), else any free one."""
    pg = cfg.postgres
    if pg.port == 0:
        last = (read_postgres_info(cfg) or {}).get("port")
        return last if last and _port_free(pg.host, last) else _free_port(pg.host)
    if not _port_free(pg.host, pg.port):
        raise PostgresError(f"port {pg.host}:{pg.port} for Label Studio's PostgreSQL is taken by another process: "
                            "stop it, or set server.postgres.port to a free port (0: any free port)")
    return pg.port


def start_postgres(cfg: ServerConfig) -> PgTarget:
    """Start the managed cluster (``initdb`` on first use) and return where it listens."""
    pg, data_dir = cfg.postgres, pg_data_dir(cfg)
    password = pg_password(cfg)
    if not (data_dir / "PG_VERSION").is_file():
        _init_cluster(cfg, data_dir, password)
    info = read_postgres_info(cfg)
    if _postmaster_pid(data_dir) and info and _accepts(pg.host, info["port"]):
        return PgTarget(pg.host, info["port"], pg.name, pg.user)
    port = _choose_port(cfg)
    options = f"-c listen_addresses={pg.host} -c port={port} -c unix_socket_directories=''"
    log = data_dir / "server.log"
    _run([*_as_server_user(cfg), pg_bin("pg_ctl"), "start", "-D", str(data_dir), "-w", "-t",
          str(int(pg.start_timeout_s)), "-l", str(log), "-o", options],
         f"PostgreSQL on {pg.host}:{port} (data dir {data_dir}; log {log})", timeout=pg.start_timeout_s + 10)
    atomic_write_text(_info_path(cfg), json.dumps({"host": pg.host, "port": port, "data_dir": str(data_dir)}))
    return PgTarget(pg.host, port, pg.name, pg.user)


def read_postgres_info(cfg: ServerConfig) -> dict | None:
    path = _info_path(cfg)
    return json.loads(path.read_text()) if path.is_file() else None


def stop_postgres(cfg: ServerConfig) -> bool:
    """Stop the managed cluster (fast shutdown: open sessions are rolled back, committed data stays)."""
    data_dir = pg_data_dir(cfg)
    if not cfg.postgres.managed or not _postmaster_pid(data_dir):
        return False
    _run([*_as_server_user(cfg), pg_bin("pg_ctl"), "stop", "-D", str(data_dir), "-m", "fast", "-w"],
         f"stopping PostgreSQL (data dir {data_dir})")
    return True  # postgres.json stays: a restart takes the same port


def postgres_status(cfg: ServerConfig) -> dict:
    """``{"kind", "managed", "running", "host", "port", "data_dir"}`` (no secrets)."""
    pg = cfg.postgres
    if pg.managed:
        info = read_postgres_info(cfg) or {}
        port = info.get("port", pg.port)
        running = bool(_postmaster_pid(pg_data_dir(cfg))) and _accepts(pg.host, port)
        return {"kind": "postgresql", "managed": True, "running": running, "host": pg.host, "port": port,
                "data_dir": str(pg_data_dir(cfg))}
    return {"kind": "postgresql", "managed": False, "running": _accepts(pg.host, pg.port), "host": pg.host,
            "port": pg.port, "name": pg.name}


# ---------------------------------------------------------------------------------------------- the database
def _psql(target: PgTarget, password: str, sql: str, dbname: str) -> str:
    return _run([pg_bin("psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", target.host,
                 "-p", str(target.port), "-U", target.user, "-d", dbname, "-c", sql],
                f"PostgreSQL at {target.host}:{target.port} (database {dbname}, role {target.user})",
                env=_pg_env(password), timeout=60).strip()


def _database_exists(target: PgTarget, password: str) -> bool:
    return _psql(target, password, f"SELECT 1 FROM pg_database WHERE datname = '{target.name}'", "postgres") == "1"


def _is_empty(target: PgTarget, password: str) -> bool:
    return _psql(target, password, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
                 target.name) == "0"


def wait_accepting(target: PgTarget, timeout: float = 10.0) -> None:
    """Raise :class:`PostgresError` naming host:port unless it accepts connections within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not _accepts(target.host, target.port):
        if time.monotonic() > deadline:
            raise PostgresError(f"PostgreSQL at {target.host}:{target.port} is not accepting connections "
                                "(down, or another address): start it, or check server.postgres.host/port")
        time.sleep(0.3)


def prepare_database(cfg: ServerConfig, target: PgTarget, password: str, manage: tuple[Path, Path], version: str,
                     ls_env: dict[str, str]) -> str:
    """Make sure database ``target.name`` exists and is migrated; returns how ("ready", "restored",
    "migrated"). A fresh one is restored from the template dump, or migrated once and dumped.
    ``manage`` is (Label Studio's python, its manage.py)."""
    wait_accepting(target)
    if cfg.postgres.managed and not _database_exists(target, password):
        _psql(target, password, f'CREATE DATABASE "{target.name}"', "postgres")
    if not _is_empty(target, password):
        return "ready"  # Label Studio applies any migrations still missing itself
    for dump in (template_dump(cfg, version), shipped_dump(version)):
        if dump.is_file():
            _psql_script(target, password, gzip.decompress(dump.read_bytes()), f"restoring {dump} into")
            return "restored"
    _run([str(manage[0]), str(manage[1]), "migrate", "--noinput"],
         f"Label Studio migrations on {target.host}:{target.port}/{target.name}", env=ls_env, timeout=900)
    _save_template(template_dump(cfg, version), target, password)
    return "migrated"


def _psql_script(target: PgTarget, password: str, sql: bytes, what: str) -> None:
    _run([pg_bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", target.host, "-p", str(target.port),
          "-U", target.user, "-d", target.name, "-f", "-"],
         f"{what} {target.host}:{target.port}/{target.name}", env=_pg_env(password), timeout=300, stdin=sql)


def dump_database(target: PgTarget, password: str) -> bytes:
    """Plain-SQL ``pg_dump`` of ``target`` without owners or grants (restorable as any role)."""
    return _run([pg_bin("pg_dump"), "--no-owner", "--no-privileges", "-h", target.host, "-p", str(target.port),
                 "-U", target.user, "-d", target.name], f"dumping {target.host}:{target.port}/{target.name}",
                env=_pg_env(password), timeout=300).encode()


def _save_template(dump: Path, target: PgTarget, password: str) -> None:
    """The freshly migrated, user-less database as gzipped SQL (atomic; a lock keeps one writer)."""
    dump.parent.mkdir(parents=True, exist_ok=True)
    with open(dump.with_name(dump.name + ".lock"), "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if not dump.is_file():
            atomic_write_bytes(dump, gzip.compress(dump_database(target, password), mtime=0))


def django_env(target: PgTarget, password: str) -> dict[str, str]:
    """Label Studio's settings for PostgreSQL (label_studio/core/settings/base.py: DATABASES_ALL)."""
    return {"DJANGO_DB": "default", "POSTGRE_NAME": target.name, "POSTGRE_USER": target.user,
            "POSTGRE_PASSWORD": password, "POSTGRE_HOST": target.host, "POSTGRE_PORT": str(target.port)}


def database_target(cfg: ServerConfig) -> PgTarget:
    """Start the managed server if needed; where Label Studio's database is."""
    pg = cfg.postgres
    return start_postgres(cfg) if pg.managed else PgTarget(pg.host, pg.port, pg.name, pg.user)
