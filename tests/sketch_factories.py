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
