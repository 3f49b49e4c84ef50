"""Label Studio end to end against a real server (session fixture ``labelstudio``): project setup, push,
annotate through the API, pull exactly once (also across a killed pull), updates, several annotators,
rating, the open queue, the bot, a wrong token and a stopped server."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from driftsketch.data import load_dataset
from dpo.store import PreferenceStore
from labeling.client import Connection, LabelStudioUnavailable, connect
from labeling.config import BotConfig, ProjectsConfig, ServerConfig
from labeling.projects import ProjectError, ensure_project, find_project, pairwise_config, setup_projects
from labeling.pull import load_cursor, pull_annotations
from labeling.push import PairBatch, RatingBatch, push_tasks, sample_id
from labeling.queue import open_task_count, retire_tasks

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sketches():
    data = load_dataset("builtin")
    return data.beziers[:40], data.labels[:40], data.class_names


def _projects(ls, name: str) -> dict[str, int]:
    return setup_projects(ls, ProjectsConfig(pairwise_title=f"{name} pairwise", rating_title=f"{name} rating"))


def _pairs(sketches, idx_a, idx_b, noise=True) -> PairBatch:
    x, y, names = sketches
    rng = np.random.default_rng(0)
    na = rng.standard_normal((len(idx_a), 32, 8)).astype(np.float32) if noise else None
    nb = rng.standard_normal((len(idx_b), 32, 8)).astype(np.float32) if noise else None
    return PairBatch(x[idx_a], x[idx_b], y[idx_a], names, na, nb)


def _push(ls, pid, batch, store, tmp_path, checkpoint="ck-test", seed=0):
    return push_tasks(ls, pid, batch, store=store, checkpoint=checkpoint, round_id="round-1",
                      svg_dir=tmp_path / "svg", image_size=64, seed=seed, progress=False)


def _choose(ls, task_id, screen: str, user=None, both_bad=False, cancelled=False, lead_time=1.5):
    result = [] if cancelled else [{"from_name": "preference", "to_name": "image_left", "type": "choices",
                                    "value": {"choices": [screen]}}]
    if both_bad:
        result.append({"from_name": "flags", "to_name": "image_left", "type": "choices",
                       "value": {"choices": ["both are bad"]}})
    kw = {"completed_by": user} if user else {}
    return ls.annotations.create(id=task_id, result=result, was_cancelled=cancelled, lead_time=lead_time, **kw)


def _pull(ls, ids, store, tmp_path, **kw):
    return pull_annotations(ls, ids, store, cursor_path=tmp_path / "cursor.json", session="ls", **kw)


def test_project_setup_is_idempotent_and_checks_the_config(labelstudio):
    ls = labelstudio.client()
    first, second = _projects(ls, "setup"), _projects(ls, "setup")
    assert first == second and first["pairwise"] != first["rating"]
    titles = [p.title for p in ls.projects.list()]
    assert titles.count("setup pairwise") == 1 and titles.count("setup rating") == 1
    with pytest.raises(ProjectError, match="different label config"):
        ensure_project(ls, "setup pairwise", pairwise_config("100px"))
    assert find_project(ls, "no such project") is None


def test_push_annotate_pull_exactly_once(labelstudio, sketches, tmp_path, monkeypatch):
    ls, store = labelstudio.client(), PreferenceStore(tmp_path / "prefs")
    ids = _projects(ls, "flow")
    batch = _pairs(sketches, [0, 1, 2, 3, 4], [5, 6, 7, 8, 9])
    task_ids = _push(ls, ids["pairwise"], batch, store, tmp_path)
    assert len(task_ids) == 5
    tasks = {t.id: t for t in ls.tasks.list(project=ids["pairwise"], fields="all")}
    lefts = {tasks[t].data["left"] for t in task_ids}
    assert lefts == {"a", "b"}  # randomised (seed 0 gives both sides in 5 tasks)
    for i, tid in enumerate(task_ids):
        d = tasks[tid].data
        assert d["image_left"].startswith("data:image/png;base64,") and d["checkpoint"] == "ck-test"
        assert d["round_id"] == "round-1" and d["class_name"] == batch.class_names[batch.class_labels[i]]
        assert np.array_equal(np.load(store.root / d["beziers_a"]), batch.beziers_a[i])
        assert np.array_equal(np.load(store.root / d["noise_b"]), batch.noise_b[i])
        assert (tmp_path / "svg" / f"{d['sample_a']}.svg").is_file()
    # annotate through the API: A, B, tie + both-bad, one skipped, one left open
    screens = {task_ids[0]: "A", task_ids[1]: "B", task_ids[2]: "tie"}
    for tid, screen in screens.items():
        _choose(ls, tid, screen, both_bad=screen == "tie")
    _choose(ls, task_ids[3], "", cancelled=True)
    report = _pull(ls, ids, store, tmp_path)
    assert report.new_records == 3 and report.skipped == 1 and not report.unusable
    recs = {r.source["task"]: r for r in store.records()}
    for tid, screen in screens.items():
        left = tasks[tid].data["left"]
        want = "tie" if screen == "tie" else (left if screen == "A" else ({"a": "b", "b": "a"}[left]))
        r = recs[tid]
        assert (r.preference, r.left, r.both_bad) == (want, left, screen == "tie")
        assert r.annotator == labelstudio.email and r.lead_time == 1.5 and r.checkpoint == "ck-test"
        assert r.source["project"] == ids["pairwise"] and r.source["url"] == labelstudio.info.url
        assert r.beziers_a == tasks[tid].data["beziers_a"] and r.round_id == "round-1"
        assert r.id == f"ls-p{ids['pairwise']}-a{r.source['annotation']}-v1"
    # pull again: nothing new
    again = _pull(ls, ids, store, tmp_path)
    assert again.new_records == 0 and again.already_stored == 3 and len(store.records()) == 3
    # the cursor really narrows the fetch (with no safety margin nothing has changed since it)
    monkeypatch.setattr("labeling.pull.CURSOR_MARGIN", timedelta(0))
    assert _pull(ls, ids, store, tmp_path).fetched_tasks == 0
    # an updated annotation becomes a new record that supersedes the old one
    ann = ls.annotations.list(id=task_ids[0])[0]
    ls.annotations.update(ann.id, result=[{"from_name": "preference", "to_name": "image_left",
                                           "type": "choices", "value": {"choices": ["B"]}}])
    upd = _pull(ls, ids, store, tmp_path)
    assert upd.new_records == 1 and upd.superseding == 1
    newest = [r for r in store.records() if r.id == upd.record_ids[0]][0]
    assert newest.supersedes == recs[task_ids[0]].id and newest.preference != recs[task_ids[0]].preference
    assert newest.id == recs[task_ids[0]].id[: -len("v1")] + "v2"


def test_several_annotators_give_several_records_and_agreement(labelstudio, sketches, tmp_path):
    ls, store = labelstudio.client(), PreferenceStore(tmp_path / "prefs")
    ids = _projects(ls, "overlap")
    task_ids = _push(ls, ids["pairwise"], _pairs(sketches, [10, 11, 12, 13], [14, 15, 16, 17]), store, tmp_path)
    other = ls.users.create(email=f"second-{uuid.uuid4().hex[:6]}@driftsketch.test", username="second").id
    for i, tid in enumerate(task_ids):
        _choose(ls, tid, "A")
        _choose(ls, tid, "A" if i < 3 else "B", user=other)
    report = _pull(ls, ids, store, tmp_path)
    assert report.new_records == 8
    assert len({r.annotator for r in store.records()}) == 2
    pair = report.agreement["pairwise"]
    assert pair["tasks"] == 4 and pair["observed_agreement"] == pytest.approx(0.75)


def test_rating_project(labelstudio, sketches, tmp_path):
    ls, store = labelstudio.client(), PreferenceStore(tmp_path / "prefs")
    ids = _projects(ls, "rating")
    x, y, names = sketches
    task_ids = _push(ls, ids["rating"], RatingBatch(x[20:23], y[20:23], names), store, tmp_path)
    for tid, stars in zip(task_ids, (1, 4, 5)):
        ls.annotations.create(id=tid, result=[{"from_name": "rating", "to_name": "image", "type": "rating",
                                               "value": {"rating": stars}}], lead_time=2.0)
    report = _pull(ls, ids, store, tmp_path)
    assert report.new_records == 3
    got = {r.source["task"]: (r.comparison_type, r.rating, r.beziers_b) for r in store.records()}
    assert got == {t: ("absolute", s, None) for t, s in zip(task_ids, (1, 4, 5))}


KILLED_PULL = """
import os, signal, sys
from dpo.store import PreferenceStore
from labeling.client import Connection, connect
from labeling.pull import pull_annotations
url, token, pid, root, cursor, stage = sys.argv[1:]
def die(s):
    if s == stage:
        os.kill(os.getpid(), signal.SIGKILL)
pull_annotations(connect(Connection(url, token)), [int(pid)], PreferenceStore(root), cursor_path=cursor,
                 session="ls", on_stage=die)
"""


def _killed_pull(server, pid, store, cursor, stage) -> int:
    args = [server.info.url, server.conn.api_key, str(pid), str(store.root), str(cursor), stage]
    return subprocess.run([sys.executable, "-c", KILLED_PULL, *args], cwd=REPO, timeout=120).returncode


def test_a_pull_killed_between_fetch_and_write_loses_and_duplicates_nothing(labelstudio, sketches, tmp_path):
    ls, store, cursor = labelstudio.client(), PreferenceStore(tmp_path / "prefs"), tmp_path / "cursor.json"
    ids = _projects(ls, "kill")
    task_ids = _push(ls, ids["pairwise"], _pairs(sketches, [0, 1, 2, 3], [4, 5, 6, 7]), store, tmp_path)
    for tid in task_ids[:2]:
        _choose(ls, tid, "A")
    assert _killed_pull(labelstudio, ids["pairwise"], store, cursor, "fetched") == -9  # real fetch, then SIGKILL
    assert store.records() == [] and not cursor.exists()
    assert _pull(ls, [ids["pairwise"]], store, tmp_path).new_records == 2
    for tid in task_ids[2:]:
        _choose(ls, tid, "B")
    before = load_cursor(cursor)
    assert _killed_pull(labelstudio, ids["pairwise"], store, cursor, "written") == -9  # written, no cursor
    assert len(store.records()) == 4 and load_cursor(cursor) == before
    rerun = _pull(ls, [ids["pairwise"]], store, tmp_path)
    assert rerun.new_records == 0 and rerun.already_stored == 4
    assert len(store.records()) == 4 and len({r.source_key for r in store.records()}) == 4
    assert load_cursor(cursor) != before


def test_open_queue_and_retiring_stale_tasks(labelstudio, sketches, tmp_path):
    ls, store = labelstudio.client(), PreferenceStore(tmp_path / "prefs")
    pid = _projects(ls, "queue")["pairwise"]
    old = _push(ls, pid, _pairs(sketches, [0, 1, 2], [3, 4, 5]), store, tmp_path, checkpoint="ck-old")
    _push(ls, pid, _pairs(sketches, [6, 7], [8, 9]), store, tmp_path, checkpoint="ck-new")
    _choose(ls, old[0], "A")
    assert open_task_count(ls, pid) == 4 and open_task_count(ls, pid, checkpoint="ck-new") == 2
    assert sorted(retire_tasks(ls, pid, keep_checkpoint="ck-new")) == sorted(old[1:])
    assert open_task_count(ls, pid) == 2
    assert {t.id for t in ls.tasks.list(project=pid)} >= {old[0]}  # annotated tasks are kept
    assert retire_tasks(ls, pid, keep_checkpoint="ck-new") == []


def test_wrong_token_is_a_clear_error_and_writes_nothing(labelstudio, tmp_path):
    store = PreferenceStore(tmp_path / "prefs")
    ls = connect(Connection(labelstudio.info.url, "not-the-token"))
    with pytest.raises(LabelStudioUnavailable, match=f"{labelstudio.info.url}.*rejected the API token"):
        _pull(ls, [1], store, tmp_path)
    assert store.records() == [] and not (tmp_path / "cursor.json").exists()


@pytest.fixture(scope="module")
def judge(tiny_judge):
    return tiny_judge  # any judge will do: the test compares the bot with it


def test_bot_answers_open_tasks_as_its_own_user_like_its_judge(labelstudio, sketches, tmp_path, judge):
    from labeling.bot import run_bot

    ls, store = labelstudio.client(), PreferenceStore(tmp_path / "prefs")
    ids = _projects(ls, "bot")
    batch = _pairs(sketches, list(range(0, 8)), list(range(8, 16)))
    _push(ls, ids["pairwise"], batch, store, tmp_path)
    cfg = BotConfig(email="bot@driftsketch.test", noise=0.0, tie_margin=0.0)
    out = run_bot(ls, ids["pairwise"], store, judge, cfg, progress=False)
    assert out["answered"] == 8 and open_task_count(ls, ids["pairwise"]) == 0
    assert run_bot(ls, ids["pairwise"], store, judge, cfg, progress=False)["answered"] == 0
    _pull(ls, ids, store, tmp_path)
    recs = store.records()
    assert len(recs) == 8 and {r.annotator for r in recs} == {"bot@driftsketch.test"}
    sa = judge.score(batch.beziers_a, batch.class_labels)
    sb = judge.score(batch.beziers_b, batch.class_labels)
    by_a = {r.beziers_a: r.preference for r in recs}
    for i in range(8):
        rel = f"beziers/{sample_id(batch.beziers_a[i])}.npy"
        assert by_a[rel] == ("a" if sa[i] > sb[i] else "b")


def test_the_bot_gives_the_same_answers_whatever_order_label_studio_hands_tasks_out(labelstudio, sketches,
                                                                                    tmp_path, judge):
    """With coin-flip noise, the answer to a pair depends on the pair and the bot's seed only: the same pairs
    pushed in the opposite order (other task ids, other dispatch order) get the same answers."""
    from labeling.bot import run_bot

    ls, answers = labelstudio.client(), []
    cfg = BotConfig(email="order-bot@driftsketch.test", noise=0.5, tie_margin=0.0)
    for name, order in (("order-fwd", list(range(8))), ("order-rev", list(range(7, -1, -1)))):
        store, ids = PreferenceStore(tmp_path / name), _projects(ls, name)
        _push(ls, ids["pairwise"], _pairs(sketches, order, [i + 8 for i in order]), store, tmp_path / name)
        assert run_bot(ls, ids["pairwise"], store, judge, cfg, progress=False)["answered"] == 8
        _pull(ls, ids, store, tmp_path / name)
        answers.append({(r.beziers_a, r.beziers_b): r.preference for r in store.records()})
    assert len(answers[0]) == 8 and answers[0] == answers[1]
    assert set(answers[0].values()) == {"a", "b"}  # the noise did act


def test_cli_start_status_stop_and_a_stopped_server(labelstudio, sketches, tmp_path):
    """A second server started by the CLI; stopped, a pull fails naming the URL and writes nothing;
    restarted (maybe on another port), the same pull succeeds."""
    from fixtures_labelstudio import ensure_template

    from labeling.cli import main
    from labeling.server import copy_template, read_info

    data_dir = tmp_path / "ls2"
    copy_template(ensure_template(), data_dir)
    opts = ["--set", f"server.data_dir={data_dir}", "--set", "server.port=0"]
    assert main(["start", *opts]) == 0 and main(["status", *opts]) == 0
    assert main(["start", *opts]) == 0  # already running: same server
    info = read_info(ServerConfig(data_dir=str(data_dir)))
    token = json.loads((data_dir / "credentials.json").read_text())["token"]
    ls, store = connect(Connection(info["url"], token)), PreferenceStore(tmp_path / "prefs")
    ids = _projects(ls, "stopped")
    (tid,) = _push(ls, ids["pairwise"], _pairs(sketches, [0], [1]), store, tmp_path)
    _choose(ls, tid, "A")
    assert main(["stop", *opts]) == 0 and main(["status", *opts]) == 1
    with pytest.raises(LabelStudioUnavailable, match=f"{info['url']} is unreachable after 3 attempts"):
        _pull(ls, ids, store, tmp_path, retries=2, backoff_s=0.05)
    assert store.records() == [] and not (tmp_path / "cursor.json").exists()
    try:
        assert main(["start", *opts]) == 0
        new = read_info(ServerConfig(data_dir=str(data_dir)))
        assert _pull(connect(Connection(new["url"], token)), ids, store, tmp_path).new_records == 1
    finally:
        main(["stop", *opts])
