"""Whole online rounds (flow `online-dpo`) under faults: the round SIGKILLed at seeded random moments, the
Prefect worker killed during a round, two rounds started at once. Used by benchmarks/bench_faults.py and
tests/test_faults.py, on top of benchmarks/fault_injection.py (its FaultEnv: Label Studio, a tiny model).

Every trial gets its own world (registry, preference store, work dir, Label Studio project): round 0 runs
unkilled (bootstrap, push a queue of pairs), all but ``KEEP_OPEN`` of its tasks are answered, then round 1
(pull, fine-tune, evaluate, promote, retire the stale tasks, generate, render, push) is the one under
fault. Afterwards the world is compared with a reference world whose round 1 was never killed.

    renv = RoundEnv.start(env)                # a real `prefect server start`, the round's classifiers
    row = ROUND_FAULTS["round"](renv, trials=20, seed=0)
    renv.stop()
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from fault_injection import (REPO, FaultEnv, FaultRow, _project_tasks, bad_json, command, count_dupes, run,
                             run_killed, scan_sessions, temp_files, timed)

QUEUE = 8  # open pairwise tasks a round keeps
KEEP_OPEN = 2  # tasks of round 0 left unanswered: round 1 retires them (their model is superseded)
EVAL = ["classifier.steps=20", "classifier.batch_size=32", "reward_classifier.steps=20",
        "reward_classifier.batch_size=32"]
DPO = ["epochs=2", "batch_size=8", "min_pairs=2", "num_t=1", "eval_num_t=2", "holdout_fraction=0.25",
       "early_stopping_patience=0", "num_threads=1", "wandb=false", "amplify.enabled=false"]
# a tiny round's pair selection: random pairs (the round's default), or the least sure pairs under an ensemble fit on
# the store's human pairs, with every candidate pair counted twice and a single human pair enough to start it
SELECTION = {"random": ["generate.selection=random"],
             "uncertain": ["generate.selection=uncertain", "generate.min_labeled_pairs=1", "generate.candidates=2"]}
TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@dataclass
class RoundWorld:
    """One registry, preference store, work dir and Label Studio project."""

    root: Path
    title: str  # of the pairwise project, without " pairwise"

    @property
    def prefs(self) -> Path:
        return self.root / "prefs"

    @property
    def registry(self) -> Path:
        return self.root / "registry"


@dataclass
class RoundEnv:
    """FaultEnv plus a real Prefect server (the API every round reports to) and the round's classifiers."""

    faults: FaultEnv
    prefect: object  # fixtures_prefect.PrefectServer
    classifiers: Path
    _proc: subprocess.Popen | None = None
    _deployment: str | None = None
    _reference: tuple[dict, float] | None = None  # the unkilled world's state, round 1's duration
    _worker_duration: float | None = None  # round 1 through the worker, from its flow-run process's start
    selection: str = "random"  # the round's pair selection: "random", or "uncertain"

    @classmethod
    def start(cls, faults: FaultEnv, selection: str = "random") -> "RoundEnv":
        from fixtures_prefect import start_prefect_server

        proc, server = start_prefect_server(faults.root / "prefect")
        self = cls.prepare(faults, server, selection)
        self._proc = proc
        return self

    @classmethod
    def prepare(cls, faults: FaultEnv, prefect, selection: str = "random") -> "RoundEnv":
        """The classifiers the round would train first (trained once here, copied into every world)."""
        from tasks.evaluate import ensure_classifier

        if selection not in SELECTION:
            raise ValueError(f"selection must be one of {sorted(SELECTION)}, got {selection!r}")
        out = faults.root / "round-classifiers"
        for section in ("classifier", "reward_classifier"):
            ensure_classifier.fn("builtin", "configs/eval.yaml", EVAL, str(out), section=section)
        return cls(faults, prefect, out, selection=selection)

    def stop(self) -> None:
        from fixtures_prefect import stop_prefect_server

        if self._proc is not None:
            stop_prefect_server(self._proc)

    @property
    def env(self) -> dict:
        keys = ("PREFECT_HOME", "PREFECT_API_URL", "PREFECT_SERVER_ANALYTICS_ENABLED")
        return {**self.faults.env, **{k: self.prefect.env[k] for k in keys}, "PREFECT_LOGGING_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1"}

    def world(self, name: str) -> RoundWorld:
        """A new world: empty registry and store, a new project title, the classifiers in place."""
        root = self.faults.root / "trials" / name
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(self.classifiers, root / "work" / "classifiers")
        return RoundWorld(root, f"faults {name} {uuid.uuid4().hex[:6]}")

    def overrides(self, w: RoundWorld) -> list[str]:
        """configs/round.yaml overrides of a tiny round in world ``w``."""
        ls = [f"projects.pairwise_title={w.title} pairwise", f"projects.rating_title={w.title} rating",
              f"server.files_root={self.faults.server.cfg.files_root}", "client.backoff_s=0.25"]
        return [f"registry_dir={w.registry}", f"preference_dir={w.prefs}", f"work_dir={w.root}/work",
                f"base.checkpoint={self.faults.checkpoint}", "wandb=false", "dpo.min_new_preferences=4",
                f"dpo.overrides=[{','.join(DPO)}]", f"eval.overrides=[{','.join(EVAL)}]", "eval.samples_per_class=2",
                "eval.grid_per_class=1", f"generate.queue_target={QUEUE}", f"generate.max_new_pairs={QUEUE}",
                "generate.num_steps=2", *SELECTION[self.selection], "generate.class_weighting=cycle",
                "gate.min_heldout_accuracy=0.0", "gate.max_fd_ratio=1000", "gate.max_recognizability_drop=1.0",
                "gate.max_fd_ratio_to_base=1000", "gate.max_recognizability_drop_from_base=1.0",
                f"labelstudio.overrides=[{','.join(ls)}]"]

    def round_cmd(self, w: RoundWorld) -> list[str]:
        """`python -m flows.online_dpo --set ...` for world ``w`` (a fault_injection.command)."""
        return command("online-dpo", [a for o in self.overrides(w) for a in ("--set", o)])

    def params(self, w: RoundWorld) -> dict:
        """The flow's parameters for world ``w`` (a deployment run)."""
        from flows.params import load_round_params

        return {"params": load_round_params(overrides=self.overrides(w)).model_dump(mode="json")}

    def round0(self, w: RoundWorld) -> None:
        """Round 0 (bootstrap, push the queue), unkilled; then every task but KEEP_OPEN answered."""
        out = run(self.round_cmd(w), self.env)
        if out.returncode != 0:
            raise RuntimeError(f"round 0 failed: {out.stderr[-3000:]}")
        answer_open_tasks(self.faults, w, keep_open=KEEP_OPEN)


def answer_open_tasks(env: FaultEnv, w: RoundWorld, keep_open: int = 0) -> int:
    """Answer the open pairwise tasks (A or B from a hash of the task key: the same pair gets the same answer
    in every world), all but the last ``keep_open``; returns how many were answered."""
    ls = env.ls()
    tasks = sorted((t for t in _project_tasks(env, w.title) if not t.annotations), key=lambda t: t.id)
    todo = tasks[:max(0, len(tasks) - keep_open)]
    for t in todo:
        pick = "A" if hashlib.sha256(str(t.data.get("task_key")).encode()).digest()[0] % 2 else "B"
        ls.annotations.create(id=t.id, lead_time=1.0, result=[{
            "from_name": "preference", "to_name": "image_left", "type": "choices", "value": {"choices": [pick]}}])
    return len(todo)


# -- what a world holds, and how it differs from the reference -----------------------------------------

def world_state(renv: RoundEnv, w: RoundWorld) -> dict:
    """What a round leaves: records, tasks, queue, registry (without ids and times), arrays no one uses."""
    tasks = _project_tasks(renv.faults, w.title)
    records, torn = scan_sessions(w.prefs)
    answers = {(t.project, a["id"]) for t in tasks for a in (t.annotations or []) if not a.get("was_cancelled")}
    rec_keys = [(int(r["source"]["project"]), int(r["source"]["annotation"])) for r in records]
    arrays = {str(p.relative_to(w.prefs)) for p in w.prefs.rglob("*.npy")}
    used = {v for t in tasks for k, v in t.data.items() if k.startswith(("beziers_", "noise_")) and isinstance(v, str)}
    used |= {r.get(k) for r in records for k in ("beziers_a", "beziers_b", "noise_a", "noise_b") if r.get(k)}
    reg_file = w.registry / "registry.json"
    reg = json.loads(reg_file.read_text()) if reg_file.is_file() and not bad_json(reg_file) else {}
    models = reg.get("models", {})
    cur = models.get(reg.get("current"), {})
    return {
        "tasks": len(tasks), "task_keys": [t.data.get("task_key") for t in tasks],
        "open": sum(1 for t in tasks if not t.annotations), "answers": answers, "record_keys": rec_keys,
        "torn": torn, "missing_arrays": len(used - arrays - {None}), "unused_arrays": len(arrays - used),
        "models": sorted((m["kind"], m["status"], m.get("round_index", 0)) for m in models.values()),
        "rounds": sorted((r["index"], r["status"], len(r["record_ids"])) for r in reg.get("rounds", {}).values()),
        "history": [e["action"] for e in reg.get("history", [])], "current": (cur.get("kind"), cur.get("round_index")),
        "registered": (registered := registered_pairs(w.prefs)),
        "unpushed_registered": sum(1 for kind in registered.values() for k in kind if tuple(k[:2]) not in {
            tuple(sorted((t.data.get("beziers_a"), t.data.get("beziers_b")))) for t in tasks}),
        "temp_files": len(temp_files(w.root)),
        "corrupt_json": len(bad_json(reg_file, w.prefs / "labelstudio_cursor.json", *(w.root / "work").rglob("*.json"))),
    }


def registered_pairs(prefs: Path) -> dict[str, list]:
    """The gold and evaluation pairs registered in a store (pair keys, and for evaluation the models compared)."""
    from dpo.gold import GoldSet
    from dpo.human_eval import EvalSet

    return {"gold": [list(k) for k, _ in GoldSet(prefs).lines()],
            "evaluation": [list(k) + [e["candidate_model"][:4], e["base_model"][:4]] for k, e in EvalSet(prefs).lines()]}


def compare(got: dict, ref: dict, row: FaultRow, label: str) -> None:
    """Add the damage of ``got`` against the unkilled ``ref`` to ``row`` (COLUMNS of fault_injection)."""
    keys = got["record_keys"]
    lost = len(got["answers"] - set(keys)) + max(0, ref["tasks"] - got["tasks"]) + max(0, ref["open"] - got["open"])
    dup = count_dupes(keys) + count_dupes(got["task_keys"]) + max(0, got["open"] - ref["open"])
    reg_diff = [k for k in ("models", "rounds", "history", "current") if got[k] != ref[k]]
    for kind in ("gold", "evaluation"):  # a pair registered twice, or one the unkilled round registered missing
        keys = [tuple(k) for k in got["registered"][kind]]
        dup += count_dupes(keys)
        lost += max(0, len(ref["registered"][kind]) - len(set(keys)))
    lost += max(0, len(ref["history"]) - len(got["history"])) + max(0, len(ref["models"]) - len(got["models"]))
    dup += max(0, len(got["history"]) - len(ref["history"])) + max(0, len(got["models"]) - len(ref["models"]))
    stuck = sum(1 for r in got["rounds"] if r[1] in ("started", "trained"))  # a round left half done
    orphans = got["missing_arrays"] + max(0, got["unused_arrays"] - ref["unused_arrays"]) + max(0, got["unpushed_registered"] - ref["unpushed_registered"])
    row.add(lost=lost, duplicated=dup, torn_lines=got["torn"], orphans=orphans, temp_files=got["temp_files"],
            corrupt_json=got["corrupt_json"], stuck=stuck)
    if lost or dup or orphans or stuck or reg_diff or got["torn"] or got["corrupt_json"]:
        row.note(f"{label}: lost {lost} dup {dup} orphans {orphans} stuck {stuck}; tasks {got['tasks']}/{ref['tasks']}, "
                 f"open {got['open']}/{ref['open']}, registry differs in {reg_diff or 'nothing'}: "
                 f"{ {k: got[k] for k in reg_diff} } vs { {k: ref[k] for k in reg_diff} }")


def reference(renv: RoundEnv) -> tuple[dict, float]:
    """A world whose round 1 ran unkilled: its state and round 1's duration after "go" (the kill window);
    made once per RoundEnv."""
    if renv._reference is None:
        w = renv.world("round-ref")
        renv.round0(w)
        duration = timed(renv.round_cmd(w), renv.env)
        renv._reference = world_state(renv, w), duration
    return renv._reference


# -- the round killed ----------------------------------------------------------------------------------

def fault_round(renv: RoundEnv, trials: int, seed: int) -> FaultRow:
    """Round 1 (`python -m flows.online_dpo`, the flow function in its own process, reporting to the Prefect
    server) SIGKILLed (its process group) at a seeded moment of [0, an unkilled round's duration] after its
    imports, then re-run to the end: the world must equal the reference world."""
    want, duration = reference(renv)
    row, rng, t0 = FaultRow("round (flow process)"), np.random.default_rng(seed), time.monotonic()
    row.window = (0.0, round(duration, 1))
    for i in range(trials):
        w = renv.world(f"round-{seed}-{i}")
        renv.round0(w)
        row.add(trials=1, killed=run_killed(renv.round_cmd(w), renv.env, float(rng.uniform(0, duration))))
        out = run(renv.round_cmd(w), renv.env)
        if out.returncode != 0:
            row.add(stuck=1)
            row.note(f"trial {i}: re-run exit {out.returncode}: {out.stderr.strip()[-300:]}")
        compare(world_state(renv, w), want, row, f"trial {i}")
    row.seconds = time.monotonic() - t0
    return row


# -- through the worker --------------------------------------------------------------------------------

def deploy(renv: RoundEnv) -> str:
    """The repository's `round` deployment (no schedule, no trigger) on the process pool; its id."""
    if renv._deployment:
        return renv._deployment
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (rnd,) = [d for d in spec["deployments"] if d["name"] == "round"]
    rnd["schedules"], rnd["triggers"] = [], []
    path = renv.faults.root / "prefect.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    renv.prefect.cli("work-pool", "create", rnd["work_pool"]["name"], "--type", "process", "--overwrite")
    renv.prefect.cli("--no-prompt", "deploy", "--prefect-file", str(path), "--name", "round")
    renv._deployment = renv.prefect.deployment("online-dpo/round")["id"]
    return renv._deployment


class Worker:
    """`prefect worker start --pool driftsketch-local` in its own process group."""

    def __init__(self, renv: RoundEnv, log: Path) -> None:
        env = {**renv.env, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_LOGGING_LEVEL": "INFO"}
        with open(log, "a") as fh:
            self.proc = subprocess.Popen([_prefect_bin(), "worker", "start", "--pool", "driftsketch-local"], cwd=REPO,
                                         env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        self.log = log

    def kill(self) -> None:
        """SIGKILL the worker's process group (the worker and whatever shares its group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def _prefect_bin() -> str:
    from fixtures_prefect import PREFECT_BIN

    return str(PREFECT_BIN)


def create_run(renv: RoundEnv, w: RoundWorld) -> str:
    """A flow run of the deployment for world ``w`` (what `prefect deployment run` does); its id."""
    import httpx

    resp = httpx.post(f"{renv.prefect.api_url}/deployments/{deploy(renv)}/create_flow_run",
                      json={"parameters": renv.params(w)}, timeout=30)
    resp.raise_for_status()
    return resp.json()["id"]


def run_info(renv: RoundEnv, run_id: str) -> dict:
    import httpx

    resp = httpx.get(f"{renv.prefect.api_url}/flow_runs/{run_id}", timeout=30)
    resp.raise_for_status()
    return resp.json()


def zombie_runs(renv: RoundEnv) -> list[str]:
    """Ids of the flow runs of this RoundEnv's worlds that the API shows Running although no process runs
    them any more (a SIGKILLed round reports nothing; the process worker is not there to see it die)."""
    import httpx

    body = {"flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}}, "limit": 200}
    runs = httpx.post(f"{renv.prefect.api_url}/flow_runs/filter", json=body, timeout=30).json()
    root = str(renv.faults.root / "trials")
    return [r["id"] for r in runs if root in json.dumps(r["parameters"]) and flow_process(r["id"]) is None]


def state_names(renv: RoundEnv, run_id: str) -> list[str]:
    import httpx

    return [s["name"] for s in httpx.get(f"{renv.prefect.api_url}/flow_run_states/", params={"flow_run_id": run_id},
                                         timeout=30).json()]


def wait_for(what: Callable[[], object], timeout: float, every: float = 0.5):
    """``what()`` once it is truthy, or None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(every)
    return None


def wait_terminal(renv: RoundEnv, run_id: str, timeout: float) -> str:
    """The run's state type once terminal, else its state type after ``timeout``."""
    got = wait_for(lambda: (s := run_info(renv, run_id)["state_type"]) in TERMINAL and s, timeout, every=1.0)
    return got or run_info(renv, run_id)["state_type"]


def flow_process(run_id: str) -> int | None:
    """The pid of the process running flow run ``run_id`` (its environment names the run), if any."""
    needle = f"PREFECT__FLOW_RUN_ID={run_id}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    return int(entry.name)
            except OSError:
                continue
    return None


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid``'s process group if it leads one, else ``pid`` and its children."""
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
            return
        for child in _children(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out += [int(entry.name), *_children(int(entry.name))]
    return out


def worker_reference(renv: RoundEnv, worker: Worker) -> float:
    """Seconds from the flow-run process's start to the end of an unkilled round 1 through the worker."""
    w = renv.world("round-worker-ref")
    renv.round0(w)
    run_id = create_run(renv, w)
    if not wait_for(lambda: flow_process(run_id), 120, every=0.1):
        raise RuntimeError(f"the worker did not start flow run {run_id}: {worker.log.read_text()[-3000:]}")
    t0 = time.monotonic()
    state = wait_terminal(renv, run_id, 600)
    if state != "COMPLETED":
        raise RuntimeError(f"unkilled round through the worker ended {state}: {worker.log.read_text()[-3000:]}")
    return time.monotonic() - t0


def fault_round_worker(renv: RoundEnv, trials: int, seed: int) -> FaultRow:
    """Round 1 as a run of the `round` deployment, through a process worker; the flow-run process the worker
    spawned is SIGKILLed at a seeded moment of [0, an unkilled run's duration] after it started. The run must
    end Crashed; a new run of the deployment must complete; the world must equal the reference world."""
    want, _ = reference(renv)
    row, rng, t0 = FaultRow("round (through the worker)"), np.random.default_rng(seed), time.monotonic()
    deploy(renv)
    log = renv.faults.root / "worker.log"
    duration = renv._worker_duration or _measure_worker(renv, log)
    worker = Worker(renv, log)
    try:
        row.window = (0.0, round(duration, 1))
        for i in range(trials):
            w = renv.world(f"round-worker-{seed}-{i}")
            renv.round0(w)
            run_id = create_run(renv, w)
            pid = wait_for(lambda: flow_process(run_id), 120, every=0.1)
            row.add(trials=1)
            if pid:
                time.sleep(float(rng.uniform(0, duration)))
                alive = flow_process(run_id) is not None
                kill_tree(pid)
                row.add(killed=alive)
            state = wait_terminal(renv, run_id, 120)
            row.note(f"trial {i}: killed run {state}")
            if state not in ("CRASHED", "COMPLETED"):
                row.add(stuck=1)
                row.note(f"trial {i}: the killed run is {state} 120 s later: {state_names(renv, run_id)}")
            again = create_run(renv, w)
            final = wait_terminal(renv, again, 600)
            if final != "COMPLETED":
                row.add(stuck=1)
                row.note(f"trial {i}: the re-run ended {final}: {state_names(renv, again)}")
            compare(world_state(renv, w), want, row, f"trial {i} (killed run {state})")
    finally:
        worker.stop()
    row.seconds = time.monotonic() - t0
    return row


def fault_worker(renv: RoundEnv, trials: int, seed: int, with_flow: bool = False) -> FaultRow:
    """The process worker SIGKILLed (its process group; with ``with_flow`` also the flow-run process it
    spawned, as when its machine dies) at a seeded moment of round 1. Observed: the state the killed run is
    in 30 s later; a run left Running gets the documented recovery, `python -m flows.recover RUN_ID` (stuck
    if that fails). Then a new worker runs the next round of the deployment, which must complete (the
    seconds it waited for the deployment's concurrency slot are noted), and the world must equal the
    reference world."""
    want, _ = reference(renv)
    name = "worker and its flow run killed (host dies)" if with_flow else "worker killed"
    row, rng, t0 = FaultRow(name), np.random.default_rng(seed), time.monotonic()
    deploy(renv)
    log = renv.faults.root / "worker.log"
    duration = renv._worker_duration or _measure_worker(renv, log)
    row.window = (0.0, round(duration, 1))
    for i in range(trials):
        w = renv.world(f"worker-{int(with_flow)}-{seed}-{i}")
        renv.round0(w)
        worker = Worker(renv, log)
        try:
            run_id = create_run(renv, w)
            pid = wait_for(lambda: flow_process(run_id), 120, every=0.1)
            time.sleep(float(rng.uniform(0, duration)))
            row.add(trials=1, killed=flow_process(run_id) is not None)
            worker.kill()
            if with_flow and pid:
                kill_tree(pid)
        finally:
            worker.stop()
        state, how = wait_terminal(renv, run_id, 30), "by itself"
        if state not in TERMINAL:
            out = run([sys.executable, "-m", "flows.recover", run_id], renv.env)
            state, how = wait_terminal(renv, run_id, 10), f"after flows.recover (exit {out.returncode})"
            if state not in TERMINAL:
                row.add(stuck=1)
        row.note(f"trial {i}: killed run {state} {how}")
        worker = Worker(renv, log)
        try:
            t_next = time.monotonic()
            again = create_run(renv, w)
            started = wait_for(lambda: run_info(renv, again)["state_type"] in ("RUNNING", *TERMINAL), 600)
            waited = time.monotonic() - t_next
            final = wait_terminal(renv, again, 600)
        finally:
            worker.stop()
        row.note(f"trial {i}: the next round started after {waited:.0f} s, ended {final}")
        if final != "COMPLETED" or not started:
            row.add(stuck=1)
        compare(world_state(renv, w), want, row, f"trial {i}")
    row.seconds = time.monotonic() - t0
    return row


def fault_worker_host(renv: RoundEnv, trials: int, seed: int) -> FaultRow:
    return fault_worker(renv, trials, seed, with_flow=True)


def _measure_worker(renv: RoundEnv, log: Path) -> float:
    worker = Worker(renv, log)
    try:
        renv._worker_duration = worker_reference(renv, worker)
    finally:
        worker.stop()
    return renv._worker_duration


def fault_two_rounds(renv: RoundEnv, trials: int, seed: int) -> FaultRow:
    """Two runs of the `round` deployment created at once (its concurrency limit is 1, ENQUEUE): both must
    complete without overlapping, and the world must equal the reference world (no kill; ``seed`` unused)."""
    want, _ = reference(renv)
    row, t0 = FaultRow("two rounds at once (deployment)"), time.monotonic()
    deploy(renv)
    worker = Worker(renv, renv.faults.root / "worker.log")
    try:
        for i in range(trials):
            w = renv.world(f"two-rounds-{i}")
            renv.round0(w)
            ids = [create_run(renv, w), create_run(renv, w)]
            finals = [wait_terminal(renv, r, 900) for r in ids]
            row.add(trials=1, stuck=sum(f != "COMPLETED" for f in finals))
            one, two = sorted((run_info(renv, r) for r in ids), key=lambda r: r["start_time"] or "")
            waited = "AwaitingConcurrencySlot" in state_names(renv, two["id"])
            if one["end_time"] and two["start_time"] and two["start_time"] < one["end_time"]:
                row.add(duplicated=1)
                row.note(f"trial {i}: the two rounds overlapped")
            row.note(f"trial {i}: {finals}; the second waited for a slot: {waited}")
            compare(world_state(renv, w), want, row, f"trial {i}")
    finally:
        worker.stop()
    row.seconds = time.monotonic() - t0
    return row


def fault_two_rounds_direct(renv: RoundEnv, trials: int, seed: int) -> FaultRow:
    """Two `python -m flows.online_dpo` on one world at once (outside the deployment's limit: a manual run
    during the nightly one): one completes, the other completes or is refused with the registry's round-lock
    error (exit 2); the world must equal the reference world (``seed`` unused)."""
    want, _ = reference(renv)
    row, t0 = FaultRow("two rounds at once (two processes)"), time.monotonic()
    for i in range(trials):
        w = renv.world(f"two-rounds-direct-{i}")
        renv.round0(w)
        procs = [subprocess.Popen(renv.round_cmd(w), env=renv.env, cwd=REPO, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        errs = [p.communicate(timeout=900)[1].strip() for p in procs]
        codes = [p.returncode for p in procs]
        refused = [c == 2 and "another round is running" in e for c, e in zip(codes, errs)]
        row.add(trials=1, stuck=sum(c != 0 and not r for c, r in zip(codes, refused)))
        row.note(f"trial {i}: exit codes {codes}" + "".join(f"; {e.splitlines()[-1][:240]}" for c, e in zip(codes, errs)
                                                           if c and e))
        compare(world_state(renv, w), want, row, f"trial {i}")
    row.seconds = time.monotonic() - t0
    return row


ROUND_FAULTS: dict[str, Callable[[RoundEnv, int, int], FaultRow]] = {
    "round": fault_round, "round-worker": fault_round_worker, "worker": fault_worker, "worker-host": fault_worker_host,
    "two-rounds": fault_two_rounds, "two-rounds-direct": fault_two_rounds_direct,
}
