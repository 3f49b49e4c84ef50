"""Label Studio at scale: {SQLite, PostgreSQL} x {data_uri, url} with N pairs, 4 bot processes, pulls.

    nice -n 10 .venv/bin/python benchmarks/bench_labeling_scale.py --pairs 10000
    nice -n 10 .venv/bin/python benchmarks/bench_labeling_scale.py --pairs 50000 --configs postgresql/url

For every configuration it starts its own Label Studio (a copy of the test template; PostgreSQL: a
managed cluster restored from the dump template), then

1. push: ``N + 100`` pairwise tasks, imported in bulk (100 per request). Tasks are built by the real
   push code (arrays into the store, SVG, PNG file or data URI) for ``--unique`` distinct pairs of
   built-in sketches and repeated with a ``copy`` number to N, so rendering is paid once (reported per
   pair separately: it does not depend on the server). ``N - --bot-answers`` of them are imported with
   an answer already (Label Studio's import of annotated tasks: on this shared 2-core machine the bots
   answer a few per second, hours for 50k); the last ``--bot-answers + 100`` plain, timed: push pairs/s
   at that database size;
2. answer: ``--bots`` processes at once, each its share of ``--bot-answers`` tasks (task id modulo the
   bot count), one ``POST /api/tasks/<id>/annotations`` per task as the bot user, a random A/B/tie;
   a webhook receiver (labeling/webhook.py) counts what Label Studio announces;
3. full pull: all N annotations into a preference store with no cursor (labeling.pull, exactly once);
4. incremental pull: once the earlier answers are older than the pull's 2-minute re-read margin, the
   bots answer the 100 remaining tasks and the next pull (with the cursor) is timed;
5. task list: ``GET /api/tasks?project=..&page=..&page_size=30`` (the Data Manager's page) on 40
   random pages: p50 / p95 latency;
6. database size: the SQLite file, or ``pg_database_size``.

It prints one JSON line per configuration (and writes them to ``--out``), with ``uptime`` before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
INCREMENT = 100
CONFIGS = ("sqlite/data_uri", "sqlite/url", "postgresql/data_uri", "postgresql/url")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def unique_pairs(n: int, seed: int = 0):
    """``n`` same-class pairs of built-in sketches."""
    from driftsketch.data import load_dataset
    from labeling.push import PairBatch

    data = load_dataset("builtin")
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(data.labels), n)
    b = np.array([rng.choice(np.flatnonzero(data.labels == data.labels[i])) for i in a])
    return PairBatch(data.beziers[a], data.beziers[b], data.labels[a], data.class_names)


def build(mode: str, n_unique: int, store, files_root: Path) -> tuple[list[dict], float]:
    """Task data of ``n_unique`` pairs in ``mode``; seconds per pair to render and store them."""
    from labeling.config import PushConfig, ServerConfig
    from labeling.images import TaskImages
    from labeling.push import build_tasks

    images = TaskImages.from_config(PushConfig(image_mode=mode), ServerConfig(files_root=str(files_root)))
    t = time.perf_counter()
    tasks = build_tasks(unique_pairs(n_unique), store, images, checkpoint="ck-scale", progress=False)
    return tasks, (time.perf_counter() - t) / n_unique


def repeat(tasks: list[dict], n: int) -> list[dict]:
    return [{**tasks[i % len(tasks)], "copy": i} for i in range(n)]


def start(db: str, root: Path):
    from fixtures_labelstudio import _start, pg_server_config, start_copy

    files = root / "files"
    if db == "sqlite":
        return start_copy(root / "ls", files_root=str(files))
    cfg = pg_server_config(root)
    return _start(cfg)


def answer(url: str, token: str, bot_id: int, items: list[tuple[int, str]], seed: int) -> int:
    """One bot process: an annotation for every (task id, left) in ``items``."""
    from labeling.bot import _results
    from labeling.client import Connection, connect

    ls = connect(Connection(url, token))
    rng = np.random.default_rng(seed)
    prefs = rng.choice(["a", "b", "tie"], size=len(items), p=[0.45, 0.45, 0.1])
    results = _results("pairwise", {"preference": "preference"}, list(prefs), [left for _, left in items])
    for (tid, _), result in zip(items, results):
        ls.annotations.create(id=tid, result=result, completed_by=bot_id, lead_time=1.0)
    return len(items)


def run_bots(server, bot_id: int, items: list[tuple[int, str]], bots: int) -> float:
    """``bots`` processes at once, each answering its share; seconds of wall time."""
    shares = [[it for it in items if it[0] % bots == k] for k in range(bots)]
    t = time.perf_counter()
    with ProcessPoolExecutor(bots) as pool:
        done = sum(pool.map(answer, [server.info.url] * bots, [server.conn.api_key] * bots, [bot_id] * bots,
                            shares, range(bots)))
    assert done == len(items)
    return time.perf_counter() - t


def task_list_latency(server, project_id: int, n_tasks: int, samples: int = 40) -> tuple[float, float]:
    import httpx

    pages = max(1, n_tasks // 30)
    rng = np.random.default_rng(1)
    times = []
    with httpx.Client(headers={"Authorization": f"Token {server.conn.api_key}"}, timeout=120) as client:
        for page in [1, *rng.integers(1, pages + 1, samples - 1)]:
            t = time.perf_counter()
            resp = client.get(f"{server.info.url}/api/tasks", params={"project": project_id, "page": int(page),
                                                                     "page_size": 30})
            resp.raise_for_status()
            times.append(time.perf_counter() - t)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def db_size_mib(server) -> float:
    cfg = server.cfg
    if cfg.database == "sqlite":
        return (Path(cfg.data_dir) / "label_studio.sqlite3").stat().st_size / 2**20
    from labeling.postgres import _psql, database_target, pg_password

    target = database_target(cfg)
    return int(_psql(target, pg_password(cfg), f"SELECT pg_database_size('{target.name}')", target.name)) / 2**20


def preanswered(tasks: list[dict], bot_id: int, seed: int = 2) -> list[dict]:
    """Tasks imported together with one answer each (Label Studio's import of annotated tasks)."""
    from labeling.bot import _results

    prefs = np.random.default_rng(seed).choice(["a", "b", "tie"], size=len(tasks), p=[0.45, 0.45, 0.1])
    results = _results("pairwise", {"preference": "preference"}, list(prefs), [t["left"] for t in tasks])
    return [{"data": t, "annotations": [{"result": r, "completed_by": bot_id, "lead_time": 1.0}]}
            for t, r in zip(tasks, results)]


def run_config(config: str, n: int, n_unique: int, bots: int, bot_answers: int, work: Path) -> dict:
    from dpo.store import PreferenceStore
    from labeling.bot import ensure_bot_user
    from labeling.config import ProjectsConfig, PushConfig
    from labeling.images import TaskImages, ensure_local_storage
    from labeling.projects import setup_projects
    from labeling.pull import CURSOR_MARGIN, pull_annotations
    from labeling.push import import_tasks
    from labeling.server import stop_server
    from labeling.webhook import WebhookReceiver, register_webhook

    db, mode = config.split("/")
    root = work / config.replace("/", "-")
    root.mkdir(parents=True)
    root.chmod(0o711)
    out: dict = {"config": config, "pairs": n, "unique_pairs": n_unique, "bots": bots, "bot_answers": bot_answers,
                 "uptime_before": uptime()}
    server = start(db, root)
    receiver = None
    try:
        ls = server.client()
        pid = setup_projects(ls, ProjectsConfig(), ("pairwise",))["pairwise"]
        store = PreferenceStore(root / "store")
        tasks, out["render_store_s_per_pair"] = build(mode, n_unique, store, root / "files")
        ensure_local_storage(ls, pid, TaskImages.from_config(PushConfig(image_mode=mode), server.cfg))
        out["task_json_kib"] = float(np.mean([len(json.dumps(t)) for t in tasks])) / 1024
        all_tasks = repeat(tasks, n + INCREMENT)
        bot_id = ensure_bot_user(ls, "bot@driftsketch.local")
        n_pre = n - bot_answers
        t = time.perf_counter()
        import_tasks(ls, pid, preanswered(all_tasks[:n_pre], bot_id), progress=True)
        out["import_preanswered_per_s"] = n_pre / (time.perf_counter() - t)
        t = time.perf_counter()
        ids = import_tasks(ls, pid, all_tasks[n_pre:], progress=False)  # measured with n_pre tasks already in
        out["push_pairs_per_s"] = len(ids) / (time.perf_counter() - t)
        received = []
        receiver = WebhookReceiver("bench-secret", received.extend).start()
        register_webhook(ls, pid, receiver.url, "bench-secret")
        items = list(zip(ids, [t["left"] for t in all_tasks[n_pre:]]))
        out["answer_s"] = run_bots(server, bot_id, items[:bot_answers], bots)
        out["answers_per_s"] = bot_answers / out["answer_s"]
        t_answered = time.perf_counter()
        cursor = root / "cursor.json"
        t = time.perf_counter()
        full = pull_annotations(ls, [pid], store, cursor_path=cursor)
        out["full_pull_s"] = time.perf_counter() - t
        out["full_pull_records"] = full.new_records
        out["full_pull_per_s"] = full.new_records / out["full_pull_s"]
        # a pull re-reads what changed within CURSOR_MARGIN before its cursor (late commits): let the
        # bulk fall behind that margin, as it has in a study where answers trickle in
        time.sleep(max(0.0, CURSOR_MARGIN.total_seconds() + 5 - (time.perf_counter() - t_answered)))
        run_bots(server, bot_id, items[bot_answers:], bots)
        t = time.perf_counter()
        inc = pull_annotations(ls, [pid], store, cursor_path=cursor)
        out["incremental_pull_s"] = time.perf_counter() - t
        out["incremental_records"] = inc.new_records
        out["task_list_p50_s"], out["task_list_p95_s"] = task_list_latency(server, pid, n + INCREMENT)
        out["db_mib"] = db_size_mib(server)
        receiver.stop()  # delivers what it queued
        receiver = None
        out["webhook_expected"], out["webhook_received"] = bot_answers + INCREMENT, len(set(received))
    finally:
        if receiver is not None:
            receiver.stop()
        stop_server(server.cfg)
        out["uptime_after"] = uptime()
        shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--unique", type=int, default=1000, help="distinct pairs rendered (tasks repeat them)")
    ap.add_argument("--bots", type=int, default=4)
    ap.add_argument("--bot-answers", type=int, default=400,
                    help="answers the bots give (timed); the other pairs are imported already answered")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    ap.add_argument("--out", default=str(REPO / "runs" / "bench_labeling_scale.jsonl"))
    args = ap.parse_args()
    for k in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"):
        os.environ.pop(k, None)
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    work.chmod(0o711)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    try:
        for config in args.configs:
            row = run_config(config, args.pairs, min(args.unique, args.pairs), args.bots,
                             min(args.bot_answers, args.pairs), work)
            line = json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
            print(line, flush=True)
            with open(args.out, "a") as fh:
                fh.write(line + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
