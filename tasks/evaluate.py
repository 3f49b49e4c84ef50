"""Evaluation tasks: the metrics classifier, candidate vs current on paired noise, held-out preference accuracy."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from prefect import task

from driftsketch.fileio import atomic_write_text


@task
def ensure_classifier(data: str, eval_config: str, overrides: list[str], out_dir: str,
                      section: str = "classifier") -> str:
    """Train a classifier of configs/eval.yaml once per (data set, its config); returns its path.
    ``section``: ``classifier`` (metrics and the gate) or ``reward_classifier`` (the reward model's), each
    trained on its own part of the data."""
    from driftsketch.config import to_dict
    from driftsketch.data import load_dataset
    from driftsketch.evaluation.classifier import train_classifier
    from driftsketch.evaluation.settings import load_eval_config

    cfg = getattr(load_eval_config(eval_config, overrides), section)
    key = hashlib.sha256(json.dumps([data, to_dict(cfg)], sort_keys=True).encode()).hexdigest()[:12]
    path = Path(out_dir) / f"{section}-{key}.pt"
    if not path.is_file():
        train_classifier(load_dataset(data), cfg, progress=False).save(path)
    return str(path)


def flat_metrics(report: dict) -> dict[str, float]:
    """The registry's flat metric dict from an ``evaluate_samples`` report."""
    out = {k: float(report[k]) for k in ("recognizability", "frechet_distance", "continuity")}
    out.update({f"recognizability/{c}": float(v) for c, v in report["recognizability_per_class"].items()})
    return out


@task
def evaluate_checkpoint(checkpoint: str, classifier_path: str, data: str, out_dir: str, *,
                        samples_per_class: int, seed: int, grid_per_class: int, num_steps: int,
                        cfg_scale: float, solver: str, device: str = "cpu") -> dict:
    """Recognizability, FD and continuity of one model; samples from a fixed seed, so two models are
    compared on the same noise. Writes ``samples.npz`` and ``grid.png`` into ``out_dir``.

    Returns ``{"metrics": {...flat...}, "samples": path, "grid": path}``.
    """
    from driftsketch.checkpoint import load_model
    from driftsketch.data import load_dataset
    from driftsketch.device import require_device
    from driftsketch.evaluation.classifier import SketchClassifier
    from driftsketch.evaluation.evaluate import evaluate_samples, generate_per_class
    from driftsketch.render import plot_bezier_sketches

    out = Path(out_dir)
    if (out / "result.json").is_file():  # deterministic given the settings: evaluate each model once
        return json.loads((out / "result.json").read_text())
    clf = SketchClassifier.load(classifier_path)
    model = load_model(checkpoint, require_device(device, "device"))
    samples, labels = generate_per_class(model, clf.class_names, samples_per_class, seed, num_steps=num_steps,
                                         cfg_scale=cfg_scale, solver=solver)
    report = evaluate_samples(samples, labels, load_dataset(data), clf, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "samples.npz", beziers=samples, labels=labels)
    show = np.concatenate([np.flatnonzero(labels == c)[:grid_per_class] for c in np.unique(labels)])
    grid = plot_bezier_sketches(samples[show], out / "grid.png", titles=[clf.class_names[i] for i in labels[show]],
                                ncols=grid_per_class)
    result = {"metrics": flat_metrics(report), "samples": str(out / "samples.npz"), "grid": str(grid)}
    atomic_write_text(out / "result.json", json.dumps(result, indent=2))  # the cache's "done" mark: never torn
    return result


@task
def paired_win_rate(samples_candidate: str, samples_current: str, classifier_path: str) -> dict[str, float]:
    """Win rate of the candidate over the current model under the labeling judge, sample for sample."""
    from driftsketch.evaluation.classifier import SketchClassifier
    from driftsketch.evaluation.judges import LabelingJudge, win_rate

    judge = LabelingJudge(SketchClassifier.load(classifier_path))
    a, b = np.load(samples_candidate), np.load(samples_current)
    return win_rate(judge.score(a["beziers"], a["labels"]), judge.score(b["beziers"], b["labels"]))


@task
def heldout_accuracy(candidate: str, current: str, preference_dir: str, record_ids: list[str],
                     dpo_config: str, overrides: list[str]) -> dict[str, float]:
    """Implicit preference accuracy of the candidate against the current model on the round's held-out
    pairs (the same split the trainer held out). NaN when there are none."""
    from dpo.config import load_dpo_config
    from dpo.store import PreferenceStore
    from dpo.trainer import heldout_accuracy as heldout
    from driftsketch.checkpoint import load_model
    from driftsketch.device import require_device

    cfg = load_dpo_config(dpo_config, [*overrides, f"preference_dir={preference_dir}"])
    wanted = set(record_ids)
    records = [r for r in PreferenceStore(preference_dir).records() if r.id in wanted]
    device = require_device(cfg.device)
    return heldout(load_model(candidate, device), load_model(current, device), records, cfg)
