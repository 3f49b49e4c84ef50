"""Crash-safe file writes, shared by every layer: a reader sees the old file or the new one, never half.

    atomic_write_bytes(path, data)             # tmp file in the same folder + fsync + os.replace + dir fsync
    atomic_write_text(path, text)
    atomic_write_bytes(path, data, durable=False)   # atomic, not fsynced: many small, re-creatable files
    atomic_copy(src, dst)                      # streamed, for large files (checkpoints)
    flush_to_disk()                            # many durable=False writes made durable together: one sync

The temporary file is ``.<name>.<pid>.<random>.tmp`` (mode 0600 from creation), flock-ed by its writer
for as long as it exists. A writer killed with SIGKILL cannot remove it, but the kernel drops its lock,
so the first atomic write of a process into a folder removes the unlocked temporary files there
(:func:`remove_stale_temps`); writers whose next start may not write (the registry, the pull cursor)
call :func:`clean_stale_temps` when they start. The lock, not the pid, says whether the writer lives: a
recycled pid, or a writer on another machine of a shared folder, cannot keep a dead file or lose a live
one.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator, TextIO

_cleaned: set[tuple[int, Path]] = set()  # (pid, folder): folders this process has cleaned


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (a rename inside it) to disk; a no-op where folders cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _unlink_if_unlocked(tmp: Path) -> bool:
    """Remove ``tmp`` if no process holds its lock (its writer is gone); True if removed."""
    try:
        fd = os.open(tmp, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # locked: a live writer (EWOULDBLOCK), or a file system without locks: keep it
        os.close(fd)
        return False
    try:
        tmp.unlink()  # still holding the lock: a writer that opened it meanwhile sees it unlinked
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the temporary files of atomic writes in ``folder`` whose writer no longer runs (no lock
    on them); returns them."""
    removed = []
    with contextlib.suppress(OSError):
        for tmp in Path(folder).glob(".*.tmp"):
            if _unlink_if_unlocked(tmp):
                removed.append(tmp)
    return removed


def clean_stale_temps(folder: str | Path) -> None:
    """:func:`remove_stale_temps` once per process and folder: call it where a writer starts."""
    key = (os.getpid(), Path(folder).resolve())
    if key not in _cleaned:
        _cleaned.add(key)
        remove_stale_temps(folder)


@contextlib.contextmanager
def exclusive_lock(path: str | Path, wait: bool = True) -> Iterator[TextIO]:
    """Hold an exclusive ``flock`` on ``path`` (created, with its folder, if missing) for the block: one
    holder at a time across processes and threads; the kernel releases it when a holder dies. Yields the
    lock file (open ``a+``: a holder may note who it is). ``wait=False``: BlockingIOError when it is held."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield f
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _locked_temp(folder: Path, name: str) -> tuple[int, str]:
    """A new temporary file for ``name`` in ``folder``, opened and flock-ed (mode 0600)."""
    while True:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.{os.getpid()}.", suffix=".tmp")
        with contextlib.suppress(OSError):  # no locks on this file system: the file is only less protected
            fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:  # not removed by a cleaner between mkstemp and flock
            return fd, tmp
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | Path, durable: bool = True) -> Iterator[BinaryIO]:
    """Write ``path`` through a binary file object: a temporary file in the same folder (created if
    missing) renamed onto ``path`` when the block ends without an error; ``durable`` also fsyncs the file
    and the folder. On an error the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path.parent)
    fd, tmp = _locked_temp(path.parent, path.name)
    try:
        with os.fdopen(os.dup(fd), "wb") as fh:  # the dup shares the lock; ``fd`` holds it past the rename
            yield fh
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    if durable:
        fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_writer`)."""
    with atomic_writer(path, durable) as fh:
        fh.write(data)
    return Path(path)


def flush_to_disk() -> None:
    """Make every write so far durable. After many ``durable=False`` writes one call costs ~30 ms where
    a fsync per file (and its folder) costs ~15 ms a file on ext4."""
    os.sync()


def atomic_write_text(path: str | Path, text: str, durable: bool = True) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"), durable)


def atomic_copy(src: str | Path, dst: str | Path) -> Path:
    """Copy ``src`` onto ``dst`` atomically and durably, streamed (no whole-file buffer)."""
    with open(src, "rb") as fin, atomic_writer(dst) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    return Path(dst)
