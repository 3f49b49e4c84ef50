"""Classifier-free guidance as a wrapper around the velocity network (not a branch inside it)."""
from __future__ import annotations

import torch


class GuidedVelocity:
    """``v = v_uncond + w (v_cond - v_uncond)``; ``w = 1`` is plain conditional sampling.

    Both branches run in one batched forward pass.
    """

    def __init__(self, model, class_labels: torch.Tensor, cfg_scale: float):
        self.model = model
        self.labels = class_labels
        self.cfg_scale = float(cfg_scale)
        self.null = torch.full_like(class_labels, model.null_class)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.cfg_scale == 1.0:
            return self.model(x, t, self.labels)
        v = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([self.labels, self.null]))
        v_cond, v_uncond = v.chunk(2)
        return v_uncond + self.cfg_scale * (v_cond - v_uncond)
