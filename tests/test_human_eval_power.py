"""benchmarks/human_eval_power.py: the veto as the loop meets it, asked after every round of answered pairs."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import human_eval_power as hep  # noqa: E402


def test_the_veto_fires_once_enough_pairs_say_worse_and_never_for_a_model_people_like():
    rng = np.random.default_rng(0)
    lost = hep.veto_rounds(np.zeros(240), per_round=10, min_pairs=30, rng=rng)
    assert lost["median_round"] == 3.0 and lost["by5"] == lost["by24"] == 1.0  # not before 30 pairs, then at once
    liked = hep.veto_rounds(np.ones(240), per_round=10, min_pairs=30, rng=rng)
    assert liked == {"by5": 0.0, "by10": 0.0, "by24": 0.0, "median_round": None}
    ties = hep.veto_rounds(np.full(240, 0.5), per_round=10, min_pairs=30, rng=rng)  # all ties: 50 %, never worse
    assert ties["by24"] == 0.0
    # a third of the pairs for the model: called worse later than a clean loss, and in nearly every order by 240
    third = hep.veto_rounds(np.r_[np.ones(80), np.zeros(160)], per_round=10, min_pairs=30, rng=rng)
    assert third["median_round"] > 3 and third["by24"] == 1.0 and third["by5"] < third["by10"] <= third["by24"]


def test_the_power_curve_falls_from_a_clear_loss_to_a_model_as_good_as_the_base():
    curve = hep.power_curve(ties=0.3, per_round=10, min_pairs=30)
    rows = dict(zip(hep.POWER_READS, curve))
    assert all(abs(r["read"] - target) < 0.01 for target, r in rows.items())  # the draws read what was asked
    assert rows[0.2]["by5"] > 0.95 and rows[0.2]["median_round"] == 3.0  # a clear loss: at the first verdict
    assert rows[0.4]["by5"] < rows[0.4]["by10"] < rows[0.4]["by24"]  # a smaller one takes more rounds
    assert rows[0.5]["by24"] < 0.1  # as good as the base: rarely, though the verdict is asked 22 times
    assert [r["read"] for r in hep.power_curve(ties=0.5, per_round=10, min_pairs=30)][0] > 0.24  # 50 % ties: >= 25 %
