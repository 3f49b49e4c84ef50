"""Processed sketch data sets: :class:`SketchData`, its ``.npz`` form and the cache.

    from driftsketch.data import load_dataset
    data = load_dataset("builtin")            # procedural doodles, built once then cached
    data = load_dataset("data/mnist.npz")     # written by `driftsketch-data import`
    train, holdout = data.split(holdout_fraction=0.1, seed=0)
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from driftsketch.errors import DriftSketchError
from driftsketch.fileio import atomic_writer
from driftsketch.sketch import SKETCH_SHAPE
from driftsketch.split import holdout_mask

FORMAT_VERSION = 1
_META_SCALARS = ("source", "fit_chamfer_mean", "fit_chamfer_p95")


class DataError(DriftSketchError, ValueError):
    """A data file or data set that cannot be used; the message names the file and what is wrong."""


@dataclass
class SketchData:
    """Sketches ``beziers`` (N, 32, 4, 2) float32 in [-1, 1] with class ``labels`` (N,) int64."""

    beziers: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    source_ids: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.beziers = np.asarray(self.beziers, dtype=np.float32)
        labels = np.asarray(self.labels)
        if labels.size and labels.dtype.kind not in "iub":
            raise DataError(f"labels: expected whole numbers, got {labels.dtype}")
        self.labels = labels.astype(np.int64)
        self.class_names = [str(c) for c in self.class_names]
        self.source_ids = np.asarray(self.source_ids, dtype=str)
        if self.labels.ndim != 1:
            raise DataError(f"labels: expected one dimension, got shape {self.labels.shape}")
        n = len(self.labels)
        if self.beziers.shape != (n, *SKETCH_SHAPE):
            raise DataError(f"beziers: expected shape ({n}, 32, 4, 2), got {self.beziers.shape}")
        if self.source_ids.shape != (n,):
            raise DataError(f"source_ids: expected shape ({n},), got {self.source_ids.shape}")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise DataError(f"labels must lie in [0, {len(self.class_names)}), got "
                            f"[{self.labels.min()}, {self.labels.max()}]")
        if not np.all(np.isfinite(self.beziers)):
            bad = np.flatnonzero(~np.isfinite(self.beziers).reshape(n, -1).all(axis=1))
            raise DataError(f"beziers contain NaN or infinite values ({len(bad)} sketches, e.g. index {bad[0]})")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> "SketchData":
        """The sketches selected by an index or boolean mask (meta is shared)."""
        return SketchData(self.beziers[index], self.labels[index], list(self.class_names),
                          self.source_ids[index], dict(self.meta))

    def class_counts(self) -> dict[str, int]:
        """Number of sketches per class name."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts)}

    def split(self, holdout_fraction: float = 0.1, seed: int = 0) -> tuple["SketchData", "SketchData"]:
        """Deterministic (train, holdout) split (:func:`driftsketch.split.holdout_mask` over class and
        source id): exactly ``round(holdout_fraction * N)`` sketches held out, whatever their order."""
        held = holdout_mask([f"{lab}:{sid}" for lab, sid in zip(self.labels, self.source_ids)], holdout_fraction, seed)
        return self.subset(~held), self.subset(held)

    def partition(self, parts: int, seed: int = 0) -> list["SketchData"]:
        """``parts`` disjoint shares of equal size (+-1) by :meth:`split`'s hash order: with one seed, the
        held-out side of the rest is always the next lowest-hashed share."""
        if parts < 1:
            raise ValueError(f"partition: parts must be >= 1, got {parts}")
        out, rest = [], self
        for k in range(parts - 1):
            rest, part = rest.split(1.0 / (parts - k), seed)
            out.append(part)
        return out + [rest]

    def save_npz(self, path: str | Path) -> Path:
        """Write the data set atomically (temporary file + rename) as an uncompressed ``.npz``."""
        return atomic_save_npz(path, dataset_arrays(self.beziers, self.labels, self.class_names,
                                                    self.source_ids, self.meta))

    @classmethod
    def load_npz(cls, path: str | Path) -> "SketchData":
        """Read a data set written by :meth:`save_npz` (no pickle). Any fault of the file (not a zip,
        truncated, CRC error, missing or misshapen arrays, NaN) is a :class:`DataError` naming it."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: data set file not found")
        arrays = read_npz(path, ("beziers", "labels", "class_names", "source_ids"), ("meta_json",),
                          what="DriftSketch data set")
        try:
            meta = json.loads(str(arrays["meta_json"])) if "meta_json" in arrays else {}
        except (ValueError, RecursionError):
            raise DataError(f"{path}: meta_json is not valid JSON") from None
        if not isinstance(meta, dict):
            raise DataError(f"{path}: meta_json is not a JSON object")
        try:
            return cls(arrays["beziers"], arrays["labels"], list(arrays["class_names"].reshape(-1)),
                       arrays["source_ids"], meta)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. text where numbers belong
            raise DataError(f"{path}: arrays of the wrong type: {exc}") from None


ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first member, or an empty zip


def read_npz(path: Path, required: Sequence[str], optional: Sequence[str] = (), what: str = ".npz file"
             ) -> dict[str, np.ndarray]:
    """The ``required`` (and present ``optional``) arrays of the ``.npz`` at ``path``, read whole and
    without pickle. Every fault of the file (not a zip, truncated, CRC error, a member that is not an
    array) raises :class:`DataError` naming the file; nothing of numpy's or zipfile's escapes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if head not in ZIP_MAGIC:
        kind = "empty" if not head else "not a zip archive"
        raise DataError(f"{path}: not a {what} ({kind}; expected a .npz written by numpy)")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in required if k not in z.files]
            if missing:
                raise DataError(f"{path}: not a {what} (missing {missing}; has {sorted(z.files)[:10]})")
            return {k: z[k] for k in (*required, *optional) if k in z.files}
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile/zlib/numpy raise many types for a damaged file
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise DataError(f"{path}: damaged {what} (truncated or corrupt: {type(exc).__name__}: {detail})") from None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dataset_arrays(beziers: Any, labels: Any, class_names: list[str], source_ids: Any,
                   meta: dict[str, Any]) -> dict[str, Any]:
    """The members of a data set ``.npz`` (arrays, or :class:`Chunked` arrays written piece by piece)."""
    arrays = {
        "beziers": beziers, "labels": labels,
        "class_names": np.asarray(class_names, dtype=str),
        "source_ids": source_ids,
        "meta_json": np.asarray(json.dumps(meta, sort_keys=True, default=_json_default)),
        "format_version": np.asarray(FORMAT_VERSION),
    }
    for key in _META_SCALARS:
        if key in meta:
            arrays[key] = np.asarray(meta[key])
    arrays["options"] = np.asarray(json.dumps(meta.get("options", {}), sort_keys=True))
    return arrays


@dataclass
class Chunked:
    """An array too big to hold at once: its dtype, shape and a function yielding its parts in order."""

    dtype: np.dtype
    shape: tuple[int, ...]
    parts: Callable[[], Iterable[np.ndarray]]


_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same arrays always give the same bytes


def _write_member(zf: zipfile.ZipFile, name: str, value: Any) -> None:
    info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_STORED
    with zf.open(info, "w", force_zip64=True) as fh:
        if not isinstance(value, Chunked):
            np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)
            return
        dtype = np.dtype(value.dtype)
        np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                 "fortran_order": False, "shape": tuple(value.shape)})
        written = 0
        for part in value.parts():
            part = np.ascontiguousarray(part, dtype=dtype)
            fh.write(part.tobytes())
            written += part.size
        if written != int(np.prod(value.shape)):
            raise DataError(f"{name}: wrote {written} values, expected shape {value.shape}")


def atomic_save_npz(path: str | Path, arrays: dict[str, Any]) -> Path:
    """Write an uncompressed ``.npz`` through :func:`driftsketch.fileio.atomic_writer`. Values are arrays
    or :class:`Chunked` (streamed, never whole in memory); members carry a fixed timestamp, so the same
    content always gives the same bytes."""
    with atomic_writer(path) as fh:
        with zipfile.ZipFile(fh, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, value in arrays.items():
                _write_member(zf, name, value)
        os.fchmod(fh.fileno(), 0o644)  # readable by all, like a plain save (the temporary file is 0600)
    return Path(path)


def cache_key(source: str, options: dict[str, Any]) -> str:
    """Short stable hash of a source description and its import options."""
    text = json.dumps({"source": source, "options": options, "v": FORMAT_VERSION},
                      sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached(name: str, source: str, options: dict[str, Any], build: Callable[[], SketchData],
           cache_dir: str | Path) -> SketchData:
    """Load ``cache_dir/<name>-<key>.npz`` or build it with ``build()`` and save it atomically."""
    path = Path(cache_dir) / f"{name}-{cache_key(source, options)}.npz"
    if path.is_file():
        return SketchData.load_npz(path)
    data = build()
    data.save_npz(path)
    return data
