"""Kill a DriftSketch command with SIGKILL at seeded random moments, re-run it, and count the damage.

Each fault runs its real command (the console scripts, as a user or the round would) against a real Label
Studio (started the way the tests start it: tests/fixtures_labelstudio.py), kills it after a delay drawn
uniformly from [0, the duration of an unkilled run], runs it again to the end, and compares what is left
(the preference store, the Label Studio project, the registry, checkpoints) with a run that was never
killed. Used by benchmarks/bench_faults.py (the full table) and tests/test_faults.py (a few trials).

    env = FaultEnv.start(workdir)             # Label Studio, a tiny model, a classifier, annotated tasks
    row = FAULTS["pull"](env, trials=20, seed=0)
    env.stop()
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the fixtures that start the real servers
BIN = Path(sys.executable).parent
COLUMNS = ("trials", "killed", "lost", "duplicated", "torn_lines", "orphans", "temp_files", "corrupt_json", "stuck")


@dataclass
class FaultRow:
    """Totals over the trials of one fault (see COLUMNS); ``notes`` say what a non-zero count was."""

    fault: str
    trials: int = 0
    killed: int = 0  # trials where the kill landed before the command ended by itself
    lost: int = 0
    duplicated: int = 0
    torn_lines: int = 0
    orphans: int = 0  # tasks without their arrays, or arrays no task or record uses
    temp_files: int = 0  # temporary files of atomic writes still there after the re-run
    corrupt_json: int = 0  # JSON (cursor, registry, credentials) or checkpoints that do not load
    stuck: int = 0  # re-runs that failed: the state needs a hand fix
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    window: tuple[float, float] = (0.0, 0.0)  # kills drawn uniformly from this span of a run (s)

    def add(self, **counts: int) -> None:
        for key, value in counts.items():
            setattr(self, key, getattr(self, key) + int(value))

    def note(self, text: str) -> None:
        if len(self.notes) < 6 and text not in self.notes:
            self.notes.append(text)

    def to_dict(self) -> dict:
        return asdict(self)


LAUNCH = """
import importlib, sys
module, func = sys.argv[1].split(":")
main = getattr(importlib.import_module(module), func)
for name in sys.argv[2].split(","):
    importlib.import_module(name) if name else None
print("go", flush=True)
for argv in [a.split("\\x1f") for a in sys.argv[3:]]:
    code = main(argv)
    if code:
        sys.exit(code)
"""
ENTRY = {"driftsketch-labelstudio": "labeling.cli:main", "driftsketch-models": "driftsketch.registry_cli:main",
         "driftsketch-train-dpo": "dpo.cli:main", "online-dpo": "flows.online_dpo:main"}
IMPORTS = {"pull": "labeling.pull,dpo.store,label_studio_sdk",
           "push": "labeling.push,dpo.store,driftsketch.sampling,driftsketch.checkpoint,label_studio_sdk",
           "bot": "labeling.bot,dpo.store,driftsketch.evaluation.classifier,label_studio_sdk",
           "driftsketch-models": "driftsketch.registry", "driftsketch-train-dpo": "dpo.trainer",
           "online-dpo": "flows.online_dpo,dpo.trainer,driftsketch.evaluation.evaluate,labeling.push,labeling.pull,"
                         "label_studio_sdk"}


def command(script: str, *argvs: list[str]) -> list[str]:
    """Run console script ``script`` (its ``main``) once per argv, in one process that has imported what
    the command needs and printed "go" first, so a kill timed from "go" lands in the command's work."""
    imports = IMPORTS.get(script) or IMPORTS.get(argvs[0][0], "")
    return [sys.executable, "-c", LAUNCH, ENTRY[script], imports, *["\x1f".join(a) for a in argvs]]


def run(cmd: list[str], env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command to its end (stdout and stderr captured)."""
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _start(cmd: list[str], env: dict) -> tuple[subprocess.Popen, float]:
    """Start ``cmd`` in its own process group; wait for its "go"; (process, time of "go")."""
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    if proc.stdout.readline() != b"go\n":
        proc.wait()
        raise RuntimeError(f"{cmd[3]} did not start (exit {proc.returncode})")
    return proc, time.monotonic()


def run_killed(cmd: list[str], env: dict, delay_s: float) -> bool:
    """Start ``cmd`` (:func:`command`) and SIGKILL its process group ``delay_s`` after its "go"; True if it
    was still running then (False: it had finished by itself)."""
    proc, _ = _start(cmd, env)
    try:
        proc.wait(timeout=delay_s)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True
    finally:
        proc.stdout.close()


def timed(cmd: list[str], env: dict) -> float:
    """Seconds from "go" to the end of an unkilled run of ``cmd`` (it must succeed)."""
    proc, go = _start(cmd, env)
    proc.stdout.read()
    proc.stdout.close()
    if proc.wait() != 0:
        raise RuntimeError(f"{cmd[3]} {cmd[5:6]} failed with exit {proc.returncode}")
    return time.monotonic() - go


def temp_files(*roots: Path) -> list[Path]:
    """Temporary files of atomic writes (``.<name>.<pid>.<random>.tmp``) under ``roots``."""
    return [p for root in roots if root.exists() for p in root.rglob(".*.tmp")]


def scan_sessions(store: Path) -> tuple[list[dict], int]:
    """Every record line of the store's session files, and the number of lines that are not JSON."""
    records, torn = [], 0
    for path in sorted((store / "sessions").glob("*.jsonl")) if (store / "sessions").is_dir() else []:
        for line in path.read_bytes().split(b"\n"):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                torn += 1
    return records, torn


def bad_json(*paths: Path) -> list[str]:
    """Those of ``paths`` that exist and do not parse as JSON."""
    out = []
    for path in paths:
        if path.is_file():
            try:
                json.loads(path.read_text())
            except ValueError:
                out.append(str(path))
    return out


def count_dupes(keys: list) -> int:
    return len(keys) - len(set(keys))


def registry_damage(registry, expected: int, pushed: set[tuple[str, str]]) -> tuple[int, int, int]:
    """Of a pair registry (dpo.gold.PairRegistry: gold or evaluation pairs): pairs registered twice, pairs missing
    of ``expected``, and pairs registered but in no pushed task (``pushed``: the tasks' ``pair_key``s)."""
    keys = [k for k, _ in registry.lines()]
    return count_dupes(keys), max(0, expected - len(set(keys))), len(set(keys) - pushed)


@dataclass
class FaultEnv:
    """The servers and inputs every fault uses."""

    root: Path
    server: object  # fixtures_labelstudio.LabelStudioServer
    checkpoint: str
    base_store: Path  # arrays of the annotated pairs (no sessions)
    ref_records: list[dict]  # what an unkilled pull of the annotated project stores
    pull_title: str
    env: dict

    @classmethod
    def start(cls, root: Path, pairs: int = 40) -> "FaultEnv":
        """Label Studio from the template, a tiny base model, a tiny classifier, and a project of
        ``pairs`` annotated pairwise tasks."""
        from fixtures_labelstudio import _LS_ENV, start_copy
        from fixtures_prefect import TINY_BASE_OVERRIDES

        from tasks.models import train_base_model

        for key in _LS_ENV:
            os.environ.pop(key, None)
        root.mkdir(parents=True, exist_ok=True)
        server = start_copy(root / "ls")
        ckpt = train_base_model.fn("configs/train.yaml", TINY_BASE_OVERRIDES, str(root / "base"))
        return cls.prepare(root, server, ckpt, pairs)

    @classmethod
    def prepare(cls, root: Path, server, checkpoint: str, pairs: int = 40) -> "FaultEnv":
        """The inputs on a running server (a fixtures_labelstudio.LabelStudioServer) and a checkpoint."""
        env = {**os.environ, "LABEL_STUDIO_URL": server.info.url, "LABEL_STUDIO_API_KEY": server.conn.api_key,
               "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
        self = cls(root, server, checkpoint, root / "base-store", [], f"faults pull {uuid.uuid4().hex[:6]}", env)
        self._annotated_project(pairs)
        return self

    def stop(self) -> None:
        from labeling.server import stop_server

        stop_server(self.server.cfg)

    @property
    def classifier(self) -> str:
        """A tiny classifier for the bot's judge (trained on first use)."""
        return _classifier(self.root / "classifier.pt")

    def ls(self):
        return self.server.client()

    def sets(self, *extra: str, title: str | None = None, store: Path | None = None) -> list[str]:
        """``--set`` options for driftsketch-labelstudio: this server's files root, a project title."""
        title = title or self.pull_title
        out = [f"server.files_root={self.server.cfg.files_root}", f"projects.pairwise_title={title} pairwise",
               f"projects.rating_title={title} rating", "gold.share=0", *extra]
        if store is not None:
            out += [f"push.store_root={store}", f"pull.store_root={store}", f"pull.cursor_path={store}/cursor.json"]
        return [a for s in out for a in ("--set", s)]

    def push(self, title: str, pairs: int, store: Path, *extra: str, against: str | None = None) -> list[str]:
        """The push command for ``pairs`` pairs of the tiny model into project ``title`` (with evaluation pairs
        against the checkpoint ``against``, if given)."""
        vs = ["--against", against] if against else []
        return command("driftsketch-labelstudio", ["push", "--model", self.checkpoint, "--pairs", str(pairs), *vs,
                                                   "--round-id", "r1", *self.sets(*extra, title=title, store=store)])

    @property
    def other_model(self) -> str:
        """A second checkpoint of the same classes (the tiny model, perturbed), for evaluation pairs."""
        path = self.root / "other.pt"
        if not path.is_file():
            import torch

            from driftsketch.checkpoint import load_model, save_checkpoint

            model, gen = load_model(self.checkpoint), torch.Generator().manual_seed(0)
            with torch.no_grad():
                for prm in model.parameters():
                    prm.add_(0.02 * torch.randn(prm.shape, generator=gen))
            save_checkpoint(path, model, list(model.class_names))
        return str(path)

    def _annotated_project(self, pairs: int) -> None:
        from dpo.store import PreferenceStore
        from labeling.config import ProjectsConfig
        from labeling.projects import setup_projects
        from labeling.pull import pull_annotations

        out = run(self.push(self.pull_title, pairs, self.base_store), self.env)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        ls = self.ls()
        ids = setup_projects(ls, ProjectsConfig(pairwise_title=f"{self.pull_title} pairwise",
                                                rating_title=f"{self.pull_title} rating"))
        rng = np.random.default_rng(0)
        for task in ls.tasks.list(project=ids["pairwise"], fields="task_only"):
            ls.annotations.create(id=task.id, lead_time=1.0, result=[{
                "from_name": "preference", "to_name": "image_left", "type": "choices",
                "value": {"choices": [str(rng.choice(["A", "B", "tie"]))]}}])
        ref = self.root / "ref-store"
        shutil.copytree(self.base_store, ref)
        pull_annotations(ls, ids, PreferenceStore(ref), cursor_path=ref / "cursor.json")
        self.ref_records, _ = scan_sessions(ref)
        assert len(self.ref_records) == pairs, len(self.ref_records)

    def fresh_store(self, name: str) -> Path:
        """A copy of the annotated pairs' arrays, no records."""
        dst = self.root / "trials" / name
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(self.base_store, dst, ignore=shutil.ignore_patterns("sessions", "cursor.json"))
        return dst


def _classifier(path: Path) -> str:
    """A 10-step classifier on the built-in data: the bot needs a judge, any judge will do."""
    import torch

    from driftsketch.data import load_dataset
    from driftsketch.evaluation.classifier import ClassifierConfig, train_classifier

    if not path.is_file():
        torch.manual_seed(0)
        cfg = ClassifierConfig(steps=10, resolution=32, widths=[8, 16], batch_size=32, holdout_fraction=0.9,
                               augment=False)
        train_classifier(load_dataset("builtin"), cfg, progress=False).save(path)
    return str(path)


def _trials(name: str, trials: int, seed: int, cmd_for: Callable[[int], list[str]], env: dict,
            duration_s: float, check: Callable[[int, FaultRow], None],
            rerun_for: Callable[[int], list[str]] | None = None) -> FaultRow:
    """Kill ``cmd_for(i)`` (a :func:`command`) at a seeded uniform moment of its work, [0, ``duration_s``]
    after its imports, re-run it (``rerun_for(i)`` if given), then ``check(i, row)``."""
    row, rng, t0 = FaultRow(name), np.random.default_rng(seed), time.monotonic()
    row.window = (0.0, round(duration_s, 1))
    for i in range(trials):
        delay = float(rng.uniform(0, duration_s))
        row.add(trials=1, killed=run_killed(cmd_for(i), env, delay))
        out = run((rerun_for or cmd_for)(i), env)
        if out.returncode != 0:
            row.add(stuck=1)
            row.note(f"trial {i}: re-run exit {out.returncode}: {out.stderr.strip().splitlines()[-1][:200]}")
        check(i, row)
    row.seconds = time.monotonic() - t0
    return row


# -- the faults --------------------------------------------------------------------------------------

def fault_pull(env: FaultEnv, trials: int, seed: int) -> FaultRow:
    """`driftsketch-labelstudio pull` killed, re-run: the store must equal an unkilled pull's."""
    ref_ids = sorted(r["id"] for r in env.ref_records)
    stores = {}

    def cmd(i: int) -> list[str]:
        if i not in stores:
            stores[i] = env.fresh_store(f"pull-{i}")
        return command("driftsketch-labelstudio", ["pull", *env.sets(store=stores[i])])

    def check(i: int, row: FaultRow) -> None:
        records, torn = scan_sessions(stores[i])
        ids = [r["id"] for r in records]
        lost = len(set(ref_ids) - set(ids))
        keys = [(r["source"]["project"], r["source"]["annotation"]) for r in records]
        row.add(lost=lost, duplicated=count_dupes(keys), torn_lines=torn,
                temp_files=len(temp_files(stores[i])), corrupt_json=len(bad_json(stores[i] / "cursor.json")))
        if lost:
            row.note(f"trial {i}: {lost} of {len(ref_ids)} annotations missing")

    duration = timed(cmd(-1), env.env)
    return _trials("pull", trials, seed, cmd, env.env, duration, check)


def _project_tasks(env: FaultEnv, title: str) -> list:
    from labeling.projects import find_project

    ls = env.ls()
    pid = find_project(ls, f"{title} pairwise")
    return [] if pid is None else list(ls.tasks.list(project=pid, fields="all"))


def fault_push(env: FaultEnv, trials: int, seed: int, pairs: int = 8) -> FaultRow:
    """`driftsketch-labelstudio push --against` (2 tasks per import request, a quarter evaluation pairs) killed,
    re-run: the project must hold each pair once, every task's arrays must be in the store, no array without a
    task, and each evaluation pair registered once and pushed."""
    extra, n_eval = ("push.batch_size=2", "human_eval.share=0.25"), round(pairs * 0.25)
    runs = {}

    def cmd(i: int) -> list[str]:
        if i not in runs:
            runs[i] = (f"faults push {seed}-{i}-{uuid.uuid4().hex[:6]}", env.root / "trials" / f"push-{i}")
            shutil.rmtree(runs[i][1], ignore_errors=True)
        return env.push(runs[i][0], pairs, runs[i][1], *extra, against=env.other_model)

    def check(i: int, row: FaultRow) -> None:
        from dpo.gold import pair_key
        from dpo.human_eval import EvalSet

        title, store = runs[i]
        tasks = _project_tasks(env, title)
        pair_keys = [(t.data["beziers_a"], t.data["beziers_b"]) for t in tasks]
        arrays = {str(p.relative_to(store)) for p in store.rglob("*.npy")}
        used = {v for t in tasks for k, v in t.data.items() if k.startswith(("beziers_", "noise_")) and v}
        lost, dup = max(0, pairs - len(set(pair_keys))), count_dupes(pair_keys)
        orphans = len(used - arrays) + len(arrays - used)
        reg_dup, reg_missing, unpushed = registry_damage(EvalSet(store), n_eval, {pair_key(*k) for k in pair_keys})
        row.add(lost=lost + reg_missing, duplicated=dup + reg_dup, orphans=orphans + unpushed,
                temp_files=len(temp_files(store)))
        if dup or lost or orphans or reg_dup or reg_missing or unpushed:
            row.note(f"trial {i}: {len(tasks)} tasks for {pairs} pairs ({dup} duplicates, {lost} lost, {orphans} "
                     f"orphans); evaluation pairs: {reg_dup} registered twice, {reg_missing} missing, {unpushed} "
                     f"registered but not pushed")

    duration = timed(cmd(-1), env.env)
    return _trials("push", trials, seed, cmd, env.env, duration, check)


# the killed bots also answer carelessly, by position and against their judge: every answer path is killed
MISBEHAVING_BOT = ("bot.careless_share=0.2", "bot.always_left_share=0.2", "bot.reversed_share=0.2")


def fault_bot(env: FaultEnv, trials: int, seed: int, pairs: int = 8) -> FaultRow:
    """`driftsketch-labelstudio bot` killed, re-run: every task must end with exactly one answer."""
    runs = {}

    def cmd(i: int) -> list[str]:
        if i not in runs:
            title, store = f"faults bot {seed}-{i}-{uuid.uuid4().hex[:6]}", env.root / "trials" / f"bot-{i}"
            shutil.rmtree(store, ignore_errors=True)
            out = run(env.push(title, pairs, store), env.env)
            if out.returncode != 0:
                raise RuntimeError(out.stderr[-2000:])
            runs[i] = (title, store)
        title, store = runs[i]
        return command("driftsketch-labelstudio", ["bot", "--classifier", env.classifier,
                                                   *env.sets(*MISBEHAVING_BOT, title=title, store=store)])

    def check(i: int, row: FaultRow) -> None:
        tasks = _project_tasks(env, runs[i][0])
        answers = [len([a for a in (t.annotations or []) if not a.get("was_cancelled")]) for t in tasks]
        lost, dup = sum(n == 0 for n in answers), sum(max(0, n - 1) for n in answers)
        row.add(lost=lost, duplicated=dup)
        if lost or dup:
            row.note(f"trial {i}: {dup} extra answers, {lost} tasks unanswered of {len(tasks)}")

    duration = timed(cmd(-1), env.env)
    return _trials("bot", trials, seed, cmd, env.env, duration, check)


def _registry(root: Path, checkpoint: str, models: int = 3) -> list[str]:
    from driftsketch.registry import Registry

    reg = Registry(root)
    ids = [f"m{i}" for i in range(models)]
    for i, mid in enumerate(ids):
        reg.add_model(checkpoint, mid, kind="base" if i == 0 else "dpo", parent=None if i == 0 else ids[i - 1])
    reg.promote(ids[0], reason="bootstrap")
    return ids


def _registry_view(path: Path) -> dict:
    """The registry without timestamps: what a killed and re-run command must leave as an unkilled one."""
    state = json.loads(path.read_text())
    history = [{k: v for k, v in e.items() if k not in ("at", "time", "timestamp")} for e in state.get("history", [])]
    return {"current": state.get("current"), "history": history,
            "status": {k: m.get("status") for k, m in state.get("models", {}).items()}}


def fault_promote(env: FaultEnv, trials: int, seed: int) -> FaultRow:
    """`driftsketch-models promote m2` then `rollback`, killed at a random moment of the pair of
    commands, re-run: the registry must equal an unkilled run's (current, history, statuses)."""
    base = env.root / "registry-base"
    if not base.exists():
        _registry(base, env.checkpoint)
    def script(reg: Path) -> list[str]:
        return command("driftsketch-models", ["--registry", str(reg), "promote", "m2"],
                       ["--registry", str(reg), "rollback"])

    def fresh(name: str) -> Path:
        dst = env.root / "trials" / name
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(base, dst)
        return dst

    ref = fresh("promote-ref")
    duration = timed(script(ref), env.env)
    want = _registry_view(ref / "registry.json")
    regs = {}

    def cmd(i: int) -> list[str]:
        regs[i] = regs.get(i) or fresh(f"promote-{i}")
        return script(regs[i])

    def rerun(i: int) -> list[str]:  # what `driftsketch-models list` says is still to do ("promote m2" is
        r, view = str(regs[i]), _registry_view(regs[i] / "registry.json")  # a no-op when done; rollback is not)
        if any(e.get("action") == "rollback" for e in view["history"]):
            return ["true"]
        if view["current"] == "m2":
            return command("driftsketch-models", ["--registry", r, "rollback"])
        return script(regs[i])

    def check(i: int, row: FaultRow) -> None:
        reg = regs[i]
        bad = bad_json(reg / "registry.json")
        row.add(corrupt_json=len(bad), temp_files=len(temp_files(reg)))
        if not bad:
            got = _registry_view(reg / "registry.json")
            if got != want:
                row.add(duplicated=max(0, len(got["history"]) - len(want["history"])),
                        lost=max(0, len(want["history"]) - len(got["history"])))
                row.note(f"trial {i}: registry {got} != {want}")

    return _trials("promote/rollback", trials, seed, cmd, env.env, duration, check, rerun)


def fault_finetune(env: FaultEnv, trials: int, seed: int) -> FaultRow:
    """`driftsketch-train-dpo` killed, re-run with --resume when last.pt exists (else as before): model.pt
    and last.pt must load and hold as many steps as an unkilled run's."""
    import torch

    prefs = env.root / "ref-store"
    base = ["--base-checkpoint", env.checkpoint, "--preference-dir",
            str(prefs), "--epochs", "2", "--batch-size", "8", "--no-wandb", "--num-threads", "1",
            "--set", "early_stopping_patience=0", "--set", "min_pairs=4"]

    def out_dir(i: int) -> Path:
        return env.root / "trials" / f"dpo-{i}"

    def cmd(i: int) -> list[str]:
        shutil.rmtree(out_dir(i), ignore_errors=True)
        return command("driftsketch-train-dpo", [*base, "--checkpoint-dir", str(out_dir(i))])

    def rerun(i: int) -> list[str]:
        resume = ["--resume"] if (out_dir(i) / "last.pt").is_file() else []
        return command("driftsketch-train-dpo", [*base, "--checkpoint-dir", str(out_dir(i)), *resume])

    def steps(path: Path) -> int | None:
        try:
            return int(torch.load(path, map_location="cpu", weights_only=True).get("step", -1))
        except Exception:  # noqa: BLE001 - any failure to load is what we count
            return None

    duration = timed(cmd(-1), env.env)
    want = steps(out_dir(-1) / "model.pt"), steps(out_dir(-1) / "last.pt")

    def check(i: int, row: FaultRow) -> None:
        d = out_dir(i)
        got = steps(d / "model.pt"), steps(d / "last.pt")
        row.add(corrupt_json=sum(g is None for g in got) + len(bad_json(*d.glob("*.json"))),
                temp_files=len(temp_files(d)))
        if got != want:
            row.note(f"trial {i}: steps (model.pt, last.pt) {got} != unkilled {want}")

    return _trials("fine-tune", trials, seed, cmd, env.env, duration, check, rerun)


def fault_server_stop(env: FaultEnv, trials: int, seed: int) -> FaultRow:
    """Label Studio SIGKILLed at a random moment of a pull, restarted, the pull re-run: the store must
    equal an unkilled pull's, and the failed pull must have written nothing torn."""
    from labeling.server import read_info, start_server

    ref_ids = sorted(r["id"] for r in env.ref_records)
    row, rng, t0 = FaultRow("Label Studio killed mid-pull"), np.random.default_rng(seed), time.monotonic()
    probe = env.fresh_store("stop-probe")
    duration = timed(command("driftsketch-labelstudio", ["pull", *env.sets(store=probe)]), env.env)
    row.window = (0.0, round(duration, 1))
    for i in range(trials):
        store = env.fresh_store(f"stop-{i}")
        # backoff 0.25 s instead of 1 s: the pull that loses its server gives up in ~4 s instead of ~15 s
        proc, _ = _start(command("driftsketch-labelstudio", ["pull", *env.sets("client.backoff_s=0.25", store=store)]),
                         env.env)
        time.sleep(float(rng.uniform(0, duration)))
        try:
            os.killpg(read_info(env.server.cfg)["pid"], signal.SIGKILL)
        except ProcessLookupError:  # the server had already gone away on its own: the same fault, noted
            row.note(f"trial {i}: Label Studio was already gone at the kill")
        proc.stdout.close()
        row.add(trials=1, killed=proc.wait(timeout=120) != 0)
        if proc.returncode not in (0, 2):
            row.note(f"trial {i}: the pull ended with {proc.returncode}, not a one-line error")
        info = start_server(env.server.cfg)  # same data dir; maybe another port
        env.env["LABEL_STUDIO_URL"] = info.url
        env.server.info = info
        env.server.conn = type(env.server.conn)(info.url, env.server.conn.api_key)
        out = run(command("driftsketch-labelstudio", ["pull", *env.sets(store=store)]), env.env)
        if out.returncode != 0:
            row.add(stuck=1)
            row.note(f"trial {i}: re-run after restart exit {out.returncode}: {out.stderr[-200:]}")
        records, torn = scan_sessions(store)
        keys = [(r["source"]["project"], r["source"]["annotation"]) for r in records]
        lost = len(set(ref_ids) - {r["id"] for r in records})
        row.add(lost=lost, duplicated=count_dupes(keys), torn_lines=torn, temp_files=len(temp_files(store)),
                corrupt_json=len(bad_json(store / "cursor.json")))
    row.seconds = time.monotonic() - t0
    return row


def _together(cmds: list[list[str]], env: dict, row: FaultRow | None = None, trial: int = 0) -> list[int]:
    """Start ``cmds`` (:func:`command`) at once, let them run to the end; their exit codes. A command that
    failed is noted in ``row`` with the end of its error output."""
    procs = [subprocess.Popen(c, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for c in cmds]
    outs = [p.communicate(timeout=600)[1] for p in procs]
    for k, (p, err) in enumerate(zip(procs, outs)):
        if p.returncode != 0 and row is not None:
            row.note(f"trial {trial}: command {k} exit {p.returncode}: {err.strip()[-200:]}")
    return [p.returncode for p in procs]


def fault_two_pulls(env: FaultEnv, trials: int, seed: int) -> FaultRow:
    """Two `driftsketch-labelstudio pull` at once into one store: together they must store each annotation
    once (no kill; ``seed`` unused)."""
    ref_ids = {r["id"] for r in env.ref_records}
    row, t0 = FaultRow("two pulls at once"), time.monotonic()
    for i in range(trials):
        store = env.fresh_store(f"two-pulls-{i}")
        codes = _together([command("driftsketch-labelstudio", ["pull", *env.sets(store=store)])] * 2, env.env, row, i)
        records, torn = scan_sessions(store)
        keys = [(r["source"]["project"], r["source"]["annotation"]) for r in records]
        row.add(trials=1, stuck=sum(c != 0 for c in codes), lost=len(ref_ids - {r["id"] for r in records}),
                duplicated=count_dupes(keys), torn_lines=torn, temp_files=len(temp_files(store)),
                corrupt_json=len(bad_json(store / "cursor.json")))
    row.seconds = time.monotonic() - t0
    return row


def fault_two_bots(env: FaultEnv, trials: int, seed: int, pairs: int = 8) -> FaultRow:
    """Two bots (two annotator accounts) at once on one project that allows one answer per task: every task
    must end with exactly one answer (no kill; ``seed`` unused)."""
    row, t0 = FaultRow("two bots at once"), time.monotonic()
    for i in range(trials):
        title, store = f"faults two bots {i}-{uuid.uuid4().hex[:6]}", env.root / "trials" / f"two-bots-{i}"
        shutil.rmtree(store, ignore_errors=True)
        out = run(env.push(title, pairs, store), env.env)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        bot = ["bot", "--classifier", env.classifier, *env.sets(*MISBEHAVING_BOT, title=title, store=store)]
        codes = _together([command("driftsketch-labelstudio", [*bot, "--email", f"bot-{k}@driftsketch.local"])
                           for k in (1, 2)], env.env, row, i)
        answers = [len([a for a in (t.annotations or []) if not a.get("was_cancelled")])
                   for t in _project_tasks(env, title)]
        row.add(trials=1, stuck=sum(c != 0 for c in codes), lost=sum(n == 0 for n in answers),
                duplicated=sum(max(0, n - 1) for n in answers))
    row.seconds = time.monotonic() - t0
    return row


class DiskUnavailable(RuntimeError):
    """A small file system cannot be mounted here (not root, or no mount rights in this container)."""


class SmallDisk:
    """A ``size_kb`` tmpfs mounted at ``path`` (root only), to be filled up with :meth:`leave_free`."""

    def __init__(self, path: Path, size_kb: int) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise DiskUnavailable(f"cannot mount a tmpfs at {path}: {out.stderr.strip()}")

    def leave_free(self, free_bytes: int) -> None:
        """Fill the disk with a filler file, then give back ``free_bytes`` (rounded to pages)."""
        filler = self.path / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            while os.write(fd, b"\0" * 65536):
                pass
        except OSError:  # ENOSPC: full
            pass
        finally:
            os.close(fd)
        size = filler.stat().st_size
        os.truncate(filler, max(0, size - free_bytes))

    def free_all(self) -> None:
        (self.path / "filler").unlink(missing_ok=True)

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


def fault_full_disk_pull(env: FaultEnv, trials: int, seed: int) -> FaultRow:
    """`pull` into a store on a disk with a seeded random amount of free space (0 to the size of the
    records it writes), then the same pull after space was freed: nothing torn, lost or duplicated."""
    ref_ids = {r["id"] for r in env.ref_records}
    row, rng, t0 = FaultRow("full disk during a pull"), np.random.default_rng(seed), time.monotonic()
    need = sum(p.stat().st_size for p in (env.root / "ref-store" / "sessions").glob("*.jsonl"))
    for i in range(trials):
        disk = SmallDisk(env.root / "trials" / f"disk-pull-{i}", 16 * 1024)  # the filler takes all but the free part
        try:
            store = disk.path / "store"
            shutil.copytree(env.base_store, store, ignore=shutil.ignore_patterns("sessions", "cursor.json"))
            disk.leave_free(int(rng.uniform(0, need)))
            first = run(command("driftsketch-labelstudio", ["pull", *env.sets(store=store)]), env.env)
            row.add(trials=1, killed=first.returncode != 0)
            if first.returncode not in (0, 2):
                row.note(f"trial {i}: the pull on a full disk ended with {first.returncode}: {first.stderr[-200:]}")
            disk.free_all()
            out = run(command("driftsketch-labelstudio", ["pull", *env.sets(store=store)]), env.env)
            if out.returncode != 0:
                row.add(stuck=1)
                row.note(f"trial {i}: re-run exit {out.returncode}: {out.stderr[-200:]}")
            records, torn = scan_sessions(store)
            keys = [(r["source"]["project"], r["source"]["annotation"]) for r in records]
            row.add(lost=len(ref_ids - {r["id"] for r in records}), duplicated=count_dupes(keys), torn_lines=torn,
                    temp_files=len(temp_files(store)), corrupt_json=len(bad_json(store / "cursor.json")))
            if torn:
                row.note(f"trial {i}: {torn} torn lines after a pull on a full disk and its re-run")
        finally:
            disk.close()
    row.seconds = time.monotonic() - t0
    return row


def fault_full_disk_checkpoint(env: FaultEnv, trials: int, seed: int) -> FaultRow:
    """`driftsketch-train-dpo` writing its checkpoints to a disk with a seeded random amount of free space
    (0 to what the checkpoints need), then re-run (``--resume`` when last.pt exists) after space was freed:
    both checkpoints load and hold the unkilled run's step; no temporary file is left."""
    import torch

    row, rng, t0 = FaultRow("full disk during checkpoint writes"), np.random.default_rng(seed), time.monotonic()
    base = ["--base-checkpoint", env.checkpoint, "--preference-dir", str(env.root / "ref-store"), "--epochs", "2",
            "--batch-size", "8", "--no-wandb", "--num-threads", "1", "--set", "early_stopping_patience=0",
            "--set", "min_pairs=4"]
    ref = env.root / "trials" / "disk-dpo-ref"
    shutil.rmtree(ref, ignore_errors=True)
    run(command("driftsketch-train-dpo", [*base, "--checkpoint-dir", str(ref)]), env.env).check_returncode()
    need = sum(p.stat().st_size for p in ref.rglob("*") if p.is_file())

    def steps(path: Path) -> int | None:
        try:
            return int(torch.load(path, map_location="cpu", weights_only=True).get("step", -1))
        except Exception:  # noqa: BLE001 - any failure to load is what we count
            return None

    want = steps(ref / "model.pt"), steps(ref / "last.pt")
    for i in range(trials):
        disk = SmallDisk(env.root / "trials" / f"disk-dpo-{i}", 3 * need // 1024 + 16 * 1024)
        try:
            out_dir = disk.path / "dpo"
            disk.leave_free(int(rng.uniform(0, need)))
            first = run(command("driftsketch-train-dpo", [*base, "--checkpoint-dir", str(out_dir)]), env.env)
            row.add(trials=1, killed=first.returncode != 0)
            if first.returncode not in (0, 2):
                row.note(f"trial {i}: training on a full disk ended with {first.returncode}: {first.stderr[-200:]}")
            disk.free_all()
            resume = ["--resume"] if (out_dir / "last.pt").is_file() else []
            out = run(command("driftsketch-train-dpo", [*base, "--checkpoint-dir", str(out_dir), *resume]), env.env)
            if out.returncode != 0:
                row.add(stuck=1)
                row.note(f"trial {i}: re-run exit {out.returncode}: {out.stderr.strip()[-200:]}")
            got = steps(out_dir / "model.pt"), steps(out_dir / "last.pt")
            row.add(corrupt_json=sum(g is None for g in got), temp_files=len(temp_files(out_dir)))
            if got != want:
                row.note(f"trial {i}: steps {got} != {want}")
        finally:
            disk.close()
    row.seconds = time.monotonic() - t0
    return row


def hung_server_give_up() -> dict:
    """Seconds until `driftsketch-labelstudio pull` gives up on a server that accepts and never answers
    (defaults of configs/labelstudio.yaml), and what it printed."""
    import socket
    import tempfile

    with socket.socket() as sock, tempfile.TemporaryDirectory() as tmp:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        env = {**os.environ, "LABEL_STUDIO_URL": f"http://127.0.0.1:{sock.getsockname()[1]}",
               "LABEL_STUDIO_API_KEY": "t"}
        cmd = [str(BIN / "driftsketch-labelstudio"), "pull", "--set", f"pull.store_root={tmp}/p",
               "--set", f"pull.cursor_path={tmp}/c.json"]
        t0 = time.monotonic()
        out = run(cmd, env)
        took = time.monotonic() - t0
        return {"seconds": round(took, 1), "exit": out.returncode, "message": out.stderr.strip()[-300:],
                "wrote": sorted(os.listdir(tmp))}


FAULTS: dict[str, Callable[[FaultEnv, int, int], FaultRow]] = {
    "pull": fault_pull, "push": fault_push, "bot": fault_bot, "promote": fault_promote,
    "finetune": fault_finetune, "server": fault_server_stop, "two-pulls": fault_two_pulls, "two-bots": fault_two_bots,
    "disk-pull": fault_full_disk_pull, "disk-checkpoint": fault_full_disk_checkpoint,
}
