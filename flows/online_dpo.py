"""Flow `online-dpo`: one round of online preference learning. Never waits for people.

    prefect deployment run online-dpo/round                      # through a worker (see prefect.yaml)
    python -m flows.online_dpo --set dpo.min_new_preferences=20  # in-process

pull annotations (and how often people preferred each model to the base on its evaluation pairs) -> (enough
new pairs?) Flow-DPO fine-tune of the current model -> evaluate the
candidate against the current model -> promote if the gate passes -> generate the next batch from the
newest promoted model -> render and push pairs until the open queue is full; stale tasks retired.

Safe to re-run after a crash anywhere: pulls are exactly-once (labeling), a round is keyed by the
records it trains on (driftsketch.registry.round_id_for) and its candidate by the round, an
interrupted fine-tune resumes from its last epoch, the promotion decision is recorded once, and a
batch is only pushed while the open queue is short.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path

from prefect import flow, get_run_logger

from dpo.gold import special_pair_counts
from driftsketch.device import require_device
from driftsketch.errors import run_cli
from driftsketch.memory import peak_rss_mib, reset_peak_rss
from driftsketch.registry import Registry
from flows.params import RoundParams, dpo_overrides, load_round_params, train_overrides
from tasks import evaluate as ev
from tasks import labeling as lb
from tasks import models as md
from tasks.generate import (batch_round_id, generate_eval_pairs, generate_pairs, mark_pushed, next_batch_key,
                            select_pairs, weak_class_weights)
from tasks.preferences import (assess_annotators, human_evaluation, human_pair_count, no_training_reason,
                               mark_taste, select_new_preferences, taste_drift_check)
from tasks.report import publish_report
from tasks.train import finetune_round, finetune_timings


class StepTimer:
    """Wall seconds per named step, accumulated (``with timer("train"): ...``), and the CPU seconds of
    this process (all its threads) per step: what a step costs whatever else the machine runs."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + time.process_time() - c0

    def split(self, name: str, parts: dict[str, float]) -> None:
        """Show step ``name`` as its measured ``parts``; what they do not cover stays under ``name``."""
        total = self.seconds.pop(name, 0.0)
        for part, sec in parts.items():
            if part != name:
                self.seconds[part] = self.seconds.get(part, 0.0) + sec
                total -= sec
        self.seconds[name] = total


def ensure_current_model(params: RoundParams) -> str:
    """The current model id; bootstraps the registry from a base checkpoint, or trains one, if empty."""
    current = md.current_model(params.registry_dir)
    if current is not None:
        return current
    checkpoint = params.base.checkpoint or md.train_base_model(
        params.base.train_config, train_overrides(params), f"{params.work_dir}/base")
    return md.register_base(params.registry_dir, checkpoint)


def eval_dir(params: RoundParams, model_id: str, round_index: int) -> str:
    """Evaluation results are cached per model, round, evaluation settings and device."""
    key = json.dumps([params.data, params.eval.model_dump(), params.generate.model_dump(
        include={"num_steps", "cfg_scale", "solver"}), round_index], sort_keys=True)
    if params.device != "cpu":  # another device samples other digits (bf16 products on a GPU)
        key += params.device
    return f"{params.work_dir}/eval/{model_id}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def evaluate(params: RoundParams, model_id: str, classifier: str, round_index: int) -> dict:
    """``model_id``'s metrics on round ``round_index``'s noise (seed ``eval.seed + round_index``). Each round
    draws fresh noise: a candidate promoted because it scored high on one noise set would otherwise stay the
    bar on that same noise for every later round (the winner's curse; docs/online_loop.md)."""
    g = params.generate
    return ev.evaluate_checkpoint(md.model_path(params.registry_dir, model_id), classifier, params.data,
                                  eval_dir(params, model_id, round_index),
                                  samples_per_class=params.eval.samples_per_class,
                                  seed=params.eval.seed + round_index, grid_per_class=params.eval.grid_per_class,
                                  num_steps=g.num_steps, cfg_scale=g.cfg_scale, solver=g.solver, device=params.device)


def train_and_decide(params: RoundParams, record_ids: list[str], classifier: str, reward_classifier: str,
                     timer: StepTimer) -> dict:
    """Fine-tune on ``record_ids``, evaluate candidate vs current, apply the gate. Returns summary fields.
    The gate judges with ``classifier``; the reward model of amplification reads ``reward_classifier`` (unless
    the overrides name another), trained on another part of the data."""
    rnd = md.start_round(params.registry_dir, record_ids, params.dpo.reference)
    model_id = f"r{rnd['index']:03d}-{rnd['id'][:10]}"
    overrides = [f"amplify.reward.classifier={reward_classifier}", *dpo_overrides(params),
                 *([] if params.wandb else ["wandb=false"])]
    train_dir = f"{params.work_dir}/rounds/{rnd['id']}/dpo"
    with timer("train"):
        candidate = finetune_round(params.registry_dir, params.preference_dir, rnd["id"], model_id,
                                   params.dpo.config, overrides, train_dir)
    timer.split("train", finetune_timings(train_dir))  # reward fit, amplification sampling, training
    with timer("evaluate"):
        index = rnd["index"]
        before, after = (evaluate(params, m, classifier, index) for m in (rnd["parent"], candidate))
        cand_metrics = dict(after["metrics"])
        cand_metrics.update(ev.heldout_accuracy(
            md.model_path(params.registry_dir, candidate), md.model_path(params.registry_dir, rnd["parent"]),
            params.preference_dir, rnd["record_ids"], params.dpo.config, dpo_overrides(params)))
        cand_metrics["win_rate"] = ev.paired_win_rate(after["samples"], before["samples"], classifier)["win_rate"]
        base_metrics = base_model_metrics(params, rnd["parent"], before, classifier, index)
    decision = md.decide_promotion(params.registry_dir, rnd["id"], params.gate, cand_metrics, before["metrics"],
                                   base_metrics)
    return {"round_id": rnd["id"], "round_index": rnd["index"], "parent": rnd["parent"], "candidate": candidate,
            "trained_on": md.trained_on(params.registry_dir, candidate), "reference": rnd["reference"],
            "decision": decision, "metrics_base": base_metrics,
            "metrics_current": before["metrics"], "metrics_candidate": cand_metrics,
            "grids": {"before": before["grid"], "after": after["grid"]}}


def base_model_metrics(params: RoundParams, parent: str, parent_eval: dict, classifier: str,
                       round_index: int) -> dict | None:
    """The original base model's metrics on the round's noise, for a gate with limits relative to the base;
    None when the gate has none."""
    if not params.gate.anchored:
        return None
    base = md.base_model(params.registry_dir, parent)
    return parent_eval["metrics"] if base == parent else evaluate(params, base, classifier, round_index)["metrics"]


def refill_queue(params: RoundParams, projects: dict[str, int], current: str, current_eval: dict,
                 class_names: list[str], round_id: str | None, classifier: str, timer: StepTimer) -> dict:
    """Retire stale tasks, then push batches of pairs from ``current`` until the queue is full: one batch,
    or two when the first is one a killed round had already pushed (it had not marked it pushed)."""
    ls, prefs, work, g = params.labelstudio, params.preference_dir, params.work_dir, params.generate
    with timer("push"):
        retired = lb.retire_stale(ls, prefs, work, projects, current) if g.retire_stale else 0
        waiting = lb.open_pairs(ls, prefs, work, projects["pairwise"])
    need = min(g.max_new_pairs, max(g.queue_target - waiting, 0))
    out = {"retired": retired, "open_before": waiting, "pushed": 0}
    per_class = {k.split("/", 1)[1]: v for k, v in current_eval["metrics"].items() if k.startswith("recognizability/")}
    weights = weak_class_weights(per_class, class_names) if g.class_weighting == "weak" else None
    for _ in range(2):
        if need <= 0:
            break
        batch = push_batch(params, projects, current, need, weights, class_names, round_id, classifier, timer)
        for key in ("pushed", "gold_pushed", "eval_pushed", "pushed_ratings"):
            if key in batch:
                out[key] = out.get(key, 0) + batch[key]
        out["selection"] = batch["selection"]
        if not batch["resumed"]:
            break
        need -= batch["pushed"]  # a batch a killed round had pushed (part of): go on with a new one
    return out


def push_batch(params: RoundParams, projects: dict[str, int], current: str, need: int, weights,
               class_names: list[str], round_id: str | None, classifier: str, timer: StepTimer) -> dict:
    """Generate (and select), render and push up to ``need`` pairs from ``current`` as its next batch;
    ``gold.share`` of them are gold pairs from ``params.data``, ``human_eval.share`` evaluation pairs (``current``
    against its base, one noise; none while ``current`` is the base). ``resumed``: the batch was started by a
    run that was killed before marking it pushed (this run finishes it)."""
    ls, prefs, work, g = params.labelstudio, params.preference_dir, params.work_dir, params.generate
    base = md.base_model(params.registry_dir, current)
    n_gold, n_eval = special_pair_counts(need, *lb.special_shares(ls, prefs, work), evaluate=base != current)
    batch_key = next_batch_key(work, current)  # from what was pushed before, not the clock: reruns repeat
    batch_dir = f"{work}/batches/{current}/{batch_key}"
    out = {"resumed": Path(batch_dir, "tasks.json").is_file()}
    round_id = batch_round_id(batch_dir, round_id)  # a re-run after a crash renders the same gold pairs and sides
    with timer("generate"):
        pairs = next_pairs(params, current, need - n_gold - n_eval, batch_dir, batch_key, weights, classifier,
                           class_names, out)
        eval_pairs = generate_eval_pairs(
            md.model_path(params.registry_dir, current), current, md.model_path(params.registry_dir, base), base,
            n_eval, f"{batch_dir}/eval_pairs.npz", batch_key=batch_key, seed=params.seed, num_steps=g.num_steps,
            cfg_scale=g.cfg_scale, solver=g.solver, device=params.device)
    with timer("render"):
        rendered = lb.render_pairs(ls, prefs, work, pairs, f"{batch_dir}/tasks.json", round_id, gold=n_gold,
                                   gold_data=params.data, eval_npz=eval_pairs)
    with timer("push"):
        out["pushed"] = lb.push_rendered(ls, prefs, work, projects["pairwise"], rendered, g.queue_target)
    out["gold_pushed"], out["eval_pushed"] = n_gold, n_eval
    if ls.ratings:  # one rating task per new pair's first sketch, with the same queue target
        with timer("render"):
            ratings = lb.render_pairs(ls, prefs, work, pairs, f"{batch_dir}/ratings.json", round_id, kind="rating")
        with timer("push"):
            out["pushed_ratings"] = lb.push_rendered(ls, prefs, work, projects["rating"], ratings, g.queue_target)
    mark_pushed(batch_dir, out)
    return out


def next_pairs(params: RoundParams, current: str, num_pairs: int, batch_dir: str, batch_key: str, weights,
               classifier: str, class_names: list[str], out: dict) -> str:
    """``num_pairs`` pairs from ``current``: sampled directly (``selection: random``), or the least sure of
    ``candidates`` times as many (``uncertain``); what was done goes into ``out["selection"]``."""
    g, dpo = params.generate, params.dpo
    out["selection"] = {"selection": "random"}
    factor = 1
    if g.selection == "uncertain":
        labeled = human_pair_count(params.preference_dir, class_names, dpo.config, dpo_overrides(params))
        if labeled >= g.min_labeled_pairs:
            factor = g.candidates
        else:
            out["selection"]["reason"] = f"{labeled} human pairs < min_labeled_pairs {g.min_labeled_pairs}"
    model_path = md.model_path(params.registry_dir, current)
    path = generate_pairs(model_path, current, num_pairs * factor, f"{batch_dir}/candidates.npz" if factor > 1 else
                          f"{batch_dir}/pairs.npz", weights=weights, batch_key=batch_key, seed=params.seed,
                          num_steps=g.num_steps, cfg_scale=g.cfg_scale, solver=g.solver, device=params.device)
    if factor > 1:
        path, out["selection"] = select_pairs(path, f"{batch_dir}/pairs.npz", num_pairs, params.preference_dir,
                                              classifier, class_names, dpo.config, dpo_overrides(params), g.ensemble,
                                              params.seed)
    return path


def stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


@flow(name="online-dpo")  # the default is the Prefect form's (its schema is built from it): configs/round.yaml
def online_dpo(params: RoundParams = load_round_params()) -> dict:
    """One round; returns the round summary (also in ``<work_dir>/reports/<time>-<round>/summary.json``)."""
    reset_peak_rss()  # the peak memory of this round, also when one process runs several
    timer = StepTimer()
    summary: dict = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with timer("bootstrap"):  # a bad folder or a device this worker lacks fails before any write
        lb.check_round_storage(params.labelstudio, params.registry_dir, params.preference_dir, params.work_dir)
        require_device(params.device)
    with Registry(params.registry_dir).round_lock():  # one round at a time per registry, also outside Prefect
        return run_round(params, timer, summary)


def run_round(params: RoundParams, timer: StepTimer, summary: dict) -> dict:
    """The round's steps (:func:`online_dpo` holds the registry's round lock around them)."""
    log = get_run_logger()
    ls, prefs, work = params.labelstudio, params.preference_dir, params.work_dir
    with timer("bootstrap"):
        if params.taste_mark.reason.strip():  # before the pull: this round already reads only answers since
            summary["taste_mark"] = mark_taste(prefs, params.taste_mark.reason, params.taste_mark.at)
        current = ensure_current_model(params)
        classifier = ev.ensure_classifier(params.data, params.eval.config, params.eval.overrides, f"{work}/classifiers")
        reward_classifier = ev.ensure_classifier(params.data, params.eval.config, params.eval.overrides,
                                                 f"{work}/classifiers", section="reward_classifier")
        class_names = md.class_names(params.registry_dir, current)
    with timer("pull"):
        projects = lb.ensure_projects(ls, prefs, work)
        summary["pull"] = lb.pull(ls, prefs, work, projects)
        sel = select_new_preferences(prefs, params.registry_dir, class_names, params.dpo.config, dpo_overrides(params))
        summary["annotators"] = assess_annotators(prefs, params.dpo.config, dpo_overrides(params))
        summary["human_eval"] = human_evaluation(prefs, params.dpo.config, dpo_overrides(params),
                                                 lb.human_eval_pool(ls, prefs, work),
                                                 md.base_model(params.registry_dir, current))
        summary["human_veto"] = md.human_veto(params.registry_dir, params.gate, summary["human_eval"]["models"],
                                              summary["human_eval"]["since"])
        if summary["human_veto"] and summary["human_veto"]["rolled_back_to"]:
            log.warning("%s; current model is now %s", summary["human_veto"]["reason"],
                        summary["human_veto"]["rolled_back_to"])
    with timer("taste_drift"):
        summary["taste_drift"] = taste_drift_check(prefs, params.dpo.config, dpo_overrides(params), reward_classifier,
                                                   md.model_path(params.registry_dir, md.current_model(params.registry_dir)))
        (log.warning if summary["taste_drift"].get("flagged") else log.info)(summary["taste_drift"]["line"])
    summary["pulled"], summary["usable_pairs"] = summary["pull"]["new_records"], sel["usable_pairs"]
    skip = no_training_reason(sel, params.dpo.min_new_preferences)
    if skip is None:
        summary.update(train_and_decide(params, sel["record_ids"], classifier, reward_classifier, timer))
    else:  # the records stay new: a later round trains on them with what arrives meanwhile
        summary["decision"] = {"promoted": False, "reason": skip}
    current = md.current_model(params.registry_dir)
    summary["current"] = current
    log.info("round decision: %s; current model %s", summary["decision"]["reason"], current)
    with timer("evaluate"):
        current_eval = evaluate(params, current, classifier, md.last_round_index(params.registry_dir))
        md.record_metrics(params.registry_dir, current, current_eval["metrics"])
    summary.update(refill_queue(params, projects, current, current_eval, class_names, summary.get("round_id"),
                                classifier, timer))
    summary["timings"] = timer.seconds
    summary["cpu_seconds"] = {k: round(v, 2) for k, v in timer.cpu_seconds.items()}  # train: incl. its parts
    summary["peak_rss_mib"] = round(peak_rss_mib(), 1)
    summary["report"] = publish_report(summary, f"{work}/reports/{stamp()}-{summary.get('round_id') or 'no-train'}",
                                       params.wandb)
    log.info("pushed %d pairs (open before: %d), retired %d; report %s", summary["pushed"], summary["open_before"],
             summary["retired"], summary["report"])
    return summary


def main(argv: list[str] | None = None) -> int:
    def body() -> None:
        p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
        p.add_argument("--config", default=None, help="round config (default configs/round.yaml)")
        p.add_argument("--set", dest="overrides", action="append", default=[], help="override KEY=VALUE (dotted)")
        args = p.parse_args(argv)
        params = load_round_params(*([args.config] if args.config else []), overrides=args.overrides)
        print(json.dumps(online_dpo(params), indent=2, default=str))

    return run_cli("online-dpo", body)


if __name__ == "__main__":
    raise SystemExit(main())
