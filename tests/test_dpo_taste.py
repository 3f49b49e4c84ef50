"""Taste marks (dpo/taste.py): the store's record of when the annotators' taste changed, and what reads it:
training pairs, the reward's pairs, the human evaluation and the annotators' veto."""
from __future__ import annotations

import json
import warnings
from datetime import datetime, timedelta, timezone

import pytest

from dpo import PreferenceStore
from dpo.annotators import collect_answers
from dpo.gold import GoldSet
from dpo.human_eval import answers_since, veto_target
from dpo.store import StoreError, StoreWarning
from dpo.taste import MARKS_FILE, TasteMarks, parse_time
from driftsketch.registry import PromotionGate, Registry
from labeling.cli import main as labelstudio_main
from tests.test_dpo_annotators import T0, answer, dataset, sketches


@pytest.fixture
def store(tmp_path):
    return PreferenceStore(tmp_path / "prefs")


def test_the_newest_mark_is_in_force_and_a_bad_line_is_skipped_by_name(store):
    marks = TasteMarks(store)
    assert marks.since() is None and marks.marks() == []
    marks.add("new instructions", T0 + timedelta(hours=2))
    marks.add("new  annotators\n", datetime(2026, 1, 1, 1))  # no zone: UTC; whitespace folded
    marks.add("new instructions", T0 + timedelta(hours=2))  # the same command again: nothing appended
    assert marks.since() == T0 + timedelta(hours=2)
    assert [m["reason"] for m in marks.marks()] == ["new instructions", "new annotators"]
    with open(marks.path, "a") as f:
        f.write('{"at": "yesterday"}\n{"reason": "no time"}\n')
    with pytest.warns(StoreWarning) as caught:
        assert marks.since() == T0 + timedelta(hours=2)  # the good lines still count
    assert [str(w.message).split(": malformed")[0].endswith(f"{MARKS_FILE}:{i}") for w, i in zip(caught, (3, 4))] == [
        True, True]


def test_a_mark_needs_a_reason_and_cannot_lie_in_the_future(store):
    marks = TasteMarks(store)
    with pytest.raises(StoreError, match="needs a reason"):
        marks.add("  ")
    with pytest.raises(StoreError, match="in the future"):
        marks.add("later", datetime.now(timezone.utc) + timedelta(hours=1))
    assert not marks.path.exists()
    assert parse_time("2026-12-07T10:00:00Z") == datetime(2026, 12, 7, 10, tzinfo=timezone.utc)


def test_training_reads_only_answers_given_since_the_mark_but_annotators_are_judged_on_all(store):
    paths = sketches(store, 16)
    gold = GoldSet(store)  # pairs 4-7 are gold: the first sketch is the real drawing
    gold.register([{"good": paths[2 * i], "bad": paths[2 * i + 1], "kind": "noise", "class_name": "circle"}
                   for i in range(4, 8)])
    old = [answer(paths, i, "x", "a", minutes=i) for i in range(3)]
    late = [answer(paths, 3, "x", "b", minutes=90)]  # a task pushed before the mark, answered after it
    careless = [answer(paths, i, "c", "b", minutes=i) for i in range(4, 8)]  # every gold pair wrong, before the mark
    store.append(old + late + careless + [answer(paths, i, "x", "a", minutes=i) for i in range(4, 8)], "s")
    before = dataset(store, weighting="none")
    assert len(before) == 4 and before.summary()["taste_since"] is None
    TasteMarks(store).add("reversed", T0 + timedelta(minutes=60))
    after = dataset(store, weighting="none", min_gold_answers=4, min_gold_accuracy=0.6)
    s = after.summary()
    assert len(after) == 1 and after.pairs[0].winner.id == late[0].id
    assert s["before_taste_mark"] == 11 and s["taste_since"] == (T0 + timedelta(minutes=60)).isoformat()
    assert list(after.assessment.excluded) == ["c"]  # measured on gold answers given before the mark
    train, held = after.split(0.0)
    assert len(train) == 1 and len(held) == 0


def test_the_veto_goes_back_past_models_approved_only_before_the_mark():
    line = ["r5", "r4", "r3", "r2", "r1"]
    assert veto_target(line, ["r5", "r4"]) == "r3"
    assert veto_target(line, ["r5", "r4"], approved={"r5", "r4", "r2"}) == "r2"
    assert veto_target(line, ["r5"], approved={"r5"}) is None  # the base
    assert veto_target(line, line) is None


def test_evaluation_answers_before_the_mark_do_not_count(store):
    paths = sketches(store, 4)
    store.append([answer(paths, 0, "x", "a", minutes=0), answer(paths, 1, "x", "a", minutes=30)], "s")
    answers = collect_answers(store.records())
    assert len(answers_since(answers, None)) == 2
    assert [a.record.source["pair"] for a in answers_since(answers, T0 + timedelta(minutes=10))] == [1]


def _registry(tmp_path, times: dict[str, str]) -> Registry:
    """base -> r1 -> r2 -> r3, each promoted in turn at ``times[name]``."""
    reg = Registry(tmp_path / "reg")
    tmp_path.mkdir(parents=True, exist_ok=True)
    for i, (name, parent) in enumerate((("base", None), ("r1", "base"), ("r2", "r1"), ("r3", "r2"))):
        (tmp_path / name).write_bytes(name.encode())
        reg.add_model(tmp_path / name, name, kind="dpo" if parent else "base", parent=parent, round_index=i)
        reg.promote(name)
    with reg.transaction() as state:
        for event in state.history:
            event.at = times[event.model]
    return reg


def test_the_rounds_veto_counts_approvals_since_the_mark(tmp_path):
    from tasks.models import human_veto

    times = {"base": "2026-01-01T00:00:00+00:00", "r1": "2026-01-01T01:00:00+00:00",
             "r2": "2026-01-01T02:00:00+00:00", "r3": "2026-01-01T04:00:00+00:00"}
    mark = "2026-01-01T03:00:00+00:00"
    worse = {"r3": {"pairs": 30, "win_rate": 0.1}}
    reg = _registry(tmp_path / "a", times)
    assert reg.promoted_since(parse_time(mark)) == {"r3"}
    assert reg.promoted_since(parse_time(times["r2"])) == {"r3"}  # the second of the mark counts as before
    out = human_veto.fn(str(reg.root), PromotionGate(), worse, mark)
    assert out["rolled_back_to"] == "base" and out["passed"] == ["r2", "r1"] and "taste mark" in out["reason"]
    state = reg.load()
    assert state.current == "base" and state.models["r3"].status == "rolled_back"
    assert state.models["r2"].status == "promoted"  # passed over, not condemned: no answers called it worse
    plain = _registry(tmp_path / "b", times)  # without a mark: one step back, as before
    assert human_veto.fn(str(plain.root), PromotionGate(), worse)["rolled_back_to"] == "r2"


def test_the_command_adds_and_lists_marks_and_refuses_a_bad_time(tmp_path, capsys):
    prefs = tmp_path / "prefs"
    args = ["taste-mark", "--set", f"pull.store_root={prefs}", "--set", f"push.store_root={prefs}"]
    assert labelstudio_main([*args, "--reason", "new instructions", "--at", "2026-01-01T03:00:00Z"]) == 0
    assert labelstudio_main(args) == 0
    out = capsys.readouterr().out
    assert "2026-01-01T03:00:00+00:00  new instructions" in out and "in force: 2026-01-01T03:00:00+00:00" in out
    assert labelstudio_main([*args, "--reason", "x", "--at", "soon"]) == 2
    err = capsys.readouterr().err
    assert "--at 'soon'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    line = json.loads((prefs / MARKS_FILE).read_text())
    assert line["reason"] == "new instructions" and len((prefs / MARKS_FILE).read_text().splitlines()) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a well-formed file warns of nothing
        assert TasteMarks(prefs).since() == parse_time("2026-01-01T03:00:00Z")


def test_a_mark_set_by_mistake_is_withdrawn_by_a_line_of_its_own(store):
    marks = TasteMarks(store)
    first, second = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    marks.add("new instructions", first)
    marks.add("false alarm of the drift check", second)
    with pytest.raises(StoreError, match="needs a reason"):
        marks.withdraw(second, " ")
    with pytest.raises(StoreError, match=r"no taste mark at 2026-01-01T05:00:00\+00:00 .*marks: 2026-01-01T01"):
        marks.withdraw(T0 + timedelta(hours=5), "typo")
    assert marks.withdraw(second, "the taste had not changed")["in_force"]["at"] == first
    assert marks.withdraw(second, "the taste had not changed")["in_force"]["at"] == first  # a re-run appends nothing
    assert marks.since() == first and [m["at"] for m in marks.marks()] == [first]
    lines = marks.path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["at"] == first.isoformat()  # the marks' lines are never edited
    assert marks.withdraw(first, "no change at all")["in_force"] is None
    assert marks.since() is None


def test_withdrawing_beside_a_bad_line_warns_of_it_once(store):
    marks = TasteMarks(store)
    marks.add("new instructions", T0 + timedelta(hours=1))
    marks.add("new annotators", T0 + timedelta(hours=2))
    with open(marks.path, "a") as f:
        f.write('{"at": "yesterday"}\n')
    with pytest.warns(StoreWarning) as caught:
        assert marks.withdraw(T0 + timedelta(hours=2), "a mistake")["in_force"]["at"] == T0 + timedelta(hours=1)
    assert len(caught) == 1 and f"{MARKS_FILE}:3" in str(caught[0].message)


def test_the_command_withdraws_a_mark_and_lists_it_as_withdrawn(tmp_path, capsys):
    prefs = tmp_path / "prefs"
    args = ["taste-mark", "--set", f"pull.store_root={prefs}", "--set", f"push.store_root={prefs}"]
    assert labelstudio_main([*args, "--reason", "new people", "--at", "2026-01-01T03:00:00Z"]) == 0
    assert labelstudio_main([*args, "--withdraw", "2026-01-01T03:00:00Z"]) == 2  # no reason
    assert labelstudio_main([*args, "--withdraw", "2026-01-01T04:00:00Z", "--reason", "x"]) == 2  # no such mark
    err = capsys.readouterr().err
    assert "no taste mark at 2026-01-01T04:00:00+00:00" in err and "Traceback" not in err
    assert labelstudio_main([*args, "--withdraw", "2026-01-01T03:00:00Z", "--reason", "same people"]) == 0
    assert labelstudio_main(args) == 0
    out = capsys.readouterr().out
    assert "new people  (withdrawn: same people)" in out and "no taste mark in force" in out
    assert TasteMarks(prefs).since() is None


def test_the_rounds_taste_mark_parameter_marks_once(tmp_path):
    from tasks.preferences import mark_taste

    prefs = str(tmp_path / "prefs")
    first = mark_taste.fn(prefs, "new  instructions", T0)
    assert first == {"added": True, "at": T0.isoformat(), "reason": "new instructions"}
    assert mark_taste.fn(prefs, "new instructions", None)["added"] is False  # left in the defaults: not again
    before = datetime.now(timezone.utc)
    later = mark_taste.fn(prefs, "new people", None)  # outside a flow run: the scheduled start is now
    assert later["added"] and parse_time(later["at"]) >= before - timedelta(seconds=1)
    assert TasteMarks(prefs).since() == parse_time(later["at"]) and len(TasteMarks(prefs).marks()) == 2
    with pytest.raises(StoreError, match="in the future"):
        mark_taste.fn(prefs, "soon", datetime.now(timezone.utc) + timedelta(days=1))
