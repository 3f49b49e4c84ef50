"""ControlSketch loader: SVG number forms and synthetic .npz files."""
import numpy as np
import pytest

from driftsketch.data.controlsketch import (import_controlsketch, parse_numbers, parse_svg_sketch,
                                            path_to_cubics)
from driftsketch.data.dataset import DataError


def test_svg_number_forms():
    assert parse_numbers("1e-3 1.5.5 -1-2 3,4 .5e2 +7 1E+2") == [0.001, 1.5, 0.5, -1, -2, 3, 4, 50, 7, 100]
    assert parse_numbers("M0,0C1.5.5-1-2") == [0, 0, 1.5, 0.5, -1, -2]


def test_path_commands_without_separators():
    (seg,) = path_to_cubics("M256 0C512.0.0-0 512 256 512")
    np.testing.assert_allclose(seg, [[256, 0], [512, 0], [0, 512], [256, 512]])
    rel = path_to_cubics("m10 10c10 0 20 0 30 0l0 10")
    np.testing.assert_allclose(rel[0][3], [40, 10])
    np.testing.assert_allclose(rel[1][[0, 3]], [[40, 10], [40, 20]])
    with pytest.raises(ValueError, match="needs 6 numbers"):
        path_to_cubics("M0 0 C 1 2 3")


def _svg(n=32, rng=np.random.default_rng(0)):
    paths = "".join(
        f'<path d="M{a:.3f} {b:.3f}C{c:.2e} {d:.3f} {e:.3f} {f:.3f} {g:.3f} {h:.3f}" stroke="black"/>'
        for a, b, c, d, e, f, g, h in rng.uniform(1, 511, (n, 8)))
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="512" height="512">{paths}</svg>'


def test_parse_svg_sketch_maps_viewport_to_unit_square():
    svg = '<svg><path d="M0 0 C 128 128 384 384 512 512"/></svg>'
    sketch = parse_svg_sketch(svg)
    assert sketch.shape == (32, 4, 2)
    np.testing.assert_allclose(sketch[0, 0], [-1, -1])  # assert_allclose returns None: `a and b` never ran b
    np.testing.assert_allclose(sketch[-1, 3], [1, 1])
    with pytest.raises(ValueError, match="expected 1-32"):
        parse_svg_sketch(_svg(33))


def test_import_synthetic_files(tmp_path):
    for cat, n in (("cat", 3), ("dog", 2)):
        (tmp_path / "train" / cat).mkdir(parents=True)
        for i in range(n):
            np.savez(tmp_path / "train" / cat / f"{i}.npz", svg_32s=np.array(_svg()), caption=np.array("x"))
    np.savez(tmp_path / "train" / "dog" / "bad.npz", other=np.zeros(3))
    with pytest.warns(UserWarning, match=r"bad\.npz: skipped: no key 'svg_32s'"):
        data = import_controlsketch(tmp_path / "train")
    assert data.class_names == ["cat", "dog"] and data.class_counts() == {"cat": 3, "dog": 2}
    assert data.meta["skipped_malformed"] == 1 and "cat/0" in set(data.source_ids)
    assert np.abs(data.beziers).max() <= 1.0
    with pytest.raises(DataError, match="unknown categories"):
        import_controlsketch(tmp_path / "train", categories=["owl"])
