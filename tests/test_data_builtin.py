"""Built-in procedural doodles: deterministic, valid, connected strokes, fast."""
import time

import numpy as np

from driftsketch.data.builtin import CLASSES, build_builtin, make_sketch
from driftsketch.data.settings import BuiltinConfig


def test_deterministic_and_seed_dependent():
    a = build_builtin(BuiltinConfig(per_class=5, seed=3))
    b = build_builtin(BuiltinConfig(per_class=5, seed=3))
    np.testing.assert_array_equal(a.beziers, b.beziers)
    assert not np.array_equal(a.beziers, build_builtin(BuiltinConfig(per_class=5, seed=4)).beziers)
    # a sketch depends on (seed, class, index) only, not on how many were asked for
    np.testing.assert_array_equal(make_sketch("house", 3, 2), a.beziers[list(a.labels).index(4) + 2])


def test_every_class_is_valid_and_connected():
    for name in CLASSES:
        for i in range(20):
            s = make_sketch(name, 0, i)
            assert s.shape == (32, 4, 2) and s.dtype == np.float32
            assert np.all(np.isfinite(s)) and np.abs(s).max() <= 1.0
            assert np.abs(s).max() > 0.85  # fills the canvas (margin 0.9)
            joined = np.all(s[1:, 0] == s[:-1, 3], axis=1).sum()
            assert joined >= 31 - 4, (name, i, joined)  # at most 5 pen strokes
            lengths = np.linalg.norm(np.diff(s, axis=1), axis=-1).sum(-1)
            assert lengths.min() > 1e-3, (name, i)  # no degenerate (dummy) segments


def test_pen_strokes_where_natural():
    breaks = lambda s: 31 - int(np.all(s[1:, 0] == s[:-1, 3], axis=1).sum())
    assert breaks(make_sketch("circle", 0, 0)) == 0
    assert breaks(make_sketch("smiley", 0, 0)) == 3  # face, two eyes, mouth
    assert breaks(make_sketch("house", 0, 0)) >= 2  # body, roof, door (+ window)


def test_fast():
    start = time.process_time()
    data = build_builtin(BuiltinConfig(per_class=100))
    assert len(data) == 100 * len(BuiltinConfig().classes)
    assert time.process_time() - start < 5.0  # 8 x 400 takes ~2.5 s of CPU
