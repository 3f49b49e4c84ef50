"""A fine-tune killed mid-training and re-run leaves the same registry (and weights) as an uninterrupted one."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from driftsketch.registry import PromotionGate, Registry
from fixtures_prefect import REPO

DPO_OVERRIDES = ["epochs=8", "batch_size=4", "min_pairs=5", "num_t=1", "eval_num_t=2", "holdout_fraction=0.2",
                 "early_stopping_patience=0", "wandb=false", "num_threads=1"]
NUM_PAIRS = 48


def _make_store(root, checkpoint: str) -> None:
    """Pairs sampled from the base model with seeded random choices, written through the real store."""
    from driftsketch.checkpoint import load_model
    from driftsketch.sampling import generate_beziers
    from dpo.records import PreferenceRecord
    from dpo.store import PreferenceStore

    model = load_model(checkpoint)
    store, rng = PreferenceStore(root), np.random.default_rng(0)
    labels = [i % len(model.class_names) for i in range(NUM_PAIRS)]
    x, noise = generate_beziers(model, labels + labels, 2 * NUM_PAIRS, num_steps=4, seed=0)
    records = []
    for i, c in enumerate(labels):
        a, b = store.save_sample(f"p{i}a", x[i], noise[i]), store.save_sample(f"p{i}b", x[NUM_PAIRS + i], noise[NUM_PAIRS + i])
        records.append(PreferenceRecord(
            id=f"rec{i:03d}", comparison_type="pairwise", class_label=c, class_name=model.class_names[c],
            beziers_a=a[0], beziers_b=b[0], noise_a=a[1], noise_b=b[1], preference=str(rng.choice(["a", "b"])),
            annotator="test", source={"test": i}))
    store.append(records, session="test")


def _world(tmp_path, name: str, base: str, prefs: str) -> tuple[Registry, dict]:
    from tasks.models import register_base, start_round

    reg = Registry(tmp_path / name / "registry")
    register_base.fn(str(reg.root), base)
    ids = [f"rec{i:03d}" for i in range(NUM_PAIRS)]
    return reg, start_round.fn(str(reg.root), ids, "current")


def _finish(reg: Registry, rnd: dict, prefs: str, out_dir) -> dict:
    from tasks.evaluate import heldout_accuracy
    from tasks.models import decide_promotion
    from tasks.train import finetune_round

    model_id = f"r{rnd['index']:03d}-{rnd['id'][:10]}"
    finetune_round.fn(str(reg.root), prefs, rnd["id"], model_id, "configs/dpo.yaml", DPO_OVERRIDES, str(out_dir))
    acc = heldout_accuracy.fn(str(reg.path_of(model_id)), str(reg.path_of(rnd["parent"])), prefs,
                              rnd["record_ids"], "configs/dpo.yaml", DPO_OVERRIDES)
    metrics = {**acc, "recognizability": 0.5, "frechet_distance": 1.0}
    before = {"recognizability": 0.5, "frechet_distance": 1.0}
    decide_promotion.fn(str(reg.root), rnd["id"], PromotionGate(min_heldout_accuracy=0.0), metrics, before, before)
    return metrics


def _normalised(reg: Registry) -> dict:
    """Registry state without wall-clock fields."""
    state = reg.load().model_dump()
    for m in state["models"].values():
        m.pop("created_at"), m.pop("decided_at"), m.pop("path")
    for r in state["rounds"].values():
        r.pop("started_at"), r.pop("finished_at")
    for e in state["history"]:
        e.pop("at")
    return state


@pytest.mark.slow
def test_interrupted_finetune_rerun_equals_uninterrupted(tmp_path, tiny_base_checkpoint):
    prefs = str(tmp_path / "prefs")
    _make_store(prefs, tiny_base_checkpoint)

    # A: the fine-tune is killed (SIGKILL) once its first epoch checkpoint exists, then the round is re-run.
    reg_a, rnd_a = _world(tmp_path, "a", tiny_base_checkpoint, prefs)
    out_a = tmp_path / "a" / "dpo"
    code = (f"from tasks.train import finetune_round; finetune_round.fn({str(reg_a.root)!r}, {prefs!r}, "
            f"{rnd_a['id']!r}, 'r001-x', 'configs/dpo.yaml', {DPO_OVERRIDES!r}, {str(out_a)!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out_a / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out_a / "last.pt").exists() and not (out_a / "model.pt").exists(), "fine-tune was not interrupted mid-way"
    assert reg_a.load().rounds[rnd_a["id"]].status == "started" and reg_a.used_record_ids() == set()
    metrics_a = _finish(reg_a, rnd_a, prefs, out_a)

    # B: the same round, uninterrupted.
    reg_b, rnd_b = _world(tmp_path, "b", tiny_base_checkpoint, prefs)
    assert rnd_b["id"] == rnd_a["id"]
    metrics_b = _finish(reg_b, rnd_b, prefs, tmp_path / "b" / "dpo")

    assert _normalised(reg_a) == _normalised(reg_b)
    assert metrics_a == metrics_b
    cand = reg_a.load().rounds[rnd_a["id"]].candidate
    wa = torch.load(reg_a.path_of(cand), weights_only=True)["model_state_dict"]
    wb = torch.load(reg_b.path_of(cand), weights_only=True)["model_state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

    # Re-running a finished round changes nothing: no second training, no second promotion.
    before = reg_a.load().model_dump()
    _finish(reg_a, rnd_a, prefs, out_a)
    assert reg_a.load().model_dump() == before
