"""Evaluation of generated sketches and the automatic judges (``driftsketch-eval``).

    from driftsketch.evaluation import continuity, train_classifier, evaluate_samples
    clf = train_classifier(load_dataset("builtin"))
    report = evaluate_samples(samples, labels, real=load_dataset("builtin"), classifier=clf)

Modules: ``metrics`` (continuity, stroke count, vector stats), ``classifier`` (CNN on rasterised
renders), ``frechet`` (Frechet distance), ``judges`` (labeling and hidden judges, noisy ``prefer``),
``evaluate`` (``evaluate_samples``/``evaluate_model``), ``cli`` (``driftsketch-eval``).
"""
from driftsketch.evaluation.classifier import ClassifierConfig, SketchClassifier, fit_classifier, train_classifier
from driftsketch.evaluation.evaluate import evaluate_model, evaluate_samples, generate_per_class
from driftsketch.evaluation.frechet import frechet_distance, frechet_from_stats
from driftsketch.evaluation.judges import HiddenJudge, LabelingJudge, prefer, win_rate
from driftsketch.evaluation.metrics import (continuity, continuity_per_sketch, stroke_count_per_sketch,
                                            vector_stats, vector_stats_per_sketch)

load_classifier = SketchClassifier.load

__all__ = [
    "ClassifierConfig", "SketchClassifier", "fit_classifier", "train_classifier", "load_classifier",
    "evaluate_model", "evaluate_samples", "generate_per_class", "frechet_distance", "frechet_from_stats",
    "HiddenJudge", "LabelingJudge", "prefer", "win_rate", "continuity", "continuity_per_sketch",
    "stroke_count_per_sketch", "vector_stats", "vector_stats_per_sketch",
]
