"""The preference suite's simulated annotators (benchmarks/annotators.py) on hand-made sketches."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sketch_factories import polyline_sketch, toy_shape

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import annotators as ann  # noqa: E402


def box(w: float, h: float, shear: float = 0.0) -> np.ndarray:
    """A closed rectangle w x h whose top edge is moved right by ``shear`` (y points down)."""
    pts = np.array([[-w, h], [w, h], [w + shear, -h], [-w + shear, -h], [-w, h]]) / 2
    return polyline_sketch(pts)[None]


def test_style_criteria_measure_slant_and_width():
    assert ann.slant(box(0.6, 0.8, shear=0.3))[0] > 0.1 > abs(ann.slant(box(0.6, 0.8))[0])
    assert ann.slant(box(0.6, 0.8, shear=-0.3))[0] < -0.1
    assert ann.log_aspect(box(1.0, 0.5))[0] > 0 > ann.log_aspect(box(0.5, 1.0))[0]


def test_per_sketch_criteria_prefer_smooth_and_symmetric_drawings():
    a = np.linspace(0, 2 * np.pi, 60)
    circle = polyline_sketch(np.stack([0.5 * np.cos(a), 0.5 * np.sin(a)], 1))[None]
    zig = polyline_sketch(np.stack([np.linspace(-0.6, 0.6, 15), 0.3 * (-1.0) ** np.arange(15)], 1))[None]
    assert 3 * ann.turning(circle)[0] < ann.turning(zig)[0]
    lopsided = polyline_sketch([[-0.5, 0.5], [0.5, 0.5], [0.5, -0.5], [0.3, -0.1], [-0.5, 0.5]])[None]
    assert ann.asymmetry(box(0.8, 0.6))[0] < 0.02 < ann.asymmetry(lopsided)[0]


def test_pen_lifts_are_not_turns():
    """Two parallel strokes: the jump between them must not count as a sharp turn."""
    one = polyline_sketch([[-0.6, -0.3], [0.6, -0.3]])
    two = one.copy()
    two[16:] = polyline_sketch([[0.6, 0.3], [-0.6, 0.3]])[16:]
    assert ann.turning(two[None])[0] < 0.05


def test_answers_flip_and_tie_like_a_person():
    rng = np.random.default_rng(0)
    x = np.concatenate([box(1.0, 0.5)] * 2000)
    y = np.concatenate([box(0.5, 1.0)] * 2000)
    wide = ann.Annotator("wide", "style", lambda b, lab: ann.log_aspect(b), "")
    got = np.array(ann.answer(wide, x, y, np.zeros(2000, int), rng, noise=0.1, tie_rate=0.05))
    assert abs((got == "tie").mean() - 0.05) < 0.02 and abs((got == "b").mean() - 0.95 * 0.1) < 0.02


def test_foreign_classifier_learns_toy_classes():
    rng = np.random.default_rng(1)
    labels = np.arange(240) % 3
    x = np.stack([toy_shape(int(c), rng) for c in labels])
    net = ann.train_foreign_classifier(x[:180], labels[:180], 3, steps=60)
    p = ann.foreign_proba(net, x[180:], labels[180:])
    assert (p > 0.5).mean() > 0.9
    # the foreign annotator's score: log-odds, the same order as p, and still apart where p rounds to 1
    m = ann.foreign_margin(net, x[180:], labels[180:])
    assert np.all(np.isfinite(m)) and np.allclose(1 / (1 + np.exp(-m)), p, atol=1e-4)
    sure, y = x[180:][p > 0.9][:1], labels[180:][p > 0.9][:1]

    def sharpened(k: float):  # the same network with logits x k: more confident, same decisions
        s = ann.SegmentConvNet(3)
        s.load_state_dict({n: v * (k if n.startswith("head") else 1.0) for n, v in net.state_dict().items()})
        return s.eval()

    assert ann.foreign_proba(sharpened(20), sure, y)[0] == ann.foreign_proba(sharpened(40), sure, y)[0] == 1.0
    assert ann.foreign_margin(sharpened(40), sure, y)[0] > ann.foreign_margin(sharpened(20), sure, y)[0] > 15


def test_nothing_in_the_project_imports_the_annotators():
    """The suite's tastes must be learned from answers: no project code may compute them."""
    out = subprocess.run(["grep", "-rlE", r"(import|from) +(benchmarks\.)?annotators\b", "dpo", "driftsketch",
                          "labeling", "tasks", "flows"], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout == "", out.stdout
    assert "benchmarks" not in (ROOT / "pyproject.toml").read_text().split("[tool.setuptools.packages.find]")[1][:200]


@pytest.mark.parametrize("n", [1, 5])
def test_criteria_take_batches(n):
    x = np.concatenate([box(0.6, 0.8, shear=0.1 * i) for i in range(n)])
    for fn in (ann.slant, ann.log_aspect, ann.turning, ann.asymmetry):
        assert fn(x).shape == (n,) and np.isfinite(fn(x)).all()
