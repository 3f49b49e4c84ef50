"""The one atomic writer: a reader sees the old file or the new one, and no temporary file survives."""
from __future__ import annotations

import numpy as np
import pytest

from driftsketch.data.dataset import atomic_save_npz
from driftsketch.fileio import atomic_copy, atomic_write_text, atomic_writer


def test_atomic_writer_replaces_only_on_success(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_writer(path) as fh:
            fh.write(b"half of the new")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    with atomic_writer(path) as fh:
        fh.write(b"new")
    assert path.read_text() == "new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.bin"]


def test_npz_cache_and_copy_use_it(tmp_path):
    path = atomic_save_npz(tmp_path / "c.npz", {"x": np.arange(3)})
    assert np.array_equal(np.load(path)["x"], np.arange(3)) and path.stat().st_mode & 0o777 == 0o644
    atomic_copy(path, tmp_path / "copy.npz")
    assert (tmp_path / "copy.npz").read_bytes() == path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz", "copy.npz"]
