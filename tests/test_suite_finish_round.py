"""preference_suite.finish_round: a round's row is written before its clean-up, so a kill there loses nothing."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import preference_suite as ps  # noqa: E402


def test_a_kill_during_the_clean_up_leaves_a_finished_round(tmp_path, monkeypatch):
    rdir = tmp_path / "r03"
    (rdir / "amplified" / "beziers").mkdir(parents=True)
    (rdir / "last.pt").write_bytes(b"x")
    old = tmp_path / "r02" / "model.pt"
    old.parent.mkdir()
    old.write_bytes(b"x")
    done = tmp_path / "round_03.json"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies while it deletes the amplified pairs

    monkeypatch.setattr(ps.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        ps.finish_round(done, {"round": 3, "checkpoint": "c"}, rdir, old)
    assert json.loads(done.read_text()) == {"round": 3, "checkpoint": "c"}  # a rerun skips this round
    monkeypatch.undo()
    ps.finish_round(done, {"round": 3, "checkpoint": "c"}, rdir, old)
    assert not (rdir / "amplified").exists() and not (rdir / "last.pt").exists() and not old.exists()
    ps.finish_round(done, {"round": 3, "checkpoint": "c"}, rdir, None)  # nothing left to clear: no error
