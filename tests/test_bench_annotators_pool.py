"""bench_annotators --summarise: reports from separate processes pool per panel, paired over their seeds."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_annotators as ba  # noqa: E402


def fake_run(win: dict[str, float]) -> dict:
    rows = {n: {"gold_accuracy": 0.8, "mean_kappa": 0.3, "left_rate": 0.5, "weight": 0.8, "excluded": False}
            for n in ("honest-1", "bad-1")}
    run = {"annotators": {"alpha": 0.2, "rows": rows}}
    for name in ba.CONDITIONS:
        run[name] = {"pairs": 300, "label_accuracy": 0.9}
        if name in win:
            run[name]["dpo_hidden_win"] = win[name]
    return run


def write_report(path: Path, runs: dict) -> str:
    path.write_text(json.dumps({"runs": runs}))
    return str(path)


def test_pooled_reports_keep_each_panels_own_seeds(tmp_path, capsys):
    careless = {f"careless-s{s}": fake_run({"weighted": 0.56 + d, "unweighted": 0.52, "honest_only": 0.55})
                for s, d in zip(range(10, 14), (0.0, 0.02, 0.04, 0.06))}
    reversed_ = {f"reversed-s{s}": fake_run({"weighted": 0.57, "unweighted": 0.49, "honest_only": 0.56})
                 for s in (10, 11)}
    reports = [write_report(tmp_path / "a.json", careless), write_report(tmp_path / "b.json", reversed_)]
    ba.main(["--summarise", *reports])
    out = capsys.readouterr().out
    assert "2 careless (mean +- sd over 4 seeds)" in out and "2 reversed (mean +- sd over 2 seeds)" in out
    d = np.array([0.04, 0.06, 0.08, 0.10])  # weighted - unweighted per careless seed
    se = d.std(ddof=1) / 2
    assert f"(paired over 4 seeds): {100 * d.mean():+.1f} points, sd {100 * d.std(ddof=1):.1f}, " \
           f"standard error {100 * se:.1f}" in out
    assert "(paired over 2 seeds): +8.0 points" in out


def test_a_run_that_differs_between_reports_is_refused(tmp_path):
    a = write_report(tmp_path / "a.json", {"careless-s1": fake_run({"weighted": 0.5})})
    b = write_report(tmp_path / "b.json", {"careless-s1": fake_run({"weighted": 0.6})})
    with pytest.raises(SystemExit, match="careless-s1 differs"):
        ba.main(["--summarise", a, b])
