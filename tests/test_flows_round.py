"""Integration: the `online-dpo` flow against a real Prefect API and a real Label Studio, with the bot.

Round 0 bootstraps from a base checkpoint and fills the queue; the bot answers; round 1 fine-tunes the
base and promotes; the bot answers part of the queue; round 2 fine-tunes the model round 1 promoted and
retires the unanswered (pairwise and rating) tasks of the superseded model; a re-run of round 2
changes nothing.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dpo.gold import GoldSet, pair_key
from dpo.human_eval import EvalSet
from dpo.store import PreferenceStore
from dpo.taste import TasteMarks
from driftsketch.config import replace_config
from driftsketch.device import numerics_fingerprint
from driftsketch.registry import Registry
from flows.params import load_round_params

QUEUE = 16
GOLD = 2  # gold.share 0.1 of the 16 pushed pairs: gold pairs take the place of model pairs, and get no rating task
EVAL = 2  # human_eval.share 0.1: the promoted model against the base (none while the base is current); no rating task
# min_pairs 3: round 2 pulls 12 answers; up to 2 gold and 2 evaluation pairs among them leave 8 usable, and the
# exact held-out split (0.4 of the 12 records: 5) leaves at least 3 to train on, whichever tasks the bot answered
DPO = ("[epochs=2,batch_size=8,min_pairs=3,num_t=1,eval_num_t=2,holdout_fraction=0.4,num_threads=1,wandb=false,"
       "amplify.enabled=true,amplify.groups_per_class=1,amplify.group_size=2,amplify.num_steps=2]")


def _params(tmp_path, base: str, title: str, files_root: str, *extra: str):
    return load_round_params(overrides=[
        f"registry_dir={tmp_path}/registry", f"preference_dir={tmp_path}/prefs", f"work_dir={tmp_path}/work",
        f"base.checkpoint={base}", "wandb=false", "dpo.min_new_preferences=8", f"dpo.overrides={DPO}",
        "eval.overrides=[classifier.steps=40,classifier.batch_size=32,reward_classifier.steps=40,"
        "reward_classifier.batch_size=32]", "eval.samples_per_class=4",
        f"generate.queue_target={QUEUE}", f"generate.max_new_pairs={QUEUE}", "generate.num_steps=4",
        "generate.selection=uncertain", "generate.min_labeled_pairs=10", "generate.candidates=2",
        # The gate's decisions are unit-tested (test_registry.py); here every candidate must pass.
        "gate.min_heldout_accuracy=0.0", "gate.max_fd_ratio=1000", "gate.max_recognizability_drop=1.0",
        "gate.max_fd_ratio_to_base=1000", "gate.max_recognizability_drop_from_base=1.0",
        f"labelstudio.overrides=[projects.pairwise_title={title},server.files_root={files_root}]",
        "labelstudio.token_secret_block=ls-token-test",
        "labelstudio.ratings=true", *extra])


def annotator_classifier(params) -> Path:
    """The simulated annotator's own classifier (configs/eval.yaml annotator_classifier: another part of the
    data than the round's gate and reward classifiers), trained once per test."""
    from driftsketch.config import replace_config
    from driftsketch.data import load_dataset
    from driftsketch.evaluation.classifier import train_classifier
    from driftsketch.evaluation.settings import load_eval_config

    path = Path(params.work_dir) / "annotator-classifier.pt"
    if not path.is_file():
        cfg = replace_config(load_eval_config().annotator_classifier, steps=40, batch_size=32)
        train_classifier(load_dataset(params.data), cfg, progress=False).save(path)
    return path


def _bot(server, params, limit=None) -> int:
    from dpo.store import PreferenceStore
    from labeling.bot import load_judge, run_bot
    from labeling.config import load_labelstudio_config
    from labeling.projects import find_project

    ls = server.client()
    clf = annotator_classifier(params)
    pid = find_project(ls, params.labelstudio.overrides[0].split("=", 1)[1])
    out = run_bot(ls, pid, PreferenceStore(params.preference_dir), load_judge("labeling", clf),
                  replace_config(load_labelstudio_config().bot, tie_margin=0.0), limit=limit, progress=False)
    return out["answered"]


@pytest.mark.slow
def test_two_rounds_with_the_bot(prefect_harness, labelstudio, tiny_base_checkpoint, tmp_path, monkeypatch):
    from prefect.blocks.system import Secret

    from flows.online_dpo import online_dpo

    monkeypatch.setenv("LABEL_STUDIO_URL", labelstudio.conn.url)
    Secret(value=labelstudio.conn.api_key).save("ls-token-test", overwrite=True)  # token from a Secret block
    params = _params(tmp_path, tiny_base_checkpoint, "flow-test-pairwise", labelstudio.cfg.files_root)
    reg = Registry(params.registry_dir)

    r0 = online_dpo(params)
    base = reg.current
    assert base.startswith("base-") and r0["decision"]["promoted"] is False and "no training" in r0["decision"]["reason"]
    assert r0["pushed"] == QUEUE and r0["gold_pushed"] == GOLD and r0["pushed_ratings"] == QUEUE - GOLD
    assert r0["eval_pushed"] == 0 and r0["human_eval"]["lines"] == []  # nothing to compare yet
    assert r0["pulled"] == 0 and r0["selection"]["selection"] == "random"  # no human pairs yet
    assert _bot(labelstudio, params) == QUEUE

    r1 = online_dpo(params)
    assert r1["pulled"] == QUEUE and r1["decision"]["promoted"] and r1["parent"] == base
    assert r1["metrics_base"] == r1["metrics_current"] and "(base)" in r1["decision"]["reason"]  # parent is the base
    first = reg.current
    assert first == r1["candidate"] and reg.get(first).parent == base and reg.get(first).round_index == 1
    assert reg.get(first).num_preferences == QUEUE
    assert r1["pushed"] == QUEUE and r1["eval_pushed"] == EVAL  # the queue refilled from the new model
    assert r1["selection"] == {"selection": "uncertain", "human_pairs": r1["selection"]["human_pairs"],
                               "candidates": 2 * (QUEUE - GOLD - EVAL)} and r1["selection"]["human_pairs"] >= 10
    evaluation = EvalSet(params.preference_dir).entries()
    assert len(evaluation) == EVAL and all(e["candidate_model"] == first and e["base_model"] == base
                                           for e in evaluation.values())
    assert r1["retired"] == QUEUE - GOLD  # the base's unanswered rating tasks (the bot answers pairwise only)
    assert {r["annotator"] for r in r1["annotators"]["annotators"]} == {"bot@driftsketch.local"}
    assert r1["annotators"]["annotators"][0]["gold_answers"] == GOLD
    assert "## Annotators" in Path(r1["report"]).read_text()
    assert r1["taste_drift"]["reason"].startswith(f"{r1['usable_pairs']} pairs before the newest 0")  # too few yet
    assert r1["taste_drift"]["line"] in Path(r1["report"]).read_text()
    assert reg.get(first).extra["machine"] == numerics_fingerprint()  # the same seeds give other digits elsewhere
    assert f"fine-tuned from `{base}` on torch {torch.__version__}, " in Path(r1["report"]).read_text()
    reward = json.loads((Path(params.work_dir) / "rounds" / r1["round_id"] / "dpo" / "reward_model.json").read_text())
    reward_clf = Path(reward["classifier"])
    assert reward_clf.parent == Path(params.work_dir) / "classifiers"  # the flow's own reward classifier ...
    assert reward_clf.name.startswith("reward_classifier-")  # ... not the gate's (classifier-*.pt)
    assert sorted(p.name.split("-")[0] for p in reward_clf.parent.glob("*.pt")) == ["classifier", "reward_classifier"]
    assert annotator_classifier(params).parent != reward_clf.parent  # the bot's is none of the round's
    assert _bot(labelstudio, params, limit=12) == 12  # 4 tasks of `first` stay open (no ties: tie_margin 0)

    r2 = online_dpo(params)
    second = reg.current
    assert r2["pulled"] == 12 and r2["decision"]["promoted"], r2["decision"]
    store = PreferenceStore(params.preference_dir)
    trained_in_1 = set(reg.load().rounds[r1["round_id"]].record_ids)
    answered = {pair_key(r.beziers_a, r.beziers_b) for r in store.records() if r.id not in trained_in_1}
    n_gold, n_eval = (len(answered & set(s.entries())) for s in (GoldSet(store), EvalSet(store)))
    assert r2["usable_pairs"] == 12 - n_gold - n_eval  # neither gold nor evaluation answers train
    judged = r2["human_eval"]["models"].get(first, {"answers": 0})
    assert judged["answers"] == n_eval and len(r2["human_eval"]["lines"]) == int(n_eval > 0)
    assert r2["metrics_base"] != r1["metrics_base"]  # the base again, on round 2's own noise
    assert r2["metrics_current"] != r2["metrics_base"]  # round 2's parent is round 1's model, not the base
    judged_in_round_1 = {k: r1["metrics_candidate"][k] for k in r2["metrics_current"]}
    assert r2["metrics_current"] != judged_in_round_1  # round 1's model judged afresh: no winner's curse
    assert reg.get(second).parent == first != second  # round 2 fine-tuned the model round 1 promoted
    assert reg.load().rounds[r2["round_id"]].reference == base  # the shipped dpo.reference: the original base
    assert r2["retired"] == 4 + QUEUE - GOLD - EVAL and r2["pushed"] == QUEUE  # stale tasks of `first` replaced by `second`'s
    assert set(reg.used_record_ids()) == set(reg.load().rounds[r1["round_id"]].record_ids) | set(
        reg.load().rounds[r2["round_id"]].record_ids)
    for key in ("before", "after"):
        assert Path(r2["grids"][key]).is_file()
    assert "gate passed" in Path(r2["report"]).read_text()

    state = reg.load().model_dump()
    marked = replace_config(params, taste_mark={"reason": "new instructions", "at": None})  # the Prefect parameter
    again = online_dpo(marked)  # nothing new: no training, no promotion, no extra tasks
    assert again["pulled"] == 0 and again["pushed"] == 0 and "no training" in again["decision"]["reason"]
    assert reg.load().model_dump() == state
    assert again["taste_mark"]["added"] and TasteMarks(store).since().isoformat() == again["taste_mark"]["at"]
    assert again["human_eval"]["since"] == again["taste_mark"]["at"]  # the round read only answers since
    assert "Taste mark at " in Path(again["report"]).read_text()


@pytest.mark.slow
def test_a_batch_pushed_by_a_killed_round_does_not_leave_the_queue_short(prefect_harness, labelstudio,
                                                                       tiny_base_checkpoint, tmp_path, monkeypatch):
    """A round killed after its push but before it marked the batch pushed: the next round finds that batch
    already in Label Studio and goes on with a new one, so the queue is full again and nothing is pushed
    twice (before, it re-pushed the old batch, 0 new tasks, and the queue stayed short for a round)."""
    from prefect.blocks.system import Secret

    from flows.online_dpo import online_dpo
    from labeling.projects import find_project
    from tasks.generate import PUSHED

    monkeypatch.setenv("LABEL_STUDIO_URL", labelstudio.conn.url)
    Secret(value=labelstudio.conn.api_key).save("ls-token-test", overwrite=True)
    title = "flow-test-resumed-batch"
    params = _params(tmp_path, tiny_base_checkpoint, title, labelstudio.cfg.files_root,
                     "labelstudio.ratings=false", "dpo.min_new_preferences=1000")  # this test never trains
    assert online_dpo(params)["pushed"] == QUEUE
    marks = list(Path(params.work_dir, "batches").glob(f"*/*/{PUSHED}"))
    assert len(marks) == 1
    marks[0].unlink()  # what a SIGKILL between the push and the mark leaves behind
    assert _bot(labelstudio, params, limit=6) == 6
    again = online_dpo(params)
    ls = labelstudio.client()
    keys = [t.data["task_key"] for t in ls.tasks.list(project=find_project(ls, title), fields="task_only")]
    assert again["open_before"] == QUEUE - 6 and again["pushed"] == 6  # the queue is full again
    assert len(keys) == len(set(keys)) == QUEUE + 6  # and no pair went out twice
    marks = sorted(Path(params.work_dir, "batches").glob(f"*/*/{PUSHED}"))
    assert [m.parent.name for m in marks] == ["batch0000", "batch0001"]  # the old batch marked now, then a new one
    done = [json.loads(m.read_text()) for m in marks]
    assert [d["resumed"] for d in done] == [True, False] and sum(d["pushed"] for d in done) == 6
