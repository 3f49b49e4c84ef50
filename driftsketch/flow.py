"""Flow-matching losses on Bezier data: the bridge between data, codec, path and network.

    mse = velocity_mse(model, x1, labels)            # (B,) per-sample velocity MSE
    loss = mse.mean()                                 # plain CFM loss

``x1`` is Bezier data ``(B, 32, 8)``; ``x0`` (optional) is noise in the model's codec space, e.g. the
noise :func:`driftsketch.sampling.generate_beziers` returned for that sketch.
"""
from __future__ import annotations

import torch

from driftsketch.guidance import GuidedVelocity
from driftsketch.path import interpolate, sample_time, target_velocity


def velocity_mse(model, x1: torch.Tensor, class_labels: torch.Tensor, x0: torch.Tensor | None = None,
                 t: torch.Tensor | None = None, cfg_scale: float = 1.0) -> torch.Tensor:
    """Per-sample mean squared error of the predicted velocity, shape ``(B,)``.

    ``cfg_scale != 1`` measures the classifier-free-guided velocity ``v_u + w (v_c - v_u)`` (the field
    the sampler integrates) instead of the conditional one; it costs a second forward pass.
    """
    z1 = model.encode(x1)
    if x0 is None:
        x0 = torch.randn_like(z1)
    if t is None:
        t = sample_time(z1.shape[0], device=z1.device)
    xt = interpolate(x0, z1, t)
    pred = GuidedVelocity(model, class_labels, cfg_scale)(xt, t)  # plain conditional velocity at scale 1
    return (pred - target_velocity(x0, z1)).pow(2).flatten(1).mean(dim=1)


def cfm_loss(model, x1: torch.Tensor, class_labels: torch.Tensor, class_dropout: float = 0.0,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Plain CFM training loss; labels are replaced by the null class with prob. ``class_dropout``."""
    if class_dropout > 0:
        drop = torch.rand(class_labels.shape, generator=generator) < class_dropout  # a CPU generator on any device
        drop = drop.to(class_labels.device)
        class_labels = torch.where(drop, torch.full_like(class_labels, model.null_class), class_labels)
    return velocity_mse(model, x1, class_labels).mean()
