"""The suite's perfect reward (benchmarks/oracle_reward.py): the loop's amplification ranks by the annotator's score."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_dpo_trainer import CLASSES, cfg_for, make_store

import dpo.trainer
from dpo import PreferenceStore
from dpo.config import load_dpo_config
from driftsketch.checkpoint import save_checkpoint
from driftsketch.model import ModelConfig, SketchFlowTransformer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import preference_suite as ps  # noqa: E402
from annotators import Annotator  # noqa: E402
from oracle_reward import oracle_reward  # noqa: E402


def left_leaning(beziers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A taste no reward input computes: the further left the ink, the better."""
    return -beziers[..., 0].mean(axis=(1, 2))


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("base") / "base.pt"
    save_checkpoint(path, SketchFlowTransformer(ModelConfig(num_classes=2, dim=32, depth=2, heads=2)), CLASSES, step=1)
    return path


def test_amplification_ranks_every_group_by_the_annotators_own_score(tmp_path, tiny_ckpt):
    annotator = Annotator("left", "per-sketch", left_leaning, "ink on the left")
    store = make_store(tmp_path / "prefs", 30)
    base = cfg_for(tiny_ckpt, store, tmp_path / "run", epochs=1)
    amp = {"enabled": True, "groups_per_class": 3, "group_size": 4, "num_steps": 2, "min_accuracy": 0.99,
           "reward": {"hand_features": False, "embedding_t": [], "local_features": 16}}
    over = [([k], getattr(base, k)) for k in ("base_checkpoint", "preference_dir", "checkpoint_dir", "wandb", "epochs",
                                              "batch_size", "min_pairs", "early_stopping_patience")]
    cfg = load_dpo_config(overrides=over + [(["amplify", k], v) for k, v in amp.items() if k != "reward"]
                          + [(["amplify", "reward", k], v) for k, v in amp["reward"].items()])
    fit = dpo.trainer.fit_on_dataset
    with oracle_reward(annotator):
        res = dpo.trainer.train_dpo(cfg, records=store.records(), progress=False)
    assert dpo.trainer.fit_on_dataset is fit  # restored after the block
    amp = res.data_summary["amplify"]
    assert amp["used"] and amp["cv_accuracy"] == 1.0 and amp["pairs"] == 2 * 3 * 3  # the 0.99 gate passed
    saved = json.loads((tmp_path / "run" / "reward_model.json").read_text())
    assert saved["format"] == "oracle" and saved["annotator"] == "left"
    amplified = PreferenceStore(amp["store"])
    recs = amplified.records()
    assert len(recs) == 18 and {r.source["group"] for r in recs} == set(range(6))
    for group in range(6):  # the winner of every pair is its group's best sketch under the annotator
        rows = [r for r in recs if r.source["group"] == group]
        winner = left_leaning(amplified.load_beziers(rows[0], "a")[None], None)[0]
        others = [left_leaning(amplified.load_beziers(r, "b")[None], None)[0] for r in rows]
        assert all(r.beziers_a == rows[0].beziers_a for r in rows) and winner >= max(others)


def test_a_run_cannot_switch_between_the_fitted_and_the_oracle_reward(tmp_path):
    done = tmp_path / "round_00.json"
    done.write_text(json.dumps({"labels": 100, "checkpoint": "x", "reference": "base"}))  # before the field existed
    assert ps.check_resume(done, ps.parse_args(["--no-promotion-gate"]))["checkpoint"] == "x"
    with pytest.raises(SystemExit, match="made with the fitted reward; drop --oracle-reward"):
        ps.check_resume(done, ps.parse_args(["--no-promotion-gate", "--oracle-reward"]))
    done.write_text(json.dumps({"labels": 100, "checkpoint": "x", "reference": "base", "reward": "oracle"}))
    with pytest.raises(SystemExit, match="made with the oracle reward; pass --oracle-reward"):
        ps.check_resume(done, ps.parse_args(["--no-promotion-gate"]))
    with pytest.raises(SystemExit, match="add --no-control"):
        ps.main(["--out", str(tmp_path), "--oracle-reward"])
