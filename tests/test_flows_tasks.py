"""Logic of the round's tasks without the Prefect engine (``task.fn`` and plain helpers)."""
from __future__ import annotations

from collections import Counter

import pytest

from labeling.client import LabelStudioUnavailable
from labeling.config import ServerConfig
from tasks.credentials import labelstudio_connection
from tasks.generate import allocate_classes, batch_round_id, batch_seed, mark_pushed, next_batch_key, weak_class_weights
from tasks.report import round_markdown


def test_allocate_classes_cycles_from_offset():
    assert allocate_classes(5, 3, offset=2) == [2, 0, 1, 2, 0]
    assert allocate_classes(0, 3) == []


def test_allocate_classes_by_weight_is_exact_and_keeps_every_class():
    labels = allocate_classes(20, 4, weights=[0.1, 0.1, 0.1, 0.7])
    counts = Counter(labels)
    assert len(labels) == 20 and all(counts[c] >= 1 for c in range(4))
    assert counts[3] == max(counts.values()) and counts[3] >= 12
    assert Counter(allocate_classes(10, 2, weights=[1, 1])) == {0: 5, 1: 5}
    with pytest.raises(ValueError, match="weights"):
        allocate_classes(4, 2, weights=[0, 0])


def test_weak_class_weights_favour_the_least_recognised_class():
    w = weak_class_weights({"cat": 0.9, "dog": 0.2}, ["cat", "dog"])
    assert w[1] > w[0] > 0
    assert weak_class_weights({"cat": 0.9}, ["cat", "dog"]) is None  # unmeasured class: cycle instead


def test_batch_seed_is_deterministic():
    assert batch_seed("m1", "0", 0) == batch_seed("m1", "0", 0) != batch_seed("m1", "1", 0)


def test_labelstudio_connection_from_environment_never_shows_the_token(monkeypatch, tmp_path):
    monkeypatch.setenv("MY_LS_TOKEN", "t0k3n")
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9/")
    conn = labelstudio_connection(None, "MY_LS_TOKEN", None)
    assert (conn.url, conn.api_key) == ("http://127.0.0.1:9", "t0k3n") and "t0k3n" not in repr(conn)
    assert labelstudio_connection("http://x", "MY_LS_TOKEN", None).url == "http://x"
    monkeypatch.delenv("MY_LS_TOKEN")
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(LabelStudioUnavailable, match="token"):
        labelstudio_connection(None, "MY_LS_TOKEN", None, ServerConfig(data_dir=str(tmp_path)))


def test_round_markdown_has_decision_metrics_and_grids():
    text = round_markdown({
        "round_index": 2, "round_id": "abc", "parent": "r001-x", "current": "r002-y", "candidate": "r002-y",
        "decision": {"promoted": True, "reason": "gate passed: ok"}, "pulled": 12, "usable_pairs": 10,
        "metrics_current": {"recognizability": 0.5, "frechet_distance": 3.0},
        "metrics_candidate": {"recognizability": 0.6, "frechet_distance": 2.5, "heldout_accuracy": 0.7},
        "grids": {"before": "/tmp/b.png", "after": "/tmp/a.png"}, "timings": {"train": 1.25},
        "peak_rss_mib": 812.4})
    assert "**Decision:** promoted: gate passed: ok" in text
    assert "| recognizability | 0.500 | 0.600 |" in text and "| heldout_accuracy | - | 0.700 |" in text
    assert "/tmp/a.png" in text and "| train | 1.2 |" in text
    assert "Peak memory (resident) of the round: 812 MiB" in text
    assert "| metric | current | candidate |" in text  # no base column without the base's metrics
    anchored = round_markdown({"current": "base-x", "decision": {"promoted": False, "reason": "gate failed"},
                               "metrics_base": {"recognizability": 0.55, "frechet_distance": 2.0},
                               "metrics_current": {"recognizability": 0.5},
                               "metrics_candidate": {"recognizability": 0.52, "heldout_accuracy": 0.7}})
    assert "| metric | base | current | candidate |\n|---|---|---|---|" in anchored
    assert "| recognizability | 0.550 | 0.500 | 0.520 |" in anchored and "| frechet_distance | 2.000 | - | - |" in anchored


def test_step_timer_splits_a_step_into_its_measured_parts():
    from flows.online_dpo import StepTimer

    timer = StepTimer()
    timer.seconds.update({"pull": 1.0, "train": 10.0})
    timer.split("train", {"reward_fit": 0.5, "amplify": 3.0, "train": 6.0})
    assert timer.seconds == {"pull": 1.0, "reward_fit": 0.5, "amplify": 3.0, "train": 6.5}
    timer.split("evaluate", {})
    assert timer.seconds["evaluate"] == 0.0


def test_peak_memory_is_measured_and_resettable():
    import numpy as np

    from driftsketch.memory import peak_rss_mib, reset_peak_rss

    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    high = peak_rss_mib()
    del block
    assert high > 64
    if reset_peak_rss():  # Linux
        assert peak_rss_mib() < high - 32


def test_batch_keys_repeat_until_the_batch_is_pushed(tmp_path):
    """A re-run after a crash before the push regenerates the same batch (same key, same seed); the next
    batch of the model gets a new key. No clock is involved."""
    key = next_batch_key(str(tmp_path), "m1")
    assert next_batch_key(str(tmp_path), "m1") == key == "batch0000"
    (tmp_path / "batches" / "m1" / key).mkdir(parents=True)  # generated, then killed before the push
    assert next_batch_key(str(tmp_path), "m1") == key
    mark_pushed(str(tmp_path / "batches" / "m1" / key), {"pushed": 3})
    assert next_batch_key(str(tmp_path), "m1") == "batch0001" and next_batch_key(str(tmp_path), "m2") == key
    assert batch_seed("m1", "batch0001", 0) == batch_seed("m1", "batch0001", 0) != batch_seed("m1", key, 0)


def test_a_batch_keeps_the_round_id_of_its_first_run(tmp_path):
    """A round killed after it promoted is re-run without training (no round id of its own): the batch is
    still rendered under the killed run's round id, so its gold pairs and sides are the same."""
    batch = str(tmp_path / "batches" / "r001" / "batch0000")
    assert batch_round_id(batch, "round-a") == "round-a"
    assert batch_round_id(batch, None) == "round-a" and batch_round_id(batch, "round-b") == "round-a"
    assert batch_round_id(str(tmp_path / "batches" / "r001" / "batch0001"), None) is None
