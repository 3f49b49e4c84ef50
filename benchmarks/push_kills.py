"""SIGKILL a push at seeded random moments, re-run it, and count what a crash left behind.

    .venv/bin/python benchmarks/push_kills.py --trials 10 --kills 2 --seed 0     # starts its own server

Every trial pushes the same ``--pairs`` pairwise tasks of built-in sketches (PNG files, url mode, import
batch size 1) into a fresh project and a fresh store with a child process (``--child``, the real
:func:`labeling.push.push_tasks`), kills it ``--kills`` times with SIGKILL (each time in a phase drawn
from the seed: while rendering, in the middle of the import, or just after the import), then runs it
once more to the end. A push that was never killed, into its own project, is the reference. Per trial
it counts tasks in the project, duplicated and missing pairs (against the reference's task keys), task
arrays or PNGs that are missing, store arrays and PNGs that no task refers to (orphans), and leftover
temporary files. The target is 0 in every column but ``kills``.

:func:`push_kill_trials` is the loop (the fault-injection benchmark and the slow test call it with a
server of their own); ``--child`` is the process it kills.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
PHASES = {"render": "start", "import": "rendered", "after": "imported"}  # phase -> marker it starts at
PHASE_P = (0.3, 0.5, 0.2)


@dataclass
class TrialResult:
    project: int
    kills: int = 0  # SIGKILLs that hit a running push
    stages: list[str] = field(default_factory=list)  # last marker seen before each kill
    tasks: int = 0
    duplicates: int = 0  # tasks beyond one per pair key
    missing: int = 0  # reference pairs not in the project
    extra: int = 0  # keys the reference does not have
    missing_files: int = 0  # arrays / PNGs a task refers to that are absent
    orphan_files: int = 0  # arrays / PNGs in the store / png dir no task refers to
    stale_tmp: int = 0  # temporary files of atomic writes left behind
    final_rc: int = 0


def _child_cmd(project: int, store: Path, files: Path, files_root: Path, pairs: int, batch_size: int,
               hold_s: float) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", "--project", str(project), "--store", str(store),
            "--files", str(files), "--files-root", str(files_root), "--pairs", str(pairs),
            "--batch-size", str(batch_size), "--hold", str(hold_s)]


def _spawn(cmd: list[str], env: dict) -> tuple[subprocess.Popen, queue.Queue]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            cwd=REPO)
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            lines.put((time.perf_counter(), line.strip()))
        lines.put((time.perf_counter(), None))

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def _wait_marker(lines: queue.Queue, marker: str, seen: list[str], timeout_s: float = 300) -> bool:
    """Wait until the child prints ``marker`` (True) or exits (False); ``seen`` collects every marker."""
    deadline = time.perf_counter() + timeout_s
    while True:
        try:
            _, line = lines.get(timeout=max(0.01, deadline - time.perf_counter()))
        except queue.Empty:
            return False
        if line is None:
            return False
        seen.append(line)
        if line == marker:
            return True


def _drain(lines: queue.Queue, seen: list[str]) -> None:
    while True:
        try:
            _, line = lines.get_nowait()
        except queue.Empty:
            return
        if line is not None:
            seen.append(line)


def run_reference(env: dict, cmd: list[str]) -> dict[str, float]:
    """Run the push once to the end; seconds spent rendering and importing (the kill windows)."""
    proc, lines = _spawn(cmd, env)
    stamps = {}
    while True:
        t, line = lines.get(timeout=600)
        if line is None:
            break
        stamps[line] = t
    if proc.wait() != 0 or not {"start", "rendered", "imported"} <= set(stamps):
        raise RuntimeError(f"reference push failed (exit {proc.returncode}, markers {sorted(stamps)})")
    return {"render": stamps["rendered"] - stamps["start"], "import": stamps["imported"] - stamps["rendered"],
            "after": 0.0}


def _kill_once(env: dict, cmd: list[str], rng: np.random.Generator, windows: dict[str, float]) -> str | None:
    """Start the push, SIGKILL it in a seeded phase at a seeded moment; the last marker seen, or None
    when it finished first."""
    phase = str(rng.choice(list(PHASES), p=PHASE_P))
    delay = float(rng.uniform(0, windows[phase]))
    proc, lines = _spawn(cmd, env)
    seen: list[str] = []
    try:
        if not _wait_marker(lines, PHASES[phase], seen):
            proc.wait()
            return None
        time.sleep(delay)
        if proc.poll() is not None:
            return None
        _drain(lines, seen)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return seen[-1] if seen else "start"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _files(folder: Path, pattern: str) -> set[str]:
    return {p.name for p in folder.glob(pattern)} if folder.is_dir() else set()


def check_trial(ls, project: int, store: Path, files: Path, ref_keys: set[str]) -> dict:
    """Counts of duplicated / missing pairs, missing and orphan files, leftover temporary files."""
    tasks = list(ls.tasks.list(project=project, fields="task_only", resolve_uri=False, page_size=500))
    keys = [t.data.get("task_key") for t in tasks]
    referenced = {"beziers": set(), "noise": set(), "png": set()}
    missing_files = 0
    for t in tasks:
        for f in ("beziers_a", "beziers_b", "noise_a", "noise_b"):
            rel = t.data.get(f)
            if rel:
                referenced[rel.split("/")[0]].add(Path(rel).name)
                missing_files += not (store / rel).is_file()
        for sid in (t.data["sample_a"], t.data["sample_b"]):
            referenced["png"].add(f"{sid}.png")
            missing_files += not (files / "png" / f"{sid}.png").is_file()
    orphans = (len(_files(store / "beziers", "*.npy") - referenced["beziers"])
               + len(_files(store / "noise", "*.npy") - referenced["noise"])
               + len(_files(files / "png", "*.png") - referenced["png"]))
    stale = sum(len(_files(d, ".*.tmp")) for d in (store / "beziers", store / "noise", files / "png", files / "svg"))
    return {"tasks": len(tasks), "duplicates": len(keys) - len(set(keys)), "missing": len(ref_keys - set(keys)),
            "extra": len(set(keys) - ref_keys), "missing_files": missing_files, "orphan_files": orphans,
            "stale_tmp": stale}


def push_kill_trials(url: str, api_key: str, files_root: str | Path, workdir: str | Path, *, trials: int = 10,
                     kills_per_trial: int = 2, pairs: int = 8, seed: int = 0, batch_size: int = 1,
                     hold_s: float = 1.5) -> dict:
    """``trials`` x (``kills_per_trial`` SIGKILLs of a push + one run to the end) against the Label Studio
    at ``url`` (its LOCAL_FILES_DOCUMENT_ROOT is ``files_root``); the summary and one row per trial."""
    from labeling.client import Connection, connect
    from labeling.projects import ensure_project, pairwise_config

    ls = connect(Connection(url, api_key))
    env = {**os.environ, "LABEL_STUDIO_URL": url, "LABEL_STUDIO_API_KEY": api_key, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}  # the token travels in the environment, never on disk
    workdir, files_root = Path(workdir), Path(files_root)
    tag = f"{seed}-{int(time.time() * 1000) % 10**8}"

    def layout(name: str) -> tuple[int, Path, Path, list[str]]:
        pid = ensure_project(ls, f"push kills {tag} {name}", pairwise_config())
        store, files = workdir / name / "prefs", files_root / f"push-kills-{tag}" / name
        return pid, store, files, _child_cmd(pid, store, files, files_root, pairs, batch_size, hold_s)

    ref_pid, ref_store, ref_files, ref_cmd = layout("reference")
    windows = run_reference(env, ref_cmd)
    ref = check_trial(ls, ref_pid, ref_store, ref_files, set())
    ref_keys = {t.data["task_key"] for t in ls.tasks.list(project=ref_pid, fields="task_only", resolve_uri=False)}
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(trials):
        pid, store, files, cmd = layout(f"trial-{i}")
        row = TrialResult(project=pid)
        for _ in range(kills_per_trial):
            stage = _kill_once(env, cmd, rng, windows)
            if stage is not None:
                row.kills += 1
                row.stages.append(stage)
        row.final_rc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      cwd=REPO).returncode
        for k, v in check_trial(ls, pid, store, files, ref_keys).items():
            setattr(row, k, v)
        rows.append(asdict(row))
    cols = ("kills", "duplicates", "missing", "extra", "missing_files", "orphan_files", "stale_tmp")
    summary = {c: int(sum(r[c] for r in rows)) for c in cols}
    stages: dict[str, int] = {}
    for r in rows:
        for s in r["stages"]:
            stages[s] = stages.get(s, 0) + 1
    summary.update(trials=trials, pairs=pairs, seed=seed, batch_size=batch_size, reference_tasks=ref["tasks"],
                   tasks_per_trial=sorted({r["tasks"] for r in rows}),
                   failed_reruns=sum(r["final_rc"] != 0 for r in rows),
                   killed_after_marker=stages, windows_s={k: round(v, 2) for k, v in windows.items()})
    return {"summary": summary, "trials": rows}


def child(args) -> int:
    """The push a trial kills: ``--pairs`` built-in pairs (the same every run) into ``--project``."""
    print("boot", flush=True)
    from dpo.store import PreferenceStore
    from driftsketch.data import load_dataset
    from labeling.client import connect, resolve_connection
    from labeling.images import TaskImages
    from labeling.push import PairBatch, push_tasks

    data = load_dataset("builtin")
    n = args.pairs
    idx = np.random.default_rng(12345).permutation(len(data.labels))[: 2 * n]
    rng = np.random.default_rng(7)
    noise = rng.standard_normal((2, n, 32, 8)).astype(np.float32)
    batch = PairBatch(data.beziers[idx[0::2]], data.beziers[idx[1::2]], data.labels[idx[0::2]], data.class_names,
                      noise[0], noise[1])
    files = Path(args.files)
    images = TaskImages("url", files / "svg", files / "png", Path(args.files_root), 64)
    ls = connect(resolve_connection())
    print("start", flush=True)
    push_tasks(ls, args.project, batch, store=PreferenceStore(args.store), checkpoint="ck-push-kills",
               round_id="push-kills", images=images, batch_size=args.batch_size, progress=False,
               on_stage=lambda s: print(s, flush=True))
    time.sleep(args.hold)  # "just after the import": the tasks are in, the process has not reported yet
    print("done", flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--project", type=int)
    ap.add_argument("--store")
    ap.add_argument("--files")
    ap.add_argument("--files-root")
    ap.add_argument("--hold", type=float, default=1.5)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--kills", type=int, default=2, help="SIGKILLs per trial before the run to the end")
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.child:
        return child(args)
    sys.path.insert(0, str(REPO / "tests"))
    from fixtures_labelstudio import start_copy

    from labeling.server import stop_server

    tmp = Path(tempfile.mkdtemp(prefix="push-kills-"))
    server = start_copy(tmp / "ls")
    try:
        out = push_kill_trials(server.info.url, server.conn.api_key, server.cfg.files_root, tmp / "work",
                               trials=args.trials, kills_per_trial=args.kills, pairs=args.pairs, seed=args.seed,
                               batch_size=args.batch_size)
    finally:
        stop_server(server.cfg)
    print(json.dumps(out["summary"], indent=1))
    s = out["summary"]
    print(f"\n| trials | kills | pairs | tasks per trial | duplicated | missing | missing files | orphan files | "
          f"stale tmp | failed re-runs |\n|---|---|---|---|---|---|---|---|---|---|\n"
          f"| {s['trials']} | {s['kills']} | {s['pairs']} | {s['tasks_per_trial']} | {s['duplicates']} | "
          f"{s['missing']} | {s['missing_files']} | {s['orphan_files']} | {s['stale_tmp']} | {s['failed_reruns']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
