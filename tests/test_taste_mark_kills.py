"""benchmarks/taste_mark_kills.py: the taste-mark command, and its --withdraw, SIGKILLed at random moments and re-run,
two at once, and after a torn last line."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import taste_mark_kills  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("withdraw", [False, True])
def test_a_killed_mark_or_withdrawal_lands_once_and_a_torn_line_is_sealed(withdraw):
    out = taste_mark_kills.main(["--trials", "4", "--seed", "3", *(["--withdraw"] if withdraw else [])])
    assert out["killed"] == {"same": 4} and out["two_at_once"] == {"same": 3}
    assert out["torn"] == {"good_marks": 1, "warnings": 1}
