"""Fast batch rasteriser for classifier input (not differentiable, not pretty, just fast).

Each cubic segment is sampled at ``samples_per_segment`` points; every sample is splatted onto the
pixel grid with bilinear weights proportional to the arc length it stands for, and the density is
blurred with a small Gaussian and saturated to ``[0, 1]``. Ink is 1, background 0.

Orientation matches :mod:`driftsketch.render`: x in ``[-1, 1]`` maps to columns left -> right and
y in ``[-1, 1]`` to rows top -> bottom (row 0 is the top, y = -1), so ``image[..., r, c]`` shows
what the SVG shows at pixel ``(c, r)``.

    images = rasterize(beziers, resolution=64)   # (N, 32, 4, 2) -> torch (N, 1, 64, 64)
"""
from __future__ import annotations

import math

import numpy as np
import torch

from driftsketch.sketch import to_canvas


def bezier_basis(num: int, dtype=torch.float32) -> torch.Tensor:
    """Cubic Bernstein weights at ``num`` evenly spaced t in [0, 1]: ``(num, 4)``."""
    t = torch.linspace(0.0, 1.0, num, dtype=dtype)[:, None]
    s = 1.0 - t
    return torch.cat([s**3, 3 * s**2 * t, 3 * s * t**2, t**3], dim=1)


def sample_curves(beziers: torch.Tensor | np.ndarray, num: int = 16) -> torch.Tensor | np.ndarray:
    """Points along every segment: ``(..., 32, 4, 2)`` -> ``(..., 32, num, 2)`` (numpy in, numpy out)."""
    if isinstance(beziers, np.ndarray):
        basis = bezier_basis(num, torch.float64).numpy()
        return np.einsum("kp,...pd->...kd", basis, beziers.astype(np.float64)).astype(np.float32)
    basis = bezier_basis(num, beziers.dtype).to(beziers.device)
    return torch.einsum("kp,...pd->...kd", basis, beziers)


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(2.5 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


@torch.no_grad()
def rasterize(beziers: torch.Tensor | np.ndarray, resolution: int = 64, samples_per_segment: int = 16,
              blur_sigma: float | None = None, line_width: float | None = None) -> torch.Tensor:
    """Rasterise ``(N, 32, 4, 2)`` sketches (or one ``(32, 4, 2)``) to ``(N, 1, R, R)`` float32 in [0, 1].

    ``line_width`` and ``blur_sigma`` are in pixels of the output (None: the classifier's, configs/eval.yaml);
    ink density is saturated so a stroke reads as 1.
    """
    if blur_sigma is None or line_width is None:
        from driftsketch.evaluation.classifier import ClassifierConfig

        defaults = ClassifierConfig()
        blur_sigma = defaults.blur_sigma if blur_sigma is None else blur_sigma
        line_width = defaults.line_width if line_width is None else line_width
    x = torch.as_tensor(np.asarray(beziers) if not torch.is_tensor(beziers) else beziers, dtype=torch.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-2:] != (4, 2):
        raise ValueError(f"rasterize: expected (N, S, 4, 2) beziers, got {tuple(x.shape)}")
    n, r = x.shape[0], resolution
    pts = sample_curves(x, samples_per_segment)  # (N, S, K, 2)
    # Ink each sample stands for: half the length of the polyline pieces on either side.
    step = (pts[:, :, 1:] - pts[:, :, :-1]).norm(dim=-1)  # (N, S, K-1)
    weight = torch.zeros(pts.shape[:-1])
    weight[:, :, 1:] += 0.5 * step
    weight[:, :, :-1] += 0.5 * step
    # Continuous pixel coordinates: pixel centres sit at integers 0..R-1.
    uv = to_canvas(pts, r) - 0.5  # (N, S, K, 2): [..., 0] column, [..., 1] row
    weight = (weight * (r / 2.0)).reshape(n, -1)  # arc length in pixels
    col, row = uv[..., 0].reshape(n, -1), uv[..., 1].reshape(n, -1)
    c0, r0 = col.floor(), row.floor()
    fc, fr = col - c0, row - r0
    batch = torch.arange(n)[:, None].expand_as(col)
    canvas = torch.zeros(n * r * r)
    for dc, dr, w in ((0, 0, (1 - fc) * (1 - fr)), (1, 0, fc * (1 - fr)), (0, 1, (1 - fc) * fr), (1, 1, fc * fr)):
        cc, rr = c0.long() + dc, r0.long() + dr
        inside = (cc >= 0) & (cc < r) & (rr >= 0) & (rr < r)
        idx = (batch * r * r + rr * r + cc)[inside]
        canvas.index_add_(0, idx, (w * weight)[inside])
    img = canvas.view(n, 1, r, r)
    k = _gaussian_kernel(blur_sigma)
    pad = k.numel() // 2
    img = torch.nn.functional.conv2d(img, k.view(1, 1, 1, -1), padding=(0, pad))
    img = torch.nn.functional.conv2d(img, k.view(1, 1, -1, 1), padding=(pad, 0))
    # Density of a straight line is ~1 pixel of ink per pixel of length; scale by the line width.
    return (img * line_width).clamp_(0.0, 1.0)
