"""Classifier, judges, evaluate_samples/evaluate_model and the driftsketch-eval CLI on a tiny separable set."""
import json

import numpy as np
import pytest
import torch

from driftsketch.data import SketchData
from driftsketch.evaluation import (ClassifierConfig, HiddenJudge, LabelingJudge, SketchClassifier, evaluate_model,
                                    evaluate_samples, prefer, train_classifier, win_rate)
from driftsketch.evaluation.cli import main as eval_main
from driftsketch.evaluation.judges import prefer_from_scores
from driftsketch.model import ModelConfig, SketchFlowTransformer
from sketch_factories import scattered, toy_shape as shape

CLASSES = ["circle", "square", "zigzag"]
TINY = ClassifierConfig(resolution=32, widths=[8, 16, 32], steps=60, batch_size=32, lr=5e-3, holdout_fraction=0.25)


@pytest.fixture(scope="module")
def data() -> SketchData:
    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(3), 80)
    beziers = np.stack([shape(int(c), rng) for c in labels])
    return SketchData(beziers, labels, CLASSES, [f"s{i}" for i in range(len(labels))], {"source": "test"})


@pytest.fixture(scope="module")
def clf(data) -> SketchClassifier:
    torch.manual_seed(0)
    return train_classifier(data, TINY, progress=False)


@pytest.mark.slow  # trains a classifier (seconds)
def test_classifier_learns_separable_set(clf, data):
    assert clf.metrics["holdout_size"] > 30
    assert clf.metrics["holdout_accuracy"] >= 0.9  # chance is 1/3
    probs = clf.predict_proba(data.beziers[:5])
    assert probs.shape == (5, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert clf.features(data.beziers[:5]).shape == (5, 32)


@pytest.mark.slow  # trains a classifier (seconds)
def test_classifier_save_load_round_trip(clf, data, tmp_path):
    path = clf.save(tmp_path / "clf.pt")
    again = SketchClassifier.load(path)
    assert again.class_names == CLASSES and again.cfg == clf.cfg
    assert again.metrics["holdout_accuracy"] == clf.metrics["holdout_accuracy"]
    np.testing.assert_allclose(again.predict_proba(data.beziers[:8]), clf.predict_proba(data.beziers[:8]), atol=1e-6)
    assert LabelingJudge.load(path).classifier.class_names == CLASSES
    torch.save({"model_state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a DriftSketch classifier"):
        SketchClassifier.load(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a DriftSketch classifier"):
        SketchClassifier.load(tmp_path / "junk.pt")


@pytest.mark.slow  # trains a classifier (seconds)
def test_evaluate_samples_real_vs_confetti(clf, data):
    _, holdout = data.split(TINY.holdout_fraction, TINY.split_seed)
    real = evaluate_samples(holdout.beziers, holdout.labels, data, clf)
    assert real["recognizability"] == real["recognizability_real"]
    assert real["frechet_distance"] == pytest.approx(0.0, abs=1e-6)
    assert real["continuity"] == real["continuity_real"] > 0.95  # closed shapes 1.0, zigzags 31/32
    confetti = evaluate_samples(scattered(holdout.beziers), holdout.labels, data, clf)
    assert confetti["continuity"] == 0.0 and confetti["continuity_ratio"] == 0.0
    assert confetti["frechet_distance"] > 3 * confetti["frechet_distance_real_floor"]
    assert json.dumps(confetti)  # JSON-serialisable for metrics.json
    other = SketchData(data.beziers, data.labels, ["a", "b", "c"], data.source_ids)
    with pytest.raises(ValueError, match="differ from the classifier"):
        evaluate_samples(holdout.beziers, holdout.labels, other, clf)


@pytest.mark.slow  # trains a classifier (seconds)
def test_evaluate_model_plumbing(clf, data):
    torch.manual_seed(0)
    model = SketchFlowTransformer(ModelConfig(num_classes=3, dim=32, depth=1, heads=2)).eval()
    model.class_names = list(reversed(CLASSES))  # classes are matched by name, not position
    report = evaluate_model(model, data, clf, num_per_class=4, num_steps=2, cfg_scale=1.0)
    assert report["num_generated"] == 12 and report["sampling"]["num_steps"] == 2
    assert 0.0 <= report["recognizability"] <= 1.0 and np.isfinite(report["frechet_distance"])
    assert "continuity_unsnapped" not in report
    snapped = evaluate_model(model, data, clf, num_per_class=4, num_steps=2, cfg_scale=1.0, snap_eps=0.1)
    assert snapped["continuity"] >= snapped["continuity_unsnapped"] == report["continuity"]
    model.class_names = ["circle", "square", "star"]
    with pytest.raises(ValueError, match="zigzag"):
        evaluate_model(model, data, clf, num_per_class=2, num_steps=1)


@pytest.mark.slow  # trains a classifier (seconds)
@pytest.mark.parametrize("judge_cls", [LabelingJudge, HiddenJudge])
def test_judges_prefer_connected_strokes(clf, data, judge_cls):
    judge = judge_cls(clf)
    x, labels = data.beziers[:30], data.labels[:30]
    connected, confetti = judge.score(x, labels), judge.score(scattered(x), labels)
    assert connected.shape == (30,) and np.all(connected > confetti + 0.5)
    choices = prefer(judge, x, scattered(x), labels, np.random.default_rng(0), noise=0.0)
    assert choices == ["a"] * 30
    # Right shape but the wrong class asked: the class term drops.
    wrong = (labels + 1) % 3
    assert judge.components(x, wrong)["class_prob"].mean() < judge.components(x, labels)["class_prob"].mean() - 0.5


@pytest.mark.slow  # trains a classifier (seconds)
def test_labeling_judge_penalises_off_canvas_and_degenerate(clf, data):
    judge = LabelingJudge(clf)
    x, labels = data.beziers[:10].copy(), data.labels[:10]
    bad = x.copy()
    bad[:, 5:9] = bad[:, 5:9, :1]  # 4 degenerate segments (breaks continuity too)
    bad[:, 20:24, :, 1] += 2.5  # 4 segments below the canvas
    c = judge.components(bad, labels)
    assert np.all(c["degenerate_share"] == 4 / 32) and np.all(c["off_canvas_share"] == 4 / 32)
    assert np.all(judge.score(bad, labels) < judge.score(x, labels))


def test_prefer_noise_and_tie_rates():
    rng = np.random.default_rng(0)
    n = 20000
    a, b = np.ones(n), np.zeros(n)  # a is clearly better everywhere
    out = np.array(prefer_from_scores(a, b, rng, noise=0.2, tie_margin=0.05, tie_rate=0.1))
    ties, flips = (out == "tie").mean(), (out == "b").mean() / (out != "tie").mean()
    assert abs(ties - 0.1) < 0.01 and abs(flips - 0.2) < 0.015
    close = np.array(prefer_from_scores(a, a - 0.01, rng, noise=0.2, tie_margin=0.05))
    assert np.all(close == "tie")  # inside the margin a person cannot tell
    clean = prefer_from_scores(b, a, rng, noise=0.0, tie_margin=0.0)
    assert set(clean) == {"b"}
    with pytest.raises(ValueError, match="noise"):
        prefer_from_scores(a, b, rng, noise=1.5)


def test_win_rate_known_answer():
    res = win_rate(np.array([1.0, 1.0, 1.0, 0.0, 0.5]), np.array([0.0, 0.0, 0.0, 1.0, 0.5]))
    assert (res["wins"], res["losses"], res["ties"]) == (3, 1, 1)
    assert res["win_rate"] == pytest.approx(3.5 / 5) and res["ci_low"] < 0.7 < res["ci_high"]


@pytest.mark.slow  # trains a classifier (seconds)
def test_cli_train_classifier(data, tmp_path, capsys):
    npz = data.save_npz(tmp_path / "tiny.npz")
    out = tmp_path / "clf.pt"
    args = ["--set", "hidden_classifier.steps=30", "--set", "hidden_classifier.widths=[8,16]",
            "train-classifier", "--data", str(npz), "--out", str(out), "--hidden"]
    assert eval_main(args) == 0
    clf = SketchClassifier.load(out)
    assert clf.cfg.resolution == 32 and clf.cfg.widths == [8, 16] and clf.class_names == CLASSES
    assert json.loads(capsys.readouterr().out)["holdout_size"] == clf.metrics["holdout_size"]
    assert eval_main(["--set", "classifier.bogus=1", "train-classifier", "--data", str(npz), "--out", str(out)]) == 2
    assert "bogus" in capsys.readouterr().err


@pytest.mark.slow  # trains a classifier (seconds)
def test_cli_evaluate_writes_metrics_grids_and_samples(clf, data, tmp_path, capsys):
    from driftsketch.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = SketchFlowTransformer(ModelConfig(num_classes=3, dim=32, depth=1, heads=2))
    save_checkpoint(tmp_path / "model.pt", model, CLASSES)
    npz, clf_path = data.save_npz(tmp_path / "tiny.npz"), clf.save(tmp_path / "clf.pt")
    out = tmp_path / "eval"
    args = ["evaluate", "--checkpoint", str(tmp_path / "model.pt"), "--data", str(npz), "--classifier",
            str(clf_path), "--num-per-class", "3", "--steps", "2", "--out", str(out)]
    assert eval_main(args) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["num_generated"] == 9 and report["sampling"]["num_steps"] == 2
    assert sorted(p.name for p in out.glob("samples_*.png")) == [f"samples_{c}.png" for c in sorted(CLASSES)]
    saved = np.load(out / "samples.npz")
    assert saved["beziers"].shape == (9, 32, 4, 2) and saved["labels"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert "recognizability" in capsys.readouterr().out
    assert eval_main(args[:5] + ["--classifier", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2


def test_judging_classifiers_train_on_disjoint_parts(data):
    """configs/eval.yaml: the metrics/gate and hidden-judge classifiers, the simulated annotator's and the
    reward model's train on pairwise disjoint sketches, none of them on the held-out side."""
    from driftsketch.evaluation.classifier import training_part
    from driftsketch.evaluation.settings import load_eval_config

    cfg = load_eval_config()
    ids = {s: set(training_part(data, getattr(cfg, s)).source_ids)
           for s in ("classifier", "hidden_classifier", "annotator_classifier", "reward_classifier")}
    held = set(data.split(cfg.classifier.holdout_fraction, cfg.classifier.split_seed)[1].source_ids)
    judges = ids["classifier"] | ids["hidden_classifier"]  # the two that grade models
    assert not judges & ids["annotator_classifier"] and not judges & ids["reward_classifier"]
    assert not ids["annotator_classifier"] & ids["reward_classifier"]
    assert all(ids[s] and not ids[s] & held for s in ids)
    assert len(judges | ids["annotator_classifier"] | ids["reward_classifier"]) + len(held) == len(data)
    parts = data.partition(3, seed=5)
    assert sum(len(p) for p in parts) == len(data) and all(60 < len(p) < 100 for p in parts)
    with pytest.raises(ValueError, match="part must lie"):
        training_part(data, ClassifierConfig(parts=2, part=2))


def test_demo_bot_judges_with_the_annotator_classifier_only():
    """scripts/demo.sh: the bot's classifier is trained from annotator_classifier, never taken from the
    round's classifiers (which grade the gate and feed the reward model)."""
    from pathlib import Path

    demo = (Path(__file__).resolve().parents[1] / "scripts" / "demo.sh").read_text()
    bot_lines = [ln for ln in demo.splitlines() if " bot " in ln and "--classifier" in ln]
    assert bot_lines and all('--classifier "$ANNOTATOR_CLF"' in ln for ln in bot_lines)
    assert "--section annotator_classifier" in demo and "work/classifiers" not in demo
