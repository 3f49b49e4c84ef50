"""Fast tests of the Label Studio layer that need no server: configs, agreement, cursor, retries, secrets."""
from __future__ import annotations

import os
import socket
import stat
import time

import numpy as np
import pytest

from labeling.agreement import agreement_report, fleiss_kappa, observed_agreement
from labeling.client import Connection, LabelStudioUnavailable, connect, with_retries
from labeling.config import ProjectsConfig, ServerConfig, load_labelstudio_config
from labeling.projects import control_names, label_config, project_kind
from labeling.export import ExportedTask
from labeling.pull import _judgement, annotation_key, load_cursor, make_record, save_cursor
from labeling.push import sample_id
from labeling.server import load_or_create_credentials, pick_port
from dpo.records import PreferenceRecord


def test_config_file_loads_and_rejects_unknown_keys(tmp_path):
    cfg = load_labelstudio_config(overrides=["client.retries=1"])
    assert cfg.client.retries == 1 and cfg.server.host == "127.0.0.1"
    bad = tmp_path / "ls.yaml"
    bad.write_text("pull:\n  retires: 3\n")
    with pytest.raises(ValueError, match="retires"):
        load_labelstudio_config(bad)


def test_label_configs_name_their_controls():
    cfg = ProjectsConfig()
    pair, rate = label_config("pairwise", cfg), label_config("rating", cfg)
    assert control_names(pair) == {"preference": "preference", "flags": "flags"}
    assert control_names(rate) == {"rating": "rating"}
    assert project_kind(pair) == "pairwise" and project_kind(rate) == "rating"
    for key in ('hotkey="1"', 'hotkey="2"', 'hotkey="3"', "$class_name", "$image_left", "$image_right"):
        assert key in pair
    assert 'toName="image"' in rate and 'maxRating="5"' in rate


@pytest.mark.parametrize("left,choice,expected", [("a", "A", "a"), ("a", "B", "b"), ("b", "A", "b"),
                                                  ("b", "B", "a"), ("b", "tie", "tie")])
def test_screen_choice_maps_through_the_recorded_left_side(left, choice, expected):
    names = {"preference": "preference", "flags": "flags"}
    result = [{"from_name": "preference", "value": {"choices": [choice]}},
              {"from_name": "flags", "value": {"choices": ["both are bad"]}}]
    got = _judgement("pairwise", result, names, {"left": left})
    assert got == {"preference": expected, "left": left, "both_bad": True}
    assert _judgement("pairwise", [], names, {"left": left}) is None


def test_record_ids_carry_no_clock_time():
    """The same answer pulled at another time (a re-run against a fresh server) gets the same id, so the
    held-out split and the round id do not depend on when the annotator clicked; an edit is a new version."""
    names = {"preference": "preference", "flags": "flags"}
    data = {"beziers_a": "arrays/a.npy", "beziers_b": "arrays/b.npy", "class_label": 1, "class_name": "square",
            "checkpoint": "ck", "left": "a"}

    def record(updated_at: str, version: int = 1):
        ann = {"id": 17, "updated_at": updated_at, "completed_by": 1,
               "result": [{"from_name": "preference", "value": {"choices": ["A"]}}]}
        task = ExportedTask(5, data, updated_at, [ann])
        return make_record("pairwise", 3, task, ann, names, {1: "a@b"}, "http://127.0.0.1:8080", None,
                           version=version)

    first, later = record("2026-12-06T22:00:01.123456Z"), record("2026-12-07T09:30:00.5Z")
    assert first.id == later.id == "ls-p3-a17-v1"
    assert first.source["updated_at"] != later.source["updated_at"]
    assert record("2026-12-07T09:30:00.5Z", version=2).id == "ls-p3-a17-v2"


def test_fleiss_kappa_known_answers():
    # Perfect agreement -> 1; the classic Fleiss (1971) style check: two raters, half agree.
    assert fleiss_kappa(np.array([[2, 0, 0], [0, 2, 0], [0, 0, 2]])) == pytest.approx(1.0)
    # items: (a,a) (a,b) (b,b) (b,a): p_item = 1,0,1,0 -> P=0.5; p_cat = .5,.5 -> Pe=.5 -> kappa 0
    assert fleiss_kappa(np.array([[2, 0], [1, 1], [0, 2], [1, 1]])) == pytest.approx(0.0)
    assert observed_agreement([["a", "a"], ["a", "b"], ["b", "b"], ["tie", "tie"]]) == pytest.approx(0.75)


def _rec(i, task, annotator, pref, supersedes=None):
    return PreferenceRecord(id=f"r{i}", comparison_type="pairwise", class_label=0, class_name="c",
                            beziers_a="beziers/x.npy", beziers_b="beziers/y.npy", preference=pref,
                            annotator=annotator, supersedes=supersedes,
                            source={"system": "label-studio", "project": 1, "task": task, "annotation": i,
                                    "updated_at": "2026-01-01T00:00:00Z"})


def test_agreement_report_uses_latest_versions_and_overlapping_tasks_only():
    recs = [_rec(1, 10, "x", "a"), _rec(2, 10, "y", "b"), _rec(3, 10, "y", "a", supersedes="r2"),
            _rec(4, 11, "x", "a"), _rec(5, 11, "y", "b"), _rec(6, 12, "x", "b")]
    rep = agreement_report(recs)["pairwise"]
    assert rep["tasks"] == 2 and rep["judgements"] == 4
    assert rep["observed_agreement"] == pytest.approx(0.5)  # task 10 agrees (after the update), 11 not
    assert agreement_report(recs[-1:]) == {}


def test_cursor_round_trip_and_annotation_key(tmp_path):
    path = tmp_path / "c" / "cursor.json"
    assert load_cursor(path) == {}
    save_cursor(path, {"3": "2026-01-01T00:00:00Z"})
    assert load_cursor(path) == {"3": "2026-01-01T00:00:00Z"}
    assert not list(path.parent.glob(".*tmp"))
    assert annotation_key(3, 7, "2026-01-01T00:00:00.5+00:00") == "3:7:2026-01-01T00:00:00.500000Z"


def test_sample_id_is_content_addressed():
    x = np.zeros((32, 4, 2), np.float32)
    assert sample_id(x) == sample_id(x.copy()) != sample_id(x + 0.1)


def test_credentials_are_private_and_never_in_repr(tmp_path, monkeypatch):
    monkeypatch.delenv("DRIFTSKETCH_LS_TOKEN", raising=False)
    cfg = ServerConfig(data_dir=str(tmp_path / "ls"))
    creds = load_or_create_credentials(cfg)
    path = tmp_path / "ls" / "credentials.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_credentials(cfg) == creds  # stable across calls
    monkeypatch.setenv("DRIFTSKETCH_LS_TOKEN", "from-the-environment")
    assert load_or_create_credentials(cfg)["token"] == "from-the-environment"
    assert "from-the-environment" not in repr(Connection("http://x", "from-the-environment"))


def test_pick_port_avoids_a_busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        port = pick_port("127.0.0.1", busy)
        assert port != busy and port > 0


def test_unreachable_server_retries_with_backoff_then_names_the_url():
    port = pick_port("127.0.0.1", 0)  # nothing listens there
    ls = connect(Connection(f"http://127.0.0.1:{port}", "t"), timeout=2)
    calls = []
    t0 = time.monotonic()
    with pytest.raises(LabelStudioUnavailable, match=f"127.0.0.1:{port}.*3 attempts"):
        with_retries(lambda: calls.append(1) or ls.projects.list().items, f"http://127.0.0.1:{port}",
                     attempts=3, backoff_s=0.05)
    assert len(calls) == 3 and time.monotonic() - t0 >= 0.05 + 0.1  # slept 0.05 then 0.1


def test_non_idempotent_calls_are_not_retried_after_the_request_was_sent():
    import httpx

    calls = []

    def boom():
        calls.append(1)
        raise httpx.ReadTimeout("sent, no answer")

    with pytest.raises(LabelStudioUnavailable, match="may have carried out.*ReadTimeout"):
        with_retries(boom, "http://x", attempts=3, backoff_s=0.0, idempotent=False)
    assert len(calls) == 1
