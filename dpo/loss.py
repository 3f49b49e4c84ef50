"""Flow-DPO: Diffusion-DPO (Wallace et al., 2024) with the flow-matching velocity error as -log-likelihood.

For a preferred sketch ``x1_w`` and a rejected ``x1_l`` of the same class, with shared noise ``x0`` and
time ``t``::

    xt = (1 - t) x0 + t x1,  target = x1 - x0            (in the model's codec space)
    e_w = |v_model(xt_w) - target_w|^2,  r_w = same for the frozen reference (no grad)
    logit = beta * ((r_w - e_w) - (r_l - e_l))
    loss  = -log sigmoid(logit)

The policy lowers its velocity error on winners relative to the reference more than on losers.
With several annotators a pair may carry a soft ``target`` p (the share of votes for the winner): the
loss becomes ``-(p log sigmoid(logit) + (1 - p) log sigmoid(-logit))`` (label-smoothed DPO; p = 1 is
the loss above), and a per-pair ``weight`` turns the batch mean into a weighted mean.

    loss, metrics = flow_dpo_loss(model, ref_model, x1_w, x1_l, labels, beta=DEFAULT_BETA)
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F

from driftsketch.flow import velocity_mse
from driftsketch.path import sample_time

# Chosen from a measurement (docs/dpo.md, "Choosing beta", benchmarks/bench_dpo_beta.py): on the base
# model's judge-labeled pairs the gap D = (ref_w - model_w) - (ref_l - model_l) reaches ~1.7e-3 after
# 3 epochs at lr 1e-5 (the velocity MSE itself is ~0.1), so beta ~ 2 / 1.7e-3 keeps the mean logit
# near 2 where the sigmoid still has gradient. configs/dpo.yaml holds the value actually used.
DEFAULT_BETA = 1000.0

Noise = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None


@contextlib.contextmanager
def _no_mha_fastpath() -> Iterator[None]:
    """Run model and reference through the same attention kernels, whatever their mode.

    Under ``no_grad`` in eval mode ``nn.MultiheadAttention`` takes a fused fast path whose rounding
    differs from the autograd path by ~1e-7; times beta that is visible noise in the logit, and it
    would break "model == reference gives exactly log 2".
    """
    mha = torch.backends.mha
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


def _repeat(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, ...) -> (B * k, ...) with each sample repeated k times consecutively."""
    return x.repeat_interleave(k, dim=0)


def _noise_pair(x0: Noise, x1_w: torch.Tensor, k: int, generator: torch.Generator | None):
    if x0 is None:
        n = torch.randn((x1_w.shape[0] * k, *x1_w.shape[1:]), generator=generator).to(x1_w)
        return n, n
    if isinstance(x0, (tuple, list)):
        x0_w, x0_l = x0
        return _repeat(x0_w.to(x1_w), k), _repeat(x0_l.to(x1_w), k)
    n = _repeat(x0.to(x1_w), k)
    return n, n


def _times(t: torch.Tensor | None, batch: int, k: int, like: torch.Tensor,
           generator: torch.Generator | None) -> torch.Tensor:
    if t is None:
        return sample_time(batch * k, generator=generator).to(like)
    t = t.to(like)
    if t.dim() == 1:
        t = t[:, None].expand(batch, k) if t.shape[0] == batch else t.reshape(batch, k)
    if t.shape != (batch, k):
        raise ValueError(f"t must have shape ({batch},) or ({batch}, {k}), got {tuple(t.shape)}")
    return t.reshape(batch * k)


def pair_mse(net, x1_w: torch.Tensor, x1_l: torch.Tensor, labels: torch.Tensor, x0_w: torch.Tensor,
             x0_l: torch.Tensor, t: torch.Tensor, k: int, cfg_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair velocity MSE of winners and losers, averaged over the ``k`` draws: two (B,) tensors."""
    x1 = torch.cat([_repeat(x1_w, k), _repeat(x1_l, k)])  # (2 B k, 32, 8): one forward for both
    mse = velocity_mse(net, x1, _repeat(labels, k).repeat(2), torch.cat([x0_w, x0_l]), t.repeat(2), cfg_scale)
    mse_w, mse_l = mse.view(2, -1, k).mean(dim=2)
    return mse_w, mse_l


def flow_dpo_loss(model, ref_model, x1_w: torch.Tensor, x1_l: torch.Tensor, class_labels: torch.Tensor,
                  beta: float = DEFAULT_BETA, x0: Noise = None, t: torch.Tensor | None = None,
                  num_t: int = 1, sft_weight: float = 0.0, cfg_scale: float = 1.0,
                  generator: torch.Generator | None = None, target: torch.Tensor | None = None,
                  weight: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Flow-DPO loss for a batch of preference pairs; returns ``(loss, metrics)``.

    Args:
        x1_w, x1_l: winner / loser Bezier data ``(B, 32, 8)``; ``class_labels``: ``(B,)`` long.
        x0: noise in the model's codec space. ``None``: fresh ``N(0, I)`` shared by winner and loser.
            One tensor ``(B, 32, 8)``: shared by the pair. A pair ``(x0_w, x0_l)``: each sketch's own
            noise, e.g. the stored generation noise (then the path runs along the model's own sampling
            trajectory). Given noise is reused for all ``num_t`` time draws.
        t: ``(B,)`` or ``(B, num_t)`` times in [0, 1]; ``None``: ``U(0, 1)``, shared by the pair.
        num_t: time (and, if ``x0`` is None, noise) draws per pair; the per-pair MSEs are averaged over
            them before the sigmoid, which lowers the variance of the logit at ``num_t`` times the cost.
        sft_weight: adds ``sft_weight * mean(e_w)``, the plain CFM loss on winners (same noise and t).
        cfg_scale: 1 compares conditional velocities; another value compares the classifier-free-guided
            velocity ``v_u + cfg_scale (v_c - v_u)`` of policy and reference, the field the sampler follows
            (both branches get gradients; twice the forward cost). Pairs labeled with the null class
            are unaffected (their guided velocity is the unconditional one).
        target: ``(B,)`` probability in [0.5, 1] that the winner is the better sketch (soft label from
            several annotators); ``None`` = 1 for every pair.
        weight: ``(B,)`` non-negative loss weight per pair (the DPO and SFT terms become weighted
            means); ``None`` = equal weights.

    Metrics (floats): ``loss``, ``loss_dpo``, ``loss_sft``, ``implicit_accuracy`` (share of pairs with
    logit > 0; a tie, logit == 0, counts 0.5, so model == reference gives exactly 0.5),
    ``reward_diff_mean``/``_std`` (of the logit), ``model_mse_w``/``_l``, ``ref_mse_w``/``_l`` and the
    TRL names ``rewards/chosen`` = mean beta (r_w - e_w), ``rewards/rejected``, ``rewards/margins``,
    ``rewards/accuracies`` (TRL's strict convention: a tie counts 0).
    """
    if x1_w.shape != x1_l.shape or x1_w.dim() != 3:
        raise ValueError(f"x1_w and x1_l must both be (B, 32, 8); got {tuple(x1_w.shape)}, {tuple(x1_l.shape)}")
    if model.config.codec != ref_model.config.codec:
        raise ValueError("model and reference use different codecs; the reference must be a copy of the base")
    batch, k = x1_w.shape[0], int(num_t)
    if k < 1:
        raise ValueError(f"num_t must be >= 1, got {num_t}")
    labels = class_labels.to(x1_w.device).long()
    x0_w, x0_l = _noise_pair(x0, x1_w, k, generator)
    tt = _times(t, batch, k, x1_w, generator)

    with _no_mha_fastpath():
        model_w, model_l = pair_mse(model, x1_w, x1_l, labels, x0_w, x0_l, tt, k, cfg_scale)
        with torch.no_grad():
            ref_w, ref_l = pair_mse(ref_model, x1_w, x1_l, labels, x0_w, x0_l, tt, k, cfg_scale)

    chosen = beta * (ref_w - model_w)  # (B,) implicit reward of the winner
    rejected = beta * (ref_l - model_l)
    logit = chosen - rejected
    per_pair = -F.logsigmoid(logit)
    if target is not None:  # label smoothing toward the share of votes
        p = target.to(logit)
        per_pair = -(p * F.logsigmoid(logit) + (1.0 - p) * F.logsigmoid(-logit))
    if weight is None:
        loss_dpo, loss_sft = per_pair.mean(), model_w.mean()
    else:
        w = weight.to(logit)
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError("weight must be non-negative with a positive sum")
        loss_dpo, loss_sft = (w * per_pair).sum() / w.sum(), (w * model_w).sum() / w.sum()
    loss = loss_dpo + sft_weight * loss_sft if sft_weight else loss_dpo
    return loss, _metrics(loss, loss_dpo, loss_sft, logit, chosen, rejected, model_w, model_l, ref_w, ref_l)


@torch.no_grad()
def _metrics(loss, loss_dpo, loss_sft, logit, chosen, rejected, model_w, model_l, ref_w, ref_l) -> dict[str, float]:
    acc = ((logit > 0).float() + 0.5 * (logit == 0).float()).mean()
    return {
        "loss": loss.item(),
        "loss_dpo": loss_dpo.item(),
        "loss_sft": loss_sft.item(),
        "implicit_accuracy": acc.item(),
        "reward_diff_mean": logit.mean().item(),
        "reward_diff_std": logit.std().item() if logit.numel() > 1 else 0.0,
        "model_mse_w": model_w.mean().item(),
        "model_mse_l": model_l.mean().item(),
        "ref_mse_w": ref_w.mean().item(),
        "ref_mse_l": ref_l.mean().item(),
        "rewards/chosen": chosen.mean().item(),
        "rewards/rejected": rejected.mean().item(),
        "rewards/margins": logit.mean().item(),
        "rewards/accuracies": (chosen > rejected).float().mean().item(),
    }
