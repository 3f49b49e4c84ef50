"""The real-data anchor of Flow-DPO (dpo/anchor.py): which sketches it draws and that it moves training."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dpo.anchor import AnchorError, load_anchor
from dpo.config import load_dpo_config
from dpo.trainer import train_dpo
from driftsketch.checkpoint import load_model
from driftsketch.config import yaml_defaults
from driftsketch.data import SketchData
from driftsketch.flow import velocity_mse
from test_dpo_trainer import CLASSES, base_ckpt, cfg_for, circle, make_store  # noqa: F401 - the module fixture


def write_data(path, names=("blob", "circle", "spare"), n=60):
    """Circles of class ``circle``, noise of the others, with ids; saved as a driftsketch .npz."""
    rng = np.random.default_rng(1)
    labels = np.arange(n) % len(names)
    x = np.stack([circle(rng) if names[c] == "circle" else rng.uniform(-1, 1, (32, 4, 2)) for c in labels])
    return SketchData(x, labels, list(names), [f"s{i}" for i in range(n)]).save_npz(path), x, labels


def anchor_cfg(spec: str, **kw):
    return load_dpo_config(overrides=[(["anchor", "data"], spec)] + [(["anchor", k], v) for k, v in kw.items()]).anchor


def test_off_by_default():
    assert load_dpo_config().anchor.data == "" and load_anchor(load_dpo_config().anchor, ["a"]) is None


def test_draws_only_training_sketches_in_the_models_class_order(tmp_path):
    path, x, labels = write_data(tmp_path / "d.npz")
    anchor = load_anchor(anchor_cfg(str(path), batch_size=500), ["circle", "blob"])  # "spare" is left out
    split = yaml_defaults("train.yaml")
    train, held = SketchData.load_npz(path).split(split["holdout_fraction"], seed=split["seed"])
    assert len(anchor.labels) == int(np.isin(train.labels, [0, 1]).sum())
    held_rows = {r.tobytes() for r in held.beziers.reshape(len(held), -1)}
    rows = anchor.beziers.reshape(len(anchor.labels), -1).numpy()
    assert not held_rows & {r.tobytes() for r in rows}  # FD's held-out sketches are never trained on
    circles = anchor.beziers[anchor.labels == 0].reshape(-1, 32, 4, 2).numpy()  # model class 0 = circle
    radius = np.linalg.norm(circles[:, :, 0] - circles[:, :, 0].mean(axis=1, keepdims=True), axis=-1)
    assert radius.std(axis=1).max() < 1e-5  # every sketch labelled circle is a circle
    xb, yb = anchor.draw(torch.Generator().manual_seed(0))
    assert xb.shape == (500, 32, 8) and set(yb.tolist()) == {0, 1}
    again = anchor.draw(torch.Generator().manual_seed(0))
    assert torch.equal(xb, again[0]) and torch.equal(yb, again[1])


def test_a_model_class_without_sketches_is_a_one_line_error(tmp_path):
    path, _, _ = write_data(tmp_path / "d.npz", names=("blob", "spare"))
    with pytest.raises(AnchorError, match=r"anchor.data .*d.npz.*\['circle'\]"):
        load_anchor(anchor_cfg(str(path)), ["circle", "blob"])


@pytest.mark.slow
def test_the_anchor_term_is_trained_and_pulls_toward_the_data(tmp_path, base_ckpt):  # noqa: F811
    path, _, _ = write_data(tmp_path / "d.npz", names=("circle", "blob"))
    store = make_store(tmp_path / "prefs", 24)
    plain = train_dpo(cfg_for(base_ckpt, store, tmp_path / "plain", epochs=2), progress=False)
    anchored = train_dpo(cfg_for(base_ckpt, store, tmp_path / "anchored", epochs=2,
                                 anchor={"data": str(path), "weight": 1.0, "batch_size": 16}), progress=False)
    assert "train/loss_anchor" not in plain.history[-1] and anchored.history[-1]["train/loss_anchor"] > 0
    a, b = load_model(plain.checkpoint_path), load_model(anchored.checkpoint_path)
    assert any(not torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    # the DPO pairs alone are the same in both runs: only the anchor batches differ
    assert plain.history[0] == anchored.history[0]
    real = load_anchor(anchor_cfg(str(path)), CLASSES)  # the real sketches' flow-matching error, fixed noise

    def real_error(model) -> float:
        torch.manual_seed(5)
        with torch.no_grad():
            return float(velocity_mse(model, real.beziers, real.labels).mean())
    assert real_error(b) < real_error(a)
