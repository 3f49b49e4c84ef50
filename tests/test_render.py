"""Rendering: SVG structure, PNG size, and orientation/scale agreement of SVG->PNG, raster and matplotlib."""
import io
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from driftsketch.raster import rasterize, sample_curves
from driftsketch.render import plot_bezier_sketches, png_bytes, sketch_to_svg, write_png, write_svg
from sketch_factories import polyline_sketch

# Ink of the test sketch spans x, y in [-0.8, -0.2]: the top-left quadrant, i.e. [0.1, 0.4] of the canvas.
BOX = (0.1, 0.4)


@pytest.fixture
def top_left_sketch() -> np.ndarray:
    # An "L" plus a diagonal: asymmetric, so a flip in x or y or a transpose would move the ink.
    return polyline_sketch([[-0.8, -0.8], [-0.8, -0.2], [-0.2, -0.2], [-0.8, -0.8]])


def ink_box(dark: np.ndarray) -> tuple[float, float, float, float]:
    """(x_min, x_max, y_min, y_max) of dark pixels as fractions of the image (row 0 = top)."""
    rows, cols = np.nonzero(dark)
    h, w = dark.shape
    return cols.min() / w, (cols.max() + 1) / w, rows.min() / h, (rows.max() + 1) / h


def assert_in_top_left(box, tol):
    x0, x1, y0, y1 = box
    for got, want in ((x0, BOX[0]), (x1, BOX[1]), (y0, BOX[0]), (y1, BOX[1])):
        assert abs(got - want) < tol, (box, BOX)


def test_svg_has_one_parseable_path_per_segment(top_left_sketch):
    svg = sketch_to_svg(top_left_sketch, size=256, stroke_width=2)
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.get("width") == "256" and root.get("viewBox") == "0 0 256 256"
    paths = root.findall(f".//{ns}path")
    assert len(paths) == 32
    numbers = re.compile(r"^M (\S+) (\S+) C (\S+) (\S+) (\S+) (\S+) (\S+) (\S+)$")
    first = [float(v) for v in numbers.match(paths[0].get("d")).groups()]
    # [-1, 1] -> [0, 256]: (-0.8, -0.8) -> (25.6, 25.6)
    assert first[:2] == pytest.approx([25.6, 25.6], abs=0.01)
    assert first[6:] == pytest.approx(list((top_left_sketch[0, 3] + 1) * 128), abs=0.01)
    assert root.find(f"{ns}g").get("stroke-linecap") == "round"


def test_svg_rejects_bad_arrays():
    with pytest.raises(ValueError, match="shape"):
        sketch_to_svg(np.zeros((31, 4, 2), np.float32))
    bad = np.zeros((32, 4, 2), np.float32)
    bad[3, 1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sketch_to_svg(bad)


def test_png_size_and_orientation(tmp_path, top_left_sketch):
    img = Image.open(io.BytesIO(png_bytes(top_left_sketch, size=128)))
    assert img.size == (128, 128)
    gray = np.asarray(img.convert("L"), dtype=np.float64) / 255
    assert gray[0, 0] == 1.0  # white background
    assert_in_top_left(ink_box(gray < 0.5), tol=0.03)
    write_png(top_left_sketch, tmp_path / "a.png", size=64)
    write_svg(top_left_sketch, tmp_path / "a.svg")
    assert Image.open(tmp_path / "a.png").size == (64, 64)
    assert (tmp_path / "a.svg").read_text().count("<path") == 32


def test_raster_orientation_matches_svg(top_left_sketch):
    img = rasterize(top_left_sketch[None], resolution=64)
    assert img.shape == (1, 1, 64, 64) and 0 <= img.min() and img.max() <= 1
    assert_in_top_left(ink_box(img[0, 0].numpy() > 0.3), tol=0.04)
    # A point at x = -1 + 2 * (c + 0.5) / R, y = -1 + 2 * (r + 0.5) / R lands on pixel (row r, column c).
    dot = np.zeros((1, 32, 4, 2), np.float32)
    dot[..., 0], dot[..., 1] = -1 + 2 * 10.5 / 64, -1 + 2 * 40.5 / 64
    dot[..., 0] += np.linspace(0, 1e-3, 4)  # tiny length so the dot has ink
    img = rasterize(dot, resolution=64)[0, 0]
    assert tuple(np.unravel_index(int(img.argmax()), img.shape)) == (40, 10)


def test_matplotlib_grid_orientation_matches_svg(tmp_path, top_left_sketch):
    path = plot_bezier_sketches(top_left_sketch[None], tmp_path / "grid.png", ncols=1, dpi=200)
    gray = np.asarray(Image.open(path).convert("L"), dtype=np.float64) / 255
    dark = gray < 0.5
    # The axes frame: rows/columns that are mostly dark. Measure the ink inside it.
    rows = np.nonzero(dark.mean(axis=1) > 0.6)[0]
    cols = np.nonzero(dark.mean(axis=0) > 0.6)[0]
    inner = dark[rows.min() + 4: rows.max() - 3, cols.min() + 4: cols.max() - 3]
    h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    x0, x1, y0, y1 = ink_box(inner)
    ih, iw = inner.shape
    box = ((x0 * iw + 4) / w, (x1 * iw + 4) / w, (y0 * ih + 4) / h, (y1 * ih + 4) / h)
    assert_in_top_left(box, tol=0.03)


def test_grid_titles_and_errors(tmp_path, top_left_sketch):
    many = np.stack([top_left_sketch] * 5)
    out = plot_bezier_sketches(many, tmp_path / "g.png", titles=list("abcde"), ncols=3)
    assert Image.open(out).size[0] > Image.open(out).size[1]  # 3 columns x 2 rows
    with pytest.raises(ValueError, match="titles"):
        plot_bezier_sketches(many, tmp_path / "h.png", titles=["a"])


def test_sample_curves_hits_end_points(top_left_sketch):
    pts = sample_curves(top_left_sketch, 5)
    assert pts.shape == (32, 5, 2)
    np.testing.assert_allclose(pts[:, 0], top_left_sketch[:, 0], atol=1e-6)
    np.testing.assert_allclose(pts[:, -1], top_left_sketch[:, 3], atol=1e-6)
