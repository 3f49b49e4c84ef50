"""Prefect wiring: parameters from configs/round.yaml, prefect.yaml, and a real deploy + worker run."""
from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from driftsketch.config import ConfigError, read_yaml
from driftsketch.registry import PromotionGate, Registry
from flows.params import ROUND_CONFIG, load_round_params
from fixtures_prefect import PREFECT_BIN, REPO

TINY_BASE = ["max_steps=30", "batch_size=16", "model.dim=32", "model.depth=1", "model.heads=2", "wandb=false",
             "sample_every=0", "checkpoint_every=0", "warmup_steps=2", "num_threads=1"]


def test_round_params_defaults_are_the_yaml():
    params = load_round_params()
    assert params.model_dump(mode="json") == read_yaml(ROUND_CONFIG)
    assert load_round_params(overrides=["dpo.min_new_preferences=7"]).dpo.min_new_preferences == 7


def test_round_params_reject_unknown_and_bad_keys(tmp_path):
    bad = tmp_path / "round.yaml"
    data = read_yaml(ROUND_CONFIG)
    data["dpo"]["min_new_prefs"] = 3
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="min_new_prefs"):
        load_round_params(bad)
    with pytest.raises(ConfigError, match="reference"):
        load_round_params(overrides=["dpo.reference=latest"])


def test_flow_parameters_are_one_form_with_yaml_defaults():
    from prefect.utilities.callables import parameter_schema

    from flows.online_dpo import online_dpo

    schema = parameter_schema(online_dpo).model_dump()
    assert list(schema["properties"]) == ["params"]
    assert schema["properties"]["params"]["default"] == read_yaml(ROUND_CONFIG)
    assert "RoundParams" in schema["definitions"] and "PromotionGate" in schema["definitions"]
    assert online_dpo.name == "online-dpo"


def test_prefect_yaml_deployments_schedule_and_pool():
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deps = {d["name"]: d for d in spec["deployments"]}
    assert set(deps) == {"round", "base-train", "round-docker", "round-kubernetes"}  # GPU variants: test_flows_scale
    assert deps["round"]["entrypoint"] == "flows/online_dpo.py:online_dpo"
    (sched,) = deps["round"]["schedules"]
    assert sched["cron"] and sched["timezone"]
    pool = deps["round"]["work_pool"]
    assert pool == deps["base-train"]["work_pool"] == spec["definitions"]["work_pools"]["local"]
    assert pool["job_variables"]["env"]["WANDB_MODE"] == "offline"


def test_the_annotators_veto_returns_to_the_model_before_the_ones_they_call_worse(tmp_path):
    from tasks.models import human_veto

    reg = Registry(tmp_path / "reg")
    for i, (name, parent) in enumerate((("base", None), ("r1", "base"), ("r2", "r1"), ("r3", "r2"))):
        (tmp_path / name).write_bytes(name.encode())
        reg.add_model(tmp_path / name, name, kind="dpo" if parent else "base", parent=parent, round_index=i)
        reg.promote(name)
    gate = PromotionGate()  # round.yaml: on, 30 pairs
    fine = {"r3": {"pairs": 12, "win_rate": 0.45}, "r2": {"pairs": 20, "win_rate": 0.5}}
    assert human_veto.fn(str(reg.root), gate, fine)["rolled_back_to"] is None and reg.current == "r3"
    assert human_veto.fn(str(reg.root), gate, {"r3": {"pairs": 12, "win_rate": 0.0}}) is None  # too few pairs
    assert human_veto.fn(str(reg.root), PromotionGate(human_veto_min_pairs=None), {}) is None  # off
    worse = {"r3": {"pairs": 12, "win_rate": 0.2}, "r2": {"pairs": 20, "win_rate": 0.25},
             "r1": {"pairs": 30, "win_rate": 0.3}}
    out = human_veto.fn(str(reg.root), gate, worse)
    assert out["rolled_back_to"] == "r1" and out["models"] == ["r3", "r2"] and "veto" in out["reason"]
    state = reg.load()
    assert state.current == "r1" and state.models["r3"].status == state.models["r2"].status == "rolled_back"
    # a re-run judges the model now current: r1's own 30 pairs call it worse too, so the base
    assert human_veto.fn(str(reg.root), gate, worse)["rolled_back_to"] == "base" and reg.current == "base"
    assert human_veto.fn(str(reg.root), gate, worse) is None  # the base is never judged against itself


def test_decide_promotion_task_is_idempotent(tmp_path):
    from tasks.models import decide_promotion, last_round_index

    reg = Registry(tmp_path / "reg")
    for name in ("base", "cand"):
        (tmp_path / name).write_bytes(name.encode())
    reg.add_model(tmp_path / "base", "base", kind="base")
    reg.promote("base", "bootstrap")
    rnd = reg.start_round("base", "base", ["r1", "r2"])
    reg.add_model(tmp_path / "cand", "cand", parent="base", round_id=rnd.id, round_index=rnd.index)
    reg.finish_training(rnd.id, "cand")
    assert rnd.index == 1 and last_round_index(str(reg.root)) == 0  # undecided: the base's noise still
    cand = {"heldout_accuracy": 0.7, "recognizability": 0.9, "frechet_distance": 3.0}
    cur = {"recognizability": 0.9, "frechet_distance": 3.0}
    out = decide_promotion.fn(str(reg.root), rnd.id, PromotionGate(), cand, cur, cur)
    assert out["promoted"] and out["current"] == "cand" and "(base)" in out["reason"]  # round.yaml's anchored gate
    assert last_round_index(str(reg.root)) == 1  # the noise the new current model was judged on
    state = reg.load().model_dump()
    worse = {**cand, "heldout_accuracy": 0.1}
    assert decide_promotion.fn(str(reg.root), rnd.id, PromotionGate(), worse, cur, cur) == out  # recorded decision
    assert reg.load().model_dump() == state
    assert reg.get("cand").metrics == cand and reg.get("base").metrics == cur


def stop_worker(worker: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if the worker is still shutting down after ``grace`` seconds (a worker
    caught mid-poll can take longer than that), so cleanup never hides the test's own verdict."""
    worker.terminate()
    try:
        worker.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(timeout=30)


@pytest.mark.slow
def test_deploy_all_and_run_base_train_through_a_worker(prefect_server, tmp_path, monkeypatch):
    """prefect.yaml -> `prefect deploy` (round, base-train) -> process worker -> `prefect deployment run` trains a base model."""
    server = prefect_server
    server.cli("work-pool", "create", "driftsketch-local", "--type", "process", "--overwrite")
    server.cli("--no-prompt", "deploy", "--name", "round", "--name", "base-train")
    inspect = server.deployment("online-dpo/round")
    assert inspect["schedules"][0]["schedule"]["timezone"] and inspect["work_pool_name"] == "driftsketch-local"
    assert list(inspect["parameter_openapi_schema"]["properties"]) == ["params"]

    registry = tmp_path / "registry"
    params = {"overrides": TINY_BASE, "checkpoint_dir": str(tmp_path / "base"), "registry_dir": str(registry)}
    log = open(server.home / "worker.log", "w")
    worker = subprocess.Popen([str(PREFECT_BIN), "worker", "start", "--pool", "driftsketch-local"],
                              cwd=REPO, env=server.env, stdout=log, stderr=subprocess.STDOUT)
    try:
        out = server.cli("deployment", "run", "base-train/base-train", "--params", json.dumps(params),
                         "--watch", "--watch-timeout", "400", check=False, timeout=450)
    finally:
        stop_worker(worker)
        log.close()
    assert out.returncode == 0 and "Completed" in out.stdout, (
        out.stdout[-2000:] + out.stderr[-2000:] + (server.home / "worker.log").read_text()[-3000:])
    reg = Registry(registry)
    assert reg.current is not None and reg.current.startswith("base-")
    assert reg.current_path().is_file()
