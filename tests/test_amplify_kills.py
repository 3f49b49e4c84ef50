"""benchmarks/amplify_kills.py: amplification SIGKILLed, and its folder half deleted by a killed process, then re-run."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import amplify_kills  # noqa: E402


@pytest.mark.slow
def test_a_killed_or_half_cleaned_amplification_rerun_ends_like_one_never_killed():
    out = amplify_kills.main(["--trials", "3", "--seed", "0"])
    assert out["counts"] == {"amplify": {"same": 3}, "clean-up": {"same": 3}}
