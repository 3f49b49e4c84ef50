"""Exponential moving average of weights, with warm-up so that short runs benefit."""
from __future__ import annotations

import copy

import torch


class EMA:
    """``decay_t = min(decay, (1 + step) / (10 + step))``: early updates follow the model closely."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        self.decay = decay
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)
        self.num_updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for e, p in zip(self.shadow.parameters(), model.parameters()):
            e.lerp_(p.detach(), 1 - d)
        for e, b in zip(self.shadow.buffers(), model.buffers()):
            e.copy_(b)

    def state_dict(self) -> dict:
        return {k: v.detach().cpu().clone() for k, v in self.shadow.state_dict().items()}

    def load_state_dict(self, state: dict, num_updates: int) -> None:
        self.shadow.load_state_dict(state)
        self.num_updates = num_updates
