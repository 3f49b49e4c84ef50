"""Registry tasks: bootstrap the first model, register and decide candidates; plain lookups beside them.

Tasks (units of retry and observation) are the steps that change something; the lookups
(:func:`current_model`, :func:`model_path`, :func:`class_names`, :func:`trained_on`) are plain functions.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prefect import task

from driftsketch.device import describe_machine
from driftsketch.registry import PromotionGate, Registry, apply_gate


@task
def train_base_model(train_config: str, overrides: list[str], checkpoint_dir: str) -> str:
    """Train (or resume) a base model; returns the final checkpoint path. Never retried blindly."""
    from driftsketch.train import train_base
    from driftsketch.train_config import load_train_config

    cfg = load_train_config(train_config, [*overrides, f"checkpoint_dir={checkpoint_dir}"])
    final = Path(cfg.checkpoint_dir) / "model.pt"
    if final.is_file():  # a crash after training but before registering: reuse, do not retrain
        return str(final)
    return str(train_base(cfg, resume=(Path(cfg.checkpoint_dir) / "last.pt").is_file(), progress=False))


@task
def register_base(registry_dir: str, checkpoint: str) -> str:
    """Add a base checkpoint as ``base-<checkpoint id>`` and make it current if nothing is; returns its id."""
    from driftsketch.checkpoint import load_checkpoint

    reg = Registry(registry_dir)
    model_id = f"base-{load_checkpoint(checkpoint)['id']}"
    reg.add_model(checkpoint, model_id, kind="base")
    if reg.current is None:
        reg.promote(model_id, reason="bootstrap: first model of the registry")
    return model_id


def current_model(registry_dir: str) -> str | None:
    """Id of the current promoted model (None for an empty registry)."""
    return Registry(registry_dir).current


def base_model(registry_dir: str, model_id: str) -> str:
    """Id of the base model ``model_id`` descends from (itself for a base)."""
    return original_base(Registry(registry_dir), model_id)


def original_base(reg: Registry, model_id: str) -> str:
    """Follow ``parent`` links from ``model_id`` to the base model it descends from."""
    line = reg.ancestry(model_id)
    return reg.get(line[-1]).parent if line else model_id


@task
def decide_promotion(registry_dir: str, round_id: str, gate: PromotionGate, candidate_metrics: dict[str, float],
                     current_metrics: dict[str, float], base_metrics: dict[str, float] | None = None) -> dict:
    """Apply the gate once; a re-run returns the recorded decision. Returns {promoted, reason, current}.
    ``base_metrics``: the original base model's, from the same evaluation (needed by an anchored gate)."""
    reg = Registry(registry_dir)
    rnd = reg.load().rounds[round_id]
    if rnd.status in ("promoted", "rejected"):
        return {"promoted": rnd.status == "promoted", "reason": rnd.reason, "current": reg.current}
    promote, reason = apply_gate(gate, candidate_metrics, current_metrics, base_metrics)
    reg.set_metrics(rnd.candidate, candidate_metrics)
    _record_new_metrics(reg, rnd.parent, current_metrics)
    if base_metrics is not None:
        _record_new_metrics(reg, original_base(reg, rnd.parent), base_metrics)
    reg.decide_round(round_id, promote, reason)
    return {"promoted": promote, "reason": reason, "current": reg.current}


@task
def human_veto(registry_dir: str, gate: PromotionGate, win_rates: dict[str, dict],
               since: str | None = None) -> dict | None:
    """The annotators' veto (``gate.human_veto_min_pairs``): when the evaluation pairs of the current model and its
    newest ancestors call them worse than the base (:func:`dpo.human_eval.lineage_verdict`), make the model before
    them current again, so the round trains from there. ``win_rates``: per model, against the round's base
    (:func:`dpo.human_eval.human_win_rates`), from the answers since the taste mark ``since`` (ISO time; None: no
    mark); with a mark the veto goes back past models promoted only before it, to the base if need be
    (:func:`dpo.human_eval.veto_target`). Returns the verdict with ``rolled_back_to`` set when it acted, or None
    (off, the base is current, or too few pairs). A re-run after the roll-back judges the new current model."""
    from dpo.human_eval import lineage_verdict, passed_over, veto_target

    reg = Registry(registry_dir)
    current = reg.current
    if gate.human_veto_min_pairs is None or current is None:
        return None
    line = reg.ancestry(current)
    verdict = lineage_verdict(win_rates, line, gate.human_veto_min_pairs)
    if verdict is None:
        return None
    verdict["rolled_back_to"] = None
    if verdict["worse"]:
        approved = None if since is None else reg.promoted_since(datetime.fromisoformat(since))
        target = veto_target(line, verdict["models"], approved) or original_base(reg, current)
        passed = passed_over(line, verdict["models"], target if target in line else None)
        reason = (f"annotators' veto: {len(verdict['models'])} newest model(s) won {100 * verdict['win_rate']:.1f} % "
                  f"of {verdict['pairs']} evaluation pairs against the base (95 % interval up to "
                  f"{100 * verdict['ci95'][1]:.1f} %)")
        if passed:
            reason += f"; past {', '.join(passed)}, promoted only before the taste mark of {since}"
        reg.revert_to(target, verdict["models"], reason)
        verdict.update(rolled_back_to=target, reason=reason, passed=passed)
    return verdict


@task
def start_round(registry_dir: str, record_ids: list[str], reference_mode: str) -> dict:
    """Find or create the round for the current model and these records; returns the round entry."""
    reg = Registry(registry_dir)
    parent = reg.current
    reference = parent if reference_mode == "current" else original_base(reg, parent)
    return reg.start_round(parent, reference, record_ids).model_dump()


def last_round_index(registry_dir: str) -> int:
    """Index of the newest decided round (0 before the first): the noise the current model was last judged on."""
    return Registry(registry_dir).last_decided_round_index()


def trained_on(registry_dir: str, model_id: str) -> str:
    """The machine that fine-tuned ``model_id``, in one line ("not recorded" for older entries)."""
    return describe_machine(Registry(registry_dir).get(model_id).extra.get("machine"))


def model_path(registry_dir: str, model_id: str) -> str:
    """Checkpoint path of a registered model."""
    return str(Registry(registry_dir).path_of(model_id))


def class_names(registry_dir: str, model_id: str) -> list[str]:
    """The class names a registered model draws (read from its checkpoint)."""
    from driftsketch.checkpoint import load_checkpoint

    return list(load_checkpoint(model_path(registry_dir, model_id))["config"]["class_names"])


def _record_new_metrics(reg: Registry, model_id: str, metrics: dict[str, float]) -> None:
    missing = {k: v for k, v in metrics.items() if k not in reg.get(model_id).metrics}
    if missing:
        reg.set_metrics(model_id, missing)


@task
def record_metrics(registry_dir: str, model_id: str, metrics: dict[str, float]) -> None:
    """Store metrics a model does not have yet (first measurement wins: later rounds reuse the cache)."""
    _record_new_metrics(Registry(registry_dir), model_id, metrics)
