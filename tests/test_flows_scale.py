"""Past one machine, against a real Prefect server: the GPU work-pool variants deploy with their job
variables; the annotation trigger starts a real round after N bot answers (Label Studio webhook ->
tasks/events.py receiver -> Prefect event -> deployment trigger -> process worker) and a second
trigger during that round waits for it (concurrency limit 1, ENQUEUE)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from fixtures_prefect import PREFECT_BIN, REPO

SPEC = yaml.safe_load((REPO / "prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in SPEC["deployments"]}


def test_prefect_yaml_round_trigger_concurrency_and_gpu_variants():
    rnd = DEPLOYMENTS["round"]
    (trigger,) = rnd["triggers"]
    assert trigger["expect"] == ["driftsketch.annotation.created"] and trigger["threshold"] >= 1
    assert trigger["match"] == {"prefect.resource.id": "driftsketch.labelstudio.project.*"}
    for name in ("round", "round-docker", "round-kubernetes"):
        assert DEPLOYMENTS[name]["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
        assert DEPLOYMENTS[name]["entrypoint"] == "flows/online_dpo.py:online_dpo"
    docker = DEPLOYMENTS["round-docker"]["work_pool"]["job_variables"]
    assert docker["container_create_kwargs"]["device_requests"][0]["capabilities"] == [["gpu"]]
    assert DEPLOYMENTS["round-kubernetes"]["work_pool"]["job_variables"]["gpu_limit"] == "1"


def test_gpu_job_templates_are_prefects_own_plus_the_gpu_variables():
    sys.path.insert(0, str(REPO / "scripts"))
    from gpu_job_templates import render

    for name, text in render().items():
        assert (REPO / "deploy" / name).read_text() == text, f"deploy/{name} is stale: run scripts/gpu_job_templates.py"
    k8s = json.loads((REPO / "deploy" / "kubernetes-gpu.json").read_text())
    (container,) = k8s["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpu_limit }}"


@pytest.mark.slow
def test_deploy_gpu_variants_with_their_job_variables(prefect_server):
    server = prefect_server
    for kind in ("docker", "kubernetes"):
        pool = SPEC["definitions"]["work_pools"][kind]["name"]
        server.cli("work-pool", "create", pool, "--type", kind, "--overwrite",
                   "--base-job-template", str(REPO / "deploy" / f"{kind}-gpu.json"))
    server.cli("--no-prompt", "deploy", "--name", "round-docker", "--name", "round-kubernetes")
    for name in ("round-docker", "round-kubernetes"):
        got = server.deployment(f"online-dpo/{name}")
        want = DEPLOYMENTS[name]["work_pool"]
        assert got["work_pool_name"] == want["name"]
        assert got["job_variables"] == want["job_variables"]
        assert got["global_concurrency_limit"]["limit"] == 1
        assert got["concurrency_options"]["collision_strategy"] == "ENQUEUE"
        assert got["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {"directory": "/opt/driftsketch"}}]


# ------------------------------------------------------------------------------------------- the trigger
N = 4  # annotations per round in this test
WITHIN = 15  # the trigger's window (s): after firing it counts again from the window's end
TITLE = "trigger-test pairwise"


def _round_params(tmp_path: Path, base: str, files_root: str) -> dict:
    from flows.params import load_round_params

    return {"params": load_round_params(overrides=[
        f"registry_dir={tmp_path}/registry", f"preference_dir={tmp_path}/prefs", f"work_dir={tmp_path}/work",
        f"base.checkpoint={base}", "wandb=false", "dpo.min_new_preferences=1000",  # pull, never train
        "eval.overrides=[classifier.steps=20,classifier.batch_size=32]", "eval.samples_per_class=2",
        "generate.queue_target=0", "generate.max_new_pairs=0", "generate.retire_stale=false",
        f"labelstudio.overrides=[projects.pairwise_title={TITLE},server.files_root={files_root}]"],
    ).model_dump(mode="json")}


def _test_prefect_yaml(tmp_path: Path, params: dict) -> Path:
    """The repository's prefect.yaml with the trigger threshold N and the test's round parameters."""
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (rnd,) = [d for d in spec["deployments"] if d["name"] == "round"]
    rnd["triggers"][0].update(threshold=N, within=WITHIN)
    rnd["parameters"] = params
    rnd["schedules"] = []
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _runs(server, deployment_id: str, earlier: frozenset[str] = frozenset()) -> list[dict]:
    """The runs of one deployment, without those in `earlier` (the session's Prefect server is shared: other tests
    leave runs of a deployment with the same name behind)."""
    import httpx

    resp = httpx.post(f"{server.api_url}/flow_runs/filter", json={"sort": "EXPECTED_START_TIME_ASC"}, timeout=10)
    return [r for r in resp.json() if r["deployment_id"] == deployment_id and r["id"] not in earlier
            and not r["auto_scheduled"]]  # not the runs a schedule another test deployed keeps creating


def _wait(what: str, cond, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_n_answers_trigger_one_round_and_a_second_waits_for_it(prefect_server, labelstudio, tiny_base_checkpoint,
                                                               tiny_judge, tmp_path):
    from test_labeling_scale_unit import _batch

    from dpo.store import PreferenceStore
    from labeling.bot import run_bot
    from labeling.config import BotConfig, ProjectsConfig
    from labeling.projects import setup_projects
    from labeling.push import push_tasks

    server, ls = prefect_server, labelstudio.client()
    pid = setup_projects(ls, ProjectsConfig(pairwise_title=TITLE, rating_title="trigger-test rating"))["pairwise"]
    store = PreferenceStore(tmp_path / "prefs")
    push_tasks(ls, pid, _batch(3 * N), store=store, checkpoint="ck-trigger", progress=False)
    params = _round_params(tmp_path, tiny_base_checkpoint, labelstudio.cfg.files_root)
    server.cli("work-pool", "create", "driftsketch-local", "--type", "process", "--overwrite")
    subprocess.run([str(PREFECT_BIN), "deployment", "delete", "online-dpo/round"], env=server.env, cwd=REPO,
                   capture_output=True, timeout=120)  # another test's round deployment (its schedule) goes
    server.cli("--no-prompt", "deploy", "--prefect-file", str(_test_prefect_yaml(tmp_path, params)), "--name", "round")
    deployment_id = server.deployment("online-dpo/round")["id"]
    earlier = frozenset(r["id"] for r in _runs(server, deployment_id))
    runs = lambda: _runs(server, deployment_id, earlier)  # noqa: E731

    env = {**server.env, "LABEL_STUDIO_URL": labelstudio.conn.url, "LABEL_STUDIO_API_KEY": labelstudio.conn.api_key,
           "PREFECT_WORKER_QUERY_SECONDS": "2", "PYTHONUNBUFFERED": "1"}
    receiver = _start([sys.executable, "-m", "tasks.events", "--port", "0", "--set",
                       f"projects.pairwise_title={TITLE}"], env, tmp_path / "receiver.log")
    worker = _start([str(PREFECT_BIN), "worker", "start", "--pool", "driftsketch-local"], env, tmp_path / "worker.log")
    logs = lambda: "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in tmp_path.glob("*.log"))  # noqa: E731
    bot = BotConfig(email="bot@driftsketch.test", noise=0.0)
    try:
        _wait("the receiver", lambda: "receiving Label Studio webhooks" in (tmp_path / "receiver.log").read_text(), 60)
        assert run_bot(ls, pid, store, tiny_judge, bot, limit=N, progress=False)["answered"] == N
        first = _wait("a triggered run to start", lambda: [r for r in runs() if r["state_type"] == "RUNNING"],
                      180)[0]
        assert len(runs()) == 1  # N answers: one round
        # answers inside the fired window are not counted: wait until it closed. It opened at the first event, which
        # Prefect stamps when the receiver emits it (seconds after the bot answered on a loaded machine: timing the
        # window from before the bot flaked)
        opened = _wait("the first annotation event", lambda: _first_event_time(server, pid), 60)
        time.sleep(max(0.0, opened + WITHIN + 1 - time.time()))
        assert run_bot(ls, pid, store, tiny_judge, bot, limit=N, progress=False)["answered"] == N  # during round 1
        second = _wait("a second triggered run", lambda: [r for r in runs() if r["id"] != first["id"]], 120)[0]
        assert second["state_type"] in ("SCHEDULED", "PENDING"), second["state_name"]  # queued, not running
        done = _wait("both runs to finish", lambda: (rs := runs()) and all(
            r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for r in rs) and rs, 600, every=3)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs()}") from None
    finally:
        _stop(worker)
        _stop(receiver)
    assert [r["state_type"] for r in done] == ["COMPLETED", "COMPLETED"], logs()
    one, two = sorted(done, key=lambda r: r["start_time"])
    assert two["start_time"] >= one["end_time"]  # never overlapping
    assert "AwaitingConcurrencySlot" in _state_names(server, two["id"])  # held back by the limit, then run
    pulled = sum(1 for r in PreferenceStore(tmp_path / "prefs").records())
    assert pulled == 2 * N  # everything the bot answered, exactly once, over the two rounds


def _first_event_time(server, project: int) -> float | None:
    """Epoch seconds Prefect stamped on the first annotation event of Label Studio project ``project``."""
    import httpx

    from tasks.events import EVENT

    body = {"filter": {"event": {"name": [EVENT]}, "resource": {"id": [f"driftsketch.labelstudio.project.{project}"]}},
            "limit": 50}
    events = httpx.post(f"{server.api_url}/events/filter", json=body, timeout=30).raise_for_status().json()["events"]
    return min(datetime.fromisoformat(e["occurred"]).timestamp() for e in events) if events else None


def _state_names(server, run_id: str) -> list[str]:
    import httpx

    return [s["name"] for s in httpx.get(f"{server.api_url}/flow_run_states/", params={"flow_run_id": run_id},
                                         timeout=10).json()]


def test_receiver_cli_refuses_to_start_without_label_studio(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
    out = subprocess.run([sys.executable, "-m", "tasks.events", "--port", "0", "--set",
                          f"server.data_dir={tmp_path}/none"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "no Label Studio URL" in out.stderr and "Traceback" not in out.stderr
