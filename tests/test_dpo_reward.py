"""Reward model (Bradley-Terry heads on hand-made features and flow embeddings) and reward amplification."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from sketch_factories import scattered, toy_shape

from dpo import PreferenceDataset, PreferenceRecord, PreferenceStore
from dpo.store import StoreWarning
from dpo.amplify import amplify, best_of_n
from dpo.config import AmplifyConfig, RewardConfig, load_dpo_config
from dpo.reward import (
    RewardError,
    RewardModel,
    cross_validated_accuracy,
    feature_names,
    fit_bradley_terry,
    fit_reward_model,
    input_sets,
    pair_uncertainty,
    point_pair_features,
    shape_features,
)
from dpo.trainer import DPOError, train_dpo
from driftsketch.checkpoint import load_model, save_checkpoint
from driftsketch.config import replace_config
from driftsketch.data import SketchData
from driftsketch.evaluation import ClassifierConfig, SketchClassifier, train_classifier
from driftsketch.model import ModelConfig, SketchFlowTransformer

CLASSES = ["circle", "square", "zigzag"]
TINY = ClassifierConfig(resolution=32, widths=[8, 16, 32], steps=60, batch_size=32, lr=5e-3, holdout_fraction=0.25)


def sketches(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    return np.stack([toy_shape(int(c), rng) for c in labels]), labels


def half_broken(x: np.ndarray, seed: int) -> np.ndarray:
    """Every other segment shifted by 0.06: the shape stays, continuity drops to about half."""
    out = x.copy()
    out[:, ::2] += np.random.default_rng(seed).uniform(0.05, 0.07, (len(x), 1, 1, 2)).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def classifier_path(tmp_path_factory):
    x, y = sketches(240, 0)
    torch.manual_seed(0)
    clf = train_classifier(SketchData(x, y, CLASSES, [f"s{i}" for i in range(len(y))], {"source": "test"}), TINY,
                           progress=False)
    return clf.save(tmp_path_factory.mktemp("clf") / "classifier.pt")


@pytest.fixture(scope="module")
def rm(classifier_path):
    x, y = sketches(90, 1)
    cfg = RewardConfig(classifier=str(classifier_path), embedding_t=[], local_features=0)  # the hand-made features only
    return fit_reward_model(SketchClassifier.load(classifier_path), x, half_broken(x, 1), y, cfg)


def test_bradley_terry_recovers_the_direction_of_known_weights():
    rng = np.random.default_rng(0)
    w_true = np.array([2.0, -1.0, 0.0, 0.5])
    diff = rng.normal(size=(3000, 4)) * np.array([1.0, 2.0, 0.5, 3.0])
    y = rng.random(3000) < 1 / (1 + np.exp(-diff @ w_true))
    diff = np.where(y[:, None], diff, -diff)  # rows are winner minus loser
    w = fit_bradley_terry(np.c_[diff, np.zeros(len(diff))], l2=1e-4)  # a constant feature gets weight 0
    assert w[-1] == 0.0
    cos = w[:4] @ w_true / np.linalg.norm(w[:4]) / np.linalg.norm(w_true)
    assert cos > 0.99 and abs(w[2]) < 0.1
    assert 0.75 < cross_validated_accuracy(diff[:300], l2=1e-4, folds=5) < 1.0  # informative features, noisy labels
    assert abs(cross_validated_accuracy(rng.normal(size=(300, 4)), l2=1e-2, folds=5) - 0.5) < 0.1  # pure noise


def test_a_fit_without_cross_validation_is_the_same_reward(rm, classifier_path):
    """The taste-drift check skips the cross-validation (dpo/taste_drift.py): the reward it fits must be the one the
    round would fit on the same pairs, less the ``cv_accuracy`` figure."""
    x, y = sketches(90, 1)
    quick = fit_reward_model(SketchClassifier.load(classifier_path), x, half_broken(x, 1), y, rm.cfg,
                             cross_validate=False)
    assert "cv_accuracy" not in quick.metrics and quick.metrics == {k: v for k, v in rm.metrics.items()
                                                                    if k != "cv_accuracy"}
    assert np.array_equal(quick.member_scores(x, y), rm.member_scores(x, y))


def test_reward_prefers_connected_sketches_on_new_pairs(rm):
    assert rm.metrics["train_accuracy"] > 0.95 and rm.metrics["cv_accuracy"] > 0.9
    x, y = sketches(60, 2)
    assert rm.pair_accuracy(x, half_broken(x, 2), y) > 0.95
    assert rm.pair_accuracy(x, scattered(x), y) > 0.95
    assert rm.describe()["continuity@0.02"] > 0  # it learned what the pairs show: connected is better
    assert list(rm.describe()) == feature_names(rm.cfg)


def test_save_load_round_trip_and_a_changed_classifier_is_refused(rm, classifier_path, tmp_path):
    path = rm.save(tmp_path / "rm.json")
    x, y = sketches(12, 3)
    back = RewardModel.load(path)
    np.testing.assert_allclose(back.score(x, y), rm.score(x, y))
    assert back.digest() == rm.digest()
    blob = json.loads(path.read_text())
    blob["classifier_sha256"] = "0" * 16
    path.write_text(json.dumps(blob))
    with pytest.raises(RewardError, match="has changed"):
        RewardModel.load(path)
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(RewardError, match="bad.json"):
        RewardModel.load(tmp_path / "bad.json")


def test_features_reject_unknown_classes_and_mismatched_labels(rm):
    x, y = sketches(4, 4)
    with pytest.raises(RewardError, match="class labels"):
        rm.score(x, np.array([0, 1, 2, 3]))
    with pytest.raises(RewardError, match="3 labels for 4"):
        rm.score(x, y[:3])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    model = SketchFlowTransformer(ModelConfig(num_classes=3, dim=32, depth=2, heads=2))
    path = tmp_path_factory.mktemp("gen") / "model.pt"
    save_checkpoint(path, model, CLASSES, step=1)
    return load_model(path)


def test_amplify_stores_best_of_group_pairs_once(rm, tiny_model, tmp_path):
    cfg = AmplifyConfig(enabled=True, groups_per_class=3, group_size=4, num_steps=2)
    store = PreferenceStore(tmp_path / "amp")
    recs = amplify(tiny_model, rm, store, cfg, session="amp-test", progress=False)
    assert len(recs) == 3 * 3 * 3 and all(r.preference == "a" for r in recs)
    assert {r.annotator for r in recs} == {f"reward-model:{rm.digest()}"}
    by_group: dict[int, list] = {}
    for r in recs:
        by_group.setdefault(r.source["group"], []).append(r)
    for group in by_group.values():
        winner = store.load_beziers(group[0], "a")[None]
        losers = np.stack([store.load_beziers(r, "b") for r in group])
        y = np.full(1, group[0].class_label)
        assert len({r.beziers_a for r in group}) == 1
        assert (rm.score(winner, y)[0] >= rm.score(losers, np.repeat(y, len(losers)))).all()
    again = amplify(tiny_model, rm, store, cfg, session="amp-test", progress=False)
    assert [r.id for r in again] == [r.id for r in recs] and len(store.records()) == len(recs)


def test_amplify_draws_a_session_again_when_its_arrays_are_gone(rm, tiny_model, tmp_path):
    """A session whose folder was half cleaned (a kill during clean-up) is not reused as it stands: its records
    would point at missing arrays and train on nothing. The same draws are made again; no record is duplicated."""
    cfg = AmplifyConfig(enabled=True, groups_per_class=2, group_size=3, num_steps=2)
    store = PreferenceStore(tmp_path / "amp")
    recs = amplify(tiny_model, rm, store, cfg, session="s", progress=False)
    kept = store.load_beziers(recs[0], "a")
    for sub in ("beziers", "noise"):
        for path in sorted((store.root / sub).glob("*.npy"))[::2]:
            path.unlink()
    with pytest.warns(StoreWarning, match="drawing its groups again"):
        again = amplify(tiny_model, rm, store, cfg, session="s", progress=False)
    assert [r.id for r in again] == [r.id for r in recs] and len(store.records()) == len(recs)
    for rec in again:
        store.check_record(rec)
    assert np.array_equal(store.load_beziers(recs[0], "a"), kept)
    (store.root / recs[0].beziers_b).write_bytes(b"not an array")  # one bad array: reused, the trainer skips its pair
    assert [r.id for r in amplify(tiny_model, rm, store, cfg, session="s", progress=False)] == [r.id for r in recs]


def test_amplified_pairs_carry_the_ensembles_probability_as_filter_and_soft_target(rm, tiny_model, tmp_path):
    """Every record stores the ensemble's P(best wins); a threshold keeps exactly the pairs that reach it, and
    ``soft_amplified`` trains each pair toward it."""
    cfg = AmplifyConfig(enabled=True, groups_per_class=3, group_size=4, num_steps=2)
    store = PreferenceStore(tmp_path / "all")
    every = amplify(tiny_model, rm, store, cfg, session="all", progress=False)
    for r in every[:6]:
        pair = np.stack([store.load_beziers(r, "a"), store.load_beziers(r, "b")])
        members = rm.member_scores(pair, np.full(2, r.class_label))
        want = np.mean(1.0 / (1.0 + np.exp(-(members[:, 0] - members[:, 1]))))
        assert r.source["probability"] == pytest.approx(want, abs=1e-4)
    probs = np.array([r.source["probability"] for r in every])
    soft = PreferenceDataset(store, tiny_model.class_names, records=every, soft_amplified=True)
    want = {r.id: min(1.0, max(0.5, p)) for r, p in zip(every, probs)}
    assert sorted(p.target for p in soft.pairs) == pytest.approx(sorted(want.values()))
    assert all(p.target == pytest.approx(want[p.winner.id]) for p in soft.pairs)
    assert {p.target for p in PreferenceDataset(store, tiny_model.class_names, records=every).pairs} == {1.0}
    levels = np.unique(probs)  # stored to 4 digits: a threshold between two levels is unambiguous
    threshold = float(levels[len(levels) // 2 - 1:len(levels) // 2 + 1].mean())
    sure = amplify(tiny_model, rm, PreferenceStore(tmp_path / "sure"),
                   replace_config(cfg, min_pair_probability=threshold), session="sure", progress=False)
    assert 0 < len(sure) < len(every)
    assert {r.id for r in sure} == {r.id for r, p in zip(every, probs) if p >= threshold}


def test_amplify_draws_fresh_noise_for_each_model(rm, tiny_model, tmp_path):
    """Each online round's model ranks new draws (same model: same draws, so reruns reproduce)."""
    cfg = AmplifyConfig(enabled=True, groups_per_class=1, group_size=2, num_steps=2)
    other = copy.deepcopy(tiny_model)
    other.checkpoint_id = "another-round"

    def first_noise(model, cfg, name):
        store = PreferenceStore(tmp_path / name)
        return store.load_noise(amplify(model, rm, store, cfg, session="s", progress=False)[0], "a")

    assert np.array_equal(first_noise(tiny_model, cfg, "m1"), first_noise(tiny_model, cfg, "m2"))
    assert not np.allclose(first_noise(tiny_model, cfg, "m3"), first_noise(other, cfg, "o"))
    fixed = replace_config(cfg, seed_per_model=False)
    assert np.array_equal(first_noise(tiny_model, fixed, "f1"), first_noise(other, fixed, "f2"))


def human_store(root, n: int = 60) -> PreferenceStore:
    """n human pairs: a clean shape beats the same shape with broken joins (winner side alternating)."""
    store, recs = PreferenceStore(root), []
    x, y = sketches(n, 5)
    bad = half_broken(x, 5)
    for i in range(n):
        a, b = (x[i], bad[i]) if i % 2 == 0 else (bad[i], x[i])
        ra, _ = store.save_sample(f"h{i}a", a)
        rb, _ = store.save_sample(f"h{i}b", b)
        recs.append(PreferenceRecord(comparison_type="pairwise", class_label=int(y[i]), class_name=CLASSES[y[i]],
                                     beziers_a=ra, beziers_b=rb, preference="ab"[i % 2], annotator="test",
                                     source={"i": i}))
    store.append(recs, session="human")
    return store


def amp_config(model_path, store, out, classifier, **amp):
    amp = {"enabled": True, "groups_per_class": 2, "group_size": 3, "num_steps": 2, **amp}
    over = dict(base_checkpoint=str(model_path), preference_dir=str(store.root), checkpoint_dir=str(out),
                wandb=False, epochs=1, batch_size=16, num_t=1, eval_num_t=2, holdout_fraction=0.25,
                min_pairs=10, early_stopping_patience=0)
    over.update({f"amplify.{k}": v for k, v in amp.items()})
    over["amplify.reward.classifier"] = str(classifier)
    return load_dpo_config(overrides=[(k.split("."), v) for k, v in over.items()])


def test_train_dpo_amplifies_with_a_trusted_reward_model_only(tiny_model, classifier_path, tmp_path):
    store = human_store(tmp_path / "prefs")
    res = train_dpo(amp_config(tiny_model.checkpoint_path, store, tmp_path / "run", classifier_path), progress=False)
    amp = res.data_summary["amplify"]
    assert amp["used"] and amp["pairs"] == 3 * 2 * 2 and amp["heldout_accuracy"] > 0.9
    assert (tmp_path / "run" / "reward_model.json").is_file()
    assert load_model(res.checkpoint_path).class_names == CLASSES
    assert len(PreferenceStore(tmp_path / "prefs").records()) == 60  # the human store is untouched
    strict = amp_config(tiny_model.checkpoint_path, store, tmp_path / "run2", classifier_path,
                        min_accuracy=1.01)
    assert not train_dpo(strict, progress=False).data_summary["amplify"]["used"]
    assert not (tmp_path / "run2" / "amplified").exists()


def test_train_dpo_amplify_refuses_a_missing_or_mismatched_classifier(tiny_model, classifier_path, tmp_path):
    store = human_store(tmp_path / "prefs", n=40)
    with pytest.raises(DPOError, match="no classifier at"):
        train_dpo(amp_config(tiny_model.checkpoint_path, store, tmp_path / "r", tmp_path / "none.pt"), progress=False)
    other = SketchClassifier.load(classifier_path)
    other.class_names = ["a", "b", "c"]
    with pytest.raises(DPOError, match="classes"):
        train_dpo(amp_config(tiny_model.checkpoint_path, store, tmp_path / "r",
                             other.save(tmp_path / "other.pt")), progress=False)
    assert not (tmp_path / "r" / "model.pt").exists()


def test_best_of_n_keeps_the_highest_reward_of_n_draws(rm, tiny_model):
    labels = np.array([0, 1, 2, 0, 1, 2])
    cfg = AmplifyConfig(num_steps=2)
    one, r1 = best_of_n(tiny_model, rm, labels, 1, cfg)
    four, r4 = best_of_n(tiny_model, rm, labels, 4, cfg)
    assert four.shape == (6, 32, 4, 2) and (r4 >= r1).all()  # draw 0 of four is the n = 1 draw
    np.testing.assert_allclose(rm.score(four, labels), r4)
    np.testing.assert_allclose(rm.score(one, labels), r1)


def test_nested_cross_validation_is_not_the_best_of_a_sweep():
    """On pure noise the best L2 of a grid looks better than chance; the nested estimate does not."""
    rng = np.random.default_rng(3)
    diff = rng.normal(size=(120, 40))
    nested = cross_validated_accuracy(diff, [1e-3, 1e-2, 1e-1, 1.0, 10.0], folds=5)
    assert abs(nested - 0.5) < 0.12


def shifted(x: np.ndarray, dx: float) -> np.ndarray:
    out = x.copy()
    out[..., 0] += dx
    return out


def test_flow_embedding_learns_a_taste_no_hand_feature_measures(tiny_model, classifier_path):
    """The annotator wants sketches further right: no hand-made feature sees position, the flow
    model's hidden states do (the sketch's end points are absolute in its codec)."""
    x, y = sketches(80, 6)
    win, lose = shifted(x, 0.12), shifted(x, -0.12)
    clf = SketchClassifier.load(classifier_path)
    emb = fit_reward_model(None, win, lose, y, RewardConfig(hand_features=False, embedding_t=[0.8, 1.0],
                                                                     local_features=0),
                           encoder=tiny_model, encoder_path=str(tiny_model.checkpoint_path))
    hand = fit_reward_model(clf, win, lose, y, RewardConfig(classifier=str(classifier_path), embedding_t=[],
                                                            local_features=0))
    xt, yt = sketches(40, 7)
    assert emb.metrics["cv_accuracy"] > 0.9 and emb.pair_accuracy(shifted(xt, 0.1), shifted(xt, -0.1), yt) > 0.9
    assert hand.pair_accuracy(shifted(xt, 0.1), shifted(xt, -0.1), yt) < 0.8
    assert emb.weights.shape == (5, 2 * 2 * 2 * 32) and "flow_embedding_norm" in emb.describe()  # t, block, stat


def test_embedding_reward_round_trip_and_a_changed_encoder_is_refused(tiny_model, classifier_path, tmp_path):
    x, y = sketches(30, 8)
    cfg = RewardConfig(classifier=str(classifier_path), embedding_t=[1.0], ensemble=3)
    rm = fit_reward_model(SketchClassifier.load(classifier_path), x, half_broken(x, 8), y, cfg,
                          encoder=tiny_model, encoder_path=str(tiny_model.checkpoint_path))
    back = RewardModel.load(rm.save(tmp_path / "rm.json"))
    np.testing.assert_allclose(back.member_scores(x, y), rm.member_scores(x, y))
    assert back.digest() == rm.digest()
    blob = json.loads((tmp_path / "rm.json").read_text())
    blob["encoder_id"] = "another-model"
    (tmp_path / "rm.json").write_text(json.dumps(blob))
    with pytest.raises(RewardError, match="encoder"):
        RewardModel.load(tmp_path / "rm.json")


def wiggled(x: np.ndarray, size: float, seed: int) -> np.ndarray:
    """Every segment's two handles moved at random: end points (hence continuity and the outline) stay."""
    out = x.copy()
    out[:, :, 1:3] += np.random.default_rng(seed).normal(0, size, out[:, :, 1:3].shape).astype(np.float32)
    return out


def test_local_features_learn_a_taste_of_local_geometry_and_round_trip(tmp_path):
    """The annotator prefers the steadier of two wiggly copies of a sketch (smaller handle noise): no
    hand-made feature measures it, the local-geometry features do; the fit keeps them and survives a save."""
    x, y = sketches(150, 11)
    cfg = RewardConfig(hand_features=False, embedding_t=[], local_features=256, ensemble=3)
    rm = fit_reward_model(None, wiggled(x, 0.01, 1), wiggled(x, 0.06, 2), y, cfg)
    xt, yt = sketches(60, 12)
    assert rm.metrics["cv_accuracy"] > 0.9 and rm.metrics["inputs"] == "local"
    assert rm.pair_accuracy(wiggled(xt, 0.01, 3), wiggled(xt, 0.06, 4), yt) > 0.9
    assert rm.weights.shape == (3, 512) and rm.featurizer.names[-1] == "local/max/255"
    back = RewardModel.load(rm.save(tmp_path / "rm.json"))
    np.testing.assert_allclose(back.member_scores(xt, yt), rm.member_scores(xt, yt))


def stretched(x: np.ndarray, sy: float) -> np.ndarray:
    """``x`` stretched vertically by ``sy`` about each sketch's centre."""
    out = x.copy()
    centre = out[..., 1].mean(axis=(1, 2), keepdims=True)
    out[..., 1] = centre + (out[..., 1] - centre) * sy
    return out


def fit_one_block(block: str, width: int, make, train: tuple[float, float], test: tuple[float, float],
                  seeds: tuple[int, int], tmp_path):
    """Fit a reward on the ``block`` input alone (``width`` random features) to pairs ``make(x, train[0])`` over
    ``make(x, train[1])`` of toy sketches; checks it learns the taste on new sketches (``test`` levels), names its
    columns and survives a save. Returns the test sketches."""
    x, y = sketches(150, seeds[0])
    key = {"shape": "shape_features", "pairs": "pair_features"}[block]
    cfg = RewardConfig(hand_features=False, embedding_t=[], local_features=0, ensemble=3, **{key: width})
    rm = fit_reward_model(None, make(x, train[0]), make(x, train[1]), y, cfg)
    xt, yt = sketches(60, seeds[1])
    assert rm.metrics["cv_accuracy"] > 0.9 and rm.metrics["inputs"] == block
    assert rm.pair_accuracy(make(xt, test[0]), make(xt, test[1]), yt) > 0.9
    assert rm.weights.shape == (3, 2 * width) and rm.featurizer.names[-1] == f"{block}/max/{width - 1}"
    assert rm.describe()[f"{key}_norm"] > 0
    back = RewardModel.load(rm.save(tmp_path / "rm.json"))
    np.testing.assert_allclose(back.member_scores(xt, yt), rm.member_scores(xt, yt))
    return xt


def test_shape_features_learn_proportions_ignore_position_and_round_trip(tmp_path):
    """The annotator prefers the taller of two copies of a sketch: the shape features (segment midpoints
    around the centre) learn it; they do not move when the sketch moves; the fit survives a save."""
    xt = fit_one_block("shape", 128, stretched, (1.15, 0.85), (1.1, 0.9), (13, 14), tmp_path)
    np.testing.assert_allclose(shape_features(shifted(xt, 0.1), 64), shape_features(xt, 64), atol=1e-5)  # float32 input
    assert not np.allclose(shape_features(stretched(xt, 1.1), 64), shape_features(xt, 64), atol=1e-3)


def mirrored(x: np.ndarray, drop: float) -> np.ndarray:
    """The first 16 segments of each sketch and their mirror image about x = 0, moved down by ``drop``."""
    half = x[:, :16]
    mirror = half[:, ::-1, ::-1].copy()
    mirror[..., 0] *= -1
    mirror[..., 1] += drop
    return np.concatenate([half, mirror], axis=1)


def test_pair_features_learn_mirror_symmetry_ignore_position_and_order(tmp_path):
    """The annotator prefers a mirror-symmetric drawing to the same one with its mirrored half moved down:
    the point-pair features learn it, do not move with the sketch or with the segments' order, and the fit
    survives a save."""
    xt = fit_one_block("pairs", 64, mirrored, (0.0, 0.15), (0.0, 0.1), (16, 17), tmp_path)
    f = point_pair_features(xt, 32)
    np.testing.assert_allclose(point_pair_features(shifted(xt, 0.1), 32), f, atol=1e-5)
    np.testing.assert_allclose(point_pair_features(xt[:, np.random.default_rng(0).permutation(32)], 32), f, atol=1e-9)
    assert not np.allclose(point_pair_features(mirrored(xt, 0.1), 32), point_pair_features(mirrored(xt, 0.0), 32),
                           atol=1e-3)


def test_a_reward_model_saved_before_the_geometry_inputs_existed_loads_without_them(rm, tmp_path):
    """Files written before ``local_features`` / ``shape_features`` / ``pair_features`` existed meant "none", whatever today's
    defaults say; a file whose weights do not fit its inputs is refused with its name."""
    path = rm.save(tmp_path / "old.json")
    blob = json.loads(path.read_text())
    for key in ("local_features", "shape_features", "pair_features"):
        blob["config"].pop(key)
    path.write_text(json.dumps(blob))
    x, y = sketches(12, 15)
    back = RewardModel.load(path)
    assert back.cfg.local_features == 0 and back.cfg.shape_features == 0 and back.cfg.pair_features == 0
    np.testing.assert_allclose(back.score(x, y), rm.score(x, y))
    blob["weights"] = [w[:-1] for w in blob["weights"]]
    path.write_text(json.dumps(blob))
    with pytest.raises(RewardError, match="old.json: weights of shape"):
        RewardModel.load(path)


def test_input_sets_cover_every_combination_with_each_block_at_the_largest_blocks_variance():
    sets = input_sets({"hand": 7, "flow": 100, "local": 50})
    assert list(sets) == ["hand", "flow", "local", "hand+flow", "hand+local", "flow+local", "hand+flow+local"]
    both = sets["hand+flow+local"]
    assert [round(float((both[a:b] ** 2).sum()), 6) for a, b in ((0, 7), (7, 107), (107, 157))] == [100.0] * 3
    assert np.allclose(sets["hand+flow"], input_sets({"hand": 7, "flow": 100})["hand+flow"][:157 - 50].tolist() + [0] * 50)
    assert list(input_sets({"hand": 7, "flow": 0, "local": 0})) == ["hand"]


def test_pair_uncertainty_is_highest_where_the_ensemble_cannot_tell(rm):
    x, y = sketches(20, 9)
    clear = pair_uncertainty(rm, x, half_broken(x, 9), y)
    same = pair_uncertainty(rm, x, x, y)
    assert clear.shape == (20,) and np.allclose(same, 1.0) and clear.max() < 0.5
    assert np.allclose(pair_uncertainty(rm, x, x, y, kind="bald"), 0.0)
    one = RewardModel(rm.featurizer, rm.weights[:1])
    assert np.allclose(pair_uncertainty(one, x, half_broken(x, 9), y, kind="disagreement"), 0.0)
    assert pair_uncertainty([rm, one], x, half_broken(x, 9), y, kind="disagreement").shape == (20,)
    with pytest.raises(RewardError, match="unknown kind"):
        pair_uncertainty(rm, x, x, y, kind="other")


@pytest.mark.parametrize("n, f", [(40, 15), (15, 40)])  # primal and dual form
def test_ridge_weights_and_leave_one_out_match_brute_force(n, f):
    from dpo.reward import RidgePairs

    z = np.random.default_rng(n).normal(size=(n, f)) + 0.3
    ridge = RidgePairs(z)
    lam = 0.5 * ridge.lam_unit
    solve = lambda m: np.linalg.solve(z[m].T @ z[m] + lam * np.eye(f), z[m].T @ np.ones(m.sum()))  # noqa: E731
    np.testing.assert_allclose(ridge.weights(0.5), solve(np.ones(n, bool)), rtol=1e-6, atol=1e-9)
    loo = np.mean([z[i] @ solve(np.arange(n) != i) > 0 for i in range(n)])
    assert ridge.loo_accuracy(0.5) == pytest.approx(loo)


def test_per_class_heads_are_the_ridge_fit_of_a_shared_head_plus_one_deviation_per_class():
    """The class-interaction kernel equals the explicit fit on inputs ``[z, sqrt(s) z * onehot(class)]``:
    shared head, each class's deviation and the exact leave-one-out scores."""
    from dpo.reward import RidgePairs

    rng = np.random.default_rng(5)
    n, f, s, l2 = 30, 4, 2.0, 0.5
    z, classes = rng.normal(size=(n, f)) + 0.3, np.arange(n) % 3
    onehot = np.eye(3)[classes]
    aug = np.concatenate([z] + [np.sqrt(s) * z * onehot[:, [c]] for c in range(3)], axis=1)
    ridge = RidgePairs(z, classes, s)
    lam = l2 * float((aug ** 2).sum()) / n
    solve = lambda m: np.linalg.solve(aug[m].T @ aug[m] + lam * np.eye(aug.shape[1]), aug[m].T @ np.ones(m.sum()))  # noqa: E731
    full = solve(np.ones(n, bool))
    np.testing.assert_allclose(ridge.weights(l2), full[:f], rtol=1e-6, atol=1e-9)
    expected_dev = np.stack([np.sqrt(s) * full[f * (c + 1):f * (c + 2)] for c in range(3)])
    np.testing.assert_allclose(ridge.class_deviations(l2, 4)[:3], expected_dev, rtol=1e-6, atol=1e-9)
    assert not ridge.class_deviations(l2, 4)[3].any()  # a class without pairs keeps the shared head
    loo = [aug[i] @ solve(np.arange(n) != i) for i in range(n)]
    np.testing.assert_allclose(ridge.loo_scores(l2), loo, rtol=1e-6, atol=1e-9)


def test_per_class_heads_learn_a_taste_that_differs_between_classes():
    """Class 0 prefers more of input 0, class 1 less of it, class 2 more of input 1: one shared head cannot say
    that, per-class heads chosen by leave-one-out can, and the nested cross-validation shows it."""
    from dpo.reward import select, standardise

    rng = np.random.default_rng(6)
    n = 300
    diff, classes = rng.normal(size=(n, 6)), np.arange(n) % 3
    taste = np.array([[1, 0, 0, 0, 0, 0], [-1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0]], dtype=float)[classes]
    prefer = ((diff * taste).sum(axis=1) + rng.normal(0, 0.3, n)) > 0
    diff = np.where(prefer[:, None], diff, -diff)  # winner minus loser
    shared = cross_validated_accuracy(diff, [0.1, 1.0, 10.0], folds=5, classes=classes, class_grid=(0.0,))
    heads = cross_validated_accuracy(diff, [0.1, 1.0, 10.0], folds=5, classes=classes, class_grid=(0.0, 1.0, 4.0))
    assert shared < 0.75 and heads > 0.85
    assert select(standardise(diff)[0], {"all": np.ones(6)}, [0.1, 1.0, 10.0], classes, (0.0, 1.0, 4.0)).class_weight > 0


def test_reward_model_with_class_heads_scores_each_class_with_its_own_head_and_round_trips(tmp_path):
    """Circles are better steady, squares and zigzags better wiggly: the fit picks per-class heads, scores new
    pairs of every class right, and its saved file gives the same scores and digest."""
    x, y = sketches(240, 13)
    steady, shaky = wiggled(x, 0.01, 1), wiggled(x, 0.06, 2)
    circle = (y == 0)[:, None, None, None]
    cfg = RewardConfig(hand_features=False, embedding_t=[], local_features=128, ensemble=3, class_heads=[1.0, 4.0])
    rm = fit_reward_model(None, np.where(circle, steady, shaky), np.where(circle, shaky, steady), y, cfg)
    assert rm.metrics["class_weight"] > 0 and rm.class_weights.shape == (3, 3, 256)
    xt, yt = sketches(90, 14)
    ct = (yt == 0)[:, None, None, None]
    a, b = wiggled(xt, 0.01, 3), wiggled(xt, 0.06, 4)
    assert rm.pair_accuracy(np.where(ct, a, b), np.where(ct, b, a), yt) > 0.9
    feats = rm.features(xt, yt)
    by_hand = np.einsum("mnf,nf->mn", rm.weights[:, None] + rm.class_weights[:, yt], feats)
    np.testing.assert_allclose(rm.member_scores(xt, yt), by_hand, rtol=1e-9)
    assert rm.describe()["class_deviation_norm"] > 0
    back = RewardModel.load(rm.save(tmp_path / "rm.json"))
    np.testing.assert_allclose(back.member_scores(xt, yt), rm.member_scores(xt, yt))
    assert back.digest() == rm.digest() != RewardModel(rm.featurizer, rm.weights).digest()
    blob = json.loads((tmp_path / "rm.json").read_text())
    blob["class_weights"] = blob["class_weights"][0]  # one member's deviations only: not the shape of the heads
    (tmp_path / "rm.json").write_text(json.dumps(blob))
    with pytest.raises(RewardError, match=r"rm\.json: reward model: class weights of shape"):
        RewardModel.load(tmp_path / "rm.json")
