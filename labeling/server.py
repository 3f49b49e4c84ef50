"""Run a local Label Studio server: start, stop, status.

The server lives in its own virtualenv (``.venv-labelstudio``, made by scripts/install_labelstudio.sh:
the ``label-studio`` package cannot share one with Prefect 3.9) and keeps everything under
``data_dir``::

    data/labelstudio/
      label_studio.sqlite3, media/   Label Studio's own data
      credentials.json               admin e-mail, password, API token, Django secret (mode 0600)
      server.json                    pid, port, url of the running server
      labelstudio.log                server output (mode 0600)
      xdg/                           XDG_CONFIG_HOME, so nothing is written to ~/.config

It binds 127.0.0.1 on the configured port or, when that is taken, a free one (Label Studio itself would
silently move to the next port, so we choose and then check that the server answers on exactly that
port with our token). Analytics, Sentry and version checks are switched off.

    info = start_server(ServerConfig(data_dir="data/labelstudio"))
    stop_server(ServerConfig(data_dir="data/labelstudio"))
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from driftsketch.errors import DriftSketchError
from driftsketch.fileio import atomic_write_text
from labeling.config import ServerConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "label_studio.sqlite3"
CRED_ENV = {"email": "DRIFTSKETCH_LS_USERNAME", "password": "DRIFTSKETCH_LS_PASSWORD", "token": "DRIFTSKETCH_LS_TOKEN"}
NOT_COPIED = {"server.json", "labelstudio.log"}


class ServerError(DriftSketchError, RuntimeError):
    """The local Label Studio server could not be started or stopped; the message says why."""


@dataclass(frozen=True)
class ServerInfo:
    pid: int
    port: int
    url: str
    data_dir: Path


def _paths(cfg: ServerConfig) -> dict[str, Path]:
    d = Path(cfg.data_dir)
    return {"dir": d, "info": d / "server.json", "creds": d / "credentials.json",
            "log": d / "labelstudio.log", "xdg": d / "xdg", "db": d / DB_NAME}


def _write_private(path: Path, text: str) -> None:
    """Atomic write with mode 0600 from the first byte (tokens must never be world-readable)."""
    atomic_write_text(path, text)  # its temporary file comes from mkstemp: 0600 from creation


def load_or_create_credentials(cfg: ServerConfig) -> dict[str, str]:
    """Admin e-mail, password, token and Django secret of the local server.

    A password or token from the environment (``DRIFTSKETCH_LS_PASSWORD`` / ``_TOKEN``) is used and never
    written: ``credentials.json`` then holds only the name of the variable (``"password_env"``), so a later
    start without it fails with a clear message instead of a token the server refuses. What is generated
    stays in ``credentials.json`` (mode 0600). The environment wins over a stored value.
    """
    path = _paths(cfg)["creds"]
    stored = json.loads(path.read_text()) if path.is_file() else {}
    saved = dict(stored)
    saved.setdefault("email", os.environ.get(CRED_ENV["email"]) or cfg.admin_email)
    new = {"password": lambda: secrets.token_urlsafe(18), "token": lambda: secrets.token_hex(20),
           "secret_key": lambda: secrets.token_urlsafe(40)}
    for field, make in new.items():
        if field in saved or f"{field}_env" in saved:
            continue
        env = CRED_ENV.get(field)
        if env and os.environ.get(env):
            saved[f"{field}_env"] = env
        else:
            saved[field] = make()
    if saved != stored:
        _write_private(path, json.dumps(saved, indent=1))
    creds = {k: v for k, v in saved.items() if not k.endswith("_env")}
    for field, env in CRED_ENV.items():
        if os.environ.get(env):
            creds[field] = os.environ[env]
        elif field not in creds:
            raise ServerError(f"the admin {field} of {path.parent} came from ${env}, which is never written to disk: "
                              f"set ${env} again")
    return creds


def _django_password_hash(password: str, like: str) -> str:
    """``password`` hashed the way Django stored ``like`` (``pbkdf2_sha256$<iterations>$<salt>$<hash>``)."""
    import base64
    import hashlib

    algorithm, iterations, _, _ = like.split("$")
    if algorithm != "pbkdf2_sha256":
        raise ServerError(f"template password hash uses {algorithm!r}; only pbkdf2_sha256 can be re-keyed")
    salt = secrets.token_urlsafe(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations))
    return f"{algorithm}${iterations}${salt}${base64.b64encode(digest).decode()}"


def rekey_database(db: Path, creds: dict[str, str]) -> None:
    """Give the admin of a copied SQLite database ``creds``' e-mail, password and token, and drop its
    sessions: a copy of the template must not open with the template's (or any other copy's) login."""
    import sqlite3

    con = sqlite3.connect(db)
    try:
        with con:
            admins = con.execute("SELECT id, password FROM htx_user WHERE is_superuser = 1 ORDER BY id").fetchall()
            if len(admins) != 1:
                raise ServerError(f"{db}: expected one admin user in a template, found {len(admins)}")
            uid, old_hash = admins[0]
            con.execute("UPDATE htx_user SET email = ?, password = ? WHERE id = ?",
                        (creds["email"], _django_password_hash(creds["password"], old_hash), uid))
            con.execute("DELETE FROM authtoken_token WHERE user_id = ?", (uid,))
            con.execute("INSERT INTO authtoken_token (key, created, user_id) VALUES (?, datetime('now'), ?)",
                        (creds["token"], uid))
            con.execute("DELETE FROM django_session")
    finally:
        con.close()


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(host: str, preferred: int) -> int:
    """``preferred`` if it is free on ``host`` (0 means any), else a free port chosen by the OS."""
    if preferred and _port_free(host, preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def server_env(cfg: ServerConfig, creds: dict[str, str]) -> dict[str, str]:
    """Environment of the server process: data dir, admin user, legacy token, no phone-home."""
    p = _paths(cfg)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DRIFTSKETCH_LS_"))}
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(p["dir"].resolve()),
        "XDG_CONFIG_HOME": str(p["xdg"].resolve()),
        "LABEL_STUDIO_USERNAME": creds["email"],
        "LABEL_STUDIO_PASSWORD": creds["password"],
        "LABEL_STUDIO_USER_TOKEN": creds["token"],
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",  # only effective when the data dir is created
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "SECRET_KEY": creds["secret_key"],  # stable browser sessions across restarts
        "COLLECT_ANALYTICS": "false", "LATEST_VERSION_CHECK": "false",
        "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def files_env(cfg: ServerConfig) -> dict[str, str]:
    """Label Studio serves ``/data/local-files/?d=...`` from ``server.files_root`` (push.image_mode=url);
    a project's local-files storage still decides which folders under it anyone may read."""
    root = Path(cfg.files_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return {"LOCAL_FILES_SERVING_ENABLED": "true", "LOCAL_FILES_DOCUMENT_ROOT": str(root)}


# Label Studio's SSRF block list (label_studio/core/utils/io.py: validate_ip), kept whole except 127.0.0.1
LS_BANNED_SUBNETS = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
    "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "233.252.0.0/24", "240.0.0.0/4", "255.255.255.255/32", "::/128", "::1/128", "::ffff:0:0/96",
    "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001:0000::/32", "2001:20::/28",
    "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "ff00::/8")
WEBHOOK_HOST = "127.0.0.1"


def webhook_env() -> dict[str, str]:
    """Label Studio refuses webhooks to reserved addresses (SSRF protection), loopback included: keep
    every block but one address, 127.0.0.1, where the annotation receiver (tasks/events.py) listens."""
    import ipaddress

    allowed = ipaddress.ip_network(f"{WEBHOOK_HOST}/32")
    banned = []
    for net in map(ipaddress.ip_network, LS_BANNED_SUBNETS):
        inside = net.version == allowed.version and allowed.subnet_of(net)
        banned += list(net.address_exclude(allowed)) if inside else [net]
    return {"USE_DEFAULT_BANNED_SUBNETS": "false", "USER_ADDITIONAL_BANNED_SUBNETS": ",".join(map(str, banned))}


def _ls_site_packages(exe: Path) -> Path:
    found = sorted(exe.parent.parent.glob("lib/python3*/site-packages/label_studio"))
    if not found:
        raise ServerError(f"no label_studio package next to {exe}: run scripts/install_labelstudio.sh")
    return found[-1].parent


def database_env(cfg: ServerConfig, creds: dict[str, str], exe: Path) -> dict[str, str]:
    """Label Studio's database settings: nothing for SQLite; for PostgreSQL the managed server started
    (or the user's reached), the database created and migrated (from the template dump when there is
    one), and the POSTGRE_* variables. The password goes only into the server's environment."""
    if cfg.database == "sqlite":
        return {}
    from labeling import postgres

    if cfg.database != "postgresql":
        raise ServerError(f"server.database: {cfg.database!r} is not one of {', '.join(postgres.DATABASES)}")
    target, password = postgres.database_target(cfg), postgres.pg_password(cfg)
    env = postgres.django_env(target, password)
    site = _ls_site_packages(exe)
    version = next(site.glob("label_studio-*.dist-info")).name.removesuffix(".dist-info").split("-")[1]
    postgres.prepare_database(cfg, target, password, (exe.parent / "python", site / "label_studio" / "manage.py"),
                              version, {**server_env(cfg, creds), **env})
    return env


def _alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"label-studio" in cmdline  # not a recycled pid of another program


def _get_json(url: str, token: str | None = None, timeout: float = 3.0) -> dict | None:
    req = urllib.request.Request(url, headers={"Authorization": f"Token {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def read_info(cfg: ServerConfig) -> dict | None:
    """The ``server.json`` of a server started from ``cfg.data_dir``, or None."""
    path = _paths(cfg)["info"]
    return json.loads(path.read_text()) if path.is_file() else None


def server_status(cfg: ServerConfig) -> dict:
    """``{"running": bool, "healthy": bool, "url", "pid", "data_dir"}`` (no secrets)."""
    info = read_info(cfg) or {}
    pid = info.get("pid")
    running = bool(pid) and _alive(pid)
    healthy = running and (_get_json(f"{info['url']}/health") or {}).get("status") == "UP"
    out = {"running": running, "healthy": healthy, "url": info.get("url"), "pid": pid,
           "data_dir": str(Path(cfg.data_dir).resolve())}
    if cfg.database == "postgresql":
        from labeling.postgres import postgres_status

        out["database"] = postgres_status(cfg)
    return out


def copy_template(template_dir: str | Path, data_dir: str | Path, admin_email: str | None = None) -> None:
    """Copy a pre-migrated data dir (saves the ~48 s of first-start migrations) with fresh credentials: a
    new admin password, token and Django secret (from the environment where set, see
    :func:`load_or_create_credentials`), never the template's. ``admin_email``: the admin's e-mail in the
    copy (default: the template's)."""
    src, dst = Path(template_dir), Path(data_dir)
    if not (src / DB_NAME).is_file():
        raise ServerError(f"{src} is not a Label Studio data dir (no {DB_NAME})")
    if (dst / DB_NAME).exists():
        raise ServerError(f"{dst} already holds a Label Studio database: not overwritten by the template")
    template_email = json.loads((src / "credentials.json").read_text())["email"] \
        if (src / "credentials.json").is_file() else None
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "credentials.json").unlink(missing_ok=True)
    for item in src.iterdir():
        if item.name in NOT_COPIED or item.name in (DB_NAME, "credentials.json"):
            continue
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, dst / item.name)
    email = admin_email or template_email or ServerConfig().admin_email
    creds = load_or_create_credentials(ServerConfig(data_dir=str(dst), admin_email=email))
    tmp = dst / f".{DB_NAME}.copy"  # the database appears only re-keyed: a crash here leaves no usable copy
    shutil.copy2(src / DB_NAME, tmp)
    rekey_database(tmp, creds)
    os.replace(tmp, dst / DB_NAME)


def use_template(cfg: ServerConfig) -> bool:
    """Copy ``cfg.template_dir`` into a data dir that has no database yet (SQLite only); True if copied."""
    p = _paths(cfg)
    template = Path(cfg.template_dir)
    if cfg.database != "sqlite" or p["db"].exists() or not (template / DB_NAME).is_file():
        return False
    if template.resolve() == p["dir"].resolve():
        return False
    copy_template(template, p["dir"], cfg.admin_email)
    return True


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(host: str, allow_remote: bool, what: str = "Label Studio") -> str | None:
    """None for a loopback ``host``; else a warning to print when ``allow_remote``, or a ServerError."""
    if is_loopback(host):
        return None
    if not allow_remote:
        raise ServerError(f"{what} would listen on {host}, reachable from other machines: pass --allow-remote "
                          "to mean it (and put TLS and a firewall in front), or use 127.0.0.1")
    return (f"WARNING: {what} listens on {host}: anyone who can reach this machine can try to log in; "
            "serve it behind TLS and a firewall")


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _wait_ready(proc: subprocess.Popen, url: str, port: int, creds: dict, log: Path, timeout: float) -> None:
    """Wait until the server answers /health on exactly ``port`` and accepts our token as our admin."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"Label Studio exited with code {proc.returncode}; last lines of {log}:\n{_tail(log)}")
        if (_get_json(f"{url}/health") or {}).get("status") == "UP":
            who = _get_json(f"{url}/api/current-user/whoami", creds["token"])
            if who and who.get("email") == creds["email"]:
                return
            if f":{port}/" not in log.read_text(errors="replace") or who is not None:
                raise ServerError(f"a server answers on {url} but does not accept our token as {creds['email']}: "
                                  f"another Label Studio holds the port, or the data dir {log.parent} was "
                                  "created without LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN / with another token")
        time.sleep(0.5)
    raise ServerError(f"Label Studio did not become healthy on {url} within {timeout:.0f} s; see {log}:\n{_tail(log)}")


def start_server(cfg: ServerConfig, allow_remote: bool = False) -> ServerInfo:
    """Start the server (or return the running one) and wait until it is healthy and accepts our token.
    A fresh SQLite data dir starts from ``cfg.template_dir`` when that exists (:func:`use_template`). A
    ``cfg.host`` that is not loopback needs ``allow_remote`` (a warning goes to stderr)."""
    warning = check_host(cfg.host, allow_remote)
    if warning:
        print(warning, file=sys.stderr)
    p = _paths(cfg)
    status = server_status(cfg)
    if status["running"]:
        info = read_info(cfg)
        return ServerInfo(info["pid"], info["port"], info["url"], p["dir"].resolve())
    exe = Path(cfg.venv)
    exe = (exe if exe.is_absolute() else REPO_ROOT / exe) / "bin" / "label-studio"
    if not exe.is_file():
        raise ServerError(f"{exe} not found: run scripts/install_labelstudio.sh to create the server virtualenv")
    use_template(cfg)
    creds = load_or_create_credentials(cfg)
    port = pick_port(cfg.host, cfg.port)
    url = f"http://{cfg.host}:{port}"
    p["xdg"].mkdir(parents=True, exist_ok=True)
    log_fd = os.open(p["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # it may echo user info
    cmd = [str(exe), "start", "--no-browser", "--data-dir", str(p["dir"].resolve()),
           "--internal-host", cfg.host, "--port", str(port), "--enable-legacy-api-token"]
    env = {**server_env(cfg, creds), **files_env(cfg), **webhook_env(), **database_env(cfg, creds, exe)}
    proc = subprocess.Popen(cmd, env=env, stdout=log_fd, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd=p["dir"])
    os.close(log_fd)
    _write_private(p["info"], json.dumps({"pid": proc.pid, "port": port, "url": url, "started": time.time()}))
    try:
        _wait_ready(proc, url, port, creds, p["log"], cfg.start_timeout_s)
    except BaseException:
        _terminate(proc.pid)
        p["info"].unlink(missing_ok=True)
        raise
    return ServerInfo(proc.pid, port, url, p["dir"].resolve())


def _terminate(pid: int, timeout: float = 20.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)  # the server runs in its own session: pgid == pid
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:  # not our child: poll /proc instead
            if not _alive(pid):
                return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_server(cfg: ServerConfig) -> bool:
    """Stop the server started from ``cfg.data_dir`` (then its managed PostgreSQL, if any); returns False
    when none was running."""
    info = read_info(cfg)
    was_running = bool(info) and _alive(info["pid"])
    if was_running:
        _terminate(info["pid"])
    _paths(cfg)["info"].unlink(missing_ok=True)
    if cfg.database == "postgresql":
        from labeling.postgres import stop_postgres

        was_running = stop_postgres(cfg) or was_running
    return was_running
