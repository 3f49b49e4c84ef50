"""Crash-safe file writes, shared by every layer: a reader sees the old file or the new one, never half.

    atomic_write_bytes(path, data)             # tmp file in the same folder + fsync + os.replace + dir fsync
    atomic_write_text(path, text)
    atomic_write_bytes(path, data, durable=False)   # atomic, not fsynced: many small, re-creatable files
    atomic_copy(src, dst)                      # streamed, for large files (checkpoints)
    flush_to_disk()                            # many durable=False writes made durable together: one sync

The temporary file is ``.<name>.<pid>.<random>.tmp`` (mode 0600 from creation). A writer killed with
SIGKILL cannot remove it, so the first atomic write of a process into a folder removes the temporary
files there whose writing process is gone (:func:`remove_stale_temps`): after a crash, they disappear at
the next start of the writer.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Iterator

UNKNOWN_WRITER_AGE_S = 3600.0  # a temporary file without a pid (older format) is stale after this long
_cleaned: set[tuple[int, Path]] = set()  # (pid, folder): folders this process has cleaned


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (a rename inside it) to disk; a no-op where folders cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _writer_pid(tmp: Path) -> int | None:
    """The pid in ``.<name>.<pid>.<random>.tmp``, or None."""
    parts = tmp.name[:-len(".tmp")].rsplit(".", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the temporary files of atomic writes in ``folder`` whose writer process no longer runs
    (a pid-less one once it is older than an hour); returns them."""
    removed = []
    with contextlib.suppress(OSError):
        for tmp in Path(folder).glob(".*.tmp"):
            pid = _writer_pid(tmp)
            with contextlib.suppress(OSError):
                if pid == os.getpid() or (pid is not None and _alive(pid)):
                    continue
                if pid is None and time.time() - tmp.stat().st_mtime < UNKNOWN_WRITER_AGE_S:
                    continue
                tmp.unlink()
                removed.append(tmp)
    return removed


def _clean_once(folder: Path) -> None:
    key = (os.getpid(), folder.resolve())
    if key not in _cleaned:
        _cleaned.add(key)
        remove_stale_temps(folder)


@contextlib.contextmanager
def atomic_writer(path: str | Path, durable: bool = True) -> Iterator[BinaryIO]:
    """Write ``path`` through a binary file object: a temporary file in the same folder (created if
    missing) renamed onto ``path`` when the block ends without an error; ``durable`` also fsyncs the file
    and the folder. On an error the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_once(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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
