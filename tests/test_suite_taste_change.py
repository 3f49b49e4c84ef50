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


def test_a_marked_change_forgets_old_answers_and_approvals_and_survives_a_resume(tmp_path):
    from suite_veto import LineOfDescent

    line = LineOfDescent(min_pairs=30)
    for m in ("m1", "m2"):
        line.promoted(m)
    line.answered("m2", [1.0] * 10)  # liked under the old taste
    line.mark()  # the taste turns around here
    assert line.figures() == {} and line.approved == set()
    line.promoted("m3")
    line.answered("m3", [0.0] * 30)  # disliked under the new one
    kept = json.loads(json.dumps(line.record(None, "m3", [0.0] * 30)))
    verdict = line.judge()  # m3 alone is worse; m2 and m1 were approved only before the mark: back to the base
    assert verdict["worse"] and verdict["models"] == ["m3"] and verdict["passed"] == ["m2", "m1"]
    assert line.current is None
    again = LineOfDescent(min_pairs=30)  # a resumed run: the earlier rows, the mark, then the later rows
    again.replay({"line": ["m2", "m1"], "eval_model": "m2", "outcomes": [1.0] * 10})
    again.mark()
    again.replay(kept)
    assert again.line == ["m3", "m2", "m1"] and again.approved == {"m3"} and again.figures() == {
        "m3": {"pairs": 30, "win_rate": 0.0}}
    plain = LineOfDescent(min_pairs=30, line=["m3", "m2", "m1"], outcomes={"m3": [0.0] * 30})
    assert plain.judge()["passed"] == [] and plain.current == "m2"  # no mark: one step back, as before


def test_the_mark_goes_into_the_store_once_and_a_run_cannot_resume_without_it(tmp_path, capsys):
    from dpo.store import PreferenceStore
    from dpo.taste import TasteMarks

    with pytest.raises(SystemExit):
        ps.parse_args(["--taste-mark"])
    assert "pass both" in capsys.readouterr().err
    args = ps.parse_args(["--no-promotion-gate", "--taste-change", "500", "--taste-mark"])
    store = PreferenceStore(tmp_path / "prefs")
    ps.mark_taste(store, None, args)
    ps.mark_taste(store, None, args)  # a resumed run finds it
    assert len(TasteMarks(store).marks()) == 1 and "after 500 labels" in TasteMarks(store).marks()[0]["reason"]
    done = tmp_path / "round_05.json"
    row = {"labels": 600, "checkpoint": "x", "reference": "base", "taste_change": 500, "taste": "reversed"}
    done_plus = tmp_path / "round_06.json"
    done_plus.write_text(json.dumps({**row, "taste": "plus-smooth", "taste_mark": True}))
    with pytest.raises(SystemExit, match="made with --new-taste plus-smooth"):
        ps.check_resume(done_plus, args)
    done.write_text(json.dumps(row))
    with pytest.raises(SystemExit, match="without a taste mark"):
        ps.check_resume(done, args)
    done.write_text(json.dumps({**row, "taste": "as set"}))  # before the change a mark changes nothing
    assert ps.check_resume(done, args)["checkpoint"] == "x"
    done.write_text(json.dumps({**row, "taste_mark": True}))
    assert ps.check_resume(done, args)["checkpoint"] == "x"
    with pytest.raises(SystemExit, match="with a taste mark"):
        ps.check_resume(done, ps.parse_args(["--no-promotion-gate", "--taste-change", "500"]))


def test_a_criterion_can_join_the_taste_instead_of_reversing_it(capsys):
    from annotators import added_taste

    rng = np.random.default_rng(0)
    ref = rng.normal(0, 0.2, (64, 32, 4, 2)).astype(np.float32)
    y = np.zeros(64, np.int64)
    lean = _leaning()
    tall = Annotator("tall", "style", lambda x, y: x[:, :, :, 1].std(axis=(1, 2)), "tall ink", 0.0)
    setup = ps.Setup("d", "base.pt", ["c"], "r.pt", [lean, tall], None, None, {}, ref, (ref, y))
    args = ps.parse_args(["--taste-change", "300", "--new-taste", "plus-tall"])
    assert ps.taste_in_force(lean, 2, args, setup) is lean
    both = ps.taste_in_force(lean, 3, args, setup)
    assert both.name == "lean" and both.info["added"] == "tall" and both.tie_margin > 0
    z = lambda a: (a.score(ref, y) - a.score(ref, y).mean()) / a.score(ref, y).std()  # noqa: E731
    assert np.allclose(both.score(ref, y), z(lean) + z(tall), atol=1e-6)  # equal parts, each z-scored on the base
    assert added_taste(lean, tall, ref, y).score(ref, y).std() > 1.0  # the sum of two unit parts, not their mean
    with pytest.raises(SystemExit):
        ps.parse_args(["--taste-change", "300", "--new-taste", "smooth"])
    assert "reversed or plus-<annotator name>" in capsys.readouterr().err
