"""Benchmark the Label Studio path on this machine: push (render + store + import), annotate, pull, RSS.

    .venv/bin/python benchmarks/bench_labeling.py --pairs 500

Starts its own server (a copy of the test template under a temp dir), pushes ``--pairs`` pairwise tasks
of built-in sketches (PNG rendering included), answers every task through the API, pulls them into a
fresh preference store, pulls again (nothing new), and reports rates and the server's resident memory.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its children (MiB)."""
    total, pids = 0, [pid]
    while pids:
        p = pids.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            for task in Path(f"/proc/{p}/task").iterdir():
                pids += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return total / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=500)
    ap.add_argument("--image-size", type=int, default=256)
    args = ap.parse_args()

    from fixtures_labelstudio import start_copy

    from driftsketch.data import load_dataset
    from dpo.store import PreferenceStore
    from labeling.config import ProjectsConfig
    from labeling.projects import setup_projects
    from labeling.pull import pull_annotations
    from labeling.push import PairBatch, build_tasks, import_tasks
    from labeling.server import stop_server

    tmp = Path(tempfile.mkdtemp(prefix="bench-labeling-"))
    t0 = time.perf_counter()
    server = start_copy(tmp / "ls")
    out = {"server_start_s": time.perf_counter() - t0, "rss_idle_mib": rss_mib(server.info.pid)}
    try:
        ls, store = server.client(), PreferenceStore(tmp / "prefs")
        ids = setup_projects(ls, ProjectsConfig())
        data = load_dataset("builtin")
        idx = np.random.default_rng(0).permutation(len(data.labels))[: 2 * args.pairs]
        a, b = idx[0::2], idx[1::2]
        batch = PairBatch(data.beziers[a], data.beziers[b], data.labels[a], data.class_names)
        t = time.perf_counter()
        tasks = build_tasks(batch, store, tmp / "svg", checkpoint="ck-bench", image_size=args.image_size)
        render_s = time.perf_counter() - t
        t = time.perf_counter()
        task_ids = import_tasks(ls, ids["pairwise"], tasks)
        import_s = time.perf_counter() - t
        out.update(pairs=args.pairs, render_store_s=render_s, import_s=import_s,
                   push_tasks_per_s=args.pairs / (render_s + import_s),
                   mean_task_kib=float(np.mean([len(json.dumps(x)) for x in tasks])) / 1024)
        t = time.perf_counter()
        for i, tid in enumerate(task_ids):
            ls.annotations.create(id=tid, result=[{"from_name": "preference", "to_name": "image_left",
                                                   "type": "choices", "value": {"choices": ["AB"[i % 2]]}}])
        out["annotate_per_s"] = len(task_ids) / (time.perf_counter() - t)
        t = time.perf_counter()
        report = pull_annotations(ls, ids, store, cursor_path=tmp / "cursor.json")
        pull_s = time.perf_counter() - t
        t = time.perf_counter()
        again = pull_annotations(ls, ids, store, cursor_path=tmp / "cursor.json")
        out.update(pulled=report.new_records, pull_s=pull_s, pull_annotations_per_s=report.new_records / pull_s,
                   repull_new=again.new_records, repull_s=time.perf_counter() - t,
                   rss_loaded_mib=rss_mib(server.info.pid))
    finally:
        stop_server(server.cfg)
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
