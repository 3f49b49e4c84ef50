"""Model registry: lineage, idempotent promotion, rounds keyed by their data, the gate, rollback, the CLI."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from driftsketch.registry import (PromotionGate, Registry, RegistryError, apply_gate, round_id_for)
from driftsketch.registry_cli import main as cli_main


def _ckpt(tmp_path, name: str) -> str:
    # The registry never opens checkpoints; any bytes stand in for one here.
    path = tmp_path / f"{name}.src"
    path.write_bytes(name.encode() * 10)
    return str(path)


@pytest.fixture
def reg(tmp_path):
    reg = Registry(tmp_path / "registry")
    reg.add_model(_ckpt(tmp_path, "base"), "base", kind="base")
    reg.promote("base", reason="bootstrap")
    return reg


def test_add_copies_checkpoint_and_is_idempotent(tmp_path, reg):
    entry = reg.get("base")
    assert reg.path_of("base").read_bytes() == b"base" * 10
    again = reg.add_model(_ckpt(tmp_path, "other"), "base", kind="base")
    assert again == entry  # second add of the same id changes nothing
    assert reg.path_of("base").read_bytes() == b"base" * 10
    data = json.loads((tmp_path / "registry" / "registry.json").read_text())
    assert data["current"] == "base" and list(data["models"]) == ["base"]


def test_add_rejects_unknown_parent_and_bad_ids(tmp_path, reg):
    with pytest.raises(RegistryError, match="parent 'nope'"):
        reg.add_model(_ckpt(tmp_path, "x"), "x", parent="nope")
    with pytest.raises(RegistryError, match="invalid model id"):
        reg.add_model(_ckpt(tmp_path, "x"), "../escape")


def test_promote_is_idempotent(tmp_path, reg):
    reg.add_model(_ckpt(tmp_path, "m1"), "m1", parent="base", round_index=1)
    assert reg.promote("m1", reason="better") is True
    history = len(reg.load().history)
    assert reg.promote("m1", reason="better") is False
    state = reg.load()
    assert state.current == "m1" and len(state.history) == history
    assert state.models["m1"].status == "promoted" and state.models["m1"].reason == "better"


def test_rollback_walks_back_the_promotion_chain(tmp_path, reg):
    for i, parent in ((1, "base"), (2, "m1")):
        reg.add_model(_ckpt(tmp_path, f"m{i}"), f"m{i}", parent=parent, round_index=i)
        reg.promote(f"m{i}")
    assert reg.rollback() == "m1"
    assert reg.get("m2").status == "rolled_back"
    assert reg.rollback() == "base"
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        reg.rollback()
    assert reg.current == "base"


def test_revert_goes_back_past_several_models_in_one_event(tmp_path, reg):
    for i, parent in ((1, "base"), (2, "m1"), (3, "m2")):
        reg.add_model(_ckpt(tmp_path, f"m{i}"), f"m{i}", parent=parent, round_index=i)
        reg.promote(f"m{i}")
    events = len(reg.load().history)
    assert reg.ancestry("m3") == ["m3", "m2", "m1"] and reg.ancestry("base") == []
    assert reg.revert_to("m1", ["m3", "m2"], "annotators' veto") is True
    state = reg.load()
    assert state.current == "m1" and len(state.history) == events + 1
    assert state.history[-1].action == "rollback" and state.history[-1].previous == "m3"
    assert [state.models[m].status for m in ("m1", "m2", "m3")] == ["promoted", "rolled_back", "rolled_back"]
    assert reg.revert_to("m1", ["m3", "m2"], "again") is False and len(reg.load().history) == events + 1
    with pytest.raises(RegistryError, match="unknown model"):
        reg.revert_to("m9", [], "no such model")
    assert reg.rollback() == "base"  # the plain rollback is the same event, one step back


def test_rejected_candidate_does_not_move_current(tmp_path, reg):
    reg.add_model(_ckpt(tmp_path, "m1"), "m1", parent="base", round_index=1)
    assert reg.reject("m1", "gate failed: worse") is True
    assert reg.reject("m1", "again") is False
    assert reg.current == "base" and reg.get("m1").reason == "gate failed: worse"


def test_round_id_depends_on_the_set_of_records_only():
    a = round_id_for("base", ["r2", "r1", "r1"])
    assert a == round_id_for("base", ["r1", "r2"])
    assert a != round_id_for("base", ["r1", "r3"])
    assert a != round_id_for("m1", ["r1", "r2"])
    assert a != round_id_for("base", ["r1", "r2"], reference="other")


def test_round_lifecycle_decides_once_and_marks_records_used(tmp_path, reg):
    rnd = reg.start_round("base", "base", ["r1", "r2"])
    assert reg.start_round("base", "base", ["r2", "r1"]) == rnd  # re-run finds the same round
    assert reg.used_record_ids() == set()  # started is not trained
    with pytest.raises(RegistryError, match="no trained candidate"):
        reg.decide_round(rnd.id, True, "x")
    reg.add_model(_ckpt(tmp_path, "c1"), f"dpo-{rnd.id}", parent="base", round_id=rnd.id, round_index=rnd.index)
    reg.finish_training(rnd.id, f"dpo-{rnd.id}")
    assert reg.used_record_ids() == set()  # trained, undecided: a round killed here is decided by its re-run
    assert reg.start_round("base", "base", ["r1", "r2"]).candidate == f"dpo-{rnd.id}"
    assert reg.decide_round(rnd.id, True, "gate passed") is True
    assert reg.used_record_ids() == {"r1", "r2"}
    snapshot = reg.load().model_dump()
    assert reg.decide_round(rnd.id, False, "changed my mind") is False
    assert reg.load().model_dump() == snapshot
    assert snapshot["current"] == f"dpo-{rnd.id}" and snapshot["rounds"][rnd.id]["status"] == "promoted"
    nxt = reg.start_round(f"dpo-{rnd.id}", f"dpo-{rnd.id}", ["r3"])
    assert nxt.index == 2


def test_gate_passes_and_fails_with_reasons():
    gate = PromotionGate(min_heldout_accuracy=0.55, max_recognizability_drop=0.02, max_fd_ratio=1.2,
                         max_recognizability_drop_from_base=None, max_fd_ratio_to_base=None)
    current = {"recognizability": 0.90, "frechet_distance": 10.0}
    ok, why = apply_gate(gate, {"heldout_accuracy": 0.6, "recognizability": 0.89, "frechet_distance": 11.9}, current)
    assert ok and why.startswith("gate passed")
    ok, why = apply_gate(gate, {"heldout_accuracy": 0.6, "recognizability": 0.85, "frechet_distance": 12.5}, current)
    assert not ok and "recognizability 0.850" in why and "frechet_distance 12.500" in why
    assert "heldout_accuracy" not in why
    ok, why = apply_gate(gate, {"heldout_accuracy": 0.5, "recognizability": 0.95, "frechet_distance": 5.0}, current)
    assert not ok and "heldout_accuracy 0.500" in why
    with pytest.raises(RegistryError, match="win_rate"):
        apply_gate(PromotionGate(min_win_rate=0.5), {"heldout_accuracy": 1, "recognizability": 1,
                                                     "frechet_distance": 1}, current, current)


def test_the_heldout_check_refuses_on_evidence_not_on_a_handful_of_pairs():
    gate = PromotionGate(min_heldout_accuracy=0.5, max_recognizability_drop=1.0, max_fd_ratio=100.0,
                         max_recognizability_drop_from_base=None, max_fd_ratio_to_base=None)
    current = {"recognizability": 0.9, "frechet_distance": 1.0}

    def decide(acc: float, n: int) -> tuple[bool, str]:
        return apply_gate(gate, {**current, "heldout_accuracy": acc, "heldout_pairs": n}, current)

    ok, why = decide(0.4, 5)  # 2 of 5: the interval reaches 0.77
    assert ok and "heldout_accuracy 0.400 on 5 pairs (95 % interval up to 0.769) >= 0.5" in why
    assert not decide(0.0, 5)[0]  # 0 of 5: up to 0.43, a fine-tune that learned the labels backwards
    assert not decide(20 / 60, 60)[0] and decide(25 / 60, 60)[0]  # up to 0.46 / 0.54
    assert decide(float("nan"), 0) == (True, "gate passed: no held-out pairs; recognizability 0.900 >= 0.900 - 1.0; "
                                             "frechet_distance 1.000 <= 100.0 x 1.000")
    assert not apply_gate(gate, {**current, "heldout_accuracy": 0.4}, current)[0]  # no count: the point value


def test_an_anchored_gate_refuses_drift_that_each_round_alone_allows():
    """Ten rounds of -0.015 recognizability each pass the per-round check; the limit against the base stops
    the drift at the second round that would take the model more than 0.02 below the base."""
    gate = PromotionGate(min_heldout_accuracy=0.5, max_recognizability_drop=0.02, max_fd_ratio=1.2,
                         max_recognizability_drop_from_base=0.02, max_fd_ratio_to_base=1.2)
    base = {"recognizability": 0.90, "frechet_distance": 10.0}
    current, promoted = dict(base), 0
    for _ in range(10):
        candidate = {"heldout_accuracy": 0.6, "recognizability": current["recognizability"] - 0.015,
                     "frechet_distance": current["frechet_distance"] * 1.1}
        ok, why = apply_gate(gate, candidate, current, base)
        if ok:
            current, promoted = {k: candidate[k] for k in base}, promoted + 1
    assert promoted == 1 and current["recognizability"] == pytest.approx(0.885)
    assert not ok and "recognizability 0.870 >= 0.900 - 0.02 (base)" in why and "- 0.02;" not in why.split("(base)")[0]
    assert "frechet_distance 12.100 <= 1.2 x 10.000 (base)" in why  # 1.21x the base after two rounds of 1.1x
    per_round = PromotionGate(min_heldout_accuracy=0.5, max_recognizability_drop=0.02, max_fd_ratio=1.2,
                              max_recognizability_drop_from_base=None, max_fd_ratio_to_base=None)
    assert apply_gate(per_round, candidate, current)[0]  # off: the same step passes, no base metrics needed
    with pytest.raises(RegistryError, match="base metrics"):
        apply_gate(gate, candidate, current)
    with pytest.raises(RegistryError, match="'frechet_distance' for the base model"):
        apply_gate(gate, candidate, current, {"recognizability": 0.9})


def test_corrupt_registry_file_names_the_file(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    (root / "registry.json").write_text('{"current": 3, "models": []}')
    with pytest.raises(RegistryError, match="registry.json"):
        Registry(root).load()


def test_cli_list_show_promote_rollback(tmp_path, reg, capsys):
    reg.add_model(_ckpt(tmp_path, "m1"), "m1", parent="base", round_index=1, metrics={"recognizability": 0.9})
    root = str(reg.root)
    assert cli_main(["--registry", root, "promote", "m1"]) == 0
    assert cli_main(["--registry", root, "promote", "m1"]) == 0
    assert "already" in capsys.readouterr().out
    assert cli_main(["--registry", root, "list"]) == 0
    out = capsys.readouterr().out
    assert "* m1" in out and "  base" in out
    assert cli_main(["--registry", root, "show", "m1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["current"] is True and shown["metrics"] == {"recognizability": 0.9} and shown["parent"] == "base"
    assert cli_main(["--registry", root, "rollback"]) == 0
    assert reg.current == "base"
    assert cli_main(["--registry", root, "show", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_cli_entry_point_runs_as_a_program(reg):
    out = subprocess.run([sys.executable, "-m", "driftsketch.registry_cli", "--registry", str(reg.root), "list"],
                         capture_output=True, text=True, check=True).stdout
    assert "* base" in out


HOLD_ROUND = """
import sys, time
from driftsketch.registry import Registry
with Registry(sys.argv[1]).round_lock():
    print("holding", flush=True)
    time.sleep(600)
"""


def test_one_round_at_a_time_per_registry_and_a_killed_round_frees_it(tmp_path):
    """A second round on a registry is refused (naming the holder) while the first holds the round lock;
    when the holder is SIGKILLed the kernel drops the lock and the next round goes ahead."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_ROUND, str(tmp_path / "reg")], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"holding\n"
        with pytest.raises(RegistryError, match=rf"another round is running on this registry \(pid {proc.pid} on "):
            with Registry(tmp_path / "reg").round_lock():
                pytest.fail("entered a round another process holds")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with Registry(tmp_path / "reg").round_lock():
        assert str(os.getpid()) in (tmp_path / "reg" / "round.lock").read_text()
