"""The importers on the real data in ../shared/data (skipped where that folder is absent)."""
from pathlib import Path

import numpy as np
import pytest

from driftsketch.data.quickdraw import import_quickdraw
from driftsketch.data.settings import ImportConfig

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real data not found at {SHARED}")


def _continuity(b, eps=0.02):
    d = np.linalg.norm(b[:, :, None, 3] - b[:, None, :, 0], axis=-1)
    return float((d.min(-1) < eps).mean())


def test_mnist_strokes_fit_smooth_and_connected():
    data = import_quickdraw(SHARED / "mnist-strokes", ["3", "7"], ImportConfig(max_per_class=15, workers=1))
    assert data.class_counts() == {"3": 15, "7": 15}
    assert data.meta["fit_chamfer_mean"] < 5.0  # px on 512; mostly the staircase being smoothed away
    assert _continuity(data.beziers) > 0.9


def test_quickdraw_raw_fit():
    data = import_quickdraw(SHARED / "quickdraw-raw", ["triangle", "smiley face"],
                            ImportConfig(max_per_class=10, workers=1))
    assert len(data) == 20 and data.meta["fit_chamfer_mean"] < 1.5
    assert _continuity(data.beziers) > 0.7
