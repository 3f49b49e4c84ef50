"""Several annotators per pair: quality metrics, Dawid-Skene, gold pairs, aggregation into training pairs,
and the soft-label Flow-DPO loss."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import torch

from dpo import PreferenceDataset, PreferenceRecord, PreferenceStore
from dpo.annotators import (
    assess_annotators,
    cohen_kappa,
    collect_answers,
    dawid_skene,
    format_table,
    krippendorff_alpha,
)
from dpo.config import AnnotatorsConfig
from dpo.gold import GoldSet, add_noise, gold_count, make_gold_pairs, pair_key, scramble
from dpo.loss import flow_dpo_loss
from driftsketch.model import ModelConfig, SketchFlowTransformer
from driftsketch.stats import wilson_interval
from driftsketch.sketch import validate_sketch

CLASSES = ["circle", "square"]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path):
    return PreferenceStore(tmp_path / "prefs")


def sketches(store, n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [store.save_sample(f"s{seed}-{i}", rng.uniform(-0.5, 0.5, (32, 4, 2)).astype(np.float32))[0]
            for i in range(n)]


def answer(paths, pair: int, who: str, pref: str, left: str = "a", minutes: int = 0, both_bad: bool = False,
           lead: float | None = 2.0, rid: str | None = None, supersedes: str | None = None) -> PreferenceRecord:
    a, b = paths[2 * pair], paths[2 * pair + 1]
    return PreferenceRecord(id=rid or f"r{pair}-{who}-{minutes}", timestamp=T0 + timedelta(minutes=minutes),
                            comparison_type="pairwise", class_label=0, class_name="circle", beziers_a=a,
                            beziers_b=b, preference=pref, left=left, both_bad=both_bad, annotator=who,
                            lead_time=lead, supersedes=supersedes,
                            source={"pair": pair, "who": who, "m": minutes, "rid": rid})


# ---- metrics with known answers -----------------------------------------------------------------
def test_cohen_kappa_known_values():
    assert cohen_kappa([1, 1, -1, -1], [1, 1, -1, -1]) == 1.0
    assert cohen_kappa([1, -1, 1, -1], [-1, 1, -1, 1]) == -1.0
    # 2x2 table [[20, 5], [10, 15]]: p_o = 0.7, p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5 -> 0.4
    x = [1] * 25 + [-1] * 25
    y = [1] * 20 + [-1] * 5 + [1] * 10 + [-1] * 15
    assert cohen_kappa(x, y) == pytest.approx(0.4)


def test_krippendorff_alpha_known_values():
    assert krippendorff_alpha([[1, 1], [-1, -1], [0, 0]]) == pytest.approx(1.0)
    # Krippendorff (2011) nominal example reduced to two coders: 1 disagreement in 4 units
    # coincidences: a-a 2, b-b 4, a-b 1+1 -> n=8, D_o = 2, D_e = (64 - (3^2 + 5^2)) / 7 = 30/7
    assert krippendorff_alpha([[1, 1], [-1, -1], [-1, -1], [1, -1]]) == pytest.approx(1 - 2 / (30 / 7))
    assert math.isnan(krippendorff_alpha([[1], [1, 1]]))  # one category only: undefined


def test_wilson_interval_brackets_the_share():
    lo, hi = wilson_interval(9, 10)
    assert lo < 0.9 < hi and hi <= 1.0 and lo == pytest.approx(0.5958, abs=1e-3)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def _simulated(people: dict, n: int = 300, seed: int = 0) -> list:
    """Every item answered by everyone; ``people``: name -> accuracy, or "left" (always the left sketch)."""
    from dpo.annotators import FIRST, SECOND, Answer

    rng = np.random.default_rng(seed)
    answers = []
    for i in range(n):
        first_better, first_left = rng.random() < 0.5, rng.random() < 0.5
        right = FIRST if first_better else SECOND
        rec = PreferenceRecord(comparison_type="pairwise", class_label=0, class_name="c", beziers_a=f"x{i}",
                               beziers_b=f"y{i}", preference="a", left="a" if first_left else "b",
                               annotator="-", source={"i": i})
        for name, acc in people.items():
            if acc == "left":
                choice = FIRST if first_left else SECOND
            else:
                choice = right if rng.random() < acc else -right
            answers.append(Answer(name, (f"x{i}", f"y{i}"), choice, False, None, None, rec))
    return answers


def test_dawid_skene_finds_the_coin_flipper_and_the_left_picker():
    people = {"good1": 0.95, "good2": 0.9, "good3": 0.85, "coin": 0.5, "left1": "left", "left2": "left"}
    acc = dawid_skene(_simulated(people), {}, 0.8, 4.0)
    for name, want in people.items():
        left_acc, right_acc = acc[name]
        if want == "left":  # always right when the better one is on the left, always wrong otherwise
            assert left_acc > 0.95 and right_acc < 0.05, (name, acc[name])
        else:
            assert left_acc == pytest.approx(want, abs=0.08) and right_acc == pytest.approx(want, abs=0.08), name
    weights = {n: max(0.0, sum(acc[n]) - 1) for n in people}
    assert weights["good1"] > 0.8 and weights["coin"] < 0.12 and weights["left1"] < 0.05


# ---- the annotator table ------------------------------------------------------------------------
def test_quality_table_gold_left_ties_kappa(store):
    paths = sketches(store, 2 * 12)
    gold = GoldSet(store)
    gold.register([{"good": paths[2 * i], "bad": paths[2 * i + 1], "kind": "noise", "class_name": "circle"}
                   for i in range(6)])  # pairs 0-5 are gold, the real drawing is "a"
    recs = []
    for i in range(12):
        left = "a" if i % 2 == 0 else "b"
        recs.append(answer(paths, i, "honest", "a", left))            # always right, left half the time
        recs.append(answer(paths, i, "lefty", left, left, lead=0.5))  # always the left sketch
        recs.append(answer(paths, i, "tier", "tie" if i % 3 else "a", left))
    store.append(recs, "s")
    report = assess_annotators(collect_answers(store.records()), gold.entries(),
                               AnnotatorsConfig(weighting="gold", min_gold_accuracy=0.9, min_gold_answers=5))
    rows = {r.annotator: r for r in report.rows}
    assert rows["honest"].gold_answers == 6 and rows["honest"].gold_accuracy == 1.0
    assert rows["honest"].left_rate == pytest.approx(0.5) and rows["honest"].tie_rate == 0
    assert rows["lefty"].left_rate == 1.0 and rows["lefty"].gold_accuracy == pytest.approx(0.5)
    assert rows["lefty"].median_lead_time == 0.5
    assert rows["tier"].tie_rate == pytest.approx(8 / 12)
    assert rows["tier"].gold_correct == 2  # a tie on a gold pair is wrong
    # 6 gold answers: the 95 % interval of 3/6 tops out at 0.81, of 2/6 at 0.70, of 6/6 it reaches 1
    assert rows["lefty"].excluded and rows["tier"].excluded and not rows["honest"].excluded
    assert "gold accuracy 0.50 (3/6), 95 % interval [0.19, 0.81] below min_gold_accuracy 0.90" in rows["lefty"].reason
    assert rows["honest"].weight > 0.5 and rows["lefty"].weight == 0.0
    # from gold alone: the left-picker is right when the real drawing is on the left (3 of 3), wrong otherwise
    # (0 of 3); with 3 answers a side the prior (0.8, worth 4) still holds: (3.2 + 3) / 7 and 3.2 / 7
    lefty = assess_annotators(collect_answers(store.records()), gold.entries(),
                              AnnotatorsConfig(weighting="gold", min_gold_accuracy=None)).rows[1]
    assert lefty.annotator == "lefty"
    assert (lefty.left_accuracy, lefty.right_accuracy) == pytest.approx((6.2 / 7, 3.2 / 7))
    assert report.kappas[("honest", "lefty")][0] == 12 and report.multi_pairs == 12
    text = format_table(report)
    assert "excluded from training: lefty" in text and "Krippendorff" in text
    assert "| annotator |" in format_table(report, markdown=True)


# ---- aggregation into training pairs ------------------------------------------------------------
def dataset(store, **kw):
    return PreferenceDataset(store, CLASSES, annotators=AnnotatorsConfig(**kw))


def test_votes_become_one_soft_pair(store):
    paths = sketches(store, 8)
    store.append([answer(paths, 0, "x", "a"), answer(paths, 0, "y", "a"), answer(paths, 0, "z", "b"),   # 2:1
                  answer(paths, 1, "x", "a"), answer(paths, 1, "y", "b"),                              # even
                  answer(paths, 2, "x", "b"), answer(paths, 2, "y", "tie"),                            # 3/4 b
                  answer(paths, 3, "x", "a", both_bad=True), answer(paths, 3, "y", "a", both_bad=True),
                  answer(paths, 3, "z", "a")], "s")
    ds = dataset(store, weighting="none")
    s = ds.summary()
    assert (len(ds), s["ties"], s["both_bad"], s["multi_answer_pairs"], s["answers"]) == (2, 1, 1, 4, 10)
    targets = sorted(round(p.target, 4) for p in ds.pairs)
    assert targets == [round(2 / 3, 4), 0.75]
    p2 = next(p for p in ds.pairs if p.target == 0.75)
    assert p2.winner.beziers_b == paths[5] and p2.winner_side == "b"
    assert len(dataset(store, weighting="none", aggregate="majority")) == 2
    assert {p.target for p in dataset(store, weighting="none", aggregate="majority").pairs} == {1.0}
    each = dataset(store, weighting="none", aggregate="each")  # 7 decided answers without both-bad
    assert len(each) == 7 and each.summary()["ties"] == 1 and each.summary()["both_bad"] == 2
    item = ds[0]
    assert item["target"].dtype == torch.float32 and float(item["weight"]) == 1.0


def test_one_answer_per_pair_is_unchanged_by_the_rule(store):
    paths = sketches(store, 8)
    store.append([answer(paths, 0, "x", "a"), answer(paths, 1, "x", "b"), answer(paths, 2, "x", "tie"),
                  answer(paths, 3, "x", "a", both_bad=True)], "s")
    for rule in ("each", "majority", "soft"):
        ds = dataset(store, aggregate=rule)
        assert [(p.winner_side, p.target) for p in ds.pairs] == [("a", 1.0), ("b", 1.0)], rule
        assert (ds.summary()["ties"], ds.summary()["both_bad"]) == (1, 1)


def test_gold_never_trains_and_excluded_annotators_are_kept_in_the_store(store):
    paths = sketches(store, 2 * 10)
    GoldSet(store).register([{"good": paths[2 * i], "bad": paths[2 * i + 1], "kind": "scrambled",
                              "class_name": "circle"} for i in range(5)])
    recs = [answer(paths, i, who, pref) for i in range(5) for who, pref in (("good", "a"), ("bad", "b"))]
    recs += [answer(paths, i, who, "a") for i in range(5, 10) for who in ("good", "bad")]
    store.append(recs, "s")
    before = (store.root / "sessions" / "s.jsonl").read_bytes()
    ds = dataset(store, min_gold_answers=5)
    s = ds.summary()
    assert s["gold_answers"] == 10 and s["excluded_answers"] == 5 and set(s["excluded_annotators"]) == {"bad"}
    assert len(ds) == 5 and all(p.answers == 1 for p in ds.pairs)
    assert len(dataset(store, min_gold_accuracy=None)) == 5  # not excluded, still no gold pair trains
    assert (store.root / "sessions" / "s.jsonl").read_bytes() == before and len(store.records()) == 20


def test_weights_decide_a_split_vote(store):
    paths = sketches(store, 2 * 21, seed=3)
    gold = GoldSet(store)
    gold.register([{"good": paths[2 * i], "bad": paths[2 * i + 1], "kind": "noise", "class_name": "circle"}
                   for i in range(20)])
    recs = [answer(paths, i, "expert", "a") for i in range(20)]
    recs += [answer(paths, i, "novice", "a" if i % 5 else "b") for i in range(20)]  # gold accuracy 0.8
    recs += [answer(paths, 20, "expert", "a"), answer(paths, 20, "novice", "b")]
    store.append(recs, "s")
    ds = dataset(store, weighting="gold", min_vote_margin=0.0)
    (pair,) = ds.pairs
    w_e = (0.8 * 4 + 20) / 24 + 0.8 - 1  # the real drawing was always on the left: the right side keeps the prior
    w_n = (0.8 * 4 + 16) / 24 + 0.8 - 1
    assert pair.winner_side == "a" and pair.target == pytest.approx(w_e / (w_e + w_n))
    assert dataset(store, weighting="none").summary()["ties"] == 1
    # 0.56 of the weighted vote is nearer 1/2 than the default margin: a tie, not a target that pulls to 0
    assert w_e / (w_e + w_n) - 0.5 < AnnotatorsConfig().min_vote_margin
    default = dataset(store, weighting="gold")
    assert len(default) == 0 and default.summary()["ties"] == 1


def test_the_vote_margin_never_drops_an_unweighted_vote_of_up_to_five_answers(store):
    paths = sketches(store, 2 * 3, seed=4)
    votes = {0: "aab", 1: "abbtt", 2: "atttt"}  # 2:1, then 1 a + 2 b + 2 ties, then 1 a + 4 ties (share 0.6)
    store.append([answer(paths, i, f"p{k}", {"t": "tie"}.get(v, v)) for i, vs in votes.items()
                  for k, v in enumerate(vs)], "s")
    ds = dataset(store, weighting="none")
    assert sorted(round(p.target, 4) for p in ds.pairs) == [0.6, 0.6, round(2 / 3, 4)]
    assert ds.summary()["ties"] == 0
    with pytest.raises(ValueError, match="min_vote_margin"):
        AnnotatorsConfig(min_vote_margin=0.5)


def test_newest_answer_counts_and_split_keeps_a_pair_together(store):
    paths = sketches(store, 2 * 30, seed=5)
    recs = []
    for i in range(30):
        recs += [answer(paths, i, "x", "a", rid=f"x{i}"), answer(paths, i, "y", "a")]
    recs.append(answer(paths, 0, "x", "b", minutes=5, rid="x0-edit", supersedes="x0"))  # edited later
    store.append(recs, "s")
    ds = dataset(store, weighting="none")
    assert ds.summary()["superseded"] == 1 and ds.summary()["ties"] == 1  # x now says b, y says a
    assert len(ds) == 29 and all(paths[0] not in (p.winner.beziers_a, p.winner.beziers_b) for p in ds.pairs)
    train, held = ds.split(0.2, seed=1)
    keys = lambda d: {pair_key(r.beziers_a, r.beziers_b) for r in d.records}  # noqa: E731
    assert not keys(train) & keys(held) and len(keys(held)) == 6


# ---- gold pairs ---------------------------------------------------------------------------------
def test_gold_pairs_are_valid_and_obviously_worse():
    from driftsketch.data import load_dataset
    from driftsketch.evaluation.metrics import continuity_per_sketch

    data = load_dataset("builtin:per_class=20")
    rng = np.random.default_rng(0)
    batch = make_gold_pairs(data.beziers, data.labels, data.class_names, ["heart", "circle", "nope"], 9, rng)
    assert len(batch) == 9 and set(batch.labels.tolist()) == {0, 1} and batch.kinds[:3] == ["scrambled",
                                                                                        "wrong_class", "noise"]
    for x in (*batch.good, *batch.bad):
        validate_sketch(x)
        assert np.abs(x).max() <= 1.0
    x = data.beziers[0]
    assert continuity_per_sketch(scramble(x, rng)[None], 0.02)[0] < 0.2 < continuity_per_sketch(x[None], 0.02)[0]
    assert np.abs(add_noise(x, rng, 0.25) - x).mean() > 0.1
    assert gold_count(100, 0.1) == 10 and gold_count(3, 0.0) == 0


def test_gold_registry_is_append_only_and_skips_bad_lines(store):
    gold = GoldSet(store)
    entry = {"good": "beziers/g.npy", "bad": "beziers/b.npy", "kind": "noise", "class_name": "circle"}
    assert gold.register([entry]) == 1 and gold.register([entry]) == 0
    with open(gold.path, "a") as f:
        f.write('{"good": "../../etc/passwd", "bad": "x"}\nnot json\n')
    with pytest.warns(UserWarning, match="malformed gold entry"):
        entries = gold.entries()
    assert list(entries) == [pair_key("beziers/g.npy", "beziers/b.npy")]


# ---- the loss -----------------------------------------------------------------------------------
def test_soft_target_and_weights_in_the_loss():
    torch.manual_seed(0)
    model = SketchFlowTransformer(ModelConfig(num_classes=2, dim=32, depth=1, heads=2)).eval()
    ref = SketchFlowTransformer(ModelConfig(num_classes=2, dim=32, depth=1, heads=2)).eval()
    x_w, x_l, y = torch.randn(4, 32, 8), torch.randn(4, 32, 8), torch.tensor([0, 1, 0, 1])
    t = torch.rand(4)
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    hard, _ = flow_dpo_loss(model, ref, x_w, x_l, y, beta=10.0, t=t, generator=gen())
    same, _ = flow_dpo_loss(model, ref, x_w, x_l, y, beta=10.0, t=t, generator=gen(), target=torch.ones(4),
                            weight=torch.ones(4))
    assert same.item() == pytest.approx(hard.item(), rel=1e-6)
    half, _ = flow_dpo_loss(model, ref, x_w, x_l, y, beta=10.0, t=t, generator=gen(), target=torch.full((4,), 0.5))
    sym, _ = flow_dpo_loss(model, ref, x_l, x_w, y, beta=10.0, t=t, generator=gen(), target=torch.full((4,), 0.5))
    assert half.item() == pytest.approx(sym.item(), rel=1e-5)  # p = 1/2 cannot tell winner from loser
    only_first, _ = flow_dpo_loss(model, ref, x_w[:1], x_l[:1], y[:1], beta=10.0, t=t[:1], generator=gen())
    w = torch.tensor([1.0, 0.0, 0.0, 0.0])
    weighted, _ = flow_dpo_loss(model, ref, x_w, x_l, y, beta=10.0, t=t, generator=gen(), weight=w)
    assert weighted.item() == pytest.approx(only_first.item(), rel=1e-5)
    with pytest.raises(ValueError, match="weight"):
        flow_dpo_loss(model, ref, x_w, x_l, y, beta=10.0, t=t, weight=torch.zeros(4))


# ---- active pair selection ----------------------------------------------------------------------
class FirstCoordinate:
    """Toy reward: the x coordinate of the first control point, times a slope."""

    def __init__(self, slope: float):
        self.slope = slope

    def score(self, beziers, labels):
        return self.slope * np.asarray(beziers)[:, 0, 0, 0]


def test_select_uncertain_picks_the_closest_pairs_per_class():
    from dpo.selection import class_quota, select_uncertain

    n = 40
    a, b = np.zeros((n, 32, 4, 2), np.float32), np.zeros((n, 32, 4, 2), np.float32)
    gap = np.linspace(-1, 1, n)
    a[:, 0, 0, 0] = gap
    labels = np.array([0] * 30 + [1] * 10)
    keep = select_uncertain([FirstCoordinate(3.0), FirstCoordinate(5.0)], a, b, labels, 8)
    assert class_quota(labels, 8) == {0: 6, 1: 2} and len(keep) == 8
    by_class = {c: sorted(np.abs(gap[keep][labels[keep] == c])) for c in (0, 1)}
    for c, got in by_class.items():
        idx = np.flatnonzero(labels == c)
        assert got == sorted(np.abs(gap[idx]))[:len(got)]  # the smallest reward gaps of that class
    assert list(select_uncertain([FirstCoordinate(1.0)], a, b, labels, 100)) == list(range(n))
    # disagreement: members with slopes 3 and 5 agree at gap 0 and far out, disagree most in between
    keep = select_uncertain([FirstCoordinate(3.0), FirstCoordinate(5.0)], a, b, labels, 8, kind="disagreement")
    assert np.all((np.abs(gap[keep]) > 0.1) & (np.abs(gap[keep]) < 0.6))
    with pytest.raises(ValueError, match="kind"):
        select_uncertain([FirstCoordinate(1.0)], a, b, labels, 8, kind="bald")


def test_fit_ensemble_uses_bootstrap_resamples():
    from dpo.selection import fit_ensemble

    seen = []

    def fit(w, lo, y):
        seen.append(tuple(y.tolist()))
        return FirstCoordinate(1.0)

    y = np.arange(20)
    x = np.zeros((20, 32, 4, 2), np.float32)
    models = fit_ensemble(fit, x, x, y, k=4, seed=3)
    assert len(models) == 4 and all(len(s) == 20 for s in seen) and len(set(seen)) == 4
    assert any(len(set(s)) < 20 for s in seen)  # drawn with replacement
    first = list(seen)
    seen.clear()
    fit_ensemble(fit, x, x, y, k=4, seed=3)
    assert seen == first  # same seed, same resamples
    with pytest.raises(ValueError, match="no human pairs"):
        fit_ensemble(fit, x[:0], x[:0], y[:0], k=2)


def test_a_gold_pair_answered_tie_is_a_wrong_answer_and_changes_nothing(store):
    paths = sketches(store, 2 * 6, seed=7)
    gold = GoldSet(store)
    gold.register([{"good": paths[0], "bad": paths[1], "kind": "wrong_class", "class_name": "circle"}])
    store.append([answer(paths, 0, "x", "tie"), answer(paths, 0, "y", "a")]
                 + [answer(paths, i, who, "a") for i in range(1, 6) for who in ("x", "y")], "s")
    stored = {p: p.read_bytes() for p in store.root.rglob("*.jsonl")}
    rows = {r.annotator: r for r in assess_annotators(collect_answers(store.records()), gold.entries(),
                                                       AnnotatorsConfig()).rows}
    assert (rows["x"].gold_answers, rows["x"].gold_correct) == (1, 0)  # a tie cannot be right on gold
    assert (rows["y"].gold_answers, rows["y"].gold_correct) == (1, 1)
    ds = dataset(store, weighting="none")
    assert len(ds) == 5 and ds.summary()["gold_answers"] == 2 and ds.summary()["ties"] == 0  # gold never trains
    assert all(paths[0] not in (p.winner.beziers_a, p.winner.beziers_b) for p in ds.pairs)
    assert {p: p.read_bytes() for p in store.root.rglob("*.jsonl")} == stored  # nothing stored changed
