"""Select the preferences a round trains on: those no finished round has used."""
from __future__ import annotations

from prefect import task

from driftsketch.registry import Registry


@task
def select_new_preferences(preference_dir: str, registry_dir: str, class_names: list[str]) -> dict:
    """Records no finished round has trained on, and how many usable training pairs they make.

    Returns ``{"record_ids": [...], "usable_pairs": int, "stats": {...}}``.
    """
    from dpo.dataset import PreferenceDataset
    from dpo.store import PreferenceStore

    store = PreferenceStore(preference_dir)
    used = Registry(registry_dir).used_record_ids()
    new = [r for r in store.records() if r.id not in used]
    if not new:
        return {"record_ids": [], "usable_pairs": 0, "stats": {}}
    ds = PreferenceDataset(store, class_names=class_names, records=new)
    return {"record_ids": sorted(r.id for r in new), "usable_pairs": len(ds), "stats": dict(ds.stats)}
