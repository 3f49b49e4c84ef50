"""``load_dataset``: a data set by name (the built-in doodles) or by file (a ``.npz`` import).

It sits above ``dataset.py`` (the SketchData format and cache) and ``builtin.py`` (which builds on it),
so neither imports the other in a circle.
"""
from __future__ import annotations

from pathlib import Path

from driftsketch.data.builtin import load_builtin
from driftsketch.data.dataset import DataError, SketchData


def load_dataset(spec: str, cache_dir: str | Path | None = None) -> SketchData:
    """``"builtin"`` (procedural doodles, cached in ``cache_dir``, default ``cache_dir`` of configs/data.yaml)
    or a path to a ``.npz`` from ``driftsketch-data import``.

    ``"builtin:per_class=100,seed=1"`` overrides keys of the ``builtin`` section of ``configs/data.yaml``.
    """
    if spec == "builtin" or spec.startswith("builtin:"):
        return load_builtin(cache_dir=cache_dir, overrides=spec.split(":", 1)[1].split(",") if ":" in spec else ())
    path = Path(spec)
    if path.suffix == ".npz":
        return SketchData.load_npz(path)
    raise DataError(f"unknown data set {spec!r}: use 'builtin' or a .npz file written by "
                    f"`driftsketch-data import` (e.g. driftsketch-data import DIR --out data/x.npz)")
