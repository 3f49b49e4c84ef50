"""Evaluation pairs (the tuned model against the base, judged by people): the registry, the win rate with its
interval, exclusion from training and from careless annotators, and the push that registers them."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dpo import PreferenceStore
from dpo.annotators import collect_answers
from dpo.human_eval import (EvalSet, format_win_rates, human_win_rates, lineage_verdict, mean_interval,
                            recent_win_rate)
from driftsketch.stats import wilson_interval
from tests.test_dpo_annotators import answer, dataset, sketches


@pytest.fixture
def store(tmp_path):
    return PreferenceStore(tmp_path / "prefs")


def _register(store, paths, pairs, candidate_first=True, model="r001-x"):
    """Pair i is (paths[2i], paths[2i+1]); the candidate's sketch is the first unless ``candidate_first`` is False."""
    ev = EvalSet(store)
    entries = [{"candidate": paths[2 * i] if candidate_first else paths[2 * i + 1],
                "base": paths[2 * i + 1] if candidate_first else paths[2 * i],
                "candidate_model": model, "base_model": "base-0", "class_name": "circle"} for i in pairs]
    return ev.register(entries), ev


def test_win_rate_counts_who_picked_the_candidate_on_either_side_and_ties_as_half(store):
    paths = sketches(store, 8)
    assert _register(store, paths, [0, 1])[0] == 2
    _register(store, paths, [2, 3], candidate_first=False)  # here the candidate is stored as sketch b
    store.append([answer(paths, 0, "x", "a"), answer(paths, 1, "x", "a"),  # a = the candidate: 2 wins
                  answer(paths, 2, "x", "a"),  # a = the base: a loss
                  answer(paths, 3, "x", "tie")], "s")
    rates = human_win_rates(collect_answers(store.records()), EvalSet(store).entries())
    r = rates["r001-x"]
    assert (r["wins"], r["losses"], r["ties"], r["pairs"], r["answers"]) == (2, 1, 1, 4, 4)
    assert r["win_rate"] == pytest.approx((1 + 1 + 0 + 0.5) / 4) and r["base_model"] == "base-0"
    assert r["ci95"] == pytest.approx(list(wilson_interval(2.5, 4)))  # one observation per pair
    assert "r001-x over base-0: 62.5 %" in format_win_rates(rates)[0]


def test_a_pair_weighs_once_however_many_people_judged_it(store):
    paths = sketches(store, 4)
    _register(store, paths, [0, 1])
    store.append([answer(paths, 0, who, "a") for who in ("x", "y", "z")] + [answer(paths, 1, "x", "b")], "s")
    r = human_win_rates(collect_answers(store.records()), EvalSet(store).entries())["r001-x"]
    assert r["answers"] == 4 and r["pairs"] == 2 and r["win_rate"] == pytest.approx(0.5)  # not 3 / 4


def test_the_newest_models_pool_their_pairs_and_models_keep_their_order(store):
    paths = sketches(store, 12)
    for i, model in enumerate(["r001-a", "r002-b", "r003-c"]):  # two pairs per model, registered in this order
        _register(store, paths, [2 * i, 2 * i + 1], model=model)
    store.append([answer(paths, i, "x", "a") for i in range(6) if i != 1] + [answer(paths, 1, "x", "b")], "s")
    answers, entries = collect_answers(store.records()), EvalSet(store).entries()
    assert list(human_win_rates(answers, entries)) == ["r001-a", "r002-b", "r003-c"]  # oldest first
    recent = recent_win_rate(answers, entries, models=2)
    assert recent["models"] == ["r002-b", "r003-c"] and recent["pairs"] == 4 and recent["win_rate"] == 1.0
    everything = recent_win_rate(answers, entries, models=5)
    assert everything["pairs"] == 6 and everything["win_rate"] == pytest.approx(5 / 6)
    assert recent_win_rate(answers, entries, models=1) is None and recent_win_rate(answers, entries, models=0) is None
    lines = format_win_rates(human_win_rates(answers, entries), recent)
    assert len(lines) == 4 and lines[-1].startswith("the newest 2 models together over the base: 100.0 %")


def test_excluded_annotators_and_other_pairs_do_not_count(store):
    paths = sketches(store, 6)
    _register(store, paths, [0])
    store.append([answer(paths, 0, "x", "a"), answer(paths, 0, "careless", "b"), answer(paths, 1, "x", "b")], "s")
    rates = human_win_rates(collect_answers(store.records()), EvalSet(store).entries(), excluded={"careless"})
    assert rates["r001-x"]["answers"] == 1 and rates["r001-x"]["win_rate"] == 1.0
    assert rates["r001-x"]["ci95"] == pytest.approx([0.2065, 1.0], abs=1e-4)  # one pair won: far from sure
    assert human_win_rates(collect_answers(store.records()), {}) == {}


def test_evaluation_answers_never_train_and_the_registry_is_append_only(store):
    paths = sketches(store, 12)
    assert _register(store, paths, [0, 1])[0] == 2 and _register(store, paths, [0, 1])[0] == 0  # idempotent
    store.append([answer(paths, i, "x", "a") for i in range(6)], "s")
    ds = dataset(store, weighting="none")
    assert len(ds) == 4 and ds.summary()["evaluation_answers"] == 2
    assert all(paths[0] not in (p.winner.beziers_a, p.loser.beziers_a) for p in ds.pairs)
    with open(EvalSet(store).path, "a") as f:
        f.write('{"candidate": "../../etc/passwd", "base": "x"}\nnot json\n'
                '{"candidate": "beziers/x.npy", "base": "beziers/y.npy"}\n')  # no models: skipped, not a crash
    with pytest.warns(UserWarning, match="malformed evaluation entry"):
        assert len(EvalSet(store).entries()) == 2


def test_the_interval_is_honest_for_split_pairs_and_clean_sweeps():
    split = mean_interval([0.5, 0.5, 0.5, 0.5])  # every pair judged 1:1: the mean is sure, the model is not
    assert split["win_rate"] == 0.5 and split["ci95"][0] < 0.2 and split["ci95"][1] > 0.8
    sweep = mean_interval([1.0, 1.0, 1.0])
    assert sweep["ci95"][1] == pytest.approx(1.0) and 0.4 < sweep["ci95"][0] < 0.5
    assert mean_interval([0.6] * 100)["ci95"][0] > 0.5 > mean_interval([0.6] * 80)["ci95"][0]  # docs/labeling.md


def test_the_veto_pools_the_fewest_newest_models_that_reach_the_pair_count():
    rates = {"r3": {"pairs": 10, "win_rate": 0.2}, "r2": {"pairs": 25, "win_rate": 0.3},
             "r1": {"pairs": 40, "win_rate": 0.9}}
    v = lineage_verdict(rates, ["r3", "r2", "r1"], 30)
    assert v["models"] == ["r3", "r2"] and v["pairs"] == 35  # r1, good, is not in the window
    assert v["win_rate"] == pytest.approx((10 * 0.2 + 25 * 0.3) / 35)
    assert v["ci95"] == pytest.approx(list(wilson_interval(10 * 0.2 + 25 * 0.3, 35))) and v["worse"]
    assert not lineage_verdict(rates, ["r3", "r2", "r1"], 60)["worse"]  # r1 joins the window: 64 %
    assert lineage_verdict(rates, ["r3", "r2"], 36) is None  # too few pairs on the whole line: no verdict
    # a model without answered pairs (just promoted) joins the window and adds nothing
    assert lineage_verdict(rates, ["r4", "r3", "r2"], 30)["models"] == ["r4", "r3", "r2"]
    # 40 % of 35 pairs: worse than 50 % is not shown, so no veto
    assert not lineage_verdict({"r1": {"pairs": 35, "win_rate": 0.4}}, ["r1"], 30)["worse"]


def test_pushed_evaluation_pairs_are_registered_shuffled_in_and_look_like_any_other(store, tmp_path):
    from labeling.push import PairBatch, build_tasks_with_gold

    rng = np.random.default_rng(0)
    x = lambda n: rng.uniform(-0.5, 0.5, (n, 32, 4, 2)).astype(np.float32)  # noqa: E731
    noise = lambda n: rng.standard_normal((n, 32, 8)).astype(np.float32)  # noqa: E731
    batch = PairBatch(x(6), x(6), np.zeros(6, np.int64), ["circle"], noise(6), noise(6))
    shared = noise(3)
    ev = PairBatch(x(3), x(3), np.zeros(3, np.int64), ["circle"], shared, shared)
    kw = dict(checkpoint="r001-x", round_id="round-1", seed=5, progress=False)
    tasks = build_tasks_with_gold(batch, store, tmp_path / "svg", None, evaluation=(ev, "base-0"), **kw)
    assert len(tasks) == 9 and set(tasks[0]) == set(tasks[-1])  # same fields for every task
    entries = EvalSet(store).entries()
    evaluated = [t for t in tasks if (min(t["beziers_a"], t["beziers_b"]), max(t["beziers_a"], t["beziers_b"]))
                 in entries]
    assert len(evaluated) == 3 and all(t["checkpoint"] == "r001-x" for t in evaluated)
    assert {e["base_model"] for e in entries.values()} == {"base-0"}
    again = build_tasks_with_gold(batch, store, tmp_path / "svg", None, evaluation=(ev, "base-0"), **kw)
    assert again == tasks and len(EvalSet(store).entries()) == 3  # a re-run renders and registers the same
    plain = build_tasks_with_gold(batch, store, tmp_path / "svg", None, **kw)
    assert [t for t in tasks if t not in evaluated] == plain  # the generated pairs keep their order and sides


def test_gold_and_evaluation_pairs_leave_room_for_generated_ones():
    from dpo.gold import special_pair_counts

    assert special_pair_counts(16, 0.1, 0.1, evaluate=True) == (2, 2)
    assert special_pair_counts(16, 0.1, 0.1, evaluate=False) == (2, 0)  # the base has nothing to be compared with
    assert special_pair_counts(2, 0.5, 0.5, evaluate=True) == (1, 0)  # at least one generated pair
    assert special_pair_counts(1, 0.5, 0.0, evaluate=True) == (0, 0)


def test_evaluation_pairs_come_from_one_noise_through_both_models(tmp_path):
    from driftsketch.checkpoint import load_model, save_checkpoint
    from driftsketch.sampling import generate_beziers
    from tasks.generate import generate_eval_pairs
    from tests.test_dpo_loss import tiny_model

    names = ["a", "b", "c"]
    save_checkpoint(tmp_path / "cand.pt", tiny_model(1), names)
    save_checkpoint(tmp_path / "base.pt", tiny_model(2), names)
    kw = dict(batch_key="batch0000", seed=0, num_steps=2, cfg_scale=1.0, solver="euler")
    path = generate_eval_pairs.fn(str(tmp_path / "cand.pt"), "r001-x", str(tmp_path / "base.pt"), "base-0", 5,
                                  str(tmp_path / "eval.npz"), **kw)
    z = np.load(path)
    assert z["beziers_a"].shape == (5, 32, 4, 2) and str(z["base"]) == "base-0" and str(z["checkpoint"]) == "r001-x"
    assert sorted(np.bincount(z["labels"], minlength=3).tolist()) == [1, 2, 2]  # classes cycled
    np.testing.assert_array_equal(z["noise_a"], z["noise_b"])
    again, _ = generate_beziers(load_model(tmp_path / "base.pt"), z["labels"].tolist(), 5, num_steps=2,
                                cfg_scale=1.0, solver="euler", noise=z["noise_b"])
    np.testing.assert_array_equal(again, z["beziers_b"])  # b is the base's drawing of that very noise
    assert not np.array_equal(z["beziers_a"], z["beziers_b"])
    assert generate_eval_pairs.fn(str(tmp_path / "cand.pt"), "r001-x", str(tmp_path / "base.pt"), "base-0", 0,
                                  str(tmp_path / "none.npz"), **kw) is None


@pytest.mark.parametrize("key", ["human_eval.share", "gold.share"])
def test_a_share_that_would_take_every_pushed_pair_is_refused_when_the_config_loads(key):
    from driftsketch.errors import DriftSketchError
    from labeling.config import load_labelstudio_config

    assert load_labelstudio_config(overrides=[f"{key}=0.5"]).human_eval.share in (0.1, 0.5)
    with pytest.raises(DriftSketchError, match=f"{key}: Input should be less than 1"):
        load_labelstudio_config(overrides=[f"{key}=1"])


def _two_models(tmp_path, names=("a", "b", "c")):
    from driftsketch.checkpoint import save_checkpoint
    from tests.test_dpo_loss import tiny_model

    save_checkpoint(tmp_path / "cand.pt", tiny_model(1), list(names))
    save_checkpoint(tmp_path / "base.pt", tiny_model(2), list(names))
    return str(tmp_path / "cand.pt"), str(tmp_path / "base.pt")


def test_a_push_against_itself_or_without_pairs_is_refused_before_it_connects(tmp_path, capsys, monkeypatch):
    from labeling.cli import main

    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")  # nothing listens: must not get that far
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "t")
    cand, base = _two_models(tmp_path)
    assert main(["push", "--model", cand, "--ratings", "3", "--against", base]) == 2
    assert "--against compares pairs of sketches: give --pairs too" in capsys.readouterr().err
    assert main(["push", "--model", cand, "--pairs", "3", "--against", cand]) == 2
    assert "that is the pushed model itself" in capsys.readouterr().err
    from driftsketch.checkpoint import save_checkpoint
    from tests.test_dpo_loss import tiny_model

    save_checkpoint(tmp_path / "other.pt", tiny_model(3), ["a", "b", "x"])
    assert main(["push", "--model", cand, "--pairs", "3", "--against", str(tmp_path / "other.pt")]) == 2
    err = capsys.readouterr().err
    assert "it draws ['a', 'b', 'x'], the pushed model ['a', 'b', 'c']" in err and "Traceback" not in err
    assert not (tmp_path / "prefs").exists()


@pytest.mark.slow
def test_a_push_by_hand_against_a_base_is_judged_like_the_rounds_pairs(labelstudio, tmp_path, capsys, monkeypatch):
    """``push --against``: evaluation pairs of the model against that checkpoint, registered once even when the
    push runs twice, answered and pulled like any task, and reported by ``annotators``."""
    from labeling.cli import main
    from tests.test_labeling_server import _choose

    monkeypatch.setenv("LABEL_STUDIO_URL", labelstudio.conn.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", labelstudio.conn.api_key)
    cand, base = _two_models(tmp_path)
    prefs = tmp_path / "prefs"
    sets = [f"push.store_root={prefs}", f"pull.store_root={prefs}", f"pull.cursor_path={tmp_path / 'cursor.json'}",
            "projects.pairwise_title=against pairwise", "projects.rating_title=against rating", "gold.share=0",
            "human_eval.share=0.25", "push.image_mode=data_uri", f"push.svg_dir={tmp_path / 'svg'}"]
    args = [x for s in sets for x in ("--set", s)]
    push = ["push", "--model", cand, "--pairs", "12", "--against", base, "--round-id", "by-hand", *args]
    assert main(push) == 0
    assert "pushed 12 pairwise tasks (0 gold pairs, 3 evaluation pairs against" in capsys.readouterr().out
    assert main(push) == 0  # a re-run (e.g. after a crash) pushes and registers nothing twice
    assert "pushed 0 pairwise tasks" in capsys.readouterr().out
    entries = EvalSet(PreferenceStore(prefs)).entries()
    assert len(entries) == 3 and len({e["base_model"] for e in entries.values()}) == 1
    ls = labelstudio.client()
    project = next(p.id for p in ls.projects.list() if p.title == "against pairwise")
    tasks = list(ls.tasks.list(project=project, fields="all"))
    assert len(tasks) == 12
    for t in tasks:  # every annotator answer picks the sketch shown as A (the left one)
        _choose(ls, t.id, "A")
    assert main(["pull", *args]) == 0
    capsys.readouterr()
    assert main(["annotators", "--json", *args]) == 0
    human = json.loads(capsys.readouterr().out)["human_eval"]
    (base_id, rates), = human.items()
    (model_id, r), = rates.items()
    on_left = sum(t.data["left"] == ("a" if t.data["beziers_a"] in {e["candidate"] for e in entries.values()} else "b")
                  for t in tasks if (t.data["beziers_a"], t.data["beziers_b"]) in entries
                  or (t.data["beziers_b"], t.data["beziers_a"]) in entries)
    assert base_id == entries[next(iter(entries))]["base_model"] and r["pairs"] == 3 and r["answers"] == 3
    assert r["wins"] == on_left  # the candidate won exactly where it was shown on the left
