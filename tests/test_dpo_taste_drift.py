"""The taste-drift check (dpo/taste_drift.py): a reward fitted on the older answers predicts the newest ones; fewer
than half agreeing, beyond chance, is flagged as a likely change of taste."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from dpo import PreferenceStore
from dpo.config import RewardConfig, TasteDriftConfig
from dpo.dataset import PreferenceDataset
from dpo.records import PreferenceRecord
from dpo.taste import TasteMarks
from dpo.taste_drift import agreement_p_value, drift_line, taste_drift
from tasks.preferences import taste_drift_check
from tasks.report import round_markdown
from tests.test_dpo_reward import CLASSES, sketches, tiny_model, wiggled  # noqa: F401 (fixture)

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
REWARD = RewardConfig(hand_features=False, embedding_t=[], local_features=128, ensemble=2)
CHECK = TasteDriftConfig(enabled=True, newest_pairs=60, min_older_pairs=100, alpha=0.01, splits=1, max_older_pairs=2000)


def steadiness_store(root, older: int, newest: int, newest_prefers: str, seed: int = 0,
                     newest_wiggle: tuple[float, float] = (0.01, 0.06)) -> PreferenceStore:
    """``older`` pairs answered first, preferring the steadier of two wiggly copies of a sketch (handle noise 0.01 vs
    0.06); then ``newest`` pairs (handle noise ``newest_wiggle``) preferring the ``newest_prefers`` one ("steady" or
    "wiggly"). Sides alternate; one answer a minute."""
    store, recs = PreferenceStore(root), []
    x, y = sketches(older + newest, seed)
    steady, wiggly = wiggled(x, 0.01, seed + 1), wiggled(x, 0.06, seed + 2)
    steady[older:] = wiggled(x[older:], newest_wiggle[0], seed + 3)
    wiggly[older:] = wiggled(x[older:], newest_wiggle[1], seed + 4)
    for i in range(older + newest):
        ra, _ = store.save_sample(f"p{i}a", steady[i] if i % 2 == 0 else wiggly[i])
        rb, _ = store.save_sample(f"p{i}b", wiggly[i] if i % 2 == 0 else steady[i])
        wants_steady = i < older or newest_prefers == "steady"
        pref = "a" if (i % 2 == 0) == wants_steady else "b"
        recs.append(PreferenceRecord(id=f"p{i}", timestamp=T0 + timedelta(minutes=i), comparison_type="pairwise",
                                     class_label=int(y[i]), class_name=CLASSES[y[i]], beziers_a=ra, beziers_b=rb,
                                     preference=pref, annotator="ann", source={"i": i}))
    store.append(recs, session="answers")
    return store


def check(store: PreferenceStore) -> dict:
    return taste_drift(PreferenceDataset(store, CLASSES, use_noise=False), REWARD, CHECK, None)


def test_an_unchanged_taste_is_not_flagged(tmp_path):
    got = check(steadiness_store(tmp_path / "s", 120, 60, "steady"))
    assert got["checked"] and not got["flagged"]
    assert got["older_pairs"] == 120 and got["newest_pairs"] == 60 and got["agreement"] > 0.9
    assert got["older_loo_accuracy"] > 0.9 and got["splits"] == [{k: got[k] for k in got["splits"][0]}]
    assert "no sign of a change" in drift_line(got)


def test_a_model_that_got_worse_under_an_unchanged_taste_is_not_flagged(tmp_path):
    """The newest pairs are both wigglier than any before (a harmful step of the model): the veto would call the
    model worse, but the annotators still prefer the steadier sketch, and the check sees no change of taste."""
    got = check(steadiness_store(tmp_path / "s", 120, 60, "steady", newest_wiggle=(0.06, 0.12)))
    assert got["checked"] and not got["flagged"] and got["agreement"] > 0.8


def test_a_reversed_taste_is_flagged_with_the_time_a_mark_would_go(tmp_path):
    got = check(steadiness_store(tmp_path / "s", 120, 60, "wiggly"))
    assert got["checked"] and got["flagged"] and got["agree"] < 6 and got["p_value"] < 1e-10
    assert got["newest_since"] == (T0 + timedelta(minutes=120)).isoformat()
    assert f"taste-mark --reason \"...\" --at {got['newest_since']}" in drift_line(got)


def test_a_change_some_rounds_back_is_found_at_the_split_nearest_it(tmp_path):
    """100 steady answers, then 200 wiggly ones: a reward fitted before the newest 50 has seen more of the new taste
    than the old and agrees with the newest, so one split goes quiet; the split before the newest 200 is fitted on
    the old taste alone and flags the change, at its time."""
    data = PreferenceDataset(steadiness_store(tmp_path / "s", 100, 200, "wiggly"), CLASSES, use_noise=False)
    scan = CHECK.model_copy(update={"newest_pairs": 50, "min_older_pairs": 50})
    newest_only = taste_drift(data, REWARD, scan, None)
    assert newest_only["checked"] and not newest_only["flagged"] and newest_only["agreement"] > 0.5
    got = taste_drift(data, REWARD, scan.model_copy(update={"splits": 3}), None)
    assert [s["newest_pairs"] for s in got["splits"]] == [50, 100, 200] and got["alpha_each"] == pytest.approx(0.01 / 3)
    assert got["flagged"] and got["newest_pairs"] == 200 and got["older_pairs"] == 100 and got["agreement"] < 0.2
    assert got["newest_since"] == (T0 + timedelta(minutes=100)).isoformat()
    assert "the most contradicted of 3 splits, each tested at 0.0033" in drift_line(got)


def test_more_splits_on_an_unchanged_taste_flag_nothing_and_each_fit_is_capped(tmp_path):
    data = PreferenceDataset(steadiness_store(tmp_path / "s", 240, 60, "steady"), CLASSES, use_noise=False)
    got = taste_drift(data, REWARD, CHECK.model_copy(update={"splits": 4, "max_older_pairs": 90}), None)
    # 60, 120 and 240 newest leave 240, 180 and 60 older pairs: the third has too few (100); each fit takes 90
    assert got["checked"] and not got["flagged"] and len(got["splits"]) == 2
    assert [s["older_pairs"] for s in got["splits"]] == [90, 90] and min(s["agreement"] for s in got["splits"]) > 0.9


def test_after_the_mark_the_check_waits_for_enough_answers_of_the_new_taste(tmp_path):
    store = steadiness_store(tmp_path / "s", 120, 60, "wiggly")
    TasteMarks(store).add("reversed", T0 + timedelta(minutes=120))
    got = check(store)
    assert not got["checked"] and got["reason"].startswith("60 pairs before the newest 0; the check needs 100 before the newest 60")
    assert "not checked" in drift_line(got)
    assert taste_drift(PreferenceDataset(store, CLASSES), REWARD, CHECK.model_copy(update={"enabled": False}),
                       None) == {"checked": False, "reason": "taste_drift.enabled is false"}


def test_too_few_older_answers_are_not_checked(tmp_path):
    got = check(steadiness_store(tmp_path / "s", 30, 60, "wiggly"))
    assert not got["checked"] and got["reason"].startswith("30 pairs before the newest 60")
    assert check(steadiness_store(tmp_path / "t", 0, 50, "wiggly"))["reason"].startswith("50 pairs before the newest 0")


def test_split_newest_keeps_a_pairs_answers_together_and_takes_ratings_since_the_cut(tmp_path):
    store = steadiness_store(tmp_path / "s", 4, 2, "steady")
    first = store.records()[0]
    second_answer = first.model_copy(update={"id": "p0-again", "annotator": "late", "timestamp": T0 + timedelta(hours=1),
                                                "source": {"i": 0, "who": "late"}})
    rating = PreferenceRecord(id="r1", timestamp=T0 + timedelta(minutes=5), comparison_type="absolute",
                              class_label=0, class_name=CLASSES[0], beziers_a=first.beziers_a, rating=4,
                              annotator="ann", source={"r": 1})
    store.append([second_answer, rating], session="late")
    older, newest = PreferenceDataset(store, CLASSES, use_noise=False).split_newest(2)
    # pair 0 was answered again last: it is among the newest two with pair 5; the rating came after the cut (p4)
    assert sorted(r.id for r in newest.records) == ["p0", "p0-again", "p5", "r1"]
    assert sorted(r.id for r in older.records) == ["p1", "p2", "p3", "p4"]
    every, none = PreferenceDataset(store, CLASSES, use_noise=False).split_newest(6)
    assert len(every.records) == 8 and none.records == []


def test_agreement_p_value_is_the_binomial_tail():
    assert agreement_p_value(0, 10) == pytest.approx(1 / 1024)
    assert agreement_p_value(5, 10) == pytest.approx(638 / 1024)
    assert agreement_p_value(0, 0) == 1.0
    assert np.isclose(agreement_p_value(20, 90), 6.0e-8, rtol=0.2)


LOCAL = ["amplify.reward.hand_features=false", "amplify.reward.embedding_t=[]", "amplify.reward.local_features=128",
         "amplify.reward.ensemble=2", "taste_drift.newest_pairs=60"]


def test_the_rounds_task_checks_the_store_and_never_stops_the_round(tmp_path, tiny_model):  # noqa: F811
    store = steadiness_store(tmp_path / "s", 120, 60, "steady")
    got = taste_drift_check.fn(str(store.root), "configs/dpo.yaml", LOCAL, "unused.pt", str(tiny_model.checkpoint_path))
    assert got["checked"] and not got["flagged"] and got["older_pairs"] == 120 and "no sign" in got["line"]
    missing = taste_drift_check.fn(str(store.root), "configs/dpo.yaml", [], str(tmp_path / "no-classifier.pt"),
                                   str(tiny_model.checkpoint_path))  # hand-made features need a classifier
    assert not missing["checked"] and missing["reason"].startswith("failed: amplify.reward.classifier: no classifier")
    assert round_markdown({"current": "m", "taste_drift": got}).count(got["line"]) == 1


@pytest.mark.slow
def test_a_flagged_check_emits_one_prefect_event_a_lab_can_be_notified_by(tmp_path, tiny_model,  # noqa: F811
                                                                        prefect_harness):
    import httpx
    from prefect.settings import PREFECT_API_URL

    from tasks.events import DRIFT_EVENT, flush_events, taste_drift_event

    store = steadiness_store(tmp_path / "s", 120, 60, "wiggly")
    for _ in range(2):  # a retried round emits the same event
        got = taste_drift_check.fn(str(store.root), "configs/dpo.yaml", LOCAL, "unused.pt",
                                   str(tiny_model.checkpoint_path))
    flush_events()
    assert got["flagged"] and "taste-mark" in got["line"]
    assert round_markdown({"current": "m", "taste_drift": got}).count(f"**{got['line']}**") == 1
    want = taste_drift_event(str(store.root), got)
    body = {"filter": {"event": {"name": [DRIFT_EVENT]}, "resource": {"id": [want["resource"]["prefect.resource.id"]]}},
            "limit": 10}
    for _ in range(60):  # the server stores events in batches, a few seconds after they arrive
        events = httpx.post(f"{PREFECT_API_URL.value()}/events/filter", json=body, timeout=30).raise_for_status()
        if events.json()["events"]:
            break
        time.sleep(1)
    found = events.json()["events"]
    assert {e["id"] for e in found} == {str(want["id"])} and len(found) == 1
    assert found[0]["payload"]["agree"] == got["agree"] < 10
