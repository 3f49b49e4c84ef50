"""SketchData: npz round trip, deterministic split, the cache and load_dataset."""
import numpy as np
import pytest

from driftsketch.data import DataError, SketchData, load_dataset
from driftsketch.data.builtin import build_builtin
from driftsketch.data.settings import BuiltinConfig


def _data(n=50):
    rng = np.random.default_rng(0)
    return SketchData(rng.uniform(-1, 1, (n, 32, 4, 2)), np.arange(n) % 3, ["a", "b", "c"],
                      [f"id{i}" for i in range(n)], {"source": "test", "fit_chamfer_mean": 1.5,
                                                      "fit_chamfer_p95": 2.5, "options": {"k": 1}})


def test_npz_round_trip(tmp_path):
    data = _data()
    path = data.save_npz(tmp_path / "d.npz")
    back = SketchData.load_npz(path)
    np.testing.assert_array_equal(back.beziers, data.beziers)
    assert back.beziers.dtype == np.float32 and back.labels.dtype == np.int64
    assert back.class_names == ["a", "b", "c"] and list(back.source_ids) == list(data.source_ids)
    assert back.meta == data.meta
    with np.load(path, allow_pickle=False) as z:  # readable without pickle, flat meta keys present
        assert float(z["fit_chamfer_p95"]) == 2.5 and str(z["source"]) == "test"
    assert not list(tmp_path.glob("*.tmp"))


def test_split_is_deterministic_and_order_free():
    data = _data(400)
    train, hold = data.split(0.25, seed=0)
    assert len(train) + len(hold) == 400 and 60 < len(hold) < 140
    assert set(train.source_ids).isdisjoint(hold.source_ids)
    perm = np.random.default_rng(1).permutation(400)
    _, hold2 = data.subset(perm).split(0.25, seed=0)
    assert set(hold2.source_ids) == set(hold.source_ids)
    _, hold3 = data.split(0.25, seed=1)
    assert set(hold3.source_ids) != set(hold.source_ids)


def test_validation_errors(tmp_path):
    with pytest.raises(DataError, match="labels"):
        SketchData(np.zeros((2, 32, 4, 2)), [0, 5], ["a"], ["x", "y"])
    with pytest.raises(DataError, match="shape"):
        SketchData(np.zeros((2, 31, 4, 2)), [0, 0], ["a"], ["x", "y"])
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.npz"):
        SketchData.load_npz(tmp_path / "junk.npz")
    with pytest.raises(DataError, match="use 'builtin' or a .npz"):
        load_dataset("mnist")


def test_load_dataset_builtin_is_cached(tmp_path):
    first = load_dataset("builtin:per_class=3", cache_dir=tmp_path)
    files = list(tmp_path.glob("builtin-*.npz"))
    assert len(files) == 1 and len(first) == 3 * len(first.class_names)
    again = load_dataset("builtin:per_class=3", cache_dir=tmp_path)
    np.testing.assert_array_equal(first.beziers, again.beziers)
    np.testing.assert_array_equal(first.beziers, build_builtin(BuiltinConfig(
        classes=first.class_names, per_class=3)).beziers)
    load_dataset("builtin:per_class=4", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("builtin-*.npz"))) == 2  # keyed by the options


def test_load_dataset_npz(tmp_path):
    _data().save_npz(tmp_path / "x.npz")
    assert len(load_dataset(str(tmp_path / "x.npz"))) == 50
