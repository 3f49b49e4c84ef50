"""benchmarks/suite_veto.py: the annotators' veto as the preference suite applies it, and its resume."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import preference_suite as ps  # noqa: E402
from suite_veto import LineOfDescent  # noqa: E402


def test_the_line_drops_the_models_the_verdict_names_and_a_replay_rebuilds_it():
    line = LineOfDescent(min_pairs=30)
    for m in ("m1", "m2", "m3"):
        line.promoted(m)
    line.answered("m1", [1.0] * 40)  # people liked m1
    line.answered("m2", [0.0] * 20)
    line.answered("m3", [0.0, 0.5] * 10)
    assert line.current == "m3"
    verdict = line.judge()  # m3 and m2: 5 of 40 -> worse; m1 is not in the window
    assert verdict["worse"] and verdict["models"] == ["m3", "m2"] and line.current == "m1"
    assert line.judge()["worse"] is False and line.current == "m1"  # m1's own 40 pairs: 100 %
    kept = json.loads(json.dumps(line.record(verdict, "m1", [1.0] * 10)))  # a row's record, through JSON
    again = LineOfDescent(min_pairs=30)
    again.replay(kept)
    assert again.line == ["m1"] and again.figures() == {"m1": {"pairs": 10, "win_rate": 1.0}}
    assert LineOfDescent(min_pairs=30).judge() is None  # the base alone: nothing to judge


def test_a_run_cannot_switch_the_veto_and_its_default_size_follows_the_configs(tmp_path):
    args = ps.parse_args(["--no-promotion-gate", "--human-veto"])
    assert args.human_veto == 30 and args.veto_pairs == 10  # round.yaml's 30 pairs; 10 % of 100 pairs a round
    assert ps.parse_args(["--pairs-per-round", "200"]).veto_pairs == 20 and ps.parse_args([]).human_veto is None
    done = tmp_path / "round_00.json"
    done.write_text(json.dumps({"labels": 100, "checkpoint": "x", "reference": "base", "selection": "random"}))
    assert ps.check_resume(done, ps.parse_args(["--no-promotion-gate"]))["checkpoint"] == "x"  # before the veto
    with pytest.raises(SystemExit, match="made without the veto; drop --human-veto"):
        ps.check_resume(done, args)
    done.write_text(json.dumps({"labels": 100, "checkpoint": "x", "reference": "base",
                                "human_veto": {"min_pairs": 30, "line": [], "eval_model": None, "outcomes": []}}))
    assert ps.check_resume(done, args)["checkpoint"] == "x"
    with pytest.raises(SystemExit, match="made with the veto at 30 pairs; pass --human-veto"):
        ps.check_resume(done, ps.parse_args(["--no-promotion-gate"]))


def test_each_round_asks_the_current_model_against_the_base_on_one_noise(tmp_path):
    from types import SimpleNamespace

    import torch

    from annotators import Annotator
    from driftsketch.checkpoint import save_checkpoint
    from driftsketch.model import ModelConfig, SketchFlowTransformer

    paths = []
    for i in range(2):
        torch.manual_seed(i)
        paths.append(tmp_path / f"m{i}.pt")
        save_checkpoint(paths[-1], SketchFlowTransformer(ModelConfig(num_classes=2, dim=32, depth=1, heads=2)),
                        ["circle", "blob"], step=1)
    setup = SimpleNamespace(name="toy", class_names=["circle", "blob"], base_path=str(paths[0]))
    args = ps.parse_args(["--human-veto", "--veto-pairs", "6", "--num-steps", "2"])
    left = Annotator("left", "per-sketch", lambda x, y: -x[..., 0].mean(axis=(1, 2)), "ink on the left")
    line = LineOfDescent(args.human_veto)
    kept = ps.veto_round(line, None, setup, left, True, str(paths[1]), "left", 0, 1, args)
    assert line.line == [str(paths[1])] and kept["eval_model"] == str(paths[1]) and len(kept["outcomes"]) == 6
    assert set(kept["outcomes"]) <= {0.0, 0.5, 1.0}
    again = ps.veto_round(LineOfDescent(30), None, setup, left, True, str(paths[1]), "left", 0, 1, args)
    assert again["outcomes"] == kept["outcomes"]  # seeded by (data, cell, seed, round)
    same = ps.veto_round(LineOfDescent(30), None, setup, left, True, str(paths[0]), "left", 0, 1, args)
    assert same["eval_model"] is None and same["outcomes"] == []  # the base is never judged against itself


def test_the_report_counts_the_rounds_the_veto_went_back_before(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "setup_info.json").write_text(json.dumps({"annotators": {"smooth": {"kind": "per-sketch"}}}))
    for seed, fired in enumerate([(False, False, False, True, True), (False, False, False, False, True)]):
        d = tmp_path / "toy" / "smooth" / f"s{seed}"
        d.mkdir(parents=True)
        for r, worse in enumerate(fired):
            row = {"labels": 100 * (r + 1), "checkpoint": "x",
                   "human_veto": {"min_pairs": 30, "verdict": {"worse": worse} if r >= 3 else None, "line": [],
                                  "eval_model": None, "outcomes": []}}
            if r + 1 in (1, 5):
                row["eval"] = {"metrics": {"recognizability": 0.7, "fd": 5.0, "continuity": 0.9},
                               "annotators": {"smooth": {"win_rate": 0.4, "shift_std": -0.1}}}
            (d / f"round_{r:02d}.json").write_text(json.dumps(row))
    rows = {r["labels"]: r for r in ps.summarize(tmp_path)["table"]}
    assert rows[100]["vetoes"] == 0 and rows[500]["vetoes"] == 1.5  # 2 and 1 vetoes by 500 labels
    assert "went back to an earlier model (so far, mean over seeds): toy/smooth@100 0.00; toy/smooth@500 1.50" in \
        ps.markdown(ps.summarize(tmp_path))
