"""Fixed-step ODE solvers for ``dx/dt = v(x, t)`` from t=0 to t=1.

Independent of the network: ``velocity`` is any callable ``(x, t) -> dx/dt`` with ``t`` of shape (B,).
"""
from __future__ import annotations

from typing import Callable

import torch

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SOLVERS = ("euler", "midpoint", "heun")


def integrate(velocity: Velocity, x0: torch.Tensor, num_steps: int, solver: str = "euler",
              t0: float = 0.0, t1: float = 1.0) -> torch.Tensor:
    """Integrate from ``t0`` to ``t1`` in ``num_steps`` equal steps; returns x(t1)."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; valid: {SOLVERS}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    step = _STEPS[solver]
    x = x0
    h = (t1 - t0) / num_steps
    batch = x0.shape[0]
    for i in range(num_steps):
        t = torch.full((batch,), t0 + i * h, device=x0.device, dtype=x0.dtype)
        x = step(velocity, x, t, h)
    return x


def _euler(v: Velocity, x: torch.Tensor, t: torch.Tensor, h: float) -> torch.Tensor:
    return x + h * v(x, t)


def _midpoint(v: Velocity, x: torch.Tensor, t: torch.Tensor, h: float) -> torch.Tensor:
    x_mid = x + 0.5 * h * v(x, t)
    return x + h * v(x_mid, t + 0.5 * h)


def _heun(v: Velocity, x: torch.Tensor, t: torch.Tensor, h: float) -> torch.Tensor:
    k1 = v(x, t)
    k2 = v(x + h * k1, t + h)
    return x + 0.5 * h * (k1 + k2)


_STEPS = {"euler": _euler, "midpoint": _midpoint, "heun": _heun}
