"""Streaming, resumable imports: fit drawings batch by batch on a process pool, keep each finished
batch on disk, and write the data set from those batches at the end.

Memory stays flat in the number of drawings: workers read their own batch of input lines, and
the parent holds only a few small per-drawing numbers (line offsets, fit errors). Batches finished
before a kill are kept in ``<out>.partial/`` (with a manifest of the command's inputs and
options); re-running the same command skips them and writes the same file an uninterrupted run
would have written.

    store = BatchStore.open(out, fingerprint)
    for index, arrays in ordered_map(pool, fit_batch, tasks): store.write(index, arrays)
    write_dataset(out, store, len(tasks), class_names, meta)
"""
from __future__ import annotations

import io
import json
import multiprocessing as mp
import shutil
import sys
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from driftsketch.data.dataset import Chunked, DataError, atomic_save_npz, dataset_arrays
from driftsketch.fileio import atomic_write_bytes, atomic_write_text
from driftsketch.sketch import SKETCH_SHAPE

MANIFEST = "manifest.json"


@contextmanager
def worker_pool(workers: int) -> Iterator[Any]:
    """A fork-based process pool of ``workers`` processes, or None (work in this process) for 1."""
    if workers <= 1:
        yield None
        return
    with mp.get_context("fork").Pool(workers) as pool:
        yield pool


def ordered_map(pool: Any, fn: Callable[[Any], Any], tasks: Iterable[Any], in_flight: int) -> Iterator[Any]:
    """``fn(task)`` for every task, in order, with at most ``in_flight`` tasks handed out at a time
    (``Pool.imap`` would queue every task at once, and with them their memory)."""
    if pool is None:
        yield from map(fn, tasks)
        return
    window: deque = deque()
    limit = max(1, in_flight)
    for task in tasks:
        window.append(pool.apply_async(fn, (task,)))
        if len(window) >= limit:
            yield window.popleft().get()
    while window:
        yield window.popleft().get()


class BatchStore:
    """Finished batches of one import, as ``<out>.partial/batch-NNNNNN.npz`` plus a manifest.

    The manifest records what the batches depend on (input files, options, fit settings); a
    store whose manifest differs from the current command's is cleared, not reused.
    """

    def __init__(self, folder: Path):
        self.folder = folder

    @classmethod
    def open(cls, out: str | Path, fingerprint: dict[str, Any]) -> "BatchStore":
        out = Path(out)
        store = cls(out.parent / f"{out.name}.partial")
        text = json.dumps(fingerprint, sort_keys=True, indent=1)
        manifest = store.folder / MANIFEST
        if store.folder.is_dir():
            old = manifest.read_text() if manifest.is_file() else ""
            if old == text:
                return store
            print(f"{store.folder}: left by an import with other inputs or options; starting over",
                  file=sys.stderr)
            shutil.rmtree(store.folder)
        store.folder.mkdir(parents=True)
        atomic_write_text(manifest, text)
        return store

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.npz"

    def write(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        """Keep one finished piece (atomic; not fsynced: a lost piece is recomputed)."""
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self.path(name), buf.getvalue(), durable=False)

    def read(self, name: str) -> dict[str, np.ndarray] | None:
        """A piece written by :meth:`write`, or None when missing or unreadable (then recompute it)."""
        try:
            with np.load(self.path(name), allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError, EOFError):
            return None

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def batch_name(index: int) -> str:
    return f"batch-{index:06d}"


def write_dataset(out: str | Path, store: BatchStore, batches: int, class_names: list[str],
                  meta: dict[str, Any]) -> dict[str, Any]:
    """Write the data set from the stored batches (streamed) and return its summary numbers.

    Each batch holds ``beziers``, ``labels``, ``source_ids`` of its fitted drawings, ``chamfer``
    (fit errors it measured) and ``failed`` (why each failed drawing failed).
    """
    fitted, id_len, failed, errors = 0, 1, {}, []
    counts = np.zeros(len(class_names), dtype=np.int64)
    for i in range(batches):
        part = store.read(batch_name(i))
        if part is None:
            raise DataError(f"{store.path(batch_name(i))}: finished batch missing or unreadable; run again")
        fitted += len(part["labels"])
        counts += np.bincount(part["labels"], minlength=len(class_names))
        id_len = max(id_len, part["source_ids"].dtype.itemsize // 4)
        errors.append(part["chamfer"])
        for reason in part["failed"].tolist():
            key = "more than 32 strokes" if "strokes, more than" in reason else reason
            failed[key] = failed.get(key, 0) + 1
    if not fitted:
        raise DataError(f"no drawing could be fitted ({sum(failed.values())} tried; "
                        f"e.g. {next(iter(failed), '-')})")
    err = np.concatenate(errors)
    meta = dict(meta, skipped_fit=failed, fit_chamfer_measured=int(len(err)),
                fit_chamfer_mean=float(np.mean(err)) if len(err) else float("nan"),
                fit_chamfer_p95=float(np.percentile(err, 95)) if len(err) else float("nan"))

    def column(key: str) -> Callable[[], Iterator[np.ndarray]]:
        return lambda: (store.read(batch_name(i))[key] for i in range(batches))

    atomic_save_npz(out, dataset_arrays(
        Chunked(np.float32, (fitted, *SKETCH_SHAPE), column("beziers")),
        Chunked(np.int64, (fitted,), column("labels")), class_names,
        Chunked(np.dtype(f"<U{id_len}"), (fitted,), column("source_ids")), meta))
    return {"meta": meta, "counts": dict(zip(class_names, counts.tolist())), "sketches": fitted}
