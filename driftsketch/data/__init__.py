"""Sketch data: importers (Quick, Draw!, ControlSketch), Bezier fitting, built-in doodles, cache.

    from driftsketch.data import load_dataset, SketchData
    data = load_dataset("builtin")  # or "data/mnist.npz" from `driftsketch-data import`
"""
from driftsketch.data.dataset import DataError, SketchData
from driftsketch.data.loading import load_dataset

__all__ = ["SketchData", "load_dataset", "DataError"]
