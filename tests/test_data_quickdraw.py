"""Quick, Draw! importer on small synthetic ndjson files in both published formats."""
import json
import warnings

import numpy as np
import pytest

from driftsketch.data.dataset import DataError
from driftsketch.data.quickdraw import MalformedLineWarning, import_quickdraw, parse_drawing
from driftsketch.data.settings import ImportConfig


def _square(offset=0.0):
    return [[0 + offset, 100, 100, 0, 0], [0, 0, 100, 100, 0]]


def _record(key, strokes, recognized=True, word="thing"):
    return {"word": word, "countrycode": "NL", "timestamp": "2017-01-01 00:00:00.0 UTC",
            "recognized": recognized, "key_id": key, "drawing": strokes}


def _write(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_simplified_and_raw_formats(tmp_path):
    simplified = [_record(f"s{i}", [_square(), [[20, 40, 60], [50, 52, 50]]]) for i in range(3)]
    raw = [_record(f"r{i}", [[[10.5, 300.25, 301.0, 12.0], [5.0, 8.0, 250.5, 240.0], [0, 10, 20, 30]]])
           for i in range(2)]
    _write(tmp_path / "box.ndjson", simplified)
    _write(tmp_path / "hook.ndjson", raw)
    data = import_quickdraw(tmp_path, cfg=ImportConfig(workers=1))
    assert data.class_names == ["box", "hook"]
    assert data.class_counts() == {"box": 3, "hook": 2}
    assert list(data.source_ids) == ["s0", "s1", "s2", "r0", "r1"]
    assert data.beziers.shape == (5, 32, 4, 2) and np.abs(data.beziers).max() <= 1.0
    assert data.meta["fit_chamfer_mean"] < 2.0
    # raw and simplified strokes parse to the same (n, 2) points
    assert parse_drawing(raw[0])[0].shape == (4, 2)
    assert parse_drawing(simplified[0])[1].tolist() == [[20, 50], [40, 52], [60, 50]]


def test_malformed_lines_are_counted_with_line_numbers(tmp_path):
    path = _write(tmp_path / "box.ndjson", [
        _record("a", [_square()]),
        "{not json",
        _record("b", [[[1, 2, 3], [1, 2]]]),  # x and y lengths differ
        _record("c", "nope"),
        _record("d", [_square(5)]),
    ])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = import_quickdraw(path, cfg=ImportConfig(workers=1))
    messages = [str(w.message) for w in caught if issubclass(w.category, MalformedLineWarning)]
    assert len(data) == 2 and data.meta["skipped_malformed"] == 3
    assert [m.split(": skipped")[0] for m in messages] == [f"{path}:2", f"{path}:3", f"{path}:4"]
    assert "x and y" in messages[1]


def test_file_with_nothing_usable_is_an_error(tmp_path):
    _write(tmp_path / "bad.ndjson", ["{oops", "[1, 2]"])
    with pytest.raises(DataError, match=r"bad\.ndjson: no usable drawings.*all lines malformed"), \
            pytest.warns(MalformedLineWarning) as caught:
        import_quickdraw(tmp_path, cfg=ImportConfig(workers=1))
    where = [str(w.message).rsplit("/", 1)[1].split(": skipped")[0] for w in caught]
    assert where == ["bad.ndjson:1", "bad.ndjson:2"]


def test_unknown_category_lists_available(tmp_path):
    _write(tmp_path / "box.ndjson", [_record("a", [_square()])])
    with pytest.raises(DataError, match=r"unknown category \['cat'\].*box"):
        import_quickdraw(tmp_path, categories=["cat"])


def test_recognized_only_and_empty_result(tmp_path):
    _write(tmp_path / "box.ndjson", [_record("a", [_square()], recognized=False),
                                      _record("b", [_square()], recognized=True)])
    data = import_quickdraw(tmp_path, cfg=ImportConfig(workers=1, recognized_only=True))
    assert list(data.source_ids) == ["b"] and data.meta["skipped_unrecognized"] == 1
    _write(tmp_path / "box.ndjson", [_record("a", [_square()], recognized=False)])
    with pytest.raises(DataError, match="nothing left after filtering"):
        import_quickdraw(tmp_path, cfg=ImportConfig(workers=1, recognized_only=True))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .ndjson files"):
        import_quickdraw(tmp_path / "empty")


def test_max_per_class_is_seeded(tmp_path):
    _write(tmp_path / "box.ndjson", [_record(f"k{i}", [_square(i)]) for i in range(20)])
    pick = lambda seed: list(import_quickdraw(tmp_path, cfg=ImportConfig(
        workers=1, max_per_class=5, seed=seed)).source_ids)
    assert pick(0) == pick(0) and len(pick(0)) == 5
    assert pick(0) != pick(1)
