"""Built-in default data: procedural hand-drawn-looking doodles, deterministic from a seed.

Each doodle is made of pen strokes in drawing order (a house is body, roof, door, sometimes a
window); a stroke is a chain of cubic segments sharing end/start points exactly. Hand jitter:
wobbly radii and bowed lines, uneven proportions, a small rotation, overshoot where the pen closes
a shape. Sketch ``i`` of class ``c`` depends only on ``(seed, c, i)``.

    driftsketch-data builtin --out data/builtin.npz          # or load_dataset("builtin")
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from tqdm import tqdm

from driftsketch.config import to_dict
from driftsketch.data.bezier_fit import bezier_eval, split_to_count
from driftsketch.data.dataset import DataError, SketchData, cached
from driftsketch.data.settings import BuiltinConfig, load_data_config
from driftsketch.sketch import NUM_SEGMENTS

Stroke = list  # list of (4, 2) cubics, consecutive ones connected
MARGIN = 0.9
GENERATOR_VERSION = 2  # part of the cache key: bump when the drawings change


# --- stroke primitives (unit-ish coordinates, y down) ---------------------------------------------

def line(a, b, rng: np.random.Generator, bow: float = 0.04) -> np.ndarray:
    """A slightly bowed straight cubic from ``a`` to ``b``."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = b - a
    n = np.array([-d[1], d[0]])
    k1, k2 = rng.normal(0.0, bow, 2)
    k2 = 0.6 * k1 + 0.4 * k2  # mostly one-sided bow, like a real hand
    return np.stack([a, a + d / 3 + k1 * n, a + 2 * d / 3 + k2 * n, b])


def polyline(points, rng: np.random.Generator, bow: float = 0.04) -> Stroke:
    """Connected bowed lines through ``points``."""
    pts = np.asarray(points, float)
    return [line(p, q, rng, bow) for p, q in zip(pts[:-1], pts[1:])]


def smooth_curve(points) -> Stroke:
    """Catmull-Rom spline through ``points`` as connected cubics (ends use reflected neighbours)."""
    p = np.asarray(points, float)
    ext = np.concatenate([[2 * p[0] - p[1]], p, [2 * p[-1] - p[-2]]])
    return [np.stack([ext[i], ext[i] + (ext[i + 1] - ext[i - 1]) / 6,
                      ext[i + 1] - (ext[i + 2] - ext[i]) / 6, ext[i + 1]])
            for i in range(1, len(ext) - 2)]


def wobbly_loop(rng: np.random.Generator, centre=(0.0, 0.0), radius: float = 1.0, aspect: float = 1.0,
                n: int = 10, overshoot: float = 0.25, wobble: float = 0.05) -> Stroke:
    """A hand-drawn closed loop (circle/ellipse) with low-frequency radius wobble and overshoot."""
    start = rng.uniform(0, 2 * np.pi)
    sweep = 2 * np.pi + rng.uniform(0.0, overshoot)
    th = start + np.linspace(0.0, sweep, n + 1) * rng.choice([-1.0, 1.0])
    ph = rng.uniform(0, 2 * np.pi, 2)
    amp = rng.normal(0, wobble, 2)
    r = radius * (1 + amp[0] * np.sin(th + ph[0]) + amp[1] * np.sin(2 * th + ph[1]))
    r = r * np.linspace(1.0, 1.0 + rng.normal(0, 0.04), n + 1)  # the pen does not meet itself exactly
    pts = np.stack([r * np.cos(th) * aspect, r * np.sin(th)], axis=1) + centre
    return smooth_curve(pts)


def _closed_polygon(vertices: np.ndarray, rng: np.random.Generator, bow: float = 0.04) -> Stroke:
    """Polygon drawn in one stroke; the last side overshoots the start a little."""
    v = np.asarray(vertices, float)
    end = v[0] + (v[0] - v[-1]) * rng.uniform(0.0, 0.12)
    return polyline(np.concatenate([v, [end]]), rng, bow)


def _jitter(points, rng: np.random.Generator, s: float) -> np.ndarray:
    return np.asarray(points, float) + rng.normal(0, s, np.shape(points))


# --- classes --------------------------------------------------------------------------------------

def circle(rng):
    return [wobbly_loop(rng, aspect=rng.uniform(0.85, 1.15), n=int(rng.integers(8, 13)))]


def square(rng):
    w, h = rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15)
    v = _jitter([[-w, -h], [w, -h], [w, h], [-w, h]], rng, 0.05)
    return [_closed_polygon(np.roll(v, -int(rng.integers(0, 4)), axis=0), rng)]


def triangle(rng):
    ang = -np.pi / 2 + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
    v = _jitter(np.stack([np.cos(ang) * rng.uniform(0.9, 1.2), np.sin(ang)], axis=1), rng, 0.06)
    return [_closed_polygon(v, rng)]


def star(rng):
    k = np.arange(10)
    r = np.where(k % 2 == 0, 1.0, rng.uniform(0.35, 0.5))
    ang = -np.pi / 2 + k * np.pi / 5
    v = _jitter(np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1), rng, 0.04)
    return [_closed_polygon(v, rng, bow=0.03)]


def house(rng):
    w, h = rng.uniform(0.7, 1.0), rng.uniform(0.55, 0.8)
    body = _jitter([[-w, 0.0], [-w, h], [w, h], [w, 0.0]], rng, 0.03)
    body = np.concatenate([body, [body[0] + rng.normal(0, 0.02, 2)]])
    apex = np.array([rng.normal(0, 0.08), -rng.uniform(0.55, 0.9)])
    dw, dh = rng.uniform(0.14, 0.24), rng.uniform(0.3, 0.5)
    dx = rng.uniform(-w + dw + 0.1, w - dw - 0.1)
    strokes = [polyline(body, rng, 0.03),
               polyline([body[0] + rng.normal(0, 0.02, 2), apex, body[3] + rng.normal(0, 0.02, 2)], rng, 0.03),
               polyline(_jitter([[dx - dw, h], [dx - dw, h - dh], [dx + dw, h - dh], [dx + dw, h]], rng, 0.015),
                        rng, 0.02)]
    if rng.random() < 0.5:  # a window on the side away from the door
        cx = -0.5 * w if dx > 0 else 0.5 * w
        s = rng.uniform(0.12, 0.18)
        strokes.append(_closed_polygon(_jitter([[cx - s, 0.3 - s], [cx + s, 0.3 - s], [cx + s, 0.3 + s],
                                                [cx - s, 0.3 + s]], rng, 0.015), rng, 0.02))
    return strokes


def spiral(rng):
    turns = rng.uniform(2.2, 3.4)
    n = int(turns * 7)
    th = np.linspace(0, turns * 2 * np.pi, n) + rng.uniform(0, 2 * np.pi)
    r = np.linspace(rng.uniform(0.03, 0.12), 1.0, n) * (1 + rng.normal(0, 0.03, n))
    pts = np.stack([r * np.cos(th), r * np.sin(th) * rng.uniform(0.85, 1.15)], axis=1)
    return [smooth_curve(pts if rng.random() < 0.5 else pts * [-1, 1])]


def zigzag(rng):
    teeth = int(rng.integers(4, 8))
    x = np.linspace(-1, 1, 2 * teeth + 1) + rng.normal(0, 0.03, 2 * teeth + 1)
    y = np.where(np.arange(2 * teeth + 1) % 2 == 0, 1.0, -1.0) * rng.uniform(0.25, 0.5)
    return [polyline(_jitter(np.stack([x, y + rng.normal(0, 0.04, len(x))], axis=1), rng, 0.01), rng, 0.02)]


def smiley(rng):
    face = wobbly_loop(rng, aspect=rng.uniform(0.9, 1.1), n=10, overshoot=0.3, wobble=0.03)
    ex, ey, er = rng.uniform(0.28, 0.42), rng.uniform(-0.45, -0.25), rng.uniform(0.06, 0.11)
    eyes = [wobbly_loop(rng, centre=(sx * ex + rng.normal(0, 0.03), ey + rng.normal(0, 0.03)), radius=er,
                        n=6, overshoot=0.1, wobble=0.05) for sx in (-1, 1)]
    mw, my, depth = rng.uniform(0.4, 0.6), rng.uniform(0.25, 0.4), rng.uniform(0.15, 0.3)
    t = np.linspace(-1, 1, 5)
    mouth = smooth_curve(_jitter(np.stack([t * mw, my + depth * (1 - t**2)], axis=1), rng, 0.015))
    return [face, *eyes, mouth]


def heart(rng):
    t = np.linspace(0, 2 * np.pi, 15)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = _jitter(np.stack([x * rng.uniform(0.9, 1.1), y], axis=1) / 16, rng, 0.025)
    pts[-1] = pts[0] + rng.normal(0, 0.03, 2)
    return [smooth_curve(pts)]


def arrow(rng):
    length, head = rng.uniform(1.4, 2.0), rng.uniform(0.3, 0.5)
    tip = np.array([length / 2, rng.normal(0, 0.05)])
    shaft = [line([-length / 2, rng.normal(0, 0.05)], tip, rng, 0.02)]
    spread = rng.uniform(0.5, 0.8)
    wing = _jitter([[tip[0] - head, -head * spread], tip, [tip[0] - head, head * spread]], rng, 0.03)
    return [shaft, polyline(wing, rng, 0.02)]


CLASSES: dict[str, Callable[[np.random.Generator], list[Stroke]]] = {
    "circle": circle, "square": square, "triangle": triangle, "star": star, "house": house,
    "spiral": spiral, "zigzag": zigzag, "smiley": smiley, "heart": heart, "arrow": arrow,
}


# --- assembling sketches ----------------------------------------------------------------------------

def _place(strokes: list[Stroke], rng: np.random.Generator) -> np.ndarray:
    """Rotate/stretch a little, normalise the curve's bounding box into [-MARGIN, MARGIN], 32 segments."""
    segs = np.stack([c for s in strokes for c in s])  # (K, 4, 2)
    if len(segs) > NUM_SEGMENTS:
        raise DataError(f"builtin doodle has {len(segs)} segments, more than {NUM_SEGMENTS}")
    a = rng.normal(0, np.radians(7))
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * rng.uniform(0.9, 1.1, 2)
    segs = segs @ rot.T
    pts = bezier_eval(segs, np.linspace(0, 1, 9)).reshape(-1, 2)
    lo, hi = pts.min(0), pts.max(0)
    segs = (segs - (lo + hi) / 2) * (2 * MARGIN / (hi - lo).max())
    return np.clip(np.stack(split_to_count(list(segs))), -1, 1).astype(np.float32)


def make_sketch(name: str, seed: int, index: int) -> np.ndarray:
    """Sketch ``index`` of class ``name``: ``(32, 4, 2)`` float32, a function of (seed, name, index)."""
    if name not in CLASSES:
        raise DataError(f"unknown builtin class {name!r}; available: {sorted(CLASSES)}")
    rng = np.random.default_rng([seed, list(CLASSES).index(name), index])
    return _place(CLASSES[name](rng), rng)


def build_builtin(cfg: BuiltinConfig | None = None) -> SketchData:
    """The procedural data set: ``per_class`` sketches of each class in ``cfg.classes``."""
    cfg = cfg or BuiltinConfig()
    if not cfg.classes or cfg.per_class < 1:
        raise DataError("builtin data set needs at least one class and per_class >= 1")
    beziers, labels, ids = [], [], []
    for label, name in enumerate(tqdm(cfg.classes, desc="builtin doodles", unit="class", leave=False)):
        for i in range(cfg.per_class):
            beziers.append(make_sketch(name, cfg.seed, i))
            labels.append(label)
            ids.append(f"builtin:{name}:{i}")
    meta = {"source": "builtin", "format": "builtin",
            "options": dict(to_dict(cfg), generator_version=GENERATOR_VERSION)}
    return SketchData(np.stack(beziers), np.array(labels), list(cfg.classes), np.array(ids), meta)


def load_builtin(cache_dir: str | Path | None = None, overrides: Iterable[str] = ()) -> SketchData:
    """The built-in data set with settings from ``configs/data.yaml`` (+ ``builtin.*`` overrides), cached in
    ``cache_dir`` (default: ``cache_dir`` of configs/data.yaml)."""
    over = [o if o.startswith("builtin.") else f"builtin.{o}" for o in overrides if o]
    data_cfg = load_data_config(overrides=over)
    cfg = data_cfg.builtin
    options = dict(to_dict(cfg), generator_version=GENERATOR_VERSION)
    return cached("builtin", "builtin", options, lambda: build_builtin(cfg),
                  data_cfg.cache_dir if cache_dir is None else cache_dir)
