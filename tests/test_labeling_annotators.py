"""The simulated annotator's misbehaviours, gold tasks that look like any other, the annotators table."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dpo import PreferenceRecord, PreferenceStore
from dpo.gold import GoldBatch, GoldSet, pair_key
from labeling.bot import bot_emails, misbehave
from labeling.cli import main
from labeling.push import PairBatch, build_tasks, gold_tasks, mix_in


def test_misbehave_shares():
    rng = np.random.default_rng(0)
    n = 20000
    judge = ["a"] * n
    left = list(rng.choice(["a", "b"], size=n))
    careless = np.array(misbehave(judge, left, rng, careless_share=1.0))
    assert abs((careless == "a").mean() - 0.5) < 0.02
    lefty = misbehave(judge, left, rng, always_left_share=1.0)
    assert lefty == left
    mixed = np.array(misbehave(judge, left, rng, careless_share=0.2, always_left_share=0.3))
    # a (judge) unless careless or left-biased toward b: P(b) = 0.2 * 0.5 + 0.3 * P(left = b)
    assert abs((mixed == "b").mean() - (0.1 + 0.3 * np.mean(np.array(left) == "b"))) < 0.015
    assert misbehave(["tie", "a"], ["a", "b"], rng) == ["tie", "a"]
    with pytest.raises(ValueError, match="careless_share"):
        misbehave(judge, left, rng, careless_share=0.7, always_left_share=0.5)


def test_misbehave_reversed_taste_swaps_a_and_b_and_keeps_ties():
    rng = np.random.default_rng(1)
    judge = ["a", "b", "tie"] * 2000
    left = ["a"] * len(judge)
    assert misbehave(judge, left, rng, reversed_share=1.0) == ["b", "a", "tie"] * 2000
    some = np.array(misbehave(judge, left, rng, reversed_share=0.25))
    swapped = (some != np.array(judge)).mean()
    assert abs(swapped - 0.25 * 2 / 3) < 0.02  # ties never change
    with pytest.raises(ValueError, match="reversed_share"):
        misbehave(judge, left, rng, careless_share=0.5, reversed_share=0.6)


def test_bot_shares_over_one_are_refused_before_the_bot_connects(capsys, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")  # nothing listens: must not get that far
    assert main(["bot", "--careless-share", "0.6", "--reversed-share", "0.6"]) == 2
    err = capsys.readouterr().err
    assert "careless_share + always_left_share + reversed_share must be <= 1" in err and "Traceback" not in err


def test_bot_emails():
    assert bot_emails("bot@x.local", 1) == ["bot@x.local"]
    assert bot_emails("bot@x.local", 3) == ["bot-1@x.local", "bot-2@x.local", "bot-3@x.local"]


def test_gold_tasks_look_like_the_others(tmp_path):
    store = PreferenceStore(tmp_path / "prefs")
    rng = np.random.default_rng(0)
    x = lambda n: rng.uniform(-0.5, 0.5, (n, 32, 4, 2)).astype(np.float32)  # noqa: E731
    names = ["circle", "square"]
    normal = build_tasks(PairBatch(x(6), x(6), np.array([0, 1] * 3), names, rng.standard_normal((6, 32, 8)),
                                   rng.standard_normal((6, 32, 8))), store, tmp_path / "svg", checkpoint="ck",
                         image_size=32, progress=False)
    gold = GoldBatch(x(4), x(4), np.array([0, 1, 0, 1]), ["noise", "scrambled", "noise", "wrong_class"])
    golden = gold_tasks(gold, names, store, tmp_path / "svg", checkpoint="ck", image_size=32, progress=False)
    nones = lambda t: {k for k, v in t.items() if v is None}  # noqa: E731
    assert all(set(t) == set(normal[0]) and nones(t) == nones(normal[0]) == {"round_id"} for t in golden)
    entries = GoldSet(store).entries()
    assert len(entries) == 4
    for t, good in zip(golden, gold.good):
        e = entries[pair_key(t["beziers_a"], t["beziers_b"])]
        np.testing.assert_array_equal(np.load(store.root / e["good"]), good)  # registered the right side
    assert {e["good"] == t["beziers_a"] for t in golden for e in [entries[pair_key(t["beziers_a"], t["beziers_b"])]]} \
        == {True, False}  # the real drawing is not always "a"
    mixed = mix_in(normal, golden, np.random.default_rng(1))
    assert len(mixed) == 10 and [t for t in mixed if t in normal] == normal


def test_annotators_command_prints_the_table(tmp_path, capsys):
    store = PreferenceStore(tmp_path / "prefs")
    rng = np.random.default_rng(0)
    paths = [store.save_sample(f"s{i}", rng.uniform(-0.5, 0.5, (32, 4, 2)).astype(np.float32))[0] for i in range(8)]
    recs = [PreferenceRecord(comparison_type="pairwise", class_label=0, class_name="circle",
                             beziers_a=paths[2 * i], beziers_b=paths[2 * i + 1], preference=p, left="a",
                             annotator=who, lead_time=1.5, source={"i": i, "who": who})
            for i in range(4) for who, p in (("ann@x", "a"), ("bob@x", "b"))]
    store.append(recs, "s")
    assert main(["annotators", "--set", f"pull.store_root={store.root}"]) == 0
    out = capsys.readouterr().out
    assert "ann@x" in out and "bob@x" in out and "Cohen's kappa ann@x / bob@x" in out
    assert main(["annotators", "--set", f"pull.store_root={store.root}", "--json",
                 "--annotators-set", "weighting=none"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert [r["answers"] for r in table["annotators"]] == [4, 4] and table["weighting"] == "none"
    assert table["kappa"][0]["shared"] == 4 and table["annotators"][0]["left_rate"] == 1.0
    assert table["human_eval"] == {} and "human evaluation" not in out  # no evaluation pairs yet
    from dpo.human_eval import EvalSet

    EvalSet(store).register([{"candidate": paths[2 * i + 1], "base": paths[2 * i], "candidate_model": "m1",
                              "base_model": "base-0", "class_name": "circle"} for i in range(3)])
    assert main(["annotators", "--set", f"pull.store_root={store.root}"]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("human evaluation: ")]
    assert lines == ["human evaluation: m1 over base-0: 50.0 % (95 % interval 12.5-87.5; 3 pairs, "
                     "6 answers: 3 for it, 3 for the base, 0 ties)"]  # bob picked the candidate (b), ann the base
    # a push by hand against another model (push --against m0): its own comparison, never pooled with the base's
    EvalSet(store).register([{"candidate": paths[6], "base": paths[7], "candidate_model": "m1", "base_model": "m0",
                              "class_name": "circle"}])
    assert main(["annotators", "--set", f"pull.store_root={store.root}", "--json"]) == 0
    human = json.loads(capsys.readouterr().out)["human_eval"]
    assert list(human) == ["base-0", "m0"] and human["base-0"]["m1"]["pairs"] == 3
    assert human["m0"]["m1"]["pairs"] == 1 and human["m0"]["m1"]["wins"] == 1  # ann picked a: paths[6], m1's


def test_a_deleted_account_keeps_its_stored_name_or_gets_one_of_its_own():
    """Label Studio nulls ``completed_by`` when an account is deleted: its answers keep the e-mail of their
    stored earlier version, else each gets a name of its own (two vanished people are never one)."""
    from labeling.pull import annotator_name

    users = {4: "ann@x.test"}
    earlier = PreferenceRecord(comparison_type="pairwise", class_label=0, class_name="circle", beziers_a="a.npy",
                               beziers_b="b.npy", preference="a", left="a", annotator="gone@x.test",
                               source={"system": "label-studio"})
    assert annotator_name({"id": 17, "completed_by": 4}, 3, users, None) == "ann@x.test"
    assert annotator_name({"id": 17, "completed_by": 9}, 3, users, None) == "user-9"  # not in the user list
    assert annotator_name({"id": 17, "completed_by": None}, 3, users, earlier) == "gone@x.test"
    names = {annotator_name({"id": i, "completed_by": None}, 3, users, None) for i in (17, 18)}
    assert names == {"deleted-user:p3-a17", "deleted-user:p3-a18"}
