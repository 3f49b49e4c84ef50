"""Preference store: schema, crash safety, path safety, array validation, de-duplication."""
from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np
import pytest
from pydantic import ValidationError

from dpo.records import PreferenceRecord
from dpo.store import PreferenceStore, StoreError, StoreWarning


def sketch(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (32, 4, 2)).astype(np.float32)


def pair_record(store: PreferenceStore, n: int, preference: str = "a", **kw) -> PreferenceRecord:
    ra, na = store.save_sample(f"s{n}a", sketch(2 * n), np.zeros((32, 8), np.float32))
    rb, nb = store.save_sample(f"s{n}b", sketch(2 * n + 1))
    fields = dict(id=f"rec{n}", comparison_type="pairwise", class_label=0, class_name="circle",
                  beziers_a=ra, beziers_b=rb, noise_a=na, noise_b=nb, preference=preference,
                  checkpoint="ck1", annotator="tester", source={"system": "test", "n": n})
    fields.update(kw)
    return PreferenceRecord(**fields)


def test_roundtrip_arrays_and_records(tmp_path):
    store = PreferenceStore(tmp_path)
    recs = [pair_record(store, i) for i in range(3)]
    store.append(recs[:2], session="s1")
    store.append(recs[2:], session="s2")
    got = store.records()
    assert [r.id for r in got] == ["rec0", "rec1", "rec2"]
    assert got[0] == recs[0]
    np.testing.assert_array_equal(store.load_beziers(got[1], "a"), sketch(2))
    np.testing.assert_array_equal(store.load_beziers(got[1], "b"), sketch(3))
    assert store.load_noise(got[0], "a").shape == (32, 8)
    assert store.load_noise(got[0], "b") is None
    assert store.source_keys() == {r.source_key for r in recs}


def test_schema_rejects_inconsistent_records():
    base = dict(class_label=0, class_name="c", beziers_a="beziers/x.npy", annotator="t", source={"k": 1})
    with pytest.raises(ValidationError, match="beziers_b"):
        PreferenceRecord(comparison_type="pairwise", preference="a", **base)
    with pytest.raises(ValidationError, match="rating"):
        PreferenceRecord(comparison_type="absolute", **base)
    with pytest.raises(ValidationError):
        PreferenceRecord(comparison_type="absolute", rating=6, **base)
    with pytest.raises(ValidationError, match="unexpected|Extra"):
        PreferenceRecord(comparison_type="absolute", rating=3, colour="red", **base)
    with pytest.raises(ValidationError, match="source"):
        PreferenceRecord(comparison_type="absolute", rating=3, **{**base, "source": {}})
    ok = PreferenceRecord(comparison_type="absolute", rating=3, **base)
    assert ok.source_key == '{"k":1}'


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "beziers/../../x.npy", "C:/x.npy"])
def test_schema_rejects_paths_leaving_root(bad):
    with pytest.raises(ValidationError, match="stay inside"):
        PreferenceRecord(comparison_type="absolute", rating=3, class_label=0, class_name="c",
                         beziers_a=bad, annotator="t", source={"k": 1})


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd"])
def test_load_rejects_paths_leaving_root(tmp_path, bad):
    # Bypass the schema (as a hand-edited file read by an older reader might) to test the store's own check.
    store = PreferenceStore(tmp_path / "store")
    rec = PreferenceRecord.model_construct(id="evil1", comparison_type="absolute", beziers_a=bad)
    with pytest.raises(StoreError, match="evil1.*leaves the store root"):
        store.load_beziers(rec, "a")


def test_symlink_out_of_root_rejected(tmp_path):
    store = PreferenceStore(tmp_path / "store")
    (tmp_path / "store" / "beziers").mkdir(parents=True)
    np.save(tmp_path / "outside.npy", sketch(0))
    (tmp_path / "store" / "beziers" / "link.npy").symlink_to(tmp_path / "outside.npy")
    rec = PreferenceRecord(comparison_type="absolute", rating=2, class_label=0, class_name="c", id="lnk",
                           beziers_a="beziers/link.npy", annotator="t", source={"k": 1})
    with pytest.raises(StoreError, match="lnk.*leaves"):
        store.load_beziers(rec)


def test_nan_wrong_shape_missing_named(tmp_path):
    store = PreferenceStore(tmp_path)
    rec = pair_record(store, 0)
    with pytest.raises(StoreError, match="NaN"):
        store.save_sample("bad", np.full((32, 4, 2), np.nan, np.float32))
    # Corrupt the files behind the save API's back: the reader must still catch it.
    arr = sketch(0)
    arr[3, 1, 0] = np.nan
    np.save(tmp_path / "beziers" / "s0a.npy", arr)
    with pytest.raises(StoreError, match="rec0.*NaN"):
        store.load_beziers(rec, "a")
    np.save(tmp_path / "beziers" / "s0b.npy", np.zeros((31, 4, 2), np.float32))
    with pytest.raises(StoreError, match=r"rec0.*shape"):
        store.load_beziers(rec, "b")
    (tmp_path / "noise" / "s0a.npy").unlink()
    with pytest.raises(StoreError, match="rec0.*missing"):
        store.load_noise(rec, "a")
    with pytest.raises(StoreError, match="rec0"):
        store.append([rec], session="s")  # a record is never written before valid arrays
    assert store.records() == []


def test_save_sample_is_idempotent_but_never_overwrites(tmp_path):
    store = PreferenceStore(tmp_path)
    assert store.save_sample("x1", sketch(1)) == ("beziers/x1.npy", None)
    assert store.save_sample("x1", sketch(1)) == ("beziers/x1.npy", None)
    with pytest.raises(StoreError, match="different content"):
        store.save_sample("x1", sketch(2))
    with pytest.raises(ValueError, match="safe name"):
        store.save_sample("../x", sketch(1))
    assert not list(tmp_path.glob("beziers/.*tmp"))  # no temp files left behind


def test_duplicate_source_refused(tmp_path):
    store = PreferenceStore(tmp_path)
    r0 = pair_record(store, 0)
    store.append([r0], session="s1")
    dup = pair_record(store, 1, source=dict(r0.source))  # same annotation, new id
    with pytest.raises(StoreError, match="already stored"):
        store.append([dup], session="s2")
    with pytest.raises(StoreError, match="already stored"):  # duplicate inside one batch
        store.append([pair_record(store, 2), pair_record(store, 3, source={"system": "test", "n": 2})], "s2")
    with pytest.raises(StoreError, match="id is already stored"):
        store.append([pair_record(store, 4, id="rec0")], "s2")
    assert [r.id for r in store.records()] == ["rec0"]  # refused batches wrote nothing


def test_torn_last_line_ignored_and_next_append_clean(tmp_path):
    store = PreferenceStore(tmp_path)
    store.append([pair_record(store, 0)], session="s")
    path = tmp_path / "sessions" / "s.jsonl"
    line = pair_record(store, 1).to_json_line()
    with open(path, "ab") as f:  # simulate a crash mid-write: half a line, no newline
        f.write(line.encode()[: len(line) // 2])
    with pytest.warns(StoreWarning, match=r"s\.jsonl:2: torn last line"):
        assert [r.id for r in store.records()] == ["rec0"]
    # A later append seals the torn line first, so the new record is intact.
    store.append([pair_record(store, 2)], session="s")
    with pytest.warns(StoreWarning, match=r"s\.jsonl:2: malformed"):
        assert [r.id for r in store.records()] == ["rec0", "rec2"]


def test_malformed_middle_line_reported_with_file_line(tmp_path):
    store = PreferenceStore(tmp_path)
    r0, r1 = pair_record(store, 0), pair_record(store, 1)
    bad = json.loads(r1.to_json_line())
    bad["id"] = "badrec"
    bad["rating"] = 9
    path = tmp_path / "sessions" / "m.jsonl"
    path.parent.mkdir()
    path.write_text(r0.to_json_line() + "{not json\n" + json.dumps(bad) + "\n" + r1.to_json_line())
    with pytest.warns(StoreWarning) as caught:
        got = store.records()
    assert [r.id for r in got] == ["rec0", "rec1"]
    msgs = [str(w.message) for w in caught]
    assert any("m.jsonl:2: malformed" in m for m in msgs)
    assert any("m.jsonl:3: malformed record 'badrec'" in m and "rating" in m for m in msgs)


def _append_worker(root: str, start: int) -> None:
    store = PreferenceStore(root)
    for n in range(start, start + 10):
        store.append([pair_record(store, n)], session="shared")


def test_concurrent_appenders_interleave_whole_lines(tmp_path):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_append_worker, args=(str(tmp_path), s)) for s in (0, 100)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert all(p.exitcode == 0 for p in procs)
    assert len(PreferenceStore(tmp_path).scan().records) == 20
    assert PreferenceStore(tmp_path).scan().issues == []


def test_batch_writes_store_every_sample_and_sync_once(tmp_path, monkeypatch):
    import dpo.store as store_module

    syncs, real_flush = [], store_module.flush_to_disk
    monkeypatch.setattr(store_module, "flush_to_disk", lambda: (syncs.append(1), real_flush()))  # counts, still syncs
    store = PreferenceStore(tmp_path)
    x = np.zeros((32, 4, 2), np.float32)
    with store.batch_writes():
        paths = [store.save_sample(f"s{i}", x + i / 10, np.full((32, 8), i, np.float32)) for i in range(5)]
    assert syncs == [1] and not store._deferred_sync
    assert np.array_equal(np.load(tmp_path / paths[3][0]), x + 0.3)
    with pytest.raises(StoreError), store.batch_writes():  # an error inside still syncs what was written
        store.save_sample("s9", x, None)
        store.save_sample("s9", x + 1, None)
    assert syncs == [1, 1] and (tmp_path / "beziers/s9.npy").is_file()


def test_record_ids_come_from_content_not_from_chance():
    """The held-out split and the dataset id hash record ids: the same annotation written by a re-run gets
    the same id (whatever the time), any other annotation another one; a given id is kept."""
    fields = dict(comparison_type="pairwise", class_label=0, class_name="cat", beziers_a="beziers/a.npy",
                  beziers_b="beziers/b.npy", preference="a", annotator="bot", source={"pair": 1})
    first = PreferenceRecord(**fields)
    assert PreferenceRecord(**fields).id == first.id and PreferenceRecord(**fields).timestamp >= first.timestamp
    assert PreferenceRecord(**{**fields, "preference": "b"}).id != first.id
    assert PreferenceRecord(**{**fields, "source": {"pair": 2}}).id != first.id
    assert PreferenceRecord(**fields, id="given").id == "given"
    assert PreferenceRecord.model_validate_json(first.to_json_line()).id == first.id
