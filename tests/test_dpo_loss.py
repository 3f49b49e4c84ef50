"""Flow-DPO loss: known answers on the real (tiny) DriftSketch model."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from dpo import flow_dpo_loss
from driftsketch.flow import velocity_mse
from driftsketch.model import ModelConfig, SketchFlowTransformer

B = 6


def tiny_model(seed: int = 0) -> SketchFlowTransformer:
    torch.manual_seed(seed)
    model = SketchFlowTransformer(ModelConfig(num_classes=3, dim=32, depth=2, heads=2))
    with torch.no_grad():  # the adaLN-Zero init outputs 0 everywhere; perturb so models differ
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def frozen_copy(model):
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def circles(n: int, seed: int = 0) -> torch.Tensor:
    """n circles of 32 segments (Bezier control points, flattened to (n, 32, 8))."""
    g = torch.Generator().manual_seed(seed)
    r = 0.3 + 0.5 * torch.rand(n, 1, generator=g)
    ang = torch.linspace(0, 2 * math.pi, 33)
    a0, a1 = ang[:-1], ang[1:]
    pts = [torch.stack([torch.cos(a), torch.sin(a)], -1) for a in (a0, a0 + (a1 - a0) / 3, a1 - (a1 - a0) / 3, a1)]
    seg = torch.stack(pts, dim=1)  # (32, 4, 2)
    return (seg[None] * r[:, :, None, None]).reshape(n, 32, 8)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    return circles(B), torch.rand(B, 32, 8, generator=g) * 2 - 1, torch.randint(0, 3, (B,), generator=g)


@pytest.mark.parametrize("train_mode", [True, False])
def test_model_equal_to_reference_gives_log2(batch, train_mode):
    model = tiny_model()
    model.train(train_mode)
    for ref in (model, frozen_copy(model)):
        loss, m = flow_dpo_loss(model, ref, *batch, beta=5000.0, num_t=3)
        assert loss.item() == pytest.approx(math.log(2), abs=1e-7)
        assert m["reward_diff_mean"] == 0.0 and m["reward_diff_std"] == 0.0
        assert m["implicit_accuracy"] == 0.5  # ties count one half
        assert m["rewards/accuracies"] == 0.0  # TRL convention: ties count 0
        assert m["model_mse_w"] == m["ref_mse_w"]


def test_known_answer_with_fixed_noise_and_time(batch):
    x1_w, x1_l, y = batch
    model, ref = tiny_model(0), frozen_copy(tiny_model(1))
    g = torch.Generator().manual_seed(2)
    x0_w, x0_l, t = torch.randn(B, 32, 8, generator=g), torch.randn(B, 32, 8, generator=g), torch.rand(B, generator=g)
    beta = 300.0
    loss, m = flow_dpo_loss(model, ref, x1_w, x1_l, y, beta=beta, x0=(x0_w, x0_l), t=t, sft_weight=0.5)
    with torch.no_grad():
        e_w, e_l = velocity_mse(model, x1_w, y, x0_w, t), velocity_mse(model, x1_l, y, x0_l, t)
        r_w, r_l = velocity_mse(ref, x1_w, y, x0_w, t), velocity_mse(ref, x1_l, y, x0_l, t)
    logit = beta * ((r_w - e_w) - (r_l - e_l))
    expected = -F.logsigmoid(logit).mean() + 0.5 * e_w.mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert m["loss_dpo"] == pytest.approx(-F.logsigmoid(logit).mean().item(), rel=1e-4)
    assert m["model_mse_w"] == pytest.approx(e_w.mean().item(), rel=1e-5)
    assert m["ref_mse_l"] == pytest.approx(r_l.mean().item(), rel=1e-5)
    assert m["rewards/margins"] == pytest.approx(logit.mean().item(), rel=1e-3, abs=1e-3)
    assert m["implicit_accuracy"] == pytest.approx((logit > 0).float().mean().item())


def test_shared_noise_and_several_t(batch):
    x1_w, x1_l, y = batch
    model, ref = tiny_model(0), frozen_copy(tiny_model(1))
    x0 = torch.randn(B, 32, 8)
    t = torch.rand(B, 4)
    _, m = flow_dpo_loss(model, ref, x1_w, x1_l, y, x0=x0, t=t, num_t=4)
    with torch.no_grad():  # average of the four single-t losses' MSEs
        e_w = torch.stack([velocity_mse(model, x1_w, y, x0, t[:, k]) for k in range(4)]).mean()
    assert m["model_mse_w"] == pytest.approx(e_w.item(), rel=1e-5)
    with pytest.raises(ValueError, match="t must have shape"):
        flow_dpo_loss(model, ref, x1_w, x1_l, y, t=torch.rand(B, 3), num_t=4)
    with pytest.raises(ValueError, match="B, 32, 8"):
        flow_dpo_loss(model, ref, x1_w, x1_l[:2], y)


def test_guided_velocity_loss_matches_the_sampler_field(batch):
    """cfg_scale compares v_u + w (v_c - v_u), the field the CFG sampler integrates, and trains both branches."""
    x1_w, x1_l, y = batch
    model, ref = tiny_model(0), frozen_copy(tiny_model(1))
    g = torch.Generator().manual_seed(3)
    x0, t, w = torch.randn(B, 32, 8, generator=g), torch.rand(B, generator=g), 2.5
    loss, m = flow_dpo_loss(model, ref, x1_w, x1_l, y, beta=100.0, x0=x0, t=t, cfg_scale=w)
    with torch.no_grad():
        z1, null = model.encode(x1_w), torch.full_like(y, model.null_class)
        xt = (1 - t[:, None, None]) * x0 + t[:, None, None] * z1
        v = model(xt, t, null) + w * (model(xt, t, y) - model(xt, t, null))
        expected_w = (v - (z1 - x0)).pow(2).flatten(1).mean(1).mean()
    assert m["model_mse_w"] == pytest.approx(expected_w.item(), rel=1e-5)
    assert m["model_mse_w"] != pytest.approx(flow_dpo_loss(model, ref, x1_w, x1_l, y, x0=x0, t=t)[1]["model_mse_w"])
    loss.backward()
    assert model.class_emb.weight.grad[model.null_class].abs().sum() > 0  # the unconditional branch learns
    same, _ = flow_dpo_loss(model, model, x1_w, x1_l, y, beta=5000.0, cfg_scale=w)
    assert same.item() == pytest.approx(math.log(2), abs=1e-7)


def test_gradient_only_reaches_policy(batch):
    model, ref = tiny_model(0), frozen_copy(tiny_model(1))
    loss, _ = flow_dpo_loss(model, ref, *batch)
    loss.backward()
    assert all(p.grad is None for p in ref.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.slow
def test_winner_real_loser_noise_accuracy_rises():
    """The plan's check: winners = structured sketches, losers = uniform noise -> accuracy -> 1."""
    torch.manual_seed(0)
    model = tiny_model(0)
    ref = frozen_copy(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x_w, x_l = circles(16, seed=3), torch.rand(16, 32, 8) * 2 - 1
    y = torch.zeros(16, dtype=torch.long)
    history = []
    for step in range(15):
        loss, m = flow_dpo_loss(model, ref, x_w, x_l, y, beta=100.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(m)
    assert history[0]["implicit_accuracy"] == 0.5
    assert history[-1]["implicit_accuracy"] >= 0.9
    assert history[-1]["loss"] < history[0]["loss"] - 0.2
