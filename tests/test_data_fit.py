"""Bezier fitting: known answers for the fit, the split, the count and the error measure."""
import numpy as np
import pytest

from driftsketch.data.bezier_fit import (FitConfig, FitError, bezier_eval, chamfer_px, fit_cubics,
                                         fit_drawing, split_bezier, split_to_count, staircase_step)

CUBIC = np.array([[50.0, 400.0], [120.0, 60.0], [380.0, 80.0], [460.0, 380.0]])


def _arc_length_samples(ctrl, n=400):
    dense = bezier_eval(ctrl, np.linspace(0, 1, 5000))
    s = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
    si = np.linspace(0, s[-1], n)
    return np.stack([np.interp(si, s, dense[:, 0]), np.interp(si, s, dense[:, 1])], axis=1)


def test_known_cubic_comes_back_as_itself():
    # Uniform in arc length, so the fit must find the curve's own parameters (not just t = i/n).
    points = _arc_length_samples(CUBIC)
    segments = fit_cubics(points, tol=0.05)
    assert len(segments) == 1
    np.testing.assert_allclose(segments[0], CUBIC, atol=0.05)  # px on a ~400 px curve


def test_known_cubic_through_fit_drawing_is_exact_up_to_normalisation():
    sketch, stats = fit_drawing([_arc_length_samples(CUBIC)])
    # 1 cubic split 31 times at t = 0.5 by de Casteljau: the segments trace the original curve.
    curve = bezier_eval(sketch, np.linspace(0, 1, 8)).reshape(-1, 2)
    lo, hi = curve.min(0), curve.max(0)
    assert np.isclose((hi - lo).max(), 1.8, atol=0.01)  # fits the 0.9 margin
    assert stats["chamfer_px"] < 0.5
    np.testing.assert_array_equal(sketch[1:, 0], sketch[:-1, 3])  # one stroke: all connected


def test_de_casteljau_split_is_exact():
    left, right = split_bezier(CUBIC, 0.5)
    t = np.linspace(0, 1, 11)
    np.testing.assert_allclose(bezier_eval(left, t), bezier_eval(CUBIC, t / 2), atol=1e-9)
    np.testing.assert_allclose(bezier_eval(right, t), bezier_eval(CUBIC, 0.5 + t / 2), atol=1e-9)
    assert np.array_equal(left[3], right[0])


def test_split_to_count_keeps_order_and_count():
    segs = [CUBIC, CUBIC + 1000.0]
    out = split_to_count(segs, 32)
    assert len(out) == 32
    assert np.array_equal(out[0][0], CUBIC[0]) and np.array_equal(out[-1][3], CUBIC[3] + 1000.0)


def test_staircase_becomes_smooth():
    # A quarter circle traced on a 10-unit grid (like the MNIST strokes): whole-step moves only.
    th = np.linspace(0, np.pi / 2, 400)
    grid = np.unique(np.round(np.stack([100 * np.cos(th), 100 * np.sin(th)], 1) / 10) * 10, axis=0)
    grid = grid[np.argsort(np.arctan2(grid[:, 1], grid[:, 0]))]
    assert staircase_step([grid]) == 10
    assert staircase_step([np.array([[0, 0], [100, 0], [100, 100], [0, 100], [0, 0]] * 3)]) == 0
    sketch, stats = fit_drawing([grid])
    assert stats["staircase_px"] > 0
    # Smooth: the direction turns gradually; a reproduced staircase would turn by ~90 degrees.
    pts = bezier_eval(sketch, np.linspace(0, 1, 16)).reshape(-1, 2)
    d = np.diff(pts, axis=0)
    d = d[np.linalg.norm(d, axis=1) > 1e-6]
    ang = np.degrees(np.abs(np.angle(np.exp(1j * np.diff(np.arctan2(d[:, 1], d[:, 0]))))))
    assert ang.max() < 20


def test_output_is_valid_and_continuous_within_strokes():
    rng = np.random.default_rng(0)
    strokes = [np.cumsum(rng.normal(0, 5, (40, 2)), axis=0) for _ in range(3)]
    sketch, stats = fit_drawing(strokes)
    assert sketch.shape == (32, 4, 2) and sketch.dtype == np.float32
    assert np.all(np.isfinite(sketch)) and np.abs(sketch).max() <= 1.0
    joined = np.all(sketch[1:, 0] == sketch[:-1, 3], axis=1)
    assert joined.sum() == 31 - 2  # only the two pen lifts break the chain
    assert np.isfinite(stats["chamfer_px"])


def test_too_many_segments_refits_looser():
    rng = np.random.default_rng(1)
    scribble = np.cumsum(rng.normal(0, 20, (400, 2)), axis=0)  # needs far more than 32 cubics at 2 px
    sketch, stats = fit_drawing([scribble], FitConfig())
    assert sketch.shape == (32, 4, 2) and stats["tolerance_px"] > 2.0


def test_dot_and_bad_drawings():
    sketch, _ = fit_drawing([np.array([[0.0, 0.0], [100.0, 0.0]]), np.array([[50.0, 50.0]])])
    assert np.all(np.isfinite(sketch))
    with pytest.raises(FitError, match="more than 32"):
        fit_drawing([np.array([[i, 0.0], [i, 5.0]]) for i in range(33)])
    with pytest.raises(FitError):
        fit_drawing([np.array([[3.0, 3.0]])])


def test_chamfer_known_answers():
    line = np.array([[0.0, 0.0], [100.0, 0.0]])
    seg = np.array([[[0.0, 0.0], [33.0, 0.0], [66.0, 0.0], [100.0, 0.0]]])
    assert chamfer_px([line], seg) < 0.3
    assert np.isclose(chamfer_px([line], seg + [0.0, 4.0]), 4.0, atol=0.05)
