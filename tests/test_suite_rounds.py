"""benchmarks/suite_rounds.py: the round-by-round table of suite runs, side by side."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import suite_rounds  # noqa: E402


def _row(r: int, promoted: bool, win: float | None, verdict: dict | None = None, taste: str = "as set") -> dict:
    row = {"round": r, "labels": 100 * (r + 1), "checkpoint": f"x/s0/r{r:02d}/model.pt", "taste": taste,
           "amplify": {"used": r > 0, "cv_accuracy": 0.7, "heldout_accuracy": 0.5}, "gate": {"promoted": promoted},
           "human_veto": {"verdict": verdict}}
    if win is not None:
        row["eval"] = {"annotators": {"slant": {"win_rate": win, "shift_std": 0.1}}}
    return row


def test_rounds_line_up_and_the_veto_says_how_far_it_went(tmp_path, capsys):
    for name, rows in {"a": [_row(0, True, 0.9), _row(1, False, None)],
                       "b": [_row(0, True, 0.9), _row(1, True, 0.2, {"pairs": 30, "win_rate": 0.1, "worse": True,
                                                                      "passed": ["r03", "r02"]}, "reversed")]}.items():
        d = tmp_path / name / "mnist" / "slant" / "s0"
        d.mkdir(parents=True)
        for row in rows:
            (d / f"round_{row['round']:02d}.json").write_text(json.dumps(row))
    out = suite_rounds.main([str(tmp_path / "a"), str(tmp_path / "b"), "--json", str(tmp_path / "r.json")])
    text = capsys.readouterr().out
    assert "| 2 (200) | as set | r01 (refused) | 0.70 (yes) | - | - | r01 | 0.70 (yes) | 20.0 % | 10.0 % of 30: worse, past 2 |" in text
    assert out["0"]["a"][0]["win"] == 0.9 and json.loads((tmp_path / "r.json").read_text())["seeds"]["0"]["b"][1][
        "veto"]["passed"] == ["r03", "r02"]
