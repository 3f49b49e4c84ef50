"""The round's annotator pieces without the Prefect engine: assessment, report section, wandb figures,
and choosing the pairs to push (``generate.selection``)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dpo import PreferenceRecord, PreferenceStore
from dpo.gold import GoldSet
from driftsketch.evaluation.classifier import ClassifierConfig, SketchClassifier, SketchCNN
from tasks.generate import select_pairs
from tasks.preferences import assess_annotators, human_pair_count, no_training_reason, select_new_preferences
from tasks.report import annotator_figures, round_markdown

DPO_CONFIG = "configs/dpo.yaml"
CLASSES = ["circle", "square"]


def panel_store(root, n_pairs: int = 12) -> PreferenceStore:
    """Two annotators on every pair; pairs 0-5 gold (real drawing = a); "lefty" always picks left = b."""
    store = PreferenceStore(root)
    rng = np.random.default_rng(0)
    paths = [store.save_sample(f"s{i}", rng.uniform(-0.5, 0.5, (32, 4, 2)).astype(np.float32),
                               rng.standard_normal((32, 8)).astype(np.float32)) for i in range(2 * n_pairs)]
    GoldSet(store).register([{"good": paths[2 * i][0], "bad": paths[2 * i + 1][0], "kind": "noise",
                              "class_name": "circle"} for i in range(6)])
    recs = [PreferenceRecord(comparison_type="pairwise", class_label=i % 2, class_name=CLASSES[i % 2],
                             beziers_a=paths[2 * i][0], beziers_b=paths[2 * i + 1][0], noise_a=paths[2 * i][1],
                             noise_b=paths[2 * i + 1][1], preference=pref, left="b", annotator=who, lead_time=2.0,
                             source={"i": i, "who": who})
            for i in range(n_pairs) for who, pref in (("good@x", "a"), ("lefty@x", "b"))]
    store.append(recs, "s")
    return store


def test_assessment_report_and_figures(tmp_path):
    store = panel_store(tmp_path / "prefs")
    ann = assess_annotators.fn(str(store.root), DPO_CONFIG, ["annotators.min_gold_answers=5"])
    rows = {r["annotator"]: r for r in ann["annotators"]}
    assert rows["lefty@x"]["excluded"] and rows["lefty@x"]["gold_accuracy"] == 0.0
    assert not rows["good@x"]["excluded"] and rows["good@x"]["gold_ci"][1] == pytest.approx(1.0)
    text = round_markdown({"current": "m1", "decision": {"promoted": False, "reason": "no training"},
                           "annotators": ann, "selection": {"selection": "random"}, "gold_pushed": 3})
    assert "## Annotators" in text and "| lefty@x |" in text and "excluded from training: lefty@x" in text
    assert "gold pairs among them: 3" in text
    figs = annotator_figures({"annotators": ann})
    assert figs["annotators/lefty@x/excluded"] == 1.0 and figs["annotators/good@x/gold_accuracy"] == 1.0
    assert figs["annotators/lefty@x/left_rate"] == 1.0 and "annotators/krippendorff_alpha" in figs
    assert annotator_figures({}) == {} and "## Annotators" not in round_markdown({"current": "m1"})
    sel = select_new_preferences.fn(str(store.root), str(tmp_path / "reg"), CLASSES, DPO_CONFIG, [])
    assert sel["usable_pairs"] == 6 and sel["stats"]["gold_answers"] == 12  # lefty excluded, gold not trained


def test_the_round_reports_how_people_judged_the_model_against_the_base(tmp_path):
    from dpo.human_eval import EvalSet
    from dpo.taste import TasteMarks
    from tasks.preferences import human_evaluation

    store = panel_store(tmp_path / "prefs")
    recs = {r.source["i"]: r for r in store.records() if r.annotator == "good@x"}
    EvalSet(store).register([{"candidate": recs[i].beziers_a, "base": recs[i].beziers_b, "candidate_model": "m1",
                              "base_model": "base-0", "class_name": recs[i].class_name} for i in range(6, 12)])
    human = human_evaluation.fn(str(store.root), DPO_CONFIG, ["annotators.min_gold_answers=5"])
    m1 = human["models"]["m1"]  # good@x picked the candidate (a) six times; lefty@x, excluded, never counts
    assert (m1["answers"], m1["wins"], m1["win_rate"], m1["base_model"]) == (6, 6, 1.0, "base-0")
    text = round_markdown({"current": "m1", "decision": {"promoted": False, "reason": "x"}, "human_eval": human})
    assert "against the base from the same noise" in text and "m1 over base-0: 100.0 %" in text
    assert "veto" not in text  # no verdict yet (too few pairs)
    veto = {"models": ["m1"], "pairs": 31, "win_rate": 0.2, "ci95": [0.1, 0.37], "rolled_back_to": "base-0",
            "reason": "annotators' veto: ..."}
    vetoed = round_markdown({"current": "base-0", "decision": {"promoted": False, "reason": "x"}, "human_eval": human,
                             "human_veto": veto})
    assert "**Annotators' veto:**" in vetoed and "went back to `base-0` (rolled back: `m1`)" in vetoed
    kept = round_markdown({"current": "m1", "decision": {"promoted": False, "reason": "x"}, "human_eval": human,
                           "human_veto": {**veto, "rolled_back_to": None, "win_rate": 0.55, "ci95": [0.4, 0.7]}})
    assert "not called (1 newest model(s), 31 pairs, 55.0 %, 95 % interval up to 70.0 %)" in kept
    sel = select_new_preferences.fn(str(store.root), str(tmp_path / "reg"), CLASSES, DPO_CONFIG, [])
    assert sel["usable_pairs"] == 0 and sel["stats"]["evaluation_answers"] == 12  # nothing left to train on
    assert human["recent"] is None  # one model: nothing to pool
    args = (str(store.root), DPO_CONFIG, ["annotators.min_gold_answers=5"])
    assert human_evaluation.fn(*args, base="base-0")["models"] == human["models"]  # the round names its base
    assert human_evaluation.fn(*args, base="m0")["models"] == {}  # pairs against another model (push --against)
    assert human_evaluation.fn(str(tmp_path / "empty"), DPO_CONFIG, []) == {"models": {}, "recent": None, "lines": [],
                                                                            "since": None}
    TasteMarks(store).add("new instructions")  # now: every answer above was given before it
    marked = human_evaluation.fn(*args)
    assert marked["models"] == {} and marked["since"] == TasteMarks(store).since().isoformat()
    text = round_markdown({"current": "m1", "decision": {"promoted": False, "reason": "x"}, "human_eval": marked})
    assert f"answers since the taste mark of {marked['since']}" in text and "- no answers yet" in text


def test_a_round_does_not_start_a_fine_tune_that_min_pairs_would_stop(tmp_path):
    """Enough new pairs for ``min_new_preferences`` but too few left after the held-out split: the round must
    skip training (and go on to refill the queue), not start a fine-tune that stops on ``min_pairs``."""
    from dpo.config import load_dpo_config
    from dpo.trainer import DPOError, build_datasets

    store = panel_store(tmp_path / "prefs")
    over = ["holdout_fraction=0.5", "min_pairs=5"]
    sel = select_new_preferences.fn(str(store.root), str(tmp_path / "reg"), CLASSES, DPO_CONFIG, over)
    cfg = load_dpo_config(DPO_CONFIG, [*over, f"preference_dir={store.root}", "min_pairs=0"])
    train, held = build_datasets(cfg, CLASSES, store.records())  # what the fine-tune would train on
    assert (sel["usable_pairs"], sel["training_pairs"], sel["min_pairs"]) == (6, len(train), 5) and len(train) < 5
    with pytest.raises(DPOError, match="usable training pairs"):
        build_datasets(load_dpo_config(DPO_CONFIG, [*over, f"preference_dir={store.root}"]), CLASSES, store.records())
    assert no_training_reason(sel, 5) == (f"no training: 6 new usable pairs leave {len(train)} after the held-out "
                                          "split < min_pairs 5 (dpo config)")
    assert no_training_reason(sel, 7) == "no training: 6 new usable pairs < min_new_preferences 7"
    enough = select_new_preferences.fn(str(store.root), str(tmp_path / "reg"), CLASSES, DPO_CONFIG,
                                       ["holdout_fraction=0.5", f"min_pairs={len(train)}"])
    assert no_training_reason(enough, 5) is None


def tiny_classifier(path) -> str:
    torch.manual_seed(0)
    cfg = ClassifierConfig(resolution=32, widths=[4, 8])
    SketchClassifier(SketchCNN(len(CLASSES), cfg), cfg, CLASSES).save(path)
    return str(path)


def candidates(path, n: int = 20):
    rng = np.random.default_rng(1)
    z = {"beziers_a": rng.uniform(-0.5, 0.5, (n, 32, 4, 2)).astype(np.float32),
         "beziers_b": rng.uniform(-0.5, 0.5, (n, 32, 4, 2)).astype(np.float32),
         "noise_a": rng.standard_normal((n, 32, 8)).astype(np.float32),
         "noise_b": rng.standard_normal((n, 32, 8)).astype(np.float32),
         "labels": np.arange(n) % 2, "class_names": np.array(CLASSES), "checkpoint": np.array("m1")}
    np.savez(path, **z)
    return z


def test_select_pairs_keeps_uncertain_candidates(tmp_path):
    store = panel_store(tmp_path / "prefs")
    assert human_pair_count.fn(str(store.root), CLASSES, DPO_CONFIG, []) == 6  # lefty excluded, gold not counted
    z = candidates(tmp_path / "cand.npz")
    out, info = select_pairs.fn(str(tmp_path / "cand.npz"), str(tmp_path / "pairs.npz"), 5, str(store.root),
                                tiny_classifier(tmp_path / "clf.pt"), CLASSES, DPO_CONFIG, [], 3)
    got = np.load(out)
    assert len(got["labels"]) == 5 and str(got["checkpoint"]) == "m1"
    rows = [int(np.flatnonzero((z["beziers_a"] == a).all(axis=(1, 2, 3)))[0]) for a in got["beziers_a"]]
    np.testing.assert_array_equal(got["noise_b"], z["noise_b"][rows])  # arrays kept together
    assert info == {"selection": "uncertain", "human_pairs": 6, "candidates": 20}
    assert sorted(np.bincount(got["labels"]).tolist()) == [2, 3]  # class proportions kept
