"""Known-answer tests of the vector metrics and the Frechet distance."""
import numpy as np
import pytest

from driftsketch.evaluation.frechet import frechet_distance, frechet_from_stats
from driftsketch.evaluation.metrics import (continuity, continuity_per_sketch, segment_lengths,
                                            stroke_count_per_sketch, vector_stats, vector_stats_per_sketch)


def straight(a, b) -> np.ndarray:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.stack([a, a + (b - a) / 3, a + 2 * (b - a) / 3, b]).astype(np.float32)


def chain(points) -> np.ndarray:
    """Segments joining consecutive points: len(points) - 1 segments."""
    return np.stack([straight(p, q) for p, q in zip(points[:-1], points[1:])])


def circle_points(n=33, r=0.5, centre=(0.0, 0.0)):
    a = np.linspace(0, 2 * np.pi, n)
    return np.stack([centre[0] + r * np.cos(a), centre[1] + r * np.sin(a)], 1)


def open_chain() -> np.ndarray:
    return chain(np.stack([np.linspace(-0.9, 0.9, 33), 0.3 * np.sin(np.linspace(0, 6, 33))], 1))


def scattered(sketch: np.ndarray) -> np.ndarray:
    """Same (short) segments, each moved to its own cell of a 6 x 6 grid 0.3 apart: nothing connects."""
    grid = np.stack(np.meshgrid(np.arange(6), np.arange(6)), -1).reshape(-1, 2)[:32] * 0.3 - 0.8
    return (sketch - sketch[:, :1] + grid[:, None, :]).astype(np.float32)


def test_continuity_known_answers():
    closed = chain(circle_points())  # last end == first start
    assert closed.shape == (32, 4, 2)
    assert continuity(closed[None]) == 1.0
    assert continuity(open_chain()) == pytest.approx(31 / 32)  # last segment's end meets nothing
    assert continuity(scattered(closed)) == 0.0
    two = np.concatenate([open_chain()[:16], chain(circle_points(17, 0.3, (0.5, 0.6)))])  # an open and a closed stroke
    assert continuity(two) == pytest.approx(31 / 32)
    per = continuity_per_sketch(np.stack([closed, open_chain(), scattered(closed)]))
    np.testing.assert_allclose(per, [1.0, 31 / 32, 0.0])


def test_continuity_eps_and_self_connection():
    gap = open_chain()
    gap[10:, :, 0] += 0.03  # a 0.03 gap between segment 9 and 10
    assert continuity(gap, eps=0.02) == pytest.approx(30 / 32)
    assert continuity(gap, eps=0.05) == pytest.approx(31 / 32)
    dots = np.zeros((32, 4, 2), np.float32)  # 32 zero-length segments at distinct places
    dots += np.linspace(-0.9, 0.9, 32)[:, None, None]
    assert continuity(dots) == 0.0  # a segment does not connect to itself


def test_stroke_count():
    closed = chain(circle_points())
    assert stroke_count_per_sketch(closed[None]).tolist() == [1]
    two = np.concatenate([open_chain()[:16], chain(circle_points(17, 0.3, (0.5, 0.6)))])
    assert stroke_count_per_sketch(two).tolist() == [2]
    assert stroke_count_per_sketch(scattered(closed)).tolist() == [32]
    # A stroke drawn backwards (end to start) still joins: the graph is undirected.
    rev = closed.copy()
    rev[5:9] = rev[5:9][::-1, ::-1]
    assert stroke_count_per_sketch(rev).tolist()[0] <= 3


def test_vector_stats_known_answers():
    line = open_chain()
    flat = chain(np.stack([np.linspace(-0.8, 0.8, 33), np.zeros(33)], 1))
    assert segment_lengths(flat[None]).sum() == pytest.approx(1.6, rel=1e-5)
    off = flat.copy()
    off[:4, :, 1] = 1.5  # 4 segments below the canvas
    off[4:6] = off[4:6, :1]  # 2 degenerate segments (all four points equal)
    per = vector_stats_per_sketch(np.stack([flat, off]))
    assert per["ink_length"][0] == pytest.approx(1.6, rel=1e-5)
    assert per["off_canvas_share"].tolist() == [0.0, 4 / 32]
    assert per["degenerate_share"].tolist() == [0.0, 2 / 32]
    stats = vector_stats(np.stack([line, flat]))
    assert stats["continuity"] == pytest.approx(31 / 32)
    assert set(stats) >= {"ink_length", "off_canvas_share", "degenerate_share", "continuity_eps0.05", "stroke_count"}


def test_frechet_from_stats_known_answers():
    d = 4
    assert frechet_from_stats(np.zeros(d), np.eye(d), np.zeros(d), np.eye(d)) == pytest.approx(0, abs=1e-9)
    # Shifted means, equal covariances: FD = |dmu|^2.
    assert frechet_from_stats(np.zeros(d), np.eye(d), np.full(d, 2.0), np.eye(d)) == pytest.approx(16.0)
    # Diagonal covariances: FD = sum (sqrt(a) - sqrt(b))^2.
    a, b = np.array([1.0, 4.0, 9.0, 0.25]), np.array([4.0, 1.0, 1.0, 0.25])
    want = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_from_stats(np.zeros(d), np.diag(a), np.zeros(d), np.diag(b)) == pytest.approx(want)
    # Singular covariances still give a finite, correct answer.
    sing = np.diag([1.0, 0.0, 0.0, 0.0])
    assert frechet_from_stats(np.zeros(d), sing, np.ones(d), sing) == pytest.approx(4.0, abs=1e-3)


def test_frechet_distance_on_samples():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 3))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    y = rng.normal(size=(20000, 3)) * 2.0 + np.array([1.0, 0.0, 0.0])
    # |dmu|^2 + 3 * (1 - 2)^2 = 1 + 3
    assert frechet_distance(x, y) == pytest.approx(4.0, rel=0.05)
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(x[:1], y)
