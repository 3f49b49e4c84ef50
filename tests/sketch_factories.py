"""Hand-made sketches for tests (importable because tests/conftest.py puts tests/ on sys.path)."""
import numpy as np


def polyline_sketch(points) -> np.ndarray:
    """32 straight cubic segments chained along a polyline (equal arc length each): (32, 4, 2) float32."""
    pts = np.asarray(points, dtype=np.float64)
    d = np.r_[0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
    t = np.linspace(0, d[-1], 33)
    p = np.stack([np.interp(t, d, pts[:, 0]), np.interp(t, d, pts[:, 1])], 1)
    a, b = p[:-1], p[1:]
    return np.stack([a, a + (b - a) / 3, a + 2 * (b - a) / 3, b], 1).astype(np.float32)


def toy_shape(label: int, rng: np.random.Generator) -> np.ndarray:
    """A connected circle (0), square (1) or zigzag (2) of random size and position."""
    s, (cx, cy) = rng.uniform(0.4, 0.7), rng.uniform(-0.15, 0.15, 2)
    if label == 0:
        a = np.linspace(0, 2 * np.pi, 40)
        return polyline_sketch(np.stack([cx + s * np.cos(a), cy + s * np.sin(a)], 1))
    if label == 1:
        return polyline_sketch([[cx - s, cy - s], [cx + s, cy - s], [cx + s, cy + s], [cx - s, cy + s], [cx - s, cy - s]])
    xs = np.linspace(cx - s, cx + s, 7)
    return polyline_sketch(np.stack([xs, cy + s * 0.5 * (-1) ** np.arange(7)], 1))


def scattered(sketches: np.ndarray) -> np.ndarray:
    """Each segment moved to its own cell of a 6 x 6 grid 0.3 apart: the same dashes, nothing connects."""
    grid = np.stack(np.meshgrid(np.arange(6), np.arange(6)), -1).reshape(-1, 2)[:32] * 0.3 - 0.8
    return (sketches - sketches[:, :, :1] + grid[None, :, None, :]).astype(np.float32)
