"""Render sketches: SVG text, PNG (through cairosvg) and matplotlib sample grids.

All three agree on orientation and scale: ``[-1, 1]`` maps onto ``[0, size]`` with y pointing down,
as in SVG, so (-1, -1) is the top-left corner. Each of the 32 cubic segments is drawn as its own
``<path d="M x0 y0 C x1 y1 x2 y2 x3 y3"/>`` with round caps and joins (so consecutive segments of a
pen stroke meet without visible seams); the canvas is white.

    write_svg(beziers, "cat.svg"); write_png(beziers, "cat.png", size=256)
    plot_bezier_sketches(samples, "grid.png", titles=["cat"] * len(samples), ncols=8)
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from driftsketch.config import Config
from driftsketch.fileio import atomic_write_bytes
from driftsketch.sketch import CANVAS_SIZE, to_canvas, validate_sketch


class RenderConfig(Config):
    """SVG / PNG renders (``render`` in configs/eval.yaml)."""

    defaults_from: ClassVar[str] = "eval.yaml:render"
    stroke_width: float  # pixels on the 512-pixel canvas; scaled with the output size


def _stroke_width(size: int, stroke_width: float | None) -> float:
    return RenderConfig().stroke_width * size / CANVAS_SIZE if stroke_width is None else float(stroke_width)


def sketch_to_svg(beziers: np.ndarray, size: int = CANVAS_SIZE, stroke_width: float | None = None,
                  color: str = "black", background: str = "white") -> str:
    """SVG document for one ``(32, 4, 2)`` sketch: one ``<path>`` per cubic segment.

    ``stroke_width`` is in pixels of the ``size`` canvas (default: configs/eval.yaml render, scaled with size).
    """
    pts = to_canvas(validate_sketch(beziers).astype(np.float64), size)  # (32, 4, 2) in pixels
    paths = [
        '<path d="M {:.2f} {:.2f} C {:.2f} {:.2f} {:.2f} {:.2f} {:.2f} {:.2f}"/>'.format(*seg.ravel())
        for seg in pts
    ]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 {size} {size}">\n'
        f'<rect width="{size}" height="{size}" fill="{background}"/>\n'
        f'<g fill="none" stroke="{color}" stroke-width="{_stroke_width(size, stroke_width):.2f}" '
        'stroke-linecap="round" stroke-linejoin="round">\n' + "\n".join(paths) + "\n</g>\n</svg>\n"
    )


def write_svg(beziers: np.ndarray, path: str | Path, size: int = CANVAS_SIZE,
              stroke_width: float | None = None) -> Path:
    """Write the SVG of one sketch atomically; returns the path."""
    atomic_write_bytes(path, sketch_to_svg(beziers, size, stroke_width).encode(), durable=False)
    return Path(path)


def png_bytes(beziers: np.ndarray, size: int = CANVAS_SIZE, stroke_width: float | None = None) -> bytes:
    """PNG (RGBA, ``size`` x ``size``) of one sketch, rendered by cairosvg from :func:`sketch_to_svg`."""
    import cairosvg

    return cairosvg.svg2png(bytestring=sketch_to_svg(beziers, size, stroke_width).encode(),
                            output_width=size, output_height=size)


def write_png(beziers: np.ndarray, path: str | Path, size: int = CANVAS_SIZE,
              stroke_width: float | None = None) -> Path:
    """Write the PNG of one sketch atomically; returns the path."""
    atomic_write_bytes(path, png_bytes(beziers, size, stroke_width), durable=False)
    return Path(path)


def _draw_sketch(ax, beziers: np.ndarray, linewidth: float) -> None:
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MplPath

    codes = [MplPath.MOVETO, MplPath.CURVE4, MplPath.CURVE4, MplPath.CURVE4]
    for seg in beziers:  # one patch per segment, like the SVG
        patch = PathPatch(MplPath(seg.astype(np.float64), codes), fill=False, lw=linewidth,
                          capstyle="round", joinstyle="round", edgecolor="black")
        ax.add_patch(patch)
    ax.set_xlim(-1, 1)
    ax.set_ylim(1, -1)  # y points down, as in SVG
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_bezier_sketches(samples: np.ndarray, path: str | Path, titles: Sequence[str] | None = None,
                         ncols: int = 8, cell_inches: float = 1.6, linewidth: float = 1.2,
                         dpi: int = 100) -> Path:
    """Grid PNG of ``(N, 32, 4, 2)`` sketches drawn with matplotlib ``CURVE4`` paths; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = np.asarray(samples)
    if samples.ndim == 3:
        samples = samples[None]
    if samples.ndim != 4 or len(samples) == 0:
        raise ValueError(f"plot_bezier_sketches: expected (N, 32, 4, 2) with N >= 1, got {samples.shape}")
    if titles is not None and len(titles) != len(samples):
        raise ValueError(f"plot_bezier_sketches: {len(titles)} titles for {len(samples)} sketches")
    n = len(samples)
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * cell_inches, nrows * cell_inches), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        if i >= n:
            ax.axis("off")
            continue
        _draw_sketch(ax, validate_sketch(samples[i], where=f"sample {i}"), linewidth)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue(), durable=False)
