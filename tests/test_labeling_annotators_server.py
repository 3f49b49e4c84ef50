"""Several annotators on a real Label Studio: three people answer the same pairs, one account is deleted,
one answer is edited later, a gold pair is answered "tie". Each is handled; nothing stored changes."""
from __future__ import annotations

import numpy as np
import pytest

from dpo.annotators import assess_annotators, collect_answers
from dpo.config import AnnotatorsConfig
from dpo.dataset import PreferenceDataset
from dpo.gold import GoldBatch, GoldSet, pair_key
from dpo.store import PreferenceStore
from driftsketch.config import replace_config
from driftsketch.data import load_dataset
from labeling.bot import ensure_bot_user
from labeling.config import ProjectsConfig
from labeling.projects import set_overlap, setup_projects
from labeling.pull import pull_annotations
from labeling.push import PairBatch, push_tasks

pytestmark = pytest.mark.slow


def _answer(ls, task_id: int, screen: str, user: int):
    return ls.annotations.create(id=task_id, completed_by=user, lead_time=2.0, result=[
        {"from_name": "preference", "to_name": "image_left", "type": "choices", "value": {"choices": [screen]}}])


def _screen(task, side: str) -> str:
    """The on-screen choice ("A" = left) that picks stored sample ``side``."""
    return "A" if task.data["left"] == side else "B"


def test_three_annotators_a_deleted_account_an_edit_and_a_gold_tie(labelstudio, tmp_path):
    ls, store, cursor = labelstudio.client(), PreferenceStore(tmp_path / "prefs"), tmp_path / "cursor.json"
    pid = setup_projects(ls, ProjectsConfig(pairwise_title="three annotators pairwise",
                                            rating_title="three annotators rating"), ("pairwise",))["pairwise"]
    set_overlap(ls, pid, 3)
    data = load_dataset("builtin")
    idx = np.array([0, 400, 800])  # three classes
    gold = GoldBatch(data.beziers[[1200]], data.beziers[[5]], data.labels[[1200]], ["wrong_class"])
    push_tasks(ls, pid, PairBatch(data.beziers[idx], data.beziers[idx + 1], data.labels[idx], data.class_names),
               store=store, checkpoint="ck-3", svg_dir=tmp_path / "svg", image_size=64, progress=False, gold=gold)
    tasks = list(ls.tasks.list(project=pid))
    entries = GoldSet(store).entries()
    is_gold = lambda t: pair_key(t.data["beziers_a"], t.data["beziers_b"]) in entries  # noqa: E731
    (gold_task,) = [t for t in tasks if is_gold(t)]
    pairs = [t for t in tasks if not is_gold(t)]
    users = {name: ensure_bot_user(ls, f"{name}@driftsketch.test") for name in ("ann", "bea", "gone")}
    for t in pairs:  # everyone prefers sample a
        for name in users:
            _answer(ls, t.id, _screen(t, "a"), users[name])
    for name in ("ann", "bea"):
        _answer(ls, gold_task.id, "tie", users[name])  # a gold pair answered "tie"
    edited = _answer(ls, pairs[0].id, _screen(pairs[0], "a"), users["bea"])  # bea answers pair 0 twice
    assert pull_annotations(ls, [pid], store, cursor_path=cursor).new_records == 3 * 3 + 2 + 1
    before = {p: p.read_bytes() for p in (store.root / "sessions").glob("*.jsonl")}

    ls.users.delete(users["gone"])  # the account disappears; Label Studio keeps its answers, author null
    ls.annotations.update(id=edited.id, result=[{"from_name": "preference", "to_name": "image_left",
                                                 "type": "choices", "value": {"choices": [_screen(pairs[0], "b")]}}])
    report = pull_annotations(ls, [pid], store, cursor_path=cursor)
    assert report.new_records == 1 and report.superseding == 1  # only the edit is new
    for path, content in before.items():
        assert path.read_bytes().startswith(content)  # append-only: nothing stored changed
    later = [t for t in ls.tasks.list(project=pid, fields="all") if t.id == pairs[1].id][0]
    assert any(a["completed_by"] is None for a in later.annotations)  # the deleted account's answers

    recs = store.records()
    assert {r.annotator for r in recs} == {"ann@driftsketch.test", "bea@driftsketch.test", "gone@driftsketch.test"}
    answers = collect_answers(recs)
    assert len(answers) == 3 * 3 + 2  # bea's two answers to pair 0: the newest (edited) one counts
    quality = {r.annotator: r for r in assess_annotators(answers, entries, AnnotatorsConfig()).rows}
    assert quality["ann@driftsketch.test"].gold_answers == 1 and quality["ann@driftsketch.test"].gold_correct == 0
    ds = PreferenceDataset(store, data.class_names, annotators=AnnotatorsConfig(weighting="none"))
    s = ds.summary()
    assert s["gold_answers"] == 2 and len(ds) == 3 and s["multi_answer_pairs"] == 3
    p0 = next(p for p in ds.pairs if p.winner.source["task"] == pairs[0].id)
    assert p0.target == pytest.approx(2 / 3) and p0.winner_side == "a"  # ann + gone say a, bea (edited) says b

    # a deleted account whose answer was never pulled: kept, under a name of its own
    newcomer = ensure_bot_user(ls, "late@driftsketch.test")
    _answer(ls, pairs[2].id, _screen(pairs[2], "b"), newcomer)
    ls.users.delete(newcomer)
    assert pull_annotations(ls, [pid], store, cursor_path=cursor).new_records == 1
    rec = store.records()[-1]
    assert rec.annotator.startswith(f"deleted-user:p{pid}-a") and rec.preference == "b"


def test_annotators_per_pair_keeps_a_pair_open_until_n_people_answered(labelstudio, tmp_path):
    from labeling.queue import open_task_count, retire_tasks

    ls, store = labelstudio.client(), PreferenceStore(tmp_path / "prefs")
    cfg = ProjectsConfig(pairwise_title="two per pair pairwise", rating_title="two per pair rating",
                         annotators_per_pair=2)
    pid = setup_projects(ls, cfg, ("pairwise",))["pairwise"]
    assert ls.projects.get(pid).maximum_annotations == 2  # set at creation from the config
    data = load_dataset("builtin")
    idx = np.array([0, 400])
    push_tasks(ls, pid, PairBatch(data.beziers[idx], data.beziers[idx + 1], data.labels[idx], data.class_names),
               store=store, checkpoint="ck-2", svg_dir=tmp_path / "svg", image_size=64, progress=False)
    first, second = sorted(ls.tasks.list(project=pid), key=lambda t: t.id)
    users = [ensure_bot_user(ls, f"{n}@two.test") for n in ("one", "two")]
    _answer(ls, first.id, "A", users[0])
    assert open_task_count(ls, pid) == 2  # one of two answers: still open
    assert retire_tasks(ls, pid, keep_checkpoint="other") == [second.id]  # never a task someone answered
    _answer(ls, first.id, "B", users[1])
    assert open_task_count(ls, pid) == 0  # the other task was retired, this one has its two answers
    assert pull_annotations(ls, [pid], store, cursor_path=tmp_path / "cursor.json").new_records == 2

    setup_projects(ls, replace_config(cfg, annotators_per_pair=3), ("pairwise",))  # a bot or pull: unchanged
    assert ls.projects.get(pid).maximum_annotations == 2
    setup_projects(ls, replace_config(cfg, annotators_per_pair=3), ("pairwise",), enforce_overlap=True)  # setup
    assert ls.projects.get(pid).maximum_annotations == 3
