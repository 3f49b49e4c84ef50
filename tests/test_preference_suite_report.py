"""The preference suite's report (benchmarks/preference_suite.py): means and spreads over seeds, the control."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import preference_suite as ps  # noqa: E402

from driftsketch.registry import PromotionGate  # noqa: E402


def _round(out: Path, data: str, cell: str, seed: int, labels: int, wins: dict, shifts: dict) -> None:
    d = out / data / cell / f"s{seed}"
    d.mkdir(parents=True, exist_ok=True)
    ev = {"metrics": {"recognizability": 0.7, "fd": 5.0, "continuity": 0.9},
          "annotators": {a: {"win_rate": wins[a], "shift_std": shifts[a]} for a in wins}}
    (d / f"round_{labels // 100 - 1:02d}.json").write_text(json.dumps({"labels": labels, "eval": ev, "seconds": 1.0}))


def test_summary_means_spreads_control_and_65_percent_label(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "setup_info.json").write_text(json.dumps(
        {"annotators": {"smooth": {"kind": "per-sketch"}, "wide": {"kind": "style"}}}))
    base = {str(seed): {"recognizability": 0.68 + 0.02 * seed, "fd": 4.0, "continuity": 0.9} for seed in range(3)}
    ps.write_base_metrics(tmp_path / "toy" / "base_metrics.json", {"0": base["0"]}, 128)  # two processes, two seeds each
    ps.write_base_metrics(tmp_path / "toy" / "base_metrics.json", {"1": base["1"], "2": base["2"]}, 128)
    with pytest.raises(SystemExit, match="base_metrics.json: base metrics on 128 samples per class, not 24"):
        ps.write_base_metrics(tmp_path / "toy" / "base_metrics.json", {"3": base["0"]}, 24)
    for seed, (w100, w500, ctl) in enumerate([(0.55, 0.70, 0.50), (0.60, 0.62, 0.46), (0.50, 0.72, 0.48)]):
        _round(tmp_path, "toy", "smooth", seed, 100, {"smooth": w100}, {"smooth": 0.1})
        _round(tmp_path, "toy", "smooth", seed, 500, {"smooth": w500}, {"smooth": 0.3})
        _round(tmp_path, "toy", "wide", seed, 500, {"wide": 0.9}, {"wide": 1.0 + seed})
        _round(tmp_path, "toy", "control", seed, 500, {"smooth": ctl, "wide": 0.2},
               {"smooth": 0.0, "wide": -0.1 * seed})
    s = ps.summarize(tmp_path)
    row = next(r for r in s["table"] if r["annotator"] == "smooth" and r["labels"] == 500)
    assert row["seeds"] == 3 and row["win"] == pytest.approx(np.mean([0.70, 0.62, 0.72]))
    assert row["win_std"] == pytest.approx(np.std([0.70, 0.62, 0.72], ddof=1))
    assert row["control_win"] == pytest.approx(np.mean([0.50, 0.46, 0.48]))
    assert row["recognizability_delta"] == pytest.approx(np.mean([0.02, 0.0, -0.02]))  # tuned 0.7 on every seed
    assert row["fd_ratio"] == pytest.approx(1.25) and s["base"]["toy"]["recognizability"] == pytest.approx(0.70)
    wide = next(r for r in s["table"] if r["annotator"] == "wide")
    assert wide["kind"] == "style" and wide["control_shift_std"] == pytest.approx(0.1)
    assert s["reaches_65"] == {"toy/smooth": 500, "toy/wide": 500}
    assert s["headline"]["runs"] == 6 and s["headline"]["cells"] == 2
    assert s["headline"]["win_at_500_mean"] == pytest.approx(np.mean([0.70, 0.62, 0.72, 0.9, 0.9, 0.9]))
    assert s["headline"]["by_kind"]["style"] == {"mean": pytest.approx(0.9), "std": pytest.approx(0.0), "runs": 3}
    assert s["headline"]["by_data"]["toy"]["runs"] == 6
    assert s["headline"]["by_data_without_styles"]["toy"] == {"mean": pytest.approx(0.68),
                                                              "std": pytest.approx(np.std([0.70, 0.62, 0.72], ddof=1)),
                                                              "runs": 3}
    assert row["win_per_seed"] == {"s0": 0.70, "s1": 0.62, "s2": 0.72}
    md = ps.markdown(s)
    assert "By data set: toy 79.0 ± 12.5 (6 runs). Without the styles: toy 68.0 ± 5.3 (3 runs)." in md
    assert "| toy | smooth | per-sketch | s0 70.0, s1 62.0, s2 72.0 | 68.0 ± 5.3 | 48.0 ± 2.0 |" in md
    assert "By kind: per-sketch 68.0 ± 5.3 (3 runs); style 90.0 ± 0.0 (3 runs)." in md
    assert "| toy | smooth | per-sketch | 500 | 3 | 68.0 ± 5.3 |" in md
    assert "| 0.700 ± 0.000 | +0.0 ± 2.0 | 5.00 ± 0.00 | 1.25 ± 0.00 |" in md
    assert "- toy (3 seeds, N = 128): recognizability 0.700, fd 4.000, continuity 0.900" in md
    assert "toy/wide: run +2.00 ± 1.00, control -0.10 ± 0.10, ratio 20.0" in md


def test_gate_decisions_are_counted_and_a_run_cannot_switch_gate_setting(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "setup_info.json").write_text(json.dumps({"annotators": {"slant": {"kind": "style"}}}))
    for seed, flags in enumerate([(True, False, True, True, False), (True, True, True, True, True)]):
        d = tmp_path / "toy" / "slant" / f"s{seed}"
        d.mkdir(parents=True)
        for r, promoted in enumerate(flags):
            row = {"labels": 100 * (r + 1), "promotion_gate": True, "checkpoint": "x", "reference": "base",
                   "gate": {"promoted": promoted, "noise_seed": 20_000 + 100 * seed + r, "per_class": 128,
                            "settings": PromotionGate().model_dump()}}
            if r + 1 in (1, 5):
                row["eval"] = {"metrics": {"recognizability": 0.7, "fd": 5.0, "continuity": 0.9},
                               "annotators": {"slant": {"win_rate": 0.9, "shift_std": 1.0}}, "quality_per_class": 128}
            (d / f"round_{r:02d}.json").write_text(json.dumps(row))
    rows = {r["labels"]: r for r in ps.summarize(tmp_path)["table"]}
    assert rows[100]["promoted"] == 1.0 and rows[500]["promoted"] == pytest.approx(np.mean([3 / 5, 1.0]))
    assert "toy/slant@500 0.80" in ps.markdown(ps.summarize(tmp_path))
    done = tmp_path / "toy" / "slant" / "s0" / "round_00.json"
    assert ps.check_resume(done, ps.parse_args([]))["checkpoint"] == "x"
    with pytest.raises(SystemExit, match="made with the base model as DPO reference; pass --reference base"):
        ps.check_resume(done, ps.parse_args(["--reference", "current"]))
    row = json.loads(done.read_text())
    del row["reference"]  # a row from before --reference: those runs used the current model
    done.write_text(json.dumps(row))
    assert ps.check_resume(done, ps.parse_args(["--reference", "current"]))["checkpoint"] == "x"
    with pytest.raises(SystemExit, match="made with the current model as DPO reference; pass --reference current"):
        ps.check_resume(done, ps.parse_args([]))  # the default follows configs/round.yaml: base
    done.write_text(json.dumps({**row, "reference": "base"}))
    with pytest.raises(SystemExit, match="made with random pair selection; pass --selection random"):
        ps.check_resume(done, ps.parse_args(["--selection", "uncertain"]))  # rows before --selection: random pairs
    done.write_text(json.dumps({**row, "reference": "base", "selection": "uncertain"}))
    assert ps.check_resume(done, ps.parse_args(["--selection", "uncertain"]))["checkpoint"] == "x"
    with pytest.raises(SystemExit, match="made with uncertain pair selection; pass --selection uncertain"):
        ps.check_resume(done, ps.parse_args(["--selection", "random"]))
    done.write_text(json.dumps({**row, "reference": "base"}))
    with pytest.raises(SystemExit, match="made with the promotion gate; rerun without --no-promotion-gate, or use another --out"):
        ps.check_resume(done, ps.parse_args(["--no-promotion-gate"]))
    with pytest.raises(SystemExit, match="round_00.json: made with 128 gate samples per class, not 32; pass --gate-per-class 128"):
        ps.check_resume(done, ps.parse_args(["--gate-per-class", "32"]))
    row = json.loads(done.read_text())
    del row["gate"]["noise_seed"]  # a row of the suite before gate noise per round
    done.write_text(json.dumps(row))
    with pytest.raises(SystemExit, match="round_00.json: made with one set of gate noise for every round"):
        ps.check_resume(done, ps.parse_args([]))
    row = json.loads(done.read_text())
    del row["eval"]["quality_per_class"]  # a row whose quality metrics came from the win rates' 24 per class
    row["gate"]["noise_seed"] = 20_000
    done.write_text(json.dumps(row))
    with pytest.raises(SystemExit, match="round_00.json: quality metrics on 24 samples per class, not 128"):
        ps.check_resume(done, ps.parse_args([]))
    assert ps.check_resume(done, ps.parse_args(["--quality-per-class", "24"]))["checkpoint"] == "x"
    row["eval"]["quality_per_class"] = 128
    row["gate"]["settings"]["max_recognizability_drop_from_base"] = 0.5
    done.write_text(json.dumps(row))
    with pytest.raises(SystemExit, match=r"round_00.json: made with other gate limits \({'max_recognizability_drop_from_base': 0.5}"):
        ps.check_resume(done, ps.parse_args([]))


def _arm(out: Path, wins: dict[tuple[str, int], float], amplified: bool, shift: float = 0.0) -> None:
    (out / "toy").mkdir(parents=True, exist_ok=True)
    (out / "toy" / "setup_info.json").write_text(json.dumps(
        {"annotators": {"smooth": {"kind": "per-sketch"}, "mixed": {"kind": "per-sketch"}, "wide": {"kind": "style"}}}))
    for (cell, seed), win in wins.items():
        d = out / "toy" / cell / f"s{seed}"
        d.mkdir(parents=True, exist_ok=True)
        for r in range(5):
            row = {"labels": 100 * (r + 1), "amplify": {"used": amplified and r > 0}, "gate": {"promoted": r != 2}}
            if r == 4:
                row["eval"] = {"metrics": {"recognizability": 0.70 + (0.01 if amplified else 0.0),
                                           "fd": 2.0 + seed + (0.5 if amplified else 0.0), "continuity": 0.9},
                               "annotators": {cell: {"win_rate": win, "shift_std": shift + 0.1 * seed}}}
            (d / f"round_{r:02d}.json").write_text(json.dumps(row))


def test_suite_compare_pairs_runs_seed_by_seed_and_leaves_out_unfinished_ones(tmp_path, capsys):
    import suite_compare

    _arm(tmp_path / "a", {("smooth", 0): 0.55, ("smooth", 1): 0.60, ("mixed", 0): 0.50, ("mixed", 1): 0.7,
                          ("wide", 0): 0.99}, False)
    _arm(tmp_path / "b", {("smooth", 0): 0.65, ("smooth", 1): 0.58, ("mixed", 0): 0.50, ("wide", 0): 0.90}, True, 0.5)
    suite_compare.main([str(tmp_path / "a"), str(tmp_path / "b"), "--names", "off", "on",
                        "--json", str(tmp_path / "cmp.json")])
    text = capsys.readouterr().out
    assert ("| toy | smooth | 55.0, 60.0 | 65.0, 58.0 | 57.5 -> 61.5 | +4.0 | 0 -> 8 of 10 | 8 -> 8 | +1.0 | 2.50 -> 3.00 "
            "| 0.900 -> 0.900 | +0.05 -> +0.55 |") in text
    assert "| toy | mixed | 50.0 | 50.0 | 50.0 -> 50.0 | +0.0 |" in text
    diffs = np.array([10.0, -2.0, 0.0])
    assert "| toy | wide | 99.0 | 90.0 | 99.0 -> 90.0 | -9.0 |" in text  # shown, but not pooled: a style
    assert "Global styles, judged by the preferred attribute's shift (base std, mean over seeds, off -> on): " \
        "toy/wide +0.00 -> +0.50" in text
    assert (f"Pooled over 3 paired runs (global styles left out) (500 labels): **+2.7 points (sd {diffs.std(ddof=1):.1f}, "
            f"SE {diffs.std(ddof=1) / np.sqrt(3):.1f}; 1 up, 1 down, 1 equal)**") in text
    assert "Left out (not finished 500 labels in both): toy/mixed/s1" in text
    saved = json.loads((tmp_path / "cmp.json").read_text())
    assert saved["pooled"]["runs"] == 3 and saved["left_out"] == ["toy/mixed/s1"]
    with pytest.raises(SystemExit, match="no run finished 1000 labels in both"):
        suite_compare.main([str(tmp_path / "a"), str(tmp_path / "b"), "--labels", "1000"])


def test_suite_compare_says_which_runs_differ_already_after_round_0(tmp_path, capsys):
    import suite_compare

    for arm, first_wins in (("a", (0.55, 0.60)), ("b", (0.55, 0.62))):  # seed 1's round 0 ran on other kernels
        _arm(tmp_path / arm, {("smooth", 0): 0.6, ("smooth", 1): 0.6}, False)
        for seed, w in enumerate(first_wins):
            path = tmp_path / arm / "toy" / "smooth" / f"s{seed}" / "round_00.json"
            row = json.loads(path.read_text())
            row["eval"] = {"metrics": {"recognizability": 0.7}, "annotators": {"smooth": {"win_rate": w}}}
            path.write_text(json.dumps(row))
    suite_compare.main([str(tmp_path / "a"), str(tmp_path / "b"), "--json", str(tmp_path / "cmp.json")])
    assert "The first round gave the same win in both arms in 1 of 2 paired runs (not: toy/smooth/s1)." \
        in capsys.readouterr().out
    assert json.loads((tmp_path / "cmp.json").read_text())["first_round"] == {"same": 1, "differ": ["toy/smooth/s1"]}


def _control(out: Path, seed: int, wins: dict[str, float], wide_shift: float, amplified: int) -> None:
    d = out / "toy" / "control" / f"s{seed}"
    d.mkdir(parents=True, exist_ok=True)
    for r in range(5):
        row = {"labels": 100 * (r + 1), "amplify": {"used": r < amplified}}
        if r == 4:
            row["eval"] = {"metrics": {"recognizability": 0.7},
                           "annotators": {**{k: {"win_rate": w, "shift_std": 0.0} for k, w in wins.items()},
                                          "wide": {"win_rate": 0.9, "shift_std": wide_shift}}}
        (d / f"round_{r:02d}.json").write_text(json.dumps(row))


def test_suite_compare_pairs_the_shuffled_label_controls_without_the_styles_win(tmp_path, capsys):
    import suite_compare

    for arm, wins, shift, amp in (("a", {"smooth": 0.48, "mixed": 0.52}, -0.04, 1),
                                  ("b", {"smooth": 0.50, "mixed": 0.58}, 0.12, 3)):
        _arm(tmp_path / arm, {("smooth", 0): 0.6}, False)
        _control(tmp_path / arm, 0, wins, shift, amp)
    _control(tmp_path / "a", 1, {"smooth": 0.5, "mixed": 0.5}, 0.0, 0)  # not finished in b: left out
    suite_compare.main([str(tmp_path / "a"), str(tmp_path / "b"), "--names", "16", "32",
                        "--json", str(tmp_path / "cmp.json")])
    text = capsys.readouterr().out
    assert "Shuffled-label controls (500 labels; 16 -> 32; win over the annotators that are not global styles):" in text
    # the style's 90 % is no win of a control: only its shift counts
    assert ("- toy s0: mean win 50.0 -> 54.0 %, highest 52.0 -> 58.0 %, amplified rounds 1 -> 3; "
            "style shift (base std) wide -0.04 -> +0.12") in text
    assert "toy s1" not in text
    saved = json.loads((tmp_path / "cmp.json").read_text())["controls"]
    assert list(saved) == ["toy/s0"] and saved["toy/s0"]["b"]["max"] == pytest.approx(0.58)


MACHINE_A = {"torch": "2.13.0+cpu", "cpu_kernels": "AVX512", "cpu": "Xeon"}
MACHINE_B = {**MACHINE_A, "cpu_kernels": "AVX2"}


def _record_machines(run: Path, machines: list[dict | None]) -> None:
    """Write the machine each of a run's rounds ran on (None: a round made before rounds recorded it)."""
    for r, m in enumerate(machines):
        path = run / f"round_{r:02d}.json"
        row = json.loads(path.read_text())
        row.pop("machine", None)
        if m is not None:
            row["machine"] = m
        path.write_text(json.dumps(row))


def test_report_names_the_machines_behind_its_runs_and_flags_a_mix(tmp_path):
    _arm(tmp_path, {("smooth", 0): 0.6, ("smooth", 1): 0.7, ("mixed", 0): 0.5}, False)
    _record_machines(tmp_path / "toy" / "smooth" / "s0", [MACHINE_A] * 5)
    _record_machines(tmp_path / "toy" / "smooth" / "s1", [MACHINE_A] * 2 + [MACHINE_B] * 3)  # resumed elsewhere
    s = ps.summarize(tmp_path)
    a, b = "torch 2.13.0+cpu, AVX512, Xeon", "torch 2.13.0+cpu, AVX2, Xeon"
    assert s["headline"]["machines"] == {a: 1, f"{a} + {b}": 1, "not recorded": 1}
    assert "**Mixed machines:**" in ps.markdown(s)
    _record_machines(tmp_path / "toy" / "smooth" / "s1", [MACHINE_A] * 5)
    s = ps.summarize(tmp_path)
    assert s["headline"]["machines"] == {a: 2, "not recorded": 1}
    assert f"Runs made on: {a} (2 runs); not recorded (1 runs)." in ps.markdown(s)
    assert "Mixed machines" not in ps.markdown(s)
    _record_machines(tmp_path / "toy" / "smooth" / "s1", [None] * 2 + [MACHINE_A] * 3)  # resumed with newer code
    assert "Mixed machines" not in ps.markdown(ps.summarize(tmp_path))


def test_suite_compare_names_paired_runs_made_on_different_machines(tmp_path, capsys):
    import suite_compare

    for arm in ("a", "b"):
        _arm(tmp_path / arm, {("smooth", 0): 0.6, ("smooth", 1): 0.6, ("mixed", 0): 0.5}, False)
        _record_machines(tmp_path / arm / "toy" / "smooth" / "s0", [MACHINE_A] * 5)
    _record_machines(tmp_path / "a" / "toy" / "smooth" / "s1", [MACHINE_A] * 5)
    _record_machines(tmp_path / "b" / "toy" / "smooth" / "s1", [MACHINE_B] * 5)
    suite_compare.main([str(tmp_path / "a"), str(tmp_path / "b"), "--json", str(tmp_path / "cmp.json")])
    out = capsys.readouterr().out
    assert ("Both arms recorded their machine in 2 paired runs; 1 ran on different ones: toy/smooth/s1 "
            "(torch 2.13.0+cpu, AVX512, Xeon vs torch 2.13.0+cpu, AVX2, Xeon).") in out
    assert json.loads((tmp_path / "cmp.json").read_text())["machines"]["recorded"] == 2  # mixed/s0 recorded none


def test_amplification_groups_are_reported_and_a_run_cannot_switch_them(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "setup_info.json").write_text(json.dumps(
        {"classes": ["a", "b"], "annotators": {"smooth": {"kind": "per-sketch"}}}))
    d = tmp_path / "toy" / "smooth" / "s0"
    d.mkdir(parents=True)
    ev = {"metrics": {"recognizability": 0.7, "fd": 5.0, "continuity": 0.9},
          "annotators": {"smooth": {"win_rate": 0.6, "shift_std": 0.1}}, "quality_per_class": 128}
    # a round from before the setting was recorded: 2 classes x 4 groups x 7 pairs amplified
    (d / "round_00.json").write_text(json.dumps({"labels": 100, "amplify": {"used": True, "pairs": 56}}))
    (d / "round_01.json").write_text(json.dumps({"labels": 200, "amplify": {"used": False}, "eval": ev,
                                                 "groups_per_class": 16, "checkpoint": "x", "reference": "base"}))
    s = ps.summarize(tmp_path)
    assert s["groups"] == {"toy": [4, 16]}
    assert "Amplification groups of 8 per class and round: toy 4, 16" in ps.markdown(s)
    args = ps.parse_args(["--no-promotion-gate"])
    assert args.groups_per_class == 32  # the product's amplification, configs/dpo.yaml
    with pytest.raises(SystemExit, match="made with 16 amplification groups per class, not 32; pass --groups-per-class 16"):
        ps.check_resume(d / "round_01.json", args)  # a run of the 16-group headline resumes only at its own size
    at_16 = ps.parse_args(["--no-promotion-gate", "--groups-per-class", "16"])
    assert ps.check_resume(d / "round_01.json", at_16)["checkpoint"] == "x"
    with pytest.raises(SystemExit, match="made with 16 amplification groups per class, not 4; pass --groups-per-class 16"):
        ps.check_resume(d / "round_01.json", ps.parse_args(["--no-promotion-gate", "--groups-per-class", "4"]))


def test_annotator_filter_runs_named_cells_control_alone_and_refuses_unknown_names():
    from types import SimpleNamespace
    setup = SimpleNamespace(annotators=[SimpleNamespace(name="smooth"), SimpleNamespace(name="wide")])

    def todo(*argv):
        return [(r, a.name if a else "control", seed) for r, _, a, seed in ps.cells([setup], ps.parse_args(list(argv)))]

    assert todo("--seeds", "2", "--rounds", "5", "--annotators", "wide") == [(5, "wide", 2), (5, "control", 2)]
    assert todo("--seeds", "0", "1", "--rounds", "5", "--annotators", "control") == [(5, "control", 0), (5, "control", 1)]
    assert todo("--seeds", "0", "--rounds", "10", "--no-control") == [(5, "smooth", 0), (5, "wide", 0),
                                                                        (10, "smooth", 0), (10, "wide", 0)]
    with pytest.raises(SystemExit, match="no annotator named smoth"):
        todo("--annotators", "smoth")


def test_a_killed_uncertain_round_asks_the_pairs_it_stored_not_a_new_selection(tmp_path):
    """Its answers are in the store already: a new selection would fit on them and pick other pairs."""
    from types import SimpleNamespace

    from dpo.records import PreferenceRecord
    from dpo.store import PreferenceStore
    store, rng = PreferenceStore(tmp_path / "prefs"), np.random.default_rng(0)
    arrays = {k: rng.normal(size=(3, 32, 4, 2)).astype(np.float32) for k in ("a", "b")}
    noise = {k: rng.normal(size=(3, 32, 8)).astype(np.float32) for k in ("a", "b")}
    recs = []
    for i in range(3):
        pa = store.save_sample(f"r01-{i:03d}a", arrays["a"][i], noise["a"][i])
        pb = store.save_sample(f"r01-{i:03d}b", arrays["b"][i], noise["b"][i])
        recs.append(PreferenceRecord(id=f"smooth-s0-r01-{i:03d}", comparison_type="pairwise", class_label=i % 2,
                                     class_name="xy"[i % 2], beziers_a=pa[0], beziers_b=pb[0], noise_a=pa[1],
                                     noise_b=pb[1], preference="a", annotator="suite:smooth", source={"round": 1, "pair": i}))
    store.append(recs, "round01")
    args = ps.parse_args(["--selection", "uncertain"])
    labels, (a, na, b, nb), info = ps.round_pairs(SimpleNamespace(name="toy", class_names=["x", "y"]), None, store, "smooth", 0, 1,
                                                  None, args)
    assert labels.tolist() == [0, 1, 0] and info == {"selection": "uncertain", "from_store": True}
    np.testing.assert_array_equal(a, arrays["a"])
    np.testing.assert_array_equal(nb, noise["b"])
    assert na.shape == (3, 32, 8) and b.shape == (3, 32, 4, 2)
