"""Flow-DPO fine-tune of one round, keyed by the round id so a re-run never trains twice on the same data."""
from __future__ import annotations

import json
from pathlib import Path

from prefect import task

from driftsketch.checkpoint import load_checkpoint
from driftsketch.fileio import atomic_write_text
from driftsketch.registry import Registry

TIMINGS = "timings.json"  # seconds of the fine-tune's parts (reward fit, amplification, training), for the report


def finetune_timings(out_dir: str) -> dict[str, float]:
    """The parts of a fine-tune's wall time that ``finetune_round`` recorded in ``out_dir`` (empty if none)."""
    path = Path(out_dir) / TIMINGS
    return json.loads(path.read_text()) if path.is_file() else {}


@task
def finetune_round(registry_dir: str, preference_dir: str, round_id: str, model_id: str, dpo_config: str,
                   overrides: list[str], out_dir: str) -> str:
    """Train the round's candidate (resuming an interrupted run) and register it; returns ``model_id``.

    The fine-tune's parts are timed into ``out_dir/timings.json`` (:func:`finetune_timings`); the registry
    entry's ``extra.machine`` names the machine that trained it (:func:`driftsketch.device.numerics_fingerprint`).
    Done already (candidate registered): nothing happens. ``out_dir/model.pt`` present (crash after
    training): registered without training. ``out_dir/last.pt`` present: training resumes from it,
    which continues with the same data order and noise as an uninterrupted run.
    """
    from dpo.config import load_dpo_config
    from dpo.store import PreferenceStore
    from dpo.trainer import train_dpo

    reg = Registry(registry_dir)
    rnd = reg.load().rounds[round_id]
    if rnd.candidate is not None:
        return rnd.candidate
    out = Path(out_dir)
    if not (out / "model.pt").is_file():
        wanted = set(rnd.record_ids)
        records = [r for r in PreferenceStore(preference_dir).records() if r.id in wanted]
        cfg = load_dpo_config(dpo_config, [*overrides, f"base_checkpoint={reg.path_of(rnd.parent)}",
                                           f"reference_checkpoint={reg.path_of(rnd.reference)}",
                                           f"preference_dir={preference_dir}", f"checkpoint_dir={out}"])
        result = train_dpo(cfg, records=records, resume=(out / "last.pt").is_file(), progress=False)
        atomic_write_text(out / TIMINGS, json.dumps(result.timings))
    machine = (load_checkpoint(out / "model.pt").get("extra") or {}).get("dpo", {}).get("machine")
    reg.add_model(out / "model.pt", model_id, kind="dpo", parent=rnd.parent, round_id=round_id,
                  round_index=rnd.index, num_preferences=len(rnd.record_ids),
                  extra={"reference": rnd.reference, "machine": machine})
    reg.finish_training(round_id, model_id)
    return model_id
