"""Augmentation: small affine maps keep sketches on the canvas; a pair can share one map."""
from __future__ import annotations

import torch

from driftsketch.augment import AugmentConfig, random_affine, shared_random_affine


def sketches(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 32, 8, generator=torch.Generator().manual_seed(seed)) * 1.8 - 0.9


def test_random_affine_moves_sketches_and_keeps_them_on_canvas():
    x = sketches(16, 0)
    y = random_affine(x, AugmentConfig(rotate_deg=30, scale=0.3), torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.abs().max() <= 1.0 + 1e-6
    assert (y - x).abs().amax(dim=(1, 2)).min() > 1e-3  # every sketch moved
    assert torch.equal(random_affine(x, AugmentConfig(enabled=False)), x)


def test_shared_random_affine_moves_a_pair_together():
    a, b = sketches(8, 0) * 0.5, sketches(8, 1) * 0.5  # small enough that no map needs the shrink
    cfg = AugmentConfig(translate=0.0)  # a linear map: A(a) - A(b) = A(a - b) up to the shared shrink
    a2, b2 = shared_random_affine(a, b, cfg=cfg, generator=torch.Generator().manual_seed(2))
    same, same2 = shared_random_affine(a, a.clone(), cfg=cfg, generator=torch.Generator().manual_seed(2))
    assert torch.equal(same, same2)  # identical drawings stay identical: one map per pair
    assert torch.allclose(same, a2)  # and that map does not depend on the partner here (no shrink needed)
    apart_a, apart_b = random_affine(a, cfg, torch.Generator().manual_seed(3)), random_affine(
        a.clone(), cfg, torch.Generator().manual_seed(4))
    assert not torch.allclose(apart_a, apart_b)  # independent draws would differ
    assert b2.shape == b.shape
