"""driftsketch-data: import/show round trip and clear errors."""
import json

import numpy as np
import pytest

from driftsketch.data import SketchData
from driftsketch.data.cli import main
from driftsketch.data.quickdraw import MalformedLineWarning


def test_import_show_builtin(tmp_path, capsys):
    src = tmp_path / "ndjson"
    src.mkdir()
    for name in ("box", "hook"):
        rec = {"key_id": f"{name}1", "recognized": True, "word": name,
               "drawing": [[[0, 100, 100, 0], [0, 0, 100, 120]]]}
        (src / f"{name}.ndjson").write_text(json.dumps(rec) + "\n" + "{broken\n")
    out = tmp_path / "d.npz"
    with pytest.warns(MalformedLineWarning) as caught:
        assert main(["import", str(src), "--out", str(out), "--workers", "1"]) == 0
    assert sorted(str(w.message).rsplit("/", 1)[1].split(": ")[0] for w in caught) == \
        ["box.ndjson:2", "hook.ndjson:2"]
    text = capsys.readouterr().out
    assert "fit error (Chamfer, px on the 512 canvas): mean" in text and "box=1, hook=1" in text
    assert "skipped malformed: 2" in text
    data = SketchData.load_npz(out)
    assert data.class_names == ["box", "hook"] and list(data.source_ids) == ["box1", "hook1"]
    assert main(["show", str(out)]) == 0 and "sketches: 2 in 2 classes" in capsys.readouterr().out
    assert main(["import", str(src), "--out", str(out), "--categories", "cat"]) == 2
    assert "unknown category ['cat']" in capsys.readouterr().err
    assert main(["builtin", "--out", str(tmp_path / "b.npz"), "--per-class", "2"]) == 0
    assert np.abs(SketchData.load_npz(tmp_path / "b.npz").beziers).max() <= 1.0
