"""Label Studio on a real PostgreSQL (session fixture ``labelstudio_pg``: a managed cluster of its own):
push with images served by URL, the bot answering, pull exactly once; PostgreSQL down mid-way (a pull
fails naming the server and stores nothing, then succeeds once it is back); its port taken."""
from __future__ import annotations

import json
import shutil
import socket
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from dpo.store import PreferenceStore
from driftsketch.config import replace_config
from driftsketch.data import load_dataset
from labeling.client import LabelStudioUnavailable
from labeling.config import BotConfig, ProjectsConfig, PushConfig
from labeling.images import TaskImages
from labeling.postgres import PostgresError, postgres_status, start_postgres, stop_postgres
from labeling.projects import setup_projects
from labeling.pull import pull_annotations
from labeling.push import PairBatch, push_tasks
from labeling.server import start_server

pytestmark = pytest.mark.slow


def _pairs(n: int) -> PairBatch:
    data = load_dataset("builtin")
    idx = np.arange(n) * 37
    return PairBatch(data.beziers[idx], data.beziers[idx + 1], data.labels[idx], data.class_names)


def _images(server, mode: str = "url") -> TaskImages:
    return TaskImages.from_config(PushConfig(image_mode=mode, image_size=64), server.cfg)


def _local_file(server, url_path: str) -> bytes:
    """GET a /data/local-files/ URL as a logged-in annotator would (session cookie)."""
    import http.cookiejar

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    base = server.info.url
    page = opener.open(f"{base}/user/login/").read().decode()
    csrf = page.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    body = urllib.parse.urlencode({"csrfmiddlewaretoken": csrf, "email": server.email,
                                   "password": server.password}).encode()
    opener.open(urllib.request.Request(f"{base}/user/login/", body, headers={"Referer": f"{base}/user/login/"}))
    return opener.open(f"{base}{url_path}").read()


def test_push_bot_pull_exactly_once_on_postgresql(labelstudio_pg, tiny_judge, tmp_path):
    from labeling.bot import run_bot

    server = labelstudio_pg
    ls, store = server.client(), PreferenceStore(tmp_path / "prefs")
    status = postgres_status(server.cfg)
    assert status["running"] and status["managed"] and status["host"] == "127.0.0.1"
    ids = setup_projects(ls, ProjectsConfig(pairwise_title="pg pairwise", rating_title="pg rating"))
    batch = _pairs(6)
    task_ids = push_tasks(ls, ids["pairwise"], batch, store=store, checkpoint="ck-pg", images=_images(server),
                          progress=False)
    assert len(task_ids) == 6
    data = ls.tasks.get(task_ids[0]).data
    assert data["image_left"].startswith("/data/local-files/?d=png/s") and len(json.dumps(data)) < 1024
    png = _local_file(server, data["image_left"])
    on_disk = _images(server).png_dir / data["image_left"].rsplit("/", 1)[1]
    assert png.startswith(b"\x89PNG") and png == on_disk.read_bytes()  # Label Studio serves our file

    out = run_bot(ls, ids["pairwise"], store, tiny_judge, BotConfig(email="bot@driftsketch.test", noise=0.0),
                  progress=False)
    assert out["answered"] == 6
    cursor = tmp_path / "cursor.json"
    first = pull_annotations(ls, ids, store, cursor_path=cursor)
    again = pull_annotations(ls, ids, store, cursor_path=cursor)
    assert first.new_records == 6 and again.new_records == 0 and len(store.records()) == 6
    assert {r.annotator for r in store.records()} == {"bot@driftsketch.test"}
    assert {r.source["task"] for r in store.records()} == set(task_ids)


def test_postgresql_down_then_back_loses_nothing(labelstudio_pg, tmp_path):
    server = labelstudio_pg
    ls, store = server.client(), PreferenceStore(tmp_path / "prefs")
    ids = setup_projects(ls, ProjectsConfig(pairwise_title="pg down pairwise", rating_title="pg down rating"))
    (tid,) = push_tasks(ls, ids["pairwise"], _pairs(1), store=store, checkpoint="ck-pg",
                        images=_images(server, "data_uri"), progress=False)
    ls.annotations.create(id=tid, result=[{"from_name": "preference", "to_name": "image_left", "type": "choices",
                                           "value": {"choices": ["A"]}}])
    cursor = tmp_path / "cursor.json"
    assert stop_postgres(server.cfg) and not postgres_status(server.cfg)["running"]
    try:
        with pytest.raises(LabelStudioUnavailable, match=server.info.url):
            pull_annotations(ls, ids, store, cursor_path=cursor, retries=1, backoff_s=0.05)
        assert store.records() == [] and not cursor.exists()
    finally:
        start_postgres(server.cfg)  # same port: Label Studio reconnects by itself
    assert pull_annotations(ls, ids, store, cursor_path=cursor).new_records == 1


def test_postgresql_port_taken_is_a_clear_error(labelstudio_pg, tmp_path):
    from fixtures_labelstudio import pg_server_config, traversable_tmpdir

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = pg_server_config(traversable_tmpdir("driftsketch-pg-busy-"))
        cfg = replace_config(cfg, postgres=replace_config(cfg.postgres, port=port))
        try:
            with pytest.raises(PostgresError, match=f"port 127.0.0.1:{port} .* is taken"):
                start_server(cfg)
            assert not postgres_status(cfg)["running"]
        finally:
            shutil.rmtree(Path(cfg.data_dir).parent, ignore_errors=True)
