"""PreferenceDataset: selection rules, synthesis from ratings, supersedes, split, class mapping."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dpo import PreferenceDataset, PreferenceRecord, PreferenceStore

CLASSES = ["circle", "square", "house"]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def sample(store, name, seed, noise=True):
    rng = np.random.default_rng(seed)
    bez = rng.uniform(-1, 1, (32, 4, 2)).astype(np.float32)
    nz = rng.standard_normal((32, 8)).astype(np.float32) if noise else None
    return store.save_sample(name, bez, nz)


def pairwise(store, n, pref="a", cls="circle", noise=True, minutes=0, **kw):
    ra, na = sample(store, f"p{n}a", 2 * n, noise)
    rb, nb = sample(store, f"p{n}b", 2 * n + 1, noise)
    return PreferenceRecord(id=f"pw{n}", timestamp=T0 + timedelta(minutes=minutes), comparison_type="pairwise",
                            class_label=CLASSES.index(cls) if cls in CLASSES else 0, class_name=cls,
                            beziers_a=ra, beziers_b=rb, noise_a=na, noise_b=nb, preference=pref,
                            annotator="ann", source={"t": "pw", "n": n, "m": minutes}, **kw)


def rated(store, n, rating, cls="square", ckpt="c1"):
    ra, na = sample(store, f"r{n}", 1000 + n)
    return PreferenceRecord(id=f"ab{n}", comparison_type="absolute", class_label=CLASSES.index(cls),
                            class_name=cls, beziers_a=ra, noise_a=na, rating=rating, checkpoint=ckpt,
                            annotator="ann", source={"t": "ab", "n": n})


@pytest.fixture
def store(tmp_path):
    return PreferenceStore(tmp_path / "prefs")


def test_shapes_and_winner_side(store):
    store.append([pairwise(store, 0, "a"), pairwise(store, 1, "b", cls="house")], "s")
    ds = PreferenceDataset(store, CLASSES)
    assert len(ds) == 2
    item = ds[1]
    assert item["winner_beziers"].shape == (32, 8) and item["winner_beziers"].dtype == torch.float32
    assert item["winner_noise"].shape == (32, 8)
    assert item["class_label"] == 2
    rec = store.records()[1]
    np.testing.assert_array_equal(item["winner_beziers"].numpy(), store.load_beziers(rec, "b").reshape(32, 8))
    np.testing.assert_array_equal(item["loser_noise"].numpy(), store.load_noise(rec, "a"))
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["loser_beziers"].shape == (2, 32, 8) and batch["class_label"].tolist() == [0, 2]


def test_ties_both_bad_counted_not_trained(store):
    store.append([pairwise(store, 0, "tie"), pairwise(store, 1, "a", both_bad=True), pairwise(store, 2, "b")], "s")
    ds = PreferenceDataset(store, CLASSES)
    s = ds.summary()
    assert (len(ds), s["ties"], s["both_bad"], s["pairs"]) == (1, 1, 1, 1)


def test_synthesised_from_ratings(store):
    recs = [rated(store, 0, 5), rated(store, 1, 4), rated(store, 2, 2), rated(store, 3, 1, cls="circle"),
            rated(store, 4, 2, ckpt="c2")]
    store.append(recs, "ratings")
    ds = PreferenceDataset(store, CLASSES, min_margin=2)
    # square: ratings 5, 4, 2 (c1) and 2 (c2): pairs with margin >= 2: (5,2) (5,2') (4,2) (4,2') -> 4
    assert ds.summary()["synthesised"] == 4
    winners = {p.winner.id for p in ds.pairs}
    assert winners == {"ab0", "ab1"}
    assert len(PreferenceDataset(store, CLASSES, min_margin=2, same_checkpoint=True)) == 2
    assert len(PreferenceDataset(store, CLASSES, min_margin=2, max_synthesised=3)) == 3
    assert len(PreferenceDataset(store, CLASSES, synthesise=False)) == 0


def test_supersedes_newest_of_chain_wins(store):
    old = pairwise(store, 0, "a", minutes=0)
    upd1 = pairwise(store, 0, "b", minutes=5).model_copy(update={"id": "pw0u1", "supersedes": "pw0"})
    upd2 = pairwise(store, 0, "tie", minutes=9).model_copy(update={"id": "pw0u2", "supersedes": "pw0u1"})
    store.append([old, upd1], "s")
    ds = PreferenceDataset(store, CLASSES)
    assert [p.winner.id for p in ds.pairs] == ["pw0u1"] and ds.pairs[0].winner_side == "b"
    assert ds.summary()["superseded"] == 1
    store.append([upd2], "s2")
    ds = PreferenceDataset(store, CLASSES)
    assert len(ds) == 0 and ds.summary()["ties"] == 1 and ds.summary()["superseded"] == 2


def test_records_of_an_unknown_class_are_skipped_and_counted_not_fatal(store):
    store.append([pairwise(store, 0, cls="giraffe"), pairwise(store, 1), pairwise(store, 2, cls="giraffe")], "s")
    ds = PreferenceDataset(store, CLASSES)
    assert len(ds) == 1 and ds.pairs[0].winner.class_name == "circle"
    assert ds.summary()["skipped"] == {"class the model does not know: giraffe": 2}


def test_invalid_arrays_skipped_with_reason(store, tmp_path):
    store.append([pairwise(store, 0), pairwise(store, 1)], "s")
    arr = np.load(store.root / "beziers/p1a.npy")
    arr[0, 0, 0] = np.nan
    np.save(store.root / "beziers/p1a.npy", arr)
    with pytest.warns(UserWarning, match="pw1.*NaN"):
        ds = PreferenceDataset(store, CLASSES)
    assert len(ds) == 1 and ds.summary()["skipped"] == {"invalid arrays": 1}


def test_noise_all_or_nothing(store):
    store.append([pairwise(store, 0), pairwise(store, 1, noise=False)], "s")
    ds = PreferenceDataset(store, CLASSES)
    assert "winner_noise" not in ds[0] and ds.summary()["noise"] is False


def test_split_deterministic_by_record_id(store):
    store.append([pairwise(store, n, "ab"[n % 2]) for n in range(40)], "s")
    ds = PreferenceDataset(store, CLASSES)
    tr, ho = ds.split(0.25, seed=0)
    tr2, ho2 = PreferenceDataset(store, CLASSES).split(0.25, seed=0)
    ids = lambda d: sorted(p.winner.id for p in d.pairs)  # noqa: E731
    assert ids(ho) == ids(ho2) and ids(tr) == ids(tr2)
    assert len(tr) + len(ho) == 40 and len(ho) == 10  # exact size: round(0.25 * 40)
    assert not set(ids(tr)) & set(ids(ho))
    assert ids(ds.split(0.25, seed=1)[1]) != ids(ho)


def test_split_size_is_exact_on_small_stores(store):
    """12 records at 0.4 hold out exactly 5 for every seed (a binomial split left 4 to train on once)."""
    store.append([pairwise(store, n, "ab"[n % 2]) for n in range(12)], "s")
    ds = PreferenceDataset(store, CLASSES)
    assert {tuple(len(d) for d in ds.split(0.4, seed=s)) for s in range(50)} == {(7, 5)}
    assert len(ds.split(0.0)[1]) == 0 and len(ds.split(1.0)[0]) == 0
