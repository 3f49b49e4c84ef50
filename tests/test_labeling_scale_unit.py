"""Fast tests of the parts that take the pipeline past one machine: image modes, PostgreSQL settings and
secrets, shared-storage checks. No server needed."""
from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from dpo.store import PreferenceStore
from driftsketch.config import replace_config
from labeling.config import PushConfig, ServerConfig
from labeling.images import ImageConfigError, TaskImages, check_writable
from labeling.postgres import PgTarget, PostgresError, django_env, pg_password, postgres_status, template_dump
from labeling.push import PairBatch, build_tasks, sample_id
from labeling.server import database_env, files_env

REPO = Path(__file__).resolve().parent.parent


def _batch(n: int = 2) -> PairBatch:
    from driftsketch.data import load_dataset

    data = load_dataset("builtin")
    idx = np.arange(n) * 11
    return PairBatch(data.beziers[idx], data.beziers[idx + 1], data.labels[idx], data.class_names)


def test_url_mode_writes_each_png_once_and_tasks_hold_only_urls(tmp_path):
    server = ServerConfig(files_root=str(tmp_path / "files"))
    images = TaskImages.from_config(PushConfig(image_mode="url", image_size=64), server)
    batch = _batch()
    tasks = build_tasks(batch, PreferenceStore(tmp_path / "prefs"), images, checkpoint="ck", progress=False)
    for task, (a, b) in zip(tasks, zip(batch.beziers_a, batch.beziers_b)):
        shown = {task["image_left"], task["image_right"]}
        assert shown == {f"/data/local-files/?d=png/{sample_id(a)}.png", f"/data/local-files/?d=png/{sample_id(b)}.png"}
        assert len(json.dumps(task)) < 1024
    pngs = sorted((tmp_path / "files" / "png").glob("*.png"))
    svgs = sorted((tmp_path / "files" / "svg").glob("*.svg"))
    assert len(pngs) == len(svgs) == 4 and all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)
    before = {p: p.stat().st_mtime_ns for p in pngs}
    build_tasks(batch, PreferenceStore(tmp_path / "prefs"), images, checkpoint="ck", progress=False)
    assert {p: p.stat().st_mtime_ns for p in pngs} == before  # content-addressed: not rewritten


def test_both_modes_show_the_same_png(tmp_path):
    server = ServerConfig(files_root=str(tmp_path / "files"))
    batch, store = _batch(1), PreferenceStore(tmp_path / "prefs")
    url = build_tasks(batch, store, TaskImages.from_config(PushConfig(image_mode="url"), server),
                      checkpoint="ck", progress=False)[0]
    inline = build_tasks(batch, store, TaskImages.from_config(PushConfig(image_mode="data_uri"), server),
                         checkpoint="ck", progress=False)[0]
    assert inline["left"] == url["left"]
    png = tmp_path / "files" / url["image_left"].split("?d=", 1)[1]
    assert base64.b64decode(inline["image_left"].split(",", 1)[1]) == png.read_bytes()
    assert len(json.dumps(inline)) > 10 * len(json.dumps(url))


def test_image_settings_that_cannot_work_name_the_setting(tmp_path):
    server = ServerConfig(files_root=str(tmp_path / "files"))
    with pytest.raises(ImageConfigError, match="push.image_mode"):
        TaskImages.from_config(PushConfig(image_mode="base64"), server)
    with pytest.raises(ImageConfigError, match=r"push.png_dir: .*outside|push.png_dir: .* inside server.files_root"):
        TaskImages.from_config(PushConfig(png_dir=str(tmp_path / "elsewhere")), server)
    with pytest.raises(ImageConfigError, match="push.svg_dir"):
        TaskImages.from_config(PushConfig(svg_dir=str(tmp_path / "files")), server)  # the root itself
    TaskImages.from_config(PushConfig(image_mode="data_uri", svg_dir=str(tmp_path / "elsewhere")), server)


def test_a_storage_path_that_is_not_writable_is_named(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores mode bits: a file where a folder must be instead
            locked.chmod(0o700)
            locked = tmp_path / "a-file"
            locked.write_text("")
        with pytest.raises(ImageConfigError, match=f"push image folder: {locked}.* not writable"):
            check_writable(locked / "png", "push image folder")
    finally:
        (tmp_path / "locked").chmod(0o700)


def test_files_env_serves_the_files_root(tmp_path):
    env = files_env(ServerConfig(files_root=str(tmp_path / "files")))
    assert env == {"LOCAL_FILES_SERVING_ENABLED": "true", "LOCAL_FILES_DOCUMENT_ROOT": str(tmp_path / "files")}
    assert (tmp_path / "files").is_dir()


def test_postgres_password_generated_private_env_wins_and_is_never_written(tmp_path, monkeypatch):
    cfg = ServerConfig(data_dir=str(tmp_path / "ls"), database="postgresql")
    monkeypatch.delenv(cfg.postgres.password_env, raising=False)
    first = pg_password(cfg)
    creds = tmp_path / "ls" / "credentials.json"
    assert pg_password(cfg) == first and len(first) >= 24
    assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600
    monkeypatch.setenv(cfg.postgres.password_env, "from-the-env")
    assert pg_password(cfg) == "from-the-env" and "from-the-env" not in creds.read_text()
    own = replace_config(cfg, postgres=replace_config(cfg.postgres, managed=False))
    assert pg_password(own) == "from-the-env"
    monkeypatch.delenv(cfg.postgres.password_env)
    with pytest.raises(PostgresError, match="DRIFTSKETCH_PG_PASSWORD"):
        pg_password(own)


def test_label_studio_postgres_settings_and_template_path():
    env = django_env(PgTarget("127.0.0.1", 5433, "labelstudio", "labelstudio"), "pw")
    assert env == {"DJANGO_DB": "default", "POSTGRE_NAME": "labelstudio", "POSTGRE_USER": "labelstudio",
                   "POSTGRE_PASSWORD": "pw", "POSTGRE_HOST": "127.0.0.1", "POSTGRE_PORT": "5433"}
    path = template_dump(ServerConfig(template_dir="data/labelstudio-template"), "1.23.2")
    assert str(path) == "data/labelstudio-template-postgres/labelstudio-1.23.2.sql.gz"


def test_the_shipped_postgres_template_is_the_pinned_label_studio_schema_without_users():
    import gzip
    import re

    from labeling.postgres import shipped_dump

    pinned = re.search(r"LABEL_STUDIO_VERSION=(\S+)", (REPO / "scripts/install_labelstudio.sh").read_text())[1]
    sql = gzip.decompress(shipped_dump(pinned).read_bytes()).decode()
    assert "CREATE TABLE public.htx_user" in sql and "COPY public.django_migrations" in sql
    users = sql.split("COPY public.htx_user ", 1)[1].split("\\.", 1)[0]
    tokens = sql.split("COPY public.authtoken_token ", 1)[1].split("\\.", 1)[0]
    assert users.count("\n") == 1 and tokens.count("\n") == 1  # the COPY header only: no rows


def test_database_setting_is_checked_and_sqlite_needs_nothing(tmp_path):
    from labeling.server import ServerError

    assert database_env(ServerConfig(data_dir=str(tmp_path)), {}, tmp_path / "label-studio") == {}
    with pytest.raises(ServerError, match="server.database: 'mysql'"):
        database_env(ServerConfig(data_dir=str(tmp_path), database="mysql"), {}, tmp_path / "label-studio")


def test_postgres_down_reads_as_not_running_and_is_a_clear_error(tmp_path):
    from labeling.postgres import wait_accepting
    from labeling.server import pick_port

    port = pick_port("127.0.0.1", 0)  # nothing listens there
    with pytest.raises(PostgresError, match=f"PostgreSQL at 127.0.0.1:{port} is not accepting connections"):
        wait_accepting(PgTarget("127.0.0.1", port, "labelstudio", "labelstudio"), timeout=0.3)
    own = ServerConfig(data_dir=str(tmp_path), database="postgresql")
    own = replace_config(own, postgres=replace_config(own.postgres, managed=False, port=port))
    assert postgres_status(own) == {"kind": "postgresql", "managed": False, "running": False,
                                    "host": "127.0.0.1", "port": port, "name": "labelstudio"}


def _post(url: str, body: dict, secret: str | None) -> int:
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {secret}"} if secret else {})}
    req = urllib.request.Request(url, json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_webhook_receiver_refuses_a_wrong_secret_and_logs_it(caplog):
    import threading
    import time

    from labeling.webhook import WebhookReceiver

    got, done = [], threading.Event()
    receiver = WebhookReceiver("right", lambda batch: (got.extend(batch), done.set()), port=0).start()
    body = {"action": "ANNOTATION_CREATED", "project": {"id": 3}, "annotation": {"id": 17, "task": 5, "project": 3}}
    try:
        with caplog.at_level("WARNING", logger="driftsketch.webhook"):
            assert _post(receiver.url, body, "wrong") == 403 and _post(receiver.url, body, None) == 403
        assert receiver.stats.refused == 2 and "wrong or missing secret" in caplog.text and "wrong\n" not in caplog.text
        t0 = time.perf_counter()
        assert _post(receiver.url, body, "right") == 200
        assert time.perf_counter() - t0 < 1.0  # inside Label Studio's 1-second webhook timeout
        bulk = {"action": "ANNOTATIONS_CREATED", "project": {"id": 3},
                "annotation": [{"id": 18, "task": {"id": 6}}, {"id": 19, "task": {"id": 7}}]}
        assert _post(receiver.url, bulk, "right") == 200
        assert _post(receiver.url, {"action": "TASKS_CREATED"}, "right") == 200
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        receiver.stop()
    assert [(a.project, a.annotation, a.task) for a in got] == [(3, 17, 5), (3, 18, 6), (3, 19, 7)]
    assert receiver.stats.accepted == 3 and receiver.stats.annotations == 3


def test_annotation_events_have_stable_ids():
    from labeling.webhook import NewAnnotation
    from tasks.events import EVENT, annotation_event

    one = annotation_event("http://ls:8080", NewAnnotation(3, 17, 5))
    assert one == annotation_event("http://ls:8080/", NewAnnotation(3, 17, 5))  # a re-delivery: the same event
    assert one["id"] != annotation_event("http://ls:8080", NewAnnotation(3, 18, 5))["id"]
    assert one["event"] == EVENT and one["resource"]["prefect.resource.id"] == "driftsketch.labelstudio.project.3"


def test_round_storage_check_names_the_setting_and_changes_nothing(tmp_path):
    from driftsketch.storage import StorageError, check_storage
    from flows.params import load_round_params
    from tasks.labeling import check_round_storage

    check_storage({"registry_dir": tmp_path / "ok"})
    assert list((tmp_path / "ok").iterdir()) == []  # the probe is gone
    blocker = tmp_path / "registry-file"
    blocker.write_text("keep me")
    params = load_round_params(overrides=[f"labelstudio.overrides=[server.files_root={tmp_path}/files]"])
    with pytest.raises(StorageError, match=f"registry_dir: {blocker}/reg cannot hold"):
        check_round_storage.fn(params.labelstudio, str(blocker / "reg"), str(tmp_path / "prefs"), str(tmp_path / "w"))
    assert blocker.read_text() == "keep me"
    with pytest.raises(StorageError, match="labelstudio push.svg_dir"):
        check_round_storage.fn(params.labelstudio.model_copy(update={"overrides": [
            f"server.files_root={blocker}"]}), str(tmp_path / "r"), str(tmp_path / "p"), str(tmp_path / "w"))
