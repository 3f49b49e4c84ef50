"""Check that a folder can hold what a round writes there, before the round writes anything.

Everything a round keeps (model registry, preference store, round outputs, Label Studio's SVG/PNG
folders) may live on shared storage so that workers on other machines see it. What the project relies on:

- atomic replace: ``driftsketch.fileio`` writes a temporary file in the same folder and ``os.replace``s it;
- ``flock``: the registry (``registry.lock``) and the preference store serialise their read-modify-write.

Local disks keep both. NFS v4 keeps both across clients: rename within one folder is atomic on the
server, and Linux maps ``flock`` onto NFS byte-range locks (lockd / NFSv4 locking) since 2.6.12; NFS v3
needs a running lock manager (``nolock`` mounts make flock local to each client: unsafe). SMB/CIFS
mounts, and object-store mounts (s3fs, gcsfuse, ...) keep neither reliably: use them for nothing here.
:func:`check_storage` proves a folder writable and lockable; it cannot prove the locks reach the other
clients, so it is no substitute for a correctly mounted NFS.

    check_storage({"registry_dir": "/srv/driftsketch/registry", "preference_dir": "/srv/driftsketch/prefs"})
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from driftsketch.errors import DriftSketchError
from driftsketch.fileio import atomic_write_bytes


class StorageError(DriftSketchError, OSError):
    """A configured folder cannot hold the round's files; the message names the setting and the folder."""


def check_folder(path: str | Path, setting: str) -> Path:
    """Create ``path`` if needed, write and replace a probe file in it, take and drop an exclusive
    ``flock``; :class:`StorageError` naming ``setting`` when any of that fails. Nothing else is touched."""
    path = Path(path)
    probe = path / f".storage-check-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(probe, b"ok", durable=False)
        with open(probe, "rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fh, fcntl.LOCK_UN)
    except OSError as exc:
        raise StorageError(f"{setting}: {path} cannot hold the round's files ({exc.strerror or exc}); "
                           "it must be a writable local disk or NFS folder with working flock") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return path


def check_storage(folders: dict[str, str | Path]) -> None:
    """:func:`check_folder` for every ``{setting: folder}``."""
    for setting, path in folders.items():
        check_folder(path, setting)
