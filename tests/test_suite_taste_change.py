"""preference_suite.py --taste-change: annotators whose taste turns around midway."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import preference_suite as ps  # noqa: E402
from annotators import Annotator, answer  # noqa: E402


def _leaning() -> Annotator:
    return Annotator("lean", "style", lambda x, y: x[:, :, :, 0].mean(axis=(1, 2)), "ink to the right", 0.0)


def test_the_taste_turns_around_after_the_given_labels_and_only_then():
    args = ps.parse_args(["--taste-change", "300"])
    ann = _leaning()
    assert ps.taste_in_force(ann, 2, args) is ann and ps.taste_in_force(None, 5, args) is None
    turned = ps.taste_in_force(ann, 3, args)  # round 3 asks labels 301-400
    right, left = np.full((4, 32, 4, 2), 0.3, np.float32), np.full((4, 32, 4, 2), -0.3, np.float32)
    y = np.zeros(4, np.int64)
    assert (ann.score(right, y) > ann.score(left, y)).all() and (turned.score(right, y) < turned.score(left, y)).all()
    assert turned.name == ann.name and turned.tie_margin == ann.tie_margin
    rng = np.random.default_rng(0)
    assert answer(turned, right, left, y, rng, noise=0.0, tie_rate=0.0) == ["b"] * 4
    assert [ps.evaluated(r, args) for r in range(8)] == [True, True, False, True, True, True, True, True]
    assert [ps.evaluated(r, ps.parse_args([])) for r in range(10)] == [r + 1 in (1, 2, 5, 10) for r in range(10)]


def test_a_change_must_fall_between_rounds_and_a_run_cannot_resume_with_another(tmp_path, capsys):
    with pytest.raises(SystemExit):
        ps.parse_args(["--taste-change", "250"])
    assert "a positive multiple of --pairs-per-round 100" in capsys.readouterr().err
    done = tmp_path / "round_00.json"
    done.write_text(json.dumps({"labels": 100, "checkpoint": "x", "reference": "base", "selection": "random"}))
    assert ps.check_resume(done, ps.parse_args(["--no-promotion-gate"]))["checkpoint"] == "x"
    with pytest.raises(SystemExit, match="made with no taste change"):
        ps.check_resume(done, ps.parse_args(["--no-promotion-gate", "--taste-change", "500"]))
    done.write_text(json.dumps({"labels": 100, "checkpoint": "x", "reference": "base", "taste_change": 500}))
    with pytest.raises(SystemExit, match="made with --taste-change 500"):
        ps.check_resume(done, ps.parse_args(["--no-promotion-gate", "--taste-change", "300"]))
    assert ps.check_resume(done, ps.parse_args(["--no-promotion-gate", "--taste-change", "500"]))["checkpoint"] == "x"
