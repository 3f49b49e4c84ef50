"""benchmarks/reward_encoder_probe.py: the encoder reads pen moves, and its fine-tuned rankers learn what pairs say."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import reward_encoder_probe as rep  # noqa: E402
from reward_ceiling import agreement  # noqa: E402


def test_stroke_tokens_carry_the_pen_move_from_the_previous_segment_end():
    x = torch.zeros(1, 32, 4, 2)
    x[0, 0, 3] = torch.tensor([0.5, 0.25])  # segment 0 ends here
    x[0, 1, 0] = torch.tensor([1.0, 1.0])  # segment 1 starts here
    tok = rep.stroke_tokens(x)
    assert tok.shape == (1, 32, 10)
    assert torch.allclose(tok[0, 0, 8:], torch.zeros(2))  # no move before the first segment
    assert torch.allclose(tok[0, 1, 8:], torch.tensor([0.5, 0.75]))


def wide_sketches(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random sketches stretched sideways by a random factor, and that factor."""
    x = rng.uniform(-0.4, 0.4, size=(n, 32, 4, 2)).astype(np.float32)
    width = rng.uniform(0.5, 2.0, n)
    x[..., 0] *= width[:, None, None].astype(np.float32)
    return x, width


@pytest.mark.slow  # fine-tunes a transformer for 150 steps (about 10 s)
def test_pair_ranker_learns_a_preference_for_width_from_answered_pairs():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    a, wa = wide_sketches(400, rng)
    b, wb = wide_sketches(400, rng)
    a_won = (wa > wb)[:, None, None, None]
    rank = rep.pair_ranker(rep.SketchAutoencoder().eval(), np.where(a_won, a, b), np.where(a_won, b, a),
                           steps=150, seed=0)
    ta, twa = wide_sketches(300, rng)
    tb, twb = wide_sketches(300, rng)
    assert agreement(rank(ta), rank(tb), twa, twb) > 0.8


def test_fourier_features_are_fixed_by_their_seed():
    z = np.random.default_rng(0).normal(size=(5, 3))
    mu, sd = z.mean(axis=0), z.std(axis=0)
    f = rep.fourier_features(z, mu, sd, width=16)
    assert f.shape == (5, 16) and np.allclose(f, rep.fourier_features(z, mu, sd, width=16))
    assert not np.allclose(f, rep.fourier_features(z, mu, sd, width=16, seed=1))
