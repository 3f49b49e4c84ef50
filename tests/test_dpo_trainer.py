"""Flow-DPO trainer and CLI on a tiny real model and a real on-disk preference store."""
from __future__ import annotations

import fnmatch
import math

import numpy as np
import pytest
import torch

from dpo import PreferenceRecord, PreferenceStore
from dpo.cli import main as cli_main
from dpo.config import load_dpo_config
from dpo.trainer import DPOError, train_dpo, train_times
from driftsketch.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from driftsketch.device import numerics_fingerprint
from driftsketch.model import ModelConfig, SketchFlowTransformer

CLASSES = ["circle", "blob"]


def circle(rng) -> np.ndarray:
    r, cx, cy = rng.uniform(0.3, 0.7), rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2)
    a = np.linspace(0, 2 * np.pi, 33)
    t = np.stack([a[:-1], a[:-1] + np.diff(a) / 3, a[1:] - np.diff(a) / 3, a[1:]], axis=1)  # (32, 4)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], -1).astype(np.float32)


@pytest.fixture(scope="module")
def base_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = SketchFlowTransformer(ModelConfig(num_classes=2, dim=32, depth=2, heads=2))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("base") / "base.pt"
    save_checkpoint(path, model, CLASSES, step=1)
    return path


def make_store(root, n: int, cls: str = "circle", seed: int = 0) -> PreferenceStore:
    """n pairs: a circle (winner) against uniform noise (loser), winner side alternating."""
    store, rng, recs = PreferenceStore(root), np.random.default_rng(seed), []
    for i in range(n):
        good, bad = circle(rng), rng.uniform(-1, 1, (32, 4, 2)).astype(np.float32)
        a, b = (good, bad) if i % 2 == 0 else (bad, good)
        ra, na = store.save_sample(f"{cls}{i}a", a, rng.standard_normal((32, 8)).astype(np.float32))
        rb, nb = store.save_sample(f"{cls}{i}b", b, rng.standard_normal((32, 8)).astype(np.float32))
        recs.append(PreferenceRecord(comparison_type="pairwise", class_label=0, class_name=cls, beziers_a=ra,
                                     beziers_b=rb, noise_a=na, noise_b=nb, preference="ab"[i % 2],
                                     annotator="test", source={"test": cls, "i": i}))
    store.append(recs, session="s1")
    return store


def cfg_for(base, store, out, **kw):
    over = dict(base_checkpoint=str(base), preference_dir=str(store.root), checkpoint_dir=str(out), wandb=False,
                lr=2e-5, beta=100.0, epochs=10, batch_size=16, num_t=2, eval_num_t=4, holdout_fraction=0.2,
                early_stopping_patience=0, sft_weight=0.0, min_pairs=10)
    over.update(kw)
    return load_dpo_config(overrides=[([k], v) for k, v in over.items()])


@pytest.mark.slow
def test_fifty_pairs_ten_epochs(tmp_path, base_ckpt):
    store = make_store(tmp_path / "prefs", 50)
    result = train_dpo(cfg_for(base_ckpt, store, tmp_path / "run"), progress=False)
    h = result.history
    assert h[0]["heldout/implicit_accuracy"] == 0.5  # epoch 0: model == reference
    assert h[0]["heldout/loss_dpo"] == pytest.approx(math.log(2), abs=1e-6)
    assert h[-1]["train/loss"] < h[1]["train/loss"]
    assert h[-1]["train/implicit_accuracy"] > 0.8 and h[-1]["heldout/implicit_accuracy"] > 0.8
    assert all(-3 < r["dpo/reward_diff_mean"] < 3 for r in h[1:])
    model = load_model(result.checkpoint_path)
    assert model.class_names == CLASSES and model.checkpoint_id == result.checkpoint_id
    ckpt = load_checkpoint(result.checkpoint_path)
    assert ckpt["lineage"]["parent"] == load_checkpoint(base_ckpt)["id"] == result.parent_id
    assert "reference_state" in load_checkpoint(tmp_path / "run" / "last.pt")["extra"]["dpo"]
    assert ckpt["extra"]["dpo"]["machine"] == numerics_fingerprint("cpu")  # which kernels made these digits
    assert len(result.record_ids) == result.data_summary["pairs"]


@pytest.mark.slow
def test_resume_continues_to_the_same_epoch_count(tmp_path, base_ckpt):
    store = make_store(tmp_path / "prefs", 24)
    first = train_dpo(cfg_for(base_ckpt, store, tmp_path / "run", epochs=2), progress=False)
    resumed = train_dpo(cfg_for(base_ckpt, store, tmp_path / "run", epochs=3), resume=True, progress=False)
    assert [r["epoch"] for r in resumed.history] == [0, 1, 2, 3]
    assert resumed.history[:3] == first.history
    assert load_checkpoint(resumed.checkpoint_path)["lineage"]["parent"] == first.parent_id


def test_errors_before_training(tmp_path, base_ckpt):
    store = make_store(tmp_path / "prefs", 6)
    with pytest.raises(DPOError, match="only .* usable training pairs"):
        train_dpo(cfg_for(base_ckpt, store, tmp_path / "r1", min_pairs=20), progress=False)
    make_store(tmp_path / "prefs", 3, cls="giraffe")  # a class the base never learned: skipped and named
    with pytest.raises(DPOError, match=r"only \d+ usable.*class the model does not know: giraffe': 3"):
        train_dpo(cfg_for(base_ckpt, store, tmp_path / "r2"), progress=False)
    bogus = tmp_path / "bogus.pt"
    torch.save({"state_dict": {}}, bogus)
    with pytest.raises(CheckpointError, match="not a DriftSketch checkpoint"):
        train_dpo(cfg_for(bogus, store, tmp_path / "r3"), progress=False)
    assert not (tmp_path / "r1" / "model.pt").exists()


def test_cli_reports_clear_errors(tmp_path, base_ckpt, capsys):
    store = make_store(tmp_path / "prefs", 4)
    rc = cli_main(["--base-checkpoint", str(base_ckpt), "--preference-dir", str(store.root),
                   "--checkpoint-dir", str(tmp_path / "run"), "--no-wandb"])
    assert rc == 2
    assert "only" in capsys.readouterr().err
    assert cli_main(["--base-checkpoint", str(tmp_path / "missing.pt"), "--no-wandb"]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli_main(["--no-wandb", "--set", "betta=3"]) == 2
    assert "unknown key" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_trains_and_shuffled_control(tmp_path, base_ckpt):
    store = make_store(tmp_path / "prefs", 24)
    common = ["--base-checkpoint", str(base_ckpt), "--preference-dir", str(store.root), "--no-wandb",
              "--epochs", "2", "--lr", "1e-3", "--beta", "100", "--batch-size", "12", "--num-t", "1",
              "--set", "min_pairs=10", "--set", "eval_num_t=2"]
    assert cli_main(common + ["--checkpoint-dir", str(tmp_path / "run")]) == 0
    assert load_model(tmp_path / "run" / "model.pt").class_names == CLASSES
    control = train_dpo(cfg_for(base_ckpt, store, tmp_path / "ctl", epochs=1, shuffle_labels=True), progress=False)
    assert control.history[-1]["epoch"] == 1


def test_shuffled_control_swaps_about_half(tmp_path):
    from dpo.dataset import PreferenceDataset
    from dpo.trainer import _Shuffled

    ds = PreferenceDataset(make_store(tmp_path / "prefs", 40).root, CLASSES)
    ctl = _Shuffled(ds, seed=0)
    assert 10 <= sum(ctl.swap) <= 30
    for i in range(len(ds)):
        a, b = ds[i], ctl[i]
        w, l = ("loser", "winner") if ctl.swap[i] else ("winner", "loser")
        assert torch.equal(b["winner_beziers"], a[f"{w}_beziers"]) and torch.equal(b["loser_noise"], a[f"{l}_noise"])


def test_config_defaults_mirror_the_yaml():
    from dpo.config import DPOConfig

    assert load_dpo_config() == DPOConfig()


def test_train_times_bias_toward_one():
    """t_power 1 leaves the loss's own U(0, 1) draw; t_power 0.5 gives t = sqrt(u): mean 2/3, P(t > 0.5) = 3/4."""
    gen = torch.Generator().manual_seed(0)
    assert train_times(8, 2, 1.0, gen) is None
    t = train_times(20000, 2, 0.5, gen)
    assert t.shape == (20000, 2) and float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    assert abs(float(t.mean()) - 2 / 3) < 0.01
    assert abs(float((t > 0.5).float().mean()) - 0.75) < 0.01
    with pytest.raises(ValueError, match="t_power"):
        train_times(4, 1, 0.0, gen)
    late = train_times(20000, 1, 1.0, gen, t_min=0.6)
    assert float(late.min()) >= 0.6 and abs(float(late.mean()) - 0.8) < 0.01
    with pytest.raises(ValueError, match="t_min"):
        train_times(4, 1, 1.0, gen, t_min=1.0)


def test_trainable_patterns_tune_only_the_named_parameters(tmp_path, base_ckpt):
    store = make_store(tmp_path / "prefs", 20)
    res = train_dpo(cfg_for(base_ckpt, store, tmp_path / "run", epochs=2, lr=1e-3,
                            trainable=["blocks.*.ada.*", "final.*"]), progress=False)
    before, after = load_checkpoint(base_ckpt)["model_state_dict"], load_checkpoint(res.checkpoint_path)["model_state_dict"]
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert "blocks.0.ada.1.weight" in changed and "blocks.0.mlp.0.weight" not in changed
    assert all(fnmatch.fnmatchcase(k, "blocks.*.ada.*") or k.startswith("final.") for k in changed), changed
    with pytest.raises(DPOError, match="matches no parameter"):
        train_dpo(cfg_for(base_ckpt, store, tmp_path / "bad", trainable=["encoder.*"]), progress=False)


def test_replayed_reference_gives_the_same_heldout_metrics_with_fewer_forwards(tmp_path, base_ckpt):
    """The held-out evaluation runs the frozen reference once per input however many epochs evaluate,
    and an untrained policy (identical weights) is not run at all; the metrics are unchanged."""
    from dpo.trainer import ReplayedForward, build_datasets, evaluate_pairs, same_weights

    store = make_store(tmp_path / "prefs", 30)
    cfg = cfg_for(base_ckpt, store, tmp_path / "run")
    policy, ref = load_model(base_ckpt), load_model(base_ckpt).requires_grad_(False)
    _, held = build_datasets(cfg, CLASSES)
    calls = []
    ref.register_forward_hook(lambda *_: calls.append(1))
    replay = ReplayedForward(ref)
    assert same_weights(policy, replay)
    first = evaluate_pairs(policy, replay, held, cfg)
    assert first["implicit_accuracy"] == 0.5 and first["loss_dpo"] == pytest.approx(math.log(2), abs=1e-6)
    n = len(calls)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.01 * torch.randn_like(p))
    assert not same_weights(policy, replay)
    assert evaluate_pairs(policy, replay, held, cfg) == evaluate_pairs(policy, ref, held, cfg)
    assert len(calls) == 2 * n  # the replay ran nothing new; the plain reference ran once more


@pytest.mark.parametrize("seed", range(6))
def test_reward_model_never_fits_on_a_pair_the_trainer_holds_out(tmp_path, seed):
    """A round trains on a subset of the store; the reward model (fit_on: all) fits on the rest of the
    store, never on the round's held-out pairs, and is checked on exactly those."""
    from dpo.trainer import build_datasets, reward_datasets

    store = make_store(tmp_path / "prefs", 40, seed=seed)
    records = store.records()
    rnd = [r for i, r in enumerate(records) if i % 3]  # this round's records: 26 of 40
    cfg = cfg_for("base.pt", store, tmp_path / "run", seed=seed, holdout_fraction=0.3, min_pairs=1)
    train, held = build_datasets(cfg, CLASSES, rnd)
    assert len(held.records) == round(0.3 * len(rnd))  # the exact held-out size is kept
    rm_fit, rm_held = reward_datasets(cfg, CLASSES, train, held)
    held_ids = {r.id for r in held.records}
    assert held_ids and not held_ids & {r.id for r in rm_fit.records}
    assert {r.id for r in rm_held.records} == held_ids
    assert len(rm_fit.records) == len(records) - len(held_ids)  # every other stored pair helps
    fit_training = reward_datasets(load_dpo_config(overrides=[
        *[([k], getattr(cfg, k)) for k in ("preference_dir", "seed", "holdout_fraction")],
        (["amplify", "reward", "fit_on"], "training")]), CLASSES, train, held)
    assert fit_training == (train, held)


def test_reward_fits_on_the_newest_max_pairs_and_still_never_on_a_held_out_pair(tmp_path):
    """``amplify.reward.max_pairs`` bounds the reward's fit: the pairs answered last, held-out ones left out."""
    from dpo.trainer import build_datasets, reward_datasets

    store = make_store(tmp_path / "prefs", 40)
    cfg = cfg_for("base.pt", store, tmp_path / "run", holdout_fraction=0.3, min_pairs=1)
    train, held = build_datasets(cfg, CLASSES, store.records())
    every, _ = reward_datasets(cfg, CLASSES, train, held)
    capped_cfg = load_dpo_config(overrides=[*[([k], getattr(cfg, k)) for k in ("preference_dir", "seed",
                                                                               "holdout_fraction")],
                                            (["amplify", "reward", "max_pairs"], 10)])
    capped, capped_held = reward_datasets(capped_cfg, CLASSES, train, held)
    cut = sorted(r.timestamp for r in every.records)[-10]
    assert {r.id for r in capped.records} == {r.id for r in every.records if r.timestamp >= cut}
    assert len(capped.records) >= 10 and len(every.records) == 40 - len(held.records) > 10
    assert capped_held is held
