"""Select the preferences a round trains on, and assess the annotators who gave them."""
from __future__ import annotations

from datetime import datetime

from prefect import task

from driftsketch.registry import Registry


def annotators_config(dpo_config: str, overrides: list[str]):
    """The ``annotators`` section of the round's DPO config (with its overrides): the rules training uses."""
    from dpo.config import load_dpo_config

    return load_dpo_config(dpo_config, [o for o in overrides if o.startswith("annotators.")]).annotators


@task
def select_new_preferences(preference_dir: str, registry_dir: str, class_names: list[str], dpo_config: str,
                           overrides: list[str]) -> dict:
    """Records no decided round has trained on, how many usable pairs they make (with the DPO config's
    aggregation, gold and exclusion rules), and how many of those the fine-tune would train on after its
    held-out split, against the config's ``min_pairs``.

    Returns ``{"record_ids": [...], "usable_pairs": int, "training_pairs": int, "min_pairs": int, "stats": {...}}``.
    """
    from dpo.config import load_dpo_config
    from dpo.store import PreferenceStore
    from dpo.trainer import preference_dataset

    cfg = load_dpo_config(dpo_config, [*overrides, f"preference_dir={preference_dir}"])
    store = PreferenceStore(preference_dir)
    used = Registry(registry_dir).used_record_ids()
    new = [r for r in store.records() if r.id not in used]
    if not new:
        return {"record_ids": [], "usable_pairs": 0, "training_pairs": 0, "min_pairs": cfg.min_pairs, "stats": {}}
    ds = preference_dataset(cfg, class_names, new)
    train, _ = ds.split(cfg.holdout_fraction, seed=cfg.seed)  # the fine-tune's own split (dpo.trainer.build_datasets)
    return {"record_ids": sorted(r.id for r in new), "usable_pairs": len(ds), "training_pairs": len(train),
            "min_pairs": cfg.min_pairs, "stats": dict(ds.stats)}


def no_training_reason(selection: dict, min_new_preferences: int) -> str | None:
    """Why a round with these new preferences (:func:`select_new_preferences`) does not fine-tune, or None
    when it does: too few new usable pairs, or too few left for training after the held-out split (the
    fine-tune would stop on ``min_pairs``, and the round would never refill the queue)."""
    if selection["usable_pairs"] < min_new_preferences:
        return f"no training: {selection['usable_pairs']} new usable pairs < min_new_preferences {min_new_preferences}"
    if selection["training_pairs"] < selection["min_pairs"]:
        return (f"no training: {selection['usable_pairs']} new usable pairs leave {selection['training_pairs']} "
                f"after the held-out split < min_pairs {selection['min_pairs']} (dpo config)")
    return None


@task
def human_pair_count(preference_dir: str, class_names: list[str], dpo_config: str, overrides: list[str]) -> int:
    """Training pairs all human answers in the store make (the DPO config's rules)."""
    from dpo.dataset import PreferenceDataset

    return len(PreferenceDataset(preference_dir, class_names, annotators=annotators_config(dpo_config, overrides),
                                 use_noise=False))


@task
def assess_annotators(preference_dir: str, dpo_config: str, overrides: list[str]) -> dict:
    """Per-annotator quality over every answer in the store and the training decision (weights,
    exclusions): ``AnnotatorReport.to_dict()`` plus ``markdown``, the table for the round report."""
    from dpo.annotators import assess_annotators as assess
    from dpo.annotators import collect_answers, format_table
    from dpo.gold import GoldSet
    from dpo.store import PreferenceStore

    store = PreferenceStore(preference_dir)
    rules = annotators_config(dpo_config, overrides)
    report = assess(collect_answers(store.records()), GoldSet(store).entries(), rules)
    return {**report.to_dict(), "markdown": format_table(report, markdown=True)}


@task
def human_evaluation(preference_dir: str, dpo_config: str, overrides: list[str], pool: int = 0,
                     base: str | None = None) -> dict:
    """How often the annotators preferred each model to ``base`` (the round's original base; None: every pair's) on
    the evaluation pairs (:mod:`dpo.human_eval`), and the newest ``pool`` models' pairs pooled, leaving out the
    annotators training excludes and the answers given before the store's taste mark (:mod:`dpo.taste`):
    ``{"models": {model_id: {...}}, "recent": {...} | None, "lines": [...], "since": ISO time of the mark | None}``."""
    from dpo.annotators import assess_annotators as assess
    from dpo.annotators import collect_answers
    from dpo.gold import GoldSet
    from dpo.human_eval import EvalSet, answers_since, judgement
    from dpo.store import PreferenceStore
    from dpo.taste import TasteMarks

    store = PreferenceStore(preference_dir)
    entries, since = EvalSet(store).entries(), TasteMarks(store).since()
    out = {"since": None if since is None else since.isoformat()}
    if not entries:
        return {"models": {}, "recent": None, "lines": [], **out}
    answers = collect_answers(store.records())
    excluded = set(assess(answers, GoldSet(store).entries(), annotators_config(dpo_config, overrides)).excluded)
    return {**judgement(answers_since(answers, since), entries, pool, excluded, base), **out}


@task
def taste_drift_check(preference_dir: str, dpo_config: str, overrides: list[str], reward_classifier: str,
                      model_path: str) -> dict:
    """Do the newest answers still agree with the older ones? (:mod:`dpo.taste_drift`, the DPO config's
    ``taste_drift``), with the inputs of the round's reward (``reward_classifier`` unless the overrides name
    another; the embedding of ``model_path``, the current model): the check's figures and ``line`` for the report.
    A check that cannot run (a store whose pairs the reward cannot fit) says why; it never stops the round. A flagged
    check also emits a Prefect event (:func:`tasks.events.taste_drift_event`) that an automation can notify on."""
    from dpo.config import load_dpo_config
    from dpo.taste_drift import check_store, drift_line
    from driftsketch.errors import DriftSketchError

    cfg = load_dpo_config(dpo_config, [f"amplify.reward.classifier={reward_classifier}", *overrides,
                                       f"preference_dir={preference_dir}"])
    try:
        check = check_store(cfg, model_path)
    except DriftSketchError as e:
        check = {"checked": False, "reason": f"failed: {e}"}
    if check.get("flagged"):
        from prefect.events import emit_event

        from tasks.events import taste_drift_event

        emit_event(**taste_drift_event(preference_dir, check))
    return {**check, "line": drift_line(check)}


@task
def mark_taste(preference_dir: str, reason: str, at: datetime | None) -> dict:
    """The round's ``taste_mark`` parameter: add a taste mark (:mod:`dpo.taste`) at ``at``, or at the flow run's
    scheduled start (the same moment when a run is retried). Nothing is added when the mark in force has the same
    reason (a reason left in a deployment's defaults must not mark again every night); StoreError for a time in the
    future. Returns ``{"added", "at", "reason"}``."""
    from prefect.runtime import flow_run

    from dpo.taste import TasteMarks, fold_reason

    marks = TasteMarks(preference_dir)
    current = marks.in_force()
    if current is not None and current.get("reason") == fold_reason(reason):
        return {"added": False, "at": current["at"].isoformat(), "reason": current["reason"]}
    when = at or datetime.fromisoformat(flow_run.scheduled_start_time.isoformat())
    mark = marks.add(reason, when)
    return {"added": True, "at": mark["at"].isoformat(), "reason": mark["reason"]}
