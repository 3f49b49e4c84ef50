"""Evaluate generated sketches against real ones: recognizability, Frechet distance, continuity, stats.

    clf = SketchClassifier.load("runs/classifier.pt")
    report = evaluate_samples(samples, labels, real=load_dataset("builtin"), classifier=clf)
    report = evaluate_model(load_model("runs/base/model.pt"), real, clf, num_per_class=50)

Real sketches are split exactly as the classifier's training split them
(``real.split(clf.cfg.holdout_fraction, clf.cfg.split_seed)``), so "real held-out" figures are on
sketches the classifier never saw. Labels are class ids in the classifier's (= the data set's) class list.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from tqdm import tqdm

from driftsketch.evaluation.classifier import SketchClassifier
from driftsketch.evaluation.frechet import frechet_distance
from driftsketch.evaluation.metrics import continuity, vector_stats

MAX_REAL = 5000  # cap on real sketches per side, to keep evaluation to seconds


def _check_classes(real, classifier: SketchClassifier) -> None:
    if list(real.class_names) != list(classifier.class_names):
        raise ValueError(f"evaluation: the data set's classes {real.class_names} differ from the classifier's "
                         f"{classifier.class_names}; train the classifier on this data set")


def _take(data, n: int, rng: np.random.Generator):
    return data if len(data) <= n else data.subset(np.sort(rng.choice(len(data), n, replace=False)))


def _per_class_accuracy(pred: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, float]:
    return {names[c]: float((pred[labels == c] == c).mean()) for c in np.unique(labels)}


def evaluate_samples(samples: np.ndarray, labels: np.ndarray, real, classifier: SketchClassifier,
                     seed: int = 0) -> dict[str, Any]:
    """Metrics of generated ``samples`` (N, 32, 4, 2) asked for class ids ``labels`` (N,) against the
    real data set ``real`` (a SketchData). Generated figures sit next to real held-out ones:
    recognizability, continuity, vector stats; Frechet distance gen vs real held-out, with real train
    vs real held-out as the floor (as many train sketches as generated ones, so both carry the same
    small-sample bias)."""
    _check_classes(real, classifier)
    samples, labels = np.asarray(samples, np.float32), np.asarray(labels, np.int64)
    if len(samples) < 2 or len(samples) != len(labels):
        raise ValueError(f"evaluate_samples: need >= 2 samples with one label each, got {len(samples)} "
                         f"samples and {len(labels)} labels")
    rng = np.random.default_rng(seed)
    train, holdout = real.split(classifier.cfg.holdout_fraction, classifier.cfg.split_seed)
    holdout = _take(holdout, MAX_REAL, rng)
    train = _take(train, len(samples), rng)  # as many as generated: FD's small-sample bias matches
    names = classifier.class_names
    pred_gen, pred_real = classifier.predict(samples), classifier.predict(holdout.beziers)
    feats_gen, feats_hold = classifier.features(samples), classifier.features(holdout.beziers)
    gen_stats, real_stats = vector_stats(samples), vector_stats(holdout.beziers)
    recog_gen, recog_real = float((pred_gen == labels).mean()), float((pred_real == holdout.labels).mean())
    return {
        "num_generated": int(len(samples)), "num_real_holdout": int(len(holdout)),
        "recognizability": recog_gen, "recognizability_real": recog_real,
        "recognizability_ratio": recog_gen / recog_real if recog_real > 0 else float("nan"),
        "recognizability_per_class": _per_class_accuracy(pred_gen, labels, names),
        "recognizability_real_per_class": _per_class_accuracy(pred_real, holdout.labels, names),
        "frechet_distance": frechet_distance(feats_gen, feats_hold),
        "frechet_distance_real_floor": frechet_distance(classifier.features(train.beziers), feats_hold),
        "continuity": gen_stats["continuity"], "continuity_real": real_stats["continuity"],
        "continuity_ratio": (gen_stats["continuity"] / real_stats["continuity"]
                             if real_stats["continuity"] > 0 else float("nan")),
        "vector_stats": gen_stats, "vector_stats_real": real_stats,
        "classifier": {"resolution": classifier.cfg.resolution, **classifier.metrics},
    }


def generate_per_class(model, class_names: list[str], num_per_class: int, seed: int = 0,
                       progress: bool = True, **sampling: Any) -> tuple[np.ndarray, np.ndarray]:
    """``num_per_class`` sketches of every class in ``class_names`` (by name, so the model's own class
    order may differ). Returns ``(beziers (C * n, 32, 4, 2), labels (C * n,))`` with labels indexing
    ``class_names``. ``sampling`` goes to ``generate_beziers`` (None values are left out)."""
    from driftsketch.sampling import generate_beziers

    missing = [c for c in class_names if c not in model.class_names]
    if missing:
        raise ValueError(f"the model does not know classes {missing}; it knows {model.class_names}")
    kwargs = {k: v for k, v in sampling.items() if v is not None}
    out, labels = [], []
    for i, name in enumerate(tqdm(class_names, desc="generating", unit="class", disable=not progress)):
        x, _ = generate_beziers(model, name, num_per_class, seed=seed + i, **kwargs)
        out.append(x)
        labels.append(np.full(num_per_class, i, dtype=np.int64))
    return np.concatenate(out), np.concatenate(labels)


def evaluate_model_with_samples(model, real, classifier: SketchClassifier, num_per_class: int = 50, seed: int = 0,
                                **sampling: Any) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """:func:`evaluate_model`, also returning the generated ``(beziers, labels)``. With ``snap_eps`` set
    (end-point snapping after sampling), the same noise is sampled again without snapping and its
    continuity is reported as ``continuity_unsnapped``."""
    samples, labels = generate_per_class(model, classifier.class_names, num_per_class, seed, **sampling)
    report = evaluate_samples(samples, labels, real, classifier, seed=seed)
    if sampling.get("snap_eps"):
        raw, _ = generate_per_class(model, classifier.class_names, num_per_class, seed,
                                    **{**sampling, "snap_eps": None})
        report["continuity_unsnapped"] = continuity(raw)
    report["sampling"] = {"num_per_class": num_per_class, "seed": seed, **sampling,
                          "checkpoint_id": getattr(model, "checkpoint_id", None)}
    return report, samples, labels


def evaluate_model(model, real, classifier: SketchClassifier, num_per_class: int = 50, seed: int = 0,
                   **sampling: Any) -> dict[str, Any]:
    """Generate ``num_per_class`` sketches per class and :func:`evaluate_samples` them; the sampling
    settings (``num_steps``, ``cfg_scale``, ``solver``, ``snap_eps``) are recorded in the result."""
    return evaluate_model_with_samples(model, real, classifier, num_per_class, seed, **sampling)[0]
