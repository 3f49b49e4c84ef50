"""Invertible linear codec between Bezier coordinates and the space the flow runs in.

``absolute``: the flow runs on the flattened control points ``(32, 8)`` as they are.

``relative`` (default): each segment token holds ``[gap, h1, h2, end]`` where
``gap = P0_i - P3_{i-1}`` (``P3_{-1} = 0``), ``h1 = P1 - P0`` and ``h2 = P2 - P3`` are the Bezier
handles and ``end = P3`` is absolute. A segment that continues its predecessor has ``gap = 0``
exactly, so connection is one number the network drives to zero rather than two absolute points
two tokens must agree on; this is what makes generated strokes connected. ``gap`` and the handles
are scaled so every channel has a comparable spread. The map is linear and exactly invertible, so
"the network sees (32, 8)" still holds, just in this basis. Noise ``x0`` lives in codec space.
"""
from __future__ import annotations

import torch

CODECS = ("relative", "absolute")


def encode(x: torch.Tensor, codec: str, gap_scale: float = 2.0, handle_scale: float = 3.0) -> torch.Tensor:
    """Bezier ``(..., 32, 8)`` -> codec space ``(..., 32, 8)``."""
    if codec == "absolute":
        return x
    _check(codec)
    p = x.unflatten(-1, (4, 2))  # (..., 32, 4, 2)
    p0, p1, p2, p3 = p.unbind(-2)
    prev_end = torch.cat([torch.zeros_like(p3[..., :1, :]), p3[..., :-1, :]], dim=-2)
    gap = (p0 - prev_end) * gap_scale
    h1 = (p1 - p0) * handle_scale
    h2 = (p2 - p3) * handle_scale
    return torch.stack([gap, h1, h2, p3], dim=-2).flatten(-2)


def decode(z: torch.Tensor, codec: str, gap_scale: float = 2.0, handle_scale: float = 3.0,
           snap_eps: float | None = None) -> torch.Tensor:
    """Codec space ``(..., 32, 8)`` -> Bezier ``(..., 32, 8)``.

    ``snap_eps``: documented post-processing (relative codec only). A gap shorter than ``snap_eps``
    (in [-1, 1] units) is set to exactly zero, i.e. the segment is attached to its predecessor's
    end point (its first handle moves with it). Off by default; metrics report both.
    """
    if codec == "absolute":
        return z
    _check(codec)
    q = z.unflatten(-1, (4, 2))
    gap, h1, h2, p3 = q.unbind(-2)
    gap = gap / gap_scale
    if snap_eps is not None and snap_eps > 0:
        close = gap.norm(dim=-1, keepdim=True) < snap_eps
        close[..., 0, :] = False  # the first segment's "gap" is its absolute start point
        gap = torch.where(close, torch.zeros_like(gap), gap)
    prev_end = torch.cat([torch.zeros_like(p3[..., :1, :]), p3[..., :-1, :]], dim=-2)
    p0 = prev_end + gap
    p1 = p0 + h1 / handle_scale
    p2 = p3 + h2 / handle_scale
    return torch.stack([p0, p1, p2, p3], dim=-2).flatten(-2)


def _check(codec: str) -> None:
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; valid: {CODECS}")
