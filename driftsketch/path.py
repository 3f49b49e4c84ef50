"""The conditional flow-matching probability path (straight line from noise to data).

``xt = (1 - t) x0 + t x1`` with ``x0 ~ N(0, I)``, target velocity ``x1 - x0``. Pure tensor maths:
no network, no solver. All tensors here are in the model's codec space (see ``driftsketch.codec``);
use :func:`driftsketch.flow.velocity_mse` to go from Bezier data to a per-sample loss.
"""
from __future__ import annotations

import torch


def _expand_t(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], *([1] * (like.dim() - 1))).to(like)


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Point on the path at time ``t`` (shape ``(B,)``): ``(1 - t) x0 + t x1``."""
    tt = _expand_t(t, x1)
    return (1.0 - tt) * x0 + tt * x1


def target_velocity(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Conditional velocity of the straight path: ``x1 - x0`` (independent of t)."""
    return x1 - x0


def sample_time(batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """``t ~ U(0, 1)``, shape ``(batch,)``."""
    return torch.rand(batch, generator=generator, device=device)
