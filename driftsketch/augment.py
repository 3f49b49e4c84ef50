"""Data augmentation that keeps sketches valid: a small random affine map per sketch.

Bezier curves are affine-invariant, so transforming control points transforms the curves exactly;
segment order and connections are untouched. A sketch pushed outside [-1, 1] is shrunk back inside.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch

from driftsketch.config import Config, Fraction, NonNegativeFloat


class AugmentConfig(Config):
    """One random affine map per sketch (defaults: ``augment`` in configs/train.yaml)."""

    defaults_from: ClassVar[str] = "train.yaml:augment"
    enabled: bool
    rotate_deg: NonNegativeFloat  # uniform in [-rotate_deg, rotate_deg]
    scale: Fraction  # isotropic factor in [1 - scale, 1 + scale]
    stretch: Fraction  # anisotropic factor on x vs y
    translate: NonNegativeFloat  # shift in [-translate, translate], [-1, 1] units


def random_affine(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply a random small affine map to Bezier sketches ``(B, 32, 8)``; returns the same shape."""
    if not cfg.enabled:
        return x
    b = x.shape[0]

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=generator)

    ang = u(-cfg.rotate_deg, cfg.rotate_deg) * (math.pi / 180)
    s = u(1 - cfg.scale, 1 + cfg.scale)
    st = u(-cfg.stretch, cfg.stretch)
    sx, sy = s * (1 + st), s * (1 - st)
    cos, sin = torch.cos(ang), torch.sin(ang)
    mat = torch.stack([torch.stack([cos * sx, -sin * sy], -1), torch.stack([sin * sx, cos * sy], -1)], -2)  # (B, 2, 2)
    shift = torch.stack([u(-cfg.translate, cfg.translate), u(-cfg.translate, cfg.translate)], -1)  # (B, 2)
    pts = x.reshape(b, -1, 2)
    out = torch.einsum("bij,bnj->bni", mat.to(x), pts) + shift.to(x)[:, None]
    peak = out.abs().amax(dim=(1, 2)).clamp(min=1.0)  # shrink any sketch that left the canvas
    return (out / peak[:, None, None]).reshape_as(x)


def shared_random_affine(*xs: torch.Tensor, cfg: AugmentConfig,
                         generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """One random affine map per row, shared by all of ``xs`` (each ``(B, 32, 8)``): e.g. a preference
    pair stays a pair of the same two drawings, moved together."""
    joint = random_affine(torch.cat(xs, dim=1), cfg, generator)
    return tuple(joint.split([x.shape[1] for x in xs], dim=1))
