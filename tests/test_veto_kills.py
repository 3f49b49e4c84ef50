"""benchmarks/veto_kills.py: the annotators' veto SIGKILLed at random moments and re-run, and two at once."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import veto_kills  # noqa: E402


@pytest.mark.slow
def test_a_killed_veto_rerun_ends_like_one_never_killed_and_two_at_once_go_back_once():
    out = veto_kills.main(["--trials", "6", "--pairs", "2", "--seed", "1"])
    assert out["killed"] == {"same": 6} and out["two_at_once"] == {"same": 2} and out["current"] == "r1"


@pytest.mark.slow
def test_with_a_taste_mark_the_veto_goes_back_to_the_base_once_however_it_is_killed():
    out = veto_kills.main(["--trials", "4", "--pairs", "1", "--seed", "2", "--taste-mark"])
    assert out["current"] == "base" and out["killed"] == {"same": 4} and out["two_at_once"] == {"same": 1}
