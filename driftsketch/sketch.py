"""The sketch representation shared by every layer.

A sketch is a float32 array of shape ``(32, 4, 2)``: 32 cubic Bezier segments, each four control
points ``(x, y)`` in ``[-1, 1]`` with y pointing down (SVG convention). Segments are in drawing
order; a pen stroke of a real drawing spans several consecutive segments. The network sees the
flattened ``(32, 8)`` form.
"""
from __future__ import annotations

import numpy as np

from driftsketch.errors import DriftSketchError

NUM_SEGMENTS = 32
POINTS_PER_SEGMENT = 4
SKETCH_SHAPE = (NUM_SEGMENTS, POINTS_PER_SEGMENT, 2)
TOKEN_DIM = POINTS_PER_SEGMENT * 2  # 8 numbers per segment token
FLAT_SHAPE = (NUM_SEGMENTS, TOKEN_DIM)
CANVAS_SIZE = 512  # pixels of the rendered canvas; [-1, 1] maps onto [0, CANVAS_SIZE]


class SketchError(DriftSketchError, ValueError):
    """A sketch array that is not a valid ``(32, 4, 2)`` finite float array."""


def to_flat(beziers):
    """``(..., 32, 4, 2)`` -> ``(..., 32, 8)`` (numpy array or torch tensor)."""
    return beziers.reshape(*beziers.shape[:-2], TOKEN_DIM)


def from_flat(flat):
    """``(..., 32, 8)`` -> ``(..., 32, 4, 2)`` (numpy array or torch tensor)."""
    return flat.reshape(*flat.shape[:-1], POINTS_PER_SEGMENT, 2)


def validate_sketch(array: np.ndarray, where: str = "sketch") -> np.ndarray:
    """Return ``array`` as float32 ``(32, 4, 2)`` or raise :class:`SketchError` naming ``where``.

    Accepts the flat ``(32, 8)`` form too. Rejects wrong shapes and NaN/inf values.
    """
    arr = np.asarray(array)
    if arr.shape == FLAT_SHAPE:
        arr = arr.reshape(SKETCH_SHAPE)
    if arr.shape != SKETCH_SHAPE:
        raise SketchError(f"{where}: expected shape {SKETCH_SHAPE} or {FLAT_SHAPE}, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise SketchError(f"{where}: expected a float array, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise SketchError(f"{where}: contains NaN or infinite values")
    return arr.astype(np.float32, copy=False)


def to_canvas(points, size: float = CANVAS_SIZE):
    """Map coordinates from ``[-1, 1]`` to pixel units ``[0, size]`` (y stays pointing down); keeps the
    array type (numpy or torch) and dtype of ``points``. The one place the canvas mapping is written."""
    return (points + 1.0) * (size / 2.0)


def from_canvas(pixels, size: float = CANVAS_SIZE):
    """Inverse of :func:`to_canvas`: pixel units ``[0, size]`` -> ``[-1, 1]``."""
    return pixels / (size / 2.0) - 1.0
