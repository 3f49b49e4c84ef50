"""Select the preferences a round trains on, and assess the annotators who gave them."""
from __future__ import annotations

from prefect import task

from driftsketch.registry import Registry


def annotators_config(dpo_config: str, overrides: list[str]):
    """The ``annotators`` section of the round's DPO config (with its overrides): the rules training uses."""
    from dpo.config import load_dpo_config

    return load_dpo_config(dpo_config, [o for o in overrides if o.startswith("annotators.")]).annotators


@task
def select_new_preferences(preference_dir: str, registry_dir: str, class_names: list[str], dpo_config: str,
                           overrides: list[str]) -> dict:
    """Records no decided round has trained on, and how many usable training pairs they make (with the
    DPO config's aggregation, gold and exclusion rules).

    Returns ``{"record_ids": [...], "usable_pairs": int, "stats": {...}}``.
    """
    from dpo.dataset import PreferenceDataset
    from dpo.store import PreferenceStore

    store = PreferenceStore(preference_dir)
    used = Registry(registry_dir).used_record_ids()
    new = [r for r in store.records() if r.id not in used]
    if not new:
        return {"record_ids": [], "usable_pairs": 0, "stats": {}}
    ds = PreferenceDataset(store, class_names=class_names, records=new,
                           annotators=annotators_config(dpo_config, overrides))
    return {"record_ids": sorted(r.id for r in new), "usable_pairs": len(ds), "stats": dict(ds.stats)}


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
