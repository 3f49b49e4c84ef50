"""The preference suite: does the online loop learn what *these* annotators prefer? (issue #13)

    nice -n 10 python benchmarks/preference_suite.py --out runs/suite \\
        --data builtin=builtin:runs/research/base-builtin/model.pt \\
        --data mnist=data/mnist1000.npz:runs/research/base-mnist/model.pt
    python benchmarks/preference_suite.py --out runs/suite --report-only      # table, JSON and plot again

For every data set x annotator (benchmarks/annotators.py) x seed: online rounds of 100 fresh pairs from
the newest model, answered by the simulated annotator (10 % flipped, ties), each round one
``train_dpo`` with the shipped loop settings (reward amplification gated on the reward model's nested
cross-validated accuracy); after 100, 200, 500 and 1,000 labels the tuned model and the base sample from
the same evaluation noise and the suite records the win rate under the annotator's *noise-free* score,
the shift of that score in base standard deviations, and recognizability, FD and continuity under an
evaluation classifier (tuned and base on noise of their own, ``--quality-per-class`` sketches of each class:
the win rates' 24 per class move a paired recognizability difference by about as much as its 2-point
target). One control per data set and seed answers at random (shuffled labels carry no taste, so one
control serves every annotator) for 5 rounds and is scored under every annotator.

Data hygiene: each data set is cut into four disjoint parts by a hash of the sketch ids: (0) the quality
annotator's classifier, (1) the reward model's classifier, (2) the foreign annotator's network and the
reference proportions, (3) the evaluation classifier. No classifier that labels, rewards or evaluates
shares a training sketch with another.

Resumable: every finished round writes ``OUT/<data>/<annotator>/s<seed>/round_XX.json`` and is skipped on
a rerun; ``--shard i/n`` splits the cells over several processes. Deterministic: record ids, sampling
and amplification seeds derive from (data, annotator, seed, round), so a rerun gives the same digits.
Writes ``OUT/suite.json``, ``OUT/suite.md`` and ``OUT/learning_curves.png`` (``--plot`` copies it).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from annotators import (  # noqa: E402
    Annotator,
    added_taste,
    answer_or_random,
    build_annotators,
    foreign_proba,
    load_foreign,
    reversed_taste,
    save_foreign,
    train_foreign_classifier,
)

from dpo.config import load_dpo_config  # noqa: E402
from dpo.records import PreferenceRecord  # noqa: E402
from dpo.selection import select_from_store  # noqa: E402
from dpo.store import PreferenceStore  # noqa: E402
from dpo.taste import TasteMarks  # noqa: E402
from dpo.trainer import DPOError, train_dpo  # noqa: E402
from oracle_reward import oracle_reward  # noqa: E402
from suite_gate import SUITE_GATE_KEYS, SuiteGate  # noqa: E402
from suite_veto import LineOfDescent, eval_answers  # noqa: E402
from driftsketch.checkpoint import load_model  # noqa: E402
from driftsketch.config import yaml_defaults  # noqa: E402
from driftsketch.data import load_dataset  # noqa: E402
from driftsketch.device import describe_machine, numerics_fingerprint  # noqa: E402
from driftsketch.evaluation import LabelingJudge, SketchClassifier  # noqa: E402
from driftsketch.evaluation.classifier import config_replace, fit_classifier  # noqa: E402
from driftsketch.evaluation.frechet import frechet_distance  # noqa: E402
from driftsketch.evaluation.metrics import continuity  # noqa: E402
from driftsketch.evaluation.settings import load_eval_config  # noqa: E402
from driftsketch.fileio import atomic_write_bytes, atomic_write_text  # noqa: E402
from driftsketch.registry import PromotionGate  # noqa: E402
from driftsketch.sampling import generate_beziers  # noqa: E402

EVAL_AT = (1, 2, 5, 10)  # rounds (of 100 labels) after which the model is evaluated
CONTROL_ROUNDS = 5
PARTS = ("quality", "reward", "foreign", "evaluation")
QUALITY = ("recognizability", "fd", "continuity")
QUALITY_NOISE = 30_000  # + seed: the quality metrics' noise, apart from the win rates' (10_000 + seed)
QUALITY_PER_CLASS_BEFORE = 24  # rows of runs before commit c4de993 measured quality on the win rates' sketches
GATE_BEFORE = {"min_heldout_accuracy": 0.5, "max_recognizability_drop": 0.02, "max_fd_ratio": 1.2,  # the limits of
               "max_recognizability_drop_from_base": 0.02, "max_fd_ratio_to_base": 1.2,  # rows that do not record
               "min_win_rate": None}  # theirs (runs before commit 51d8286)


def stable_int(*parts) -> int:
    """A seed from any values, the same in every process and run."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "big")


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=float))


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    """An .npz written atomically: a killed suite never leaves a torn cache file."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


@dataclass
class Setup:
    """Everything one data set needs, built once and cached under ``OUT/<name>/setup``."""

    name: str
    base_path: str
    class_names: list[str]
    reward_classifier: str
    annotators: list[Annotator]
    eval_clf: SketchClassifier
    real_feats: np.ndarray
    info: dict
    holdout: np.ndarray  # real sketches the base never trained on (FD's reference)
    calibration: tuple[np.ndarray, np.ndarray] | None = None  # base samples and classes the annotators are scaled on


def classifier_on(part, path: Path, cfg) -> SketchClassifier:
    if path.is_file():
        return SketchClassifier.load(path)
    clf = fit_classifier(part.beziers, part.labels, part.class_names, cfg, progress=False)
    clf.metrics["train_size"] = len(part)
    clf.save(path)
    return clf


def data_arg(item: str) -> tuple[str, str, str]:
    """``--data NAME=SPEC:BASE_CHECKPOINT`` as ``(name, spec, base checkpoint)``."""
    name, rest = item.split("=", 1)
    spec, base_path = rest.rsplit(":", 1)
    return name, spec, base_path


def prepare(name: str, spec: str, base_path: str, out: Path, args) -> Setup:
    """Disjoint data parts, the four classifiers, the annotators (tie margins from base samples)."""
    d = out / name / "setup"
    d.mkdir(parents=True, exist_ok=True)
    data = load_dataset(spec)
    parts = dict(zip(PARTS, data.partition(len(PARTS), seed=1313)))
    ecfg = load_eval_config()
    steps = {"steps": args.classifier_steps}
    quality = classifier_on(parts["quality"], d / "quality_classifier.pt", config_replace(ecfg.classifier, **steps))
    classifier_on(parts["reward"], d / "reward_classifier.pt",
                  config_replace(ecfg.classifier, resolution=48, widths=[16, 32, 64], line_width=1.2, seed=2, **steps))
    evaluation = classifier_on(parts["evaluation"], d / "eval_classifier.pt",
                               config_replace(ecfg.classifier, seed=3, **steps))
    if not (d / "foreign.pt").is_file():
        f = parts["foreign"]
        save_foreign(train_foreign_classifier(f.beziers, f.labels, len(data.class_names), args.foreign_steps), d / "foreign.pt")
    foreign = load_foreign(d / "foreign.pt")
    base = load_model(base_path)
    calib_y = np.repeat(np.arange(len(data.class_names)), args.eval_per_class)
    calib_x = cached_samples(base, calib_y, 777, d / f"calibration_{len(calib_y)}x{args.num_steps}_{base.checkpoint_id}.npz", args)
    anns = build_annotators(LabelingJudge(quality), foreign, parts["foreign"], calib_x, calib_y)
    _, holdout = data.split(0.1, 0)  # the base never trained on these (driftsketch-train's split)
    info = {"data": spec, "sketches": len(data), "classes": data.class_names, "base": base_path,
            "parts": {k: len(v) for k, v in parts.items()}, "holdout_for_fd": len(holdout),
            "eval_classifier_holdout_accuracy": evaluation.accuracy(holdout.beziers, holdout.labels),
            "quality_classifier_holdout_accuracy": quality.accuracy(holdout.beziers, holdout.labels),
            "foreign_holdout_accuracy": float((foreign_proba(foreign, holdout.beziers, holdout.labels) > 0.5).mean()),
            "annotators": {a.name: {"kind": a.kind, "description": a.description, "tie_margin": a.tie_margin}
                           for a in anns}}
    return Setup(name, base_path, list(data.class_names), str(d / "reward_classifier.pt"), anns, evaluation,
                 evaluation.features(holdout.beziers), info, holdout.beziers, (calib_x, calib_y))


def write_base_metrics(path: Path, per_seed: dict[str, dict], per_class: int) -> None:
    """The base's metrics per seed's quality noise (``per_class`` samples of every class), merged with the seeds
    already there (processes that run different seeds share the file), and their mean over every seed. Exits
    with a one-line error when the file holds figures of another sample count."""
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("quality_per_class", QUALITY_PER_CLASS_BEFORE) != per_class:
            raise SystemExit(f"{path}: base metrics on {old.get('quality_per_class', QUALITY_PER_CLASS_BEFORE)} "
                             f"samples per class, not {per_class}; pass --quality-per-class accordingly or use another --out")
        per_seed = {**old.get("per_seed", {}), **per_seed}
    write_json(path, {**{k: float(np.mean([m[k] for m in per_seed.values()])) for k in QUALITY},
                      "quality_per_class": per_class, "per_seed": dict(sorted(per_seed.items()))})


def sample(model, labels: np.ndarray, seed: int, args) -> tuple[np.ndarray, np.ndarray]:
    return generate_beziers(model, labels.tolist(), len(labels), num_steps=args.num_steps, cfg_scale=args.cfg_scale,
                            solver=args.solver, seed=seed)


def cached_samples(model, labels: np.ndarray, seed: int, path: Path, args) -> np.ndarray:
    if path.is_file():
        return np.load(path)["x"]
    x = sample(model, labels, seed, args)[0]
    save_arrays(path, x=x)
    return x


def eval_labels(setup: Setup, args) -> np.ndarray:
    return np.repeat(np.arange(len(setup.class_names)), args.eval_per_class)


def base_eval(setup: Setup, seed: int, args) -> np.ndarray:
    base = load_model(setup.base_path)
    return cached_samples(base, eval_labels(setup, args), 10_000 + seed,
                          Path(args.out) / setup.name / f"base_eval_s{seed}_{base.checkpoint_id}.npz", args)


def quality_labels(setup: Setup, args) -> np.ndarray:
    """The classes behind recognizability, FD and continuity: ``--quality-per-class`` of each."""
    return np.repeat(np.arange(len(setup.class_names)), args.quality_per_class)


def base_quality(setup: Setup, seed: int, args) -> np.ndarray:
    """The base's sketches for the quality metrics on the seed's quality noise (cached)."""
    base, labels = load_model(setup.base_path), quality_labels(setup, args)
    return cached_samples(base, labels, QUALITY_NOISE + seed, Path(args.out) / setup.name /
                          f"base_quality_s{seed}_{len(labels)}_{base.checkpoint_id}.npz", args)


def quality_metrics(setup: Setup, x: np.ndarray, labels: np.ndarray) -> dict:
    """Recognizability, FD (evaluation classifier's features vs real held-out) and continuity."""
    return {"recognizability": setup.eval_clf.accuracy(x, labels),
            "fd": frechet_distance(setup.eval_clf.features(x), setup.real_feats),
            "continuity": continuity(x)}


def compare(setup: Setup, tuned: np.ndarray, base: np.ndarray, labels: np.ndarray, which: list[Annotator]) -> dict:
    """Per annotator: paired win rate (ties 1/2) and score shift in base std."""
    out: dict = {"annotators": {}}
    for ann in which:
        st, sb = ann.score(tuned, labels), ann.score(base, labels)
        d = st - sb
        out["annotators"][ann.name] = {"win_rate": float(((d > 0) + 0.5 * (d == 0)).mean()),
                                       "shift_std": float((st.mean() - sb.mean()) / (sb.std() + 1e-12))}
    return out


def dpo_overrides(setup: Setup, current: str, store: Path, rdir: Path, seed: int, amp_seed: int, args) -> list:
    """The round's DPO settings on top of ``--set``: start from ``current``; the frozen reference is ``current``
    too, or the data set's base with ``--reference base`` (the round's ``dpo.reference``)."""
    reference = setup.base_path if args.reference == "base" else current
    return list(args.set) + [(["base_checkpoint"], current), (["reference_checkpoint"], reference),
                   (["preference_dir"], str(store)), (["checkpoint_dir"], str(rdir)),
                   (["wandb"], False), (["num_threads"], args.threads), (["seed"], seed),
                   (["amplify", "enabled"], True), (["amplify", "reward", "classifier"], setup.reward_classifier),
                   (["amplify", "groups_per_class"], args.groups_per_class), (["amplify", "seed_per_model"], False),
                   (["amplify", "seed"], amp_seed), (["amplify", "num_steps"], args.num_steps),
                   (["eval_num_t"], args.eval_num_t)]


def round_pairs(setup: Setup, model, store: PreferenceStore, cell: str, seed: int, r: int, cfg, args) -> tuple:
    """The round's ``(labels, (a, noise_a, b, noise_b), selection info)``: round 0 the base's pairs, the same for
    every annotator of a seed; later rounds fresh pairs of ``model``, or with ``--selection uncertain`` the least
    sure of ``--candidates`` times as many under an ensemble fit on the store's human pairs, as the round does
    (``dpo.selection.select_from_store``; random while the store has fewer than ``min_labeled_pairs``)."""
    n, n_cls = args.pairs_per_round, len(setup.class_names)
    labels = np.arange(n) % n_cls
    if r == 0:
        return labels, base_pairs(setup, model, labels, seed, args), {"selection": "random"}
    key = stable_int(setup.name, cell, seed, r)
    if args.selection == "random":
        (a, na), (b, nb) = sample(model, labels, key, args), sample(model, labels, key + 1, args)
        return labels, (a, na, b, nb), {"selection": "random"}
    asked = sorted((rec for rec in store.records() if rec.id.startswith(f"{cell}-s{seed}-r{r:02d}-")), key=lambda x: x.id)
    if asked:  # a killed round: its pairs, not a new selection by an ensemble that now sees their answers
        return (np.array([rec.class_label for rec in asked]), stored_pairs(store, asked),
                {"selection": args.selection, "from_store": True})
    cand = np.arange(n * args.candidates) % n_cls
    (a, na), (b, nb) = sample(model, cand, key, args), sample(model, cand, key + 1, args)
    keep, info = select_from_store(str(store.root), setup.class_names, SketchClassifier.load(setup.reward_classifier),
                                   cfg, a, b, cand, n, args.ensemble, seed)
    if info["human_pairs"] < args.min_labeled_pairs:
        keep, info = np.arange(n), {"selection": "random", "reason": f"{info['human_pairs']} human pairs"}
    return cand[keep], (a[keep], na[keep], b[keep], nb[keep]), info


def stored_pairs(store: PreferenceStore, records: list[PreferenceRecord]) -> tuple[np.ndarray, ...]:
    """``(a, noise_a, b, noise_b)`` of ``records`` as the store holds them."""
    return tuple(np.stack([load(rec, side) for rec in records])
                 for side in ("a", "b") for load in (store.load_beziers, store.load_noise))


def label_round(setup: Setup, ann: Annotator | None, model, store: PreferenceStore, cell: str, seed: int, r: int,
                cfg, args) -> tuple[list[PreferenceRecord], dict]:
    """100 pairs from ``model`` (:func:`round_pairs`), answered by ``ann`` (``None``: at random, the control),
    appended to ``store``; with how the pairs were selected."""
    labels, (a, na, b, nb), asked = round_pairs(setup, model, store, cell, seed, r, cfg, args)
    rng = np.random.default_rng(stable_int(cell, seed, r, "answers"))
    choices = answer_or_random(ann, a, b, labels, rng, noise=args.label_noise, tie_rate=args.tie_rate)
    recs = []
    for i, (c, y) in enumerate(zip(choices, labels)):
        pa = store.save_sample(f"r{r:02d}-{i:03d}a", a[i], na[i])
        pb = store.save_sample(f"r{r:02d}-{i:03d}b", b[i], nb[i])
        recs.append(PreferenceRecord(
            id=f"{cell}-s{seed}-r{r:02d}-{i:03d}", comparison_type="pairwise", class_label=int(y),
            class_name=setup.class_names[int(y)], beziers_a=pa[0], beziers_b=pb[0], noise_a=pa[1], noise_b=pb[1],
            preference=c, checkpoint=model.checkpoint_id, annotator=f"suite:{cell}",
            source={"system": "preference_suite", "cell": cell, "seed": seed, "round": r, "pair": i}))
    if not any(rec.id == recs[0].id for rec in store.records()):  # a killed round re-labels the same pairs
        store.append(recs, session=f"round{r:02d}")
    return recs, asked


def base_pairs(setup: Setup, base, labels: np.ndarray, seed: int, args) -> tuple[np.ndarray, ...]:
    """Round 0's pairs ``(a, noise_a, b, noise_b)`` from the base, cached per data set and seed."""
    path = Path(args.out) / setup.name / f"pairs_r0_s{seed}_{base.checkpoint_id}.npz"
    if not path.is_file():
        key = stable_int(setup.name, seed, 0)
        (a, na), (b, nb) = sample(base, labels, key, args), sample(base, labels, key + 1, args)
        save_arrays(path, a=a, na=na, b=b, nb=nb)
    z = np.load(path)
    return z["a"], z["na"], z["b"], z["nb"]


def promotion_gate(setup: Setup, seed: int, args) -> SuiteGate | None:
    """The round's gate (configs/round.yaml ``gate``) on the reward classifier, or None (``--no-promotion-gate``)."""
    if not args.promotion_gate:
        return None
    clf = SketchClassifier.load(setup.reward_classifier)
    labels = np.repeat(np.arange(len(setup.class_names)), args.gate_per_class)
    return SuiteGate(PromotionGate(), clf, clf.features(setup.holdout), labels, 20_000 + 100 * seed,
                     {"num_steps": args.num_steps, "cfg_scale": args.cfg_scale, "solver": args.solver})


def check_resume(done: Path, args) -> dict:
    """A finished round's row; exits with a one-line error when it was made with the other gate setting, other gate
    limits, another number of gate or quality samples or of amplification groups, or a gate with one set of noise for
    every round (suite runs before commit a914a2b)."""
    row = json.loads(done.read_text())
    made_with = bool(row.get("promotion_gate", False))
    if made_with != args.promotion_gate:
        raise SystemExit(f"{done}: made {'with' if made_with else 'without'} the promotion gate; rerun "
                         f"{'without' if made_with else 'with'} --no-promotion-gate, or use another --out")
    if made_with and "noise_seed" not in row["gate"]:
        raise SystemExit(f"{done}: made with one set of gate noise for every round (suite runs before commit a914a2b); "
                         "use another --out")
    per_class = row["gate"].get("per_class", 32) if made_with else args.gate_per_class
    if per_class != args.gate_per_class:
        raise SystemExit(f"{done}: made with {per_class} gate samples per class, not {args.gate_per_class}; "
                         f"pass --gate-per-class {per_class} or use another --out")
    settings = row["gate"].get("settings", GATE_BEFORE) if made_with else None
    settings = None if settings is None else {k: v for k, v in settings.items() if k in SUITE_GATE_KEYS}
    shipped = PromotionGate().model_dump(include=SUITE_GATE_KEYS)
    if settings is not None and settings != shipped:
        changed = {k: v for k, v in settings.items() if shipped.get(k) != v}
        raise SystemExit(f"{done}: made with other gate limits ({changed}; configs/round.yaml gate); use another --out")
    groups = row.get("groups_per_class")  # earlier rows do not say (they used 4)
    if groups is not None and groups != args.groups_per_class:
        raise SystemExit(f"{done}: made with {groups} amplification groups per class, not {args.groups_per_class}; "
                         f"pass --groups-per-class {groups} or use another --out")
    reference = row.get("reference", "current")  # earlier rows do not say (they used the current model)
    if reference != args.reference:
        raise SystemExit(f"{done}: made with the {reference} model as DPO reference; pass --reference {reference} "
                         "or use another --out")
    selection = row.get("selection", "random")  # earlier rows do not say (they pushed random pairs)
    if selection != args.selection:
        raise SystemExit(f"{done}: made with {selection} pair selection; pass --selection {selection} or use another --out")
    reward = row.get("reward", "fitted")  # earlier rows do not say (a reward model fit on the human pairs)
    if reward != ("oracle" if args.oracle_reward else "fitted"):
        raise SystemExit(f"{done}: made with the {reward} reward; {'drop' if reward == 'fitted' else 'pass'} "
                         "--oracle-reward or use another --out")
    veto = (row.get("human_veto") or {}).get("min_pairs")  # earlier rows do not say (no veto)
    if veto != args.human_veto:
        raise SystemExit(f"{done}: made {'without the veto' if veto is None else f'with the veto at {veto} pairs'}; "
                         f"{'drop' if veto is None else 'pass'} --human-veto or use another --out")
    change = row.get("taste_change")  # earlier rows do not say (the taste never changed)
    if change != args.taste_change:
        raise SystemExit(f"{done}: made {'with no taste change' if change is None else f'with --taste-change {change}'}; "
                         "pass the same or use another --out")
    taste = row.get("taste", "as set")  # earlier rows do not say (the taste never changed)
    if taste != "as set" and taste != args.new_taste:
        raise SystemExit(f"{done}: made with --new-taste {taste}; pass the same or use another --out")
    marked = bool(row.get("taste_mark"))  # earlier rows do not say (no mark); rounds before the change have none
    if taste != "as set" and marked != args.taste_mark:
        raise SystemExit(f"{done}: made {'with' if marked else 'without'} a taste mark at the change; "
                         f"{'pass' if marked else 'drop'} --taste-mark or use another --out")
    measured = row.get("eval", {}).get("quality_per_class", QUALITY_PER_CLASS_BEFORE) if "eval" in row else None
    if measured is not None and measured != args.quality_per_class:
        raise SystemExit(f"{done}: quality metrics on {measured} samples per class, not {args.quality_per_class}; "
                         f"pass --quality-per-class {measured} or use another --out")
    return row


def run_cell(setup: Setup, ann: Annotator | None, seed: int, rounds: int, args) -> None:
    """Online rounds for one (data set, annotator, seed) up to ``rounds``; resumes after the last one done.
    With the promotion gate a refused candidate is dropped and the next round starts from the current model."""
    cell = ann.name if ann is not None else "control"
    root = Path(args.out) / setup.name / cell / f"s{seed}"
    store = PreferenceStore(root / "prefs")
    base_x, labels = base_eval(setup, seed, args), eval_labels(setup, args)
    gate = promotion_gate(setup, seed, args)
    line = LineOfDescent(args.human_veto) if args.human_veto else None
    current = setup.base_path
    for r in range(rounds):
        if args.taste_mark and r * args.pairs_per_round == args.taste_change:
            mark_taste(store, line, args)
        done = root / f"round_{r:02d}.json"
        if done.is_file():
            kept = check_resume(done, args)
            current = kept["checkpoint"]
            if line is not None:
                line.replay(kept["human_veto"])
            continue
        t0 = time.perf_counter()
        taste = taste_in_force(ann, r, args, setup)
        verdict = line.judge() if line is not None else None
        if verdict and verdict["worse"]:
            current = line.current or setup.base_path
            print(f"[{setup.name}/{cell}/s{seed}] annotators' veto before round {r + 1}: "
                  f"{100 * verdict['win_rate']:.1f} % of {verdict['pairs']} pairs; back to {current}", flush=True)
        model = load_model(current)
        rdir = root / f"r{r:02d}"
        cfg = load_dpo_config(overrides=dpo_overrides(setup, current, store.root, rdir, seed,
                                                       stable_int(setup.name, cell, seed, r, "amplify"), args))
        recs, asked = label_round(setup, taste, model, store, cell, seed, r, cfg, args)
        with oracle_reward(taste) if args.oracle_reward else contextlib.nullcontext():
            res = train_dpo(cfg, records=recs, progress=False)
        row = {"round": r, "labels": (r + 1) * args.pairs_per_round, "checkpoint": str(res.checkpoint_path),
               "answers": {c: sum(x.preference == c for x in recs) for c in ("a", "b", "tie")},
               "best_epoch": res.best_epoch, "amplify": _amp_summary(res.data_summary.get("amplify")),
               "promotion_gate": gate is not None, "groups_per_class": args.groups_per_class,
               "reference": args.reference, "selection": args.selection, "pairs_asked": asked,
               "reward": "oracle" if args.oracle_reward else "fitted", "taste_change": args.taste_change,
               "taste": args.new_taste if taste is not ann else "as set", "taste_mark": args.taste_mark,
               "machine": numerics_fingerprint()}  # the same seed gives other digits on other kernels
        if gate is not None:
            row["gate"] = gate.decide(load_model(res.checkpoint_path), model, load_model(setup.base_path), recs, cfg, r)
            row["checkpoint"] = row["checkpoint"] if row["gate"]["promoted"] else current
        if line is not None:
            row["human_veto"] = veto_round(line, verdict, setup, taste, row["checkpoint"] != current, row["checkpoint"],
                                           cell, seed, r, args)
        if evaluated(r, args):
            tuned_model = load_model(row["checkpoint"])
            tuned = sample(tuned_model, labels, 10_000 + seed, args)[0]
            row["eval"] = compare(setup, tuned, base_x, labels, setup.annotators if ann is None else [taste])
            q_labels = quality_labels(setup, args)  # a 2-point recognizability target needs more than 24 per class
            row["eval"]["metrics"] = quality_metrics(setup, sample(tuned_model, q_labels, QUALITY_NOISE + seed, args)[0],
                                                     q_labels)
            row["eval"]["quality_per_class"] = args.quality_per_class
        row["seconds"] = round(time.perf_counter() - t0, 1)
        dropped = current if row["checkpoint"] != current else str(res.checkpoint_path)
        keep = dropped == setup.base_path or (line is not None and dropped in line.line)
        finish_round(done, row, rdir, None if keep else Path(dropped))
        current = row["checkpoint"]
        ev = row.get("eval", {})
        win = next(iter(ev.get("annotators", {}).values()), {}).get("win_rate")
        print(f"[{setup.name}/{cell}/s{seed}] round {r + 1}/{rounds}: {row['seconds']:.0f}s, reward cv "
              f"{row['amplify'].get('cv_accuracy', float('nan')):.3f} used {row['amplify'].get('used')}"
              + (f", win {win:.3f}" if win is not None else "")
              + (f", {'promoted' if row['gate']['promoted'] else 'refused'}" if gate is not None else ""), flush=True)


def finish_round(done: Path, row: dict, rdir: Path, dropped: Path | None) -> None:
    """Write the round's row, then clear what the next rounds do not need: the amplified pairs (thousands of small
    files; the reward model stays), ``last.pt`` and the ``dropped`` model (only the newest promoted model and the
    veto's line go on). In this order a kill during the clean-up leaves a finished round, never a rerun that finds
    amplified records without their arrays."""
    write_json(done, row)
    shutil.rmtree(rdir / "amplified", ignore_errors=True)
    (rdir / "last.pt").unlink(missing_ok=True)
    if dropped is not None:
        dropped.unlink(missing_ok=True)


def taste_in_force(ann: Annotator | None, r: int, args, setup: Setup | None = None) -> Annotator | None:
    """The annotator as it answers and judges in round ``r``: with ``--taste-change N`` its taste is ``--new-taste`` in
    every round after the first N labels, reversed or with another annotator's criterion added (that one's from
    ``setup``; the control has no taste to change)."""
    if ann is None or args.taste_change is None or r * args.pairs_per_round < args.taste_change:
        return ann
    if args.new_taste == "reversed":
        return reversed_taste(ann)
    other = next(a for a in setup.annotators if a.name == args.new_taste.removeprefix("plus-"))
    return added_taste(ann, other, *setup.calibration)


def mark_taste(store: PreferenceStore, line: LineOfDescent | None, args) -> None:
    """``--taste-mark``: at the change, the lab tells the loop (``driftsketch-labelstudio taste-mark``): a mark in the
    store, so training and the reward read only later answers (:mod:`dpo.taste`), and the veto's line forgets the
    answers and approvals before it. A resumed run finds the mark already stored and adds none."""
    marks = TasteMarks(store)
    if marks.since() is None:
        marks.add(f"preference suite: the taste becomes {args.new_taste} after {args.taste_change} labels")
    if line is not None:
        line.mark()


def evaluated(r: int, args) -> bool:
    """Whether round ``r`` ends with an evaluation: after 100, 200, 500 and 1,000 labels, and with
    ``--taste-change`` after every round past the change, to show how the loop follows it."""
    changed = args.taste_change is not None and r * args.pairs_per_round >= args.taste_change
    return r + 1 in EVAL_AT or changed


def veto_round(line: LineOfDescent, verdict: dict | None, setup: Setup, ann: Annotator | None, promoted: bool,
               checkpoint: str, cell: str, seed: int, r: int, args) -> dict:
    """After round ``r``: the promoted model joins the line, and the model now current (not the base) gets the
    round's evaluation pairs against the base, one noise, answered by ``ann``; returns the row's record."""
    if promoted:
        line.promoted(checkpoint)
    if checkpoint == setup.base_path:
        return line.record(verdict, None, [])
    n = args.veto_pairs
    labels = (np.arange(n) + r * n) % len(setup.class_names)
    key = stable_int(setup.name, cell, seed, r, "evaluation pairs")
    current_x = sample(load_model(checkpoint), labels, key, args)[0]
    base_x = sample(load_model(setup.base_path), labels, key, args)[0]
    rng = np.random.default_rng(stable_int(cell, seed, r, "evaluation answers"))
    outcomes = eval_answers(ann, current_x, base_x, labels, rng, args.label_noise, args.tie_rate)
    line.answered(checkpoint, outcomes)
    return line.record(verdict, checkpoint, outcomes)


def _amp_summary(amp: dict | None) -> dict:
    if not amp:
        return {}
    keys = ("used", "cv_accuracy", "heldout_accuracy", "train_accuracy", "train_pairs", "inputs", "l2", "class_weight",
            "pairs")
    return {k: amp[k] for k in keys if k in amp}


def cells(setups: list[Setup], args) -> list[tuple]:
    """(rounds, setup, annotator or None, seed) in the order the suite runs them: every cell to 5 rounds and
    the controls first, then every cell to the full count, so a partial run covers all cells at 500 labels."""
    wanted = set(args.annotators) if args.annotators else None
    known = {a.name for s in setups for a in s.annotators} | {"control"}
    if wanted and wanted - known:
        raise SystemExit(f"--annotators: no annotator named {', '.join(sorted(wanted - known))} "
                         f"(known: {', '.join(sorted(known))})")
    todo = []
    for target in sorted({min(CONTROL_ROUNDS, args.rounds), args.rounds}):
        for seed in args.seeds:
            for s in setups:
                todo += [(target, s, a, seed) for a in s.annotators if wanted is None or a.name in wanted]
                if target == min(CONTROL_ROUNDS, args.rounds) and not args.no_control:
                    todo.append((target, s, None, seed))
    return todo


# ---------------------------------------------------------------------------------------------- report
def collect(out: Path) -> dict:
    """Every finished round's evaluation: {data: {cell: {seed: {labels: eval}}}}."""
    res: dict = {}
    for done in sorted(out.glob("*/*/s*/round_*.json")):
        row = json.loads(done.read_text())
        data, cell, seed = done.parts[-4], done.parts[-3], done.parts[-2]
        entry = res.setdefault(data, {}).setdefault(cell, {}).setdefault(seed, {})
        keys = ("eval", "amplify", "seconds", "groups_per_class", "machine")
        entry[str(row["labels"])] = {k: row[k] for k in keys if k in row}
        if "gate" in row:
            entry[str(row["labels"])]["promoted"] = row["gate"]["promoted"]
        if "human_veto" in row:  # did the annotators' veto go back before this round (--human-veto)
            entry[str(row["labels"])]["vetoed"] = bool((row["human_veto"]["verdict"] or {}).get("worse"))
    return res


def machine_label(run: dict, labels: int) -> str:
    """The machine(s) a run's rounds up to ``labels`` ran on (``torch, kernels, CPU``; ``not recorded`` for rounds
    made before suites recorded it, 6 December 2026); a run resumed elsewhere names each, joined by `` + ``."""
    names = []
    for m in (run[k].get("machine") for k in sorted(run, key=int) if int(k) <= labels):
        name = describe_machine(m)
        names += [name] if name not in names else []
    return " + ".join(names)


def promoted_share(rounds: dict, labels: int) -> float | None:
    """Share of a run's rounds up to ``labels`` whose candidate the promotion gate let through (None: no gate)."""
    flags = [r["promoted"] for k, r in rounds.items() if int(k) <= labels and "promoted" in r]
    return float(np.mean(flags)) if flags else None


def veto_count(rounds: dict, labels: int) -> int | None:
    """How often the annotators' veto went back in a run's rounds up to ``labels`` (None: run without it)."""
    flags = [r["vetoed"] for k, r in rounds.items() if int(k) <= labels and "vetoed" in r]
    return sum(flags) if flags else None


def amplification_groups(by_cell: dict, n_classes: int) -> list[int]:
    """The amplification groups per class and round behind a data set's runs: recorded in every round now; for
    earlier rows read off the pair count of the rounds that amplified (when it divides evenly)."""
    per_group = n_classes * (yaml_defaults("dpo.yaml:amplify")["group_size"] - 1)
    found = set()
    for run in (run for by_seed in by_cell.values() for run in by_seed.values()):
        for r in run.values():
            pairs = r.get("amplify", {}).get("pairs") if r.get("amplify", {}).get("used") else None
            if "groups_per_class" in r:
                found.add(int(r["groups_per_class"]))
            elif pairs and n_classes and pairs % per_group == 0:
                found.add(pairs // per_group)
    return sorted(found)


def setup_infos(out: Path) -> dict[str, dict]:
    """``{data set: setup_info.json}`` of a suite run (classes, annotators and their kinds)."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/setup_info.json"))}


def annotator_kinds(*outs: Path) -> dict[tuple[str, str], str]:
    """``{(data, annotator): kind}`` from the suites' setup_info.json files (style, per-sketch, ...)."""
    return {(data, name): ann.get("kind", "?") for out in outs for data, info in setup_infos(out).items()
            for name, ann in info.get("annotators", {}).items()}


def summarize(out: Path) -> dict:
    """Mean and spread over seeds per (data, annotator, labels), the control at 500 and the headline."""
    raw, setups, kinds = collect(out), setup_infos(out), annotator_kinds(out)
    table, all_500, machines = [], [], []
    for data, by_cell in sorted(raw.items()):
        control = by_cell.get("control", {})
        for cell, by_seed in sorted(by_cell.items()):
            if cell == "control":
                continue
            kind = kinds.get((data, cell), "?")
            base_seeds = _base_metrics(out, data).get("per_seed", {})
            for labels in sorted({int(k) for s in by_seed.values() for k in s if "eval" in s[k]}):
                done = {seed: s[str(labels)]["eval"] for seed, s in by_seed.items() if "eval" in s.get(str(labels), {})}
                evs = list(done.values())
                paired = [(e["metrics"], base_seeds[seed[1:]]) for seed, e in done.items() if seed[1:] in base_seeds]
                row = {"data": data, "annotator": cell, "kind": kind, "labels": labels, "seeds": len(evs),
                       "win_per_seed": {seed: e["annotators"][cell]["win_rate"] for seed, e in sorted(done.items())},
                       **_stats("win", [e["annotators"][cell]["win_rate"] for e in evs]),
                       **_stats("shift", [e["annotators"][cell]["shift_std"] for e in evs])}
                for m in QUALITY:
                    row.update(_stats(m, [e["metrics"][m] for e in evs]))
                # against the base on the same seed's evaluation noise: the targets' yardsticks
                row.update(_stats("recognizability_delta",
                                  [t["recognizability"] - b["recognizability"] for t, b in paired]))
                row.update(_stats("fd_ratio", [t["fd"] / b["fd"] for t, b in paired]))
                shares = [v for v in (promoted_share(by_seed[seed], labels) for seed in done) if v is not None]
                row.update(_stats("promoted", shares))
                row.update(_stats("vetoes", [v for v in (veto_count(by_seed[seed], labels) for seed in done)
                                             if v is not None]))
                if labels == 500:
                    ctl = [s["500"]["eval"]["annotators"][cell] for s in control.values() if "eval" in s.get("500", {})]
                    row.update(_stats("control_win", [c["win_rate"] for c in ctl]))
                    row.update(_stats("control_shift", [c["shift_std"] for c in ctl]))
                    all_500 += [(data, cell, w) for w in [e["annotators"][cell]["win_rate"] for e in evs]]
                    machines += [machine_label(by_seed[seed], 500) for seed in done]
                table.append(row)
    base = {data: _base_metrics(out, data) for data in raw}
    groups = {data: amplification_groups(by_cell, len(setups.get(data, {}).get("classes", []))) for data, by_cell in raw.items()}
    wins = [w for _, _, w in all_500]
    per_cell = {}
    for data, cell, w in all_500:
        per_cell.setdefault((data, cell), []).append(w)
    cell_means = [float(np.mean(v)) for v in per_cell.values()]
    headline = {"win_at_500_mean": float(np.mean(wins)) if wins else None,
                "win_at_500_std_over_runs": float(np.std(wins, ddof=1)) if len(wins) > 1 else None,
                "win_at_500_std_over_cells": float(np.std(cell_means, ddof=1)) if len(cell_means) > 1 else None,
                "runs": len(wins), "cells": len(cell_means),
                # styles win ~every pair by any drift their way: read them apart from the rest
                "by_kind": _grouped(all_500, lambda d, c: kinds.get((d, c), "?")),
                "by_data": _grouped(all_500, lambda d, c: d),
                "by_data_without_styles": _grouped([x for x in all_500 if kinds.get(x[:2]) != "style"], lambda d, c: d),
                "machines": {m: machines.count(m) for m in sorted(set(machines), key=lambda m: (m == "not recorded", m))}}
    failed = {"/".join(p.parent.parts[-3:]): json.loads(p.read_text())["error"]
              for p in sorted(out.glob("*/*/s*/failed.json")) if not (p.parent / "round_00.json").is_file()}
    return {"headline": headline, "table": table, "reaches_65": reaches(table, 0.65), "base": base, "groups": groups,
            "setups": setups, "failed": failed, "raw": raw}


def reaches(table: list[dict], target: float) -> dict[str, int | None]:
    """``data/annotator`` -> the fewest labels at which the mean win rate over seeds is >= ``target``."""
    out: dict[str, int | None] = {}
    for row in sorted(table, key=lambda r: r["labels"]):
        key = f"{row['data']}/{row['annotator']}"
        out.setdefault(key, None)
        if out[key] is None and row["win"] is not None and row["win"] >= target:
            out[key] = row["labels"]
    return out


def _grouped(runs: list[tuple[str, str, float]], key) -> dict[str, dict]:
    """``{key(data, cell): {mean, std, runs}}`` of the wins in ``runs`` ((data, cell, win) per run)."""
    groups: dict[str, list[float]] = {}
    for data, cell, w in runs:
        groups.setdefault(key(data, cell), []).append(w)
    return {k: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "runs": len(v)}
            for k, v in sorted(groups.items())}


def _stats(name: str, values: list[float]) -> dict:
    if not values:
        return {name: None, f"{name}_std": None}
    return {name: float(np.mean(values)), f"{name}_std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


def _base_metrics(out: Path, data: str) -> dict:
    path = out / data / "base_metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _fmt(row: dict, k: str, pct: bool = False, nd: int = 2, sign: str = "") -> str:
    """``mean ± std`` of ``row[k]`` (percent with ``pct``), ``-`` where it was not measured."""
    v, s = row.get(k), row.get(f"{k}_std")
    if v is None:
        return "-"
    if pct:
        return f"{round(100 * v, 1) + 0.0:{sign}.1f} ± {100 * s:.1f}"  # + 0.0: no "-0.0"
    return f"{v:.{nd}f} ± {s:.{nd}f}"


def _groups_text(groups: dict[str, dict]) -> str:
    """``name mean ± std (n runs); ...`` of :func:`_grouped`'s groups, in percent."""
    return "; ".join(f"{k} {100 * v['mean']:.1f} ± {100 * v['std']:.1f} ({v['runs']} runs)" for k, v in groups.items())


def _headline_lines(h: dict) -> list[str]:
    """The headline paragraph: the mean over runs at 500 labels, by kind and by data set."""
    if h["win_at_500_mean"] is None:
        return []
    lines = [f"Mean win rate after 500 labels over {h['cells']} (data set, annotator) cells and {h['runs']} runs: "
             f"**{100 * h['win_at_500_mean']:.1f} %** (std over runs {100 * (h['win_at_500_std_over_runs'] or 0):.1f}, "
             f"over cell means {100 * (h['win_at_500_std_over_cells'] or 0):.1f} points). By kind: "
             f"{_groups_text(h.get('by_kind', {}))}.", ""]
    if h.get("by_data"):
        lines += [f"By data set: {_groups_text(h['by_data'])}. Without the styles: "
                  f"{_groups_text(h.get('by_data_without_styles', {}))}.", ""]
    if h.get("machines"):
        # two recorded machines anywhere, in one run or across runs; rounds that do not say are no evidence
        mixed = len({n for m in h["machines"] for n in m.split(" + ")} - {"not recorded"}) > 1
        lines += ["Runs made on: " + "; ".join(f"{m} ({n} runs)" for m, n in h["machines"].items()) + "."
                  + (" **Mixed machines:** the same seed gives other digits on other CPU kernels, so these runs "
                     "compare only on average." if mixed else ""), ""]
    return lines


def _per_seed_lines(table: list[dict]) -> list[str]:
    """Every run's win after 500 labels, seed by seed, with the mean and the control."""
    at_500 = [r for r in table if r["labels"] == 500 and r.get("win_per_seed")]
    if not at_500:
        return []
    return ["", "Win after 500 labels per seed (the runs behind the headline):", "",
            "| data | annotator | kind | win per seed | win | control win |", "|" + "---|" * 6] + [
        f"| {r['data']} | {r['annotator']} | {r['kind']} | "
        + ", ".join(f"{seed} {100 * w:.1f}" for seed, w in r["win_per_seed"].items())
        + f" | {_fmt(r, 'win', True)} | {_fmt(r, 'control_win', True)} |" for r in at_500]


def markdown(summary: dict) -> str:
    """The report as markdown: headline, the table over labels, per-seed wins, gate shares, styles, bases."""
    lines = ["# Preference suite", ""] + _headline_lines(summary["headline"])
    if any(summary.get("groups", {}).values()):
        lines += ["Amplification groups of 8 per class and round: " + "; ".join(
            f"{data} {', '.join(map(str, g)) or 'none amplified'}" for data, g in summary["groups"].items()), ""]
    lines += ["| data | annotator | kind | labels | seeds | win (noise-free score) | shift (base std) | control win | "
              "control shift | recognizability | vs base (points) | FD | FD / base | continuity |", "|" + "---|" * 14]
    for row in summary["table"]:
        lines.append(f"| {row['data']} | {row['annotator']} | {row['kind']} | {row['labels']} | {row['seeds']} | "
                     f"{_fmt(row, 'win', True)} | {_fmt(row, 'shift')} | {_fmt(row, 'control_win', True)} | "
                     f"{_fmt(row, 'control_shift')} | {_fmt(row, 'recognizability', nd=3)} | "
                     f"{_fmt(row, 'recognizability_delta', True, sign='+')} | {_fmt(row, 'fd')} | "
                     f"{_fmt(row, 'fd_ratio')} | {_fmt(row, 'continuity', nd=3)} |")
    lines += _per_seed_lines(summary["table"])
    gated = [r for r in summary["table"] if r.get("promoted") is not None]
    if gated:
        lines += ["", "Rounds the promotion gate let through (share of the rounds so far, mean over seeds): " + "; ".join(
            f"{r['data']}/{r['annotator']}@{r['labels']} {r['promoted']:.2f}" for r in gated)]
    vetoed = [r for r in summary["table"] if r.get("vetoes") is not None]
    if vetoed:
        lines += ["", "Times the annotators' veto went back to an earlier model (so far, mean over seeds): " + "; ".join(
            f"{r['data']}/{r['annotator']}@{r['labels']} {r['vetoes']:.2f}" for r in vetoed)]
    if summary.get("failed"):
        lines += ["", "Cells not measured: " + "; ".join(f"{k}: {v}" for k, v in summary["failed"].items())]
    lines += ["", "Labels at which the mean win rate first reaches 65 %: " + ", ".join(
        f"{k} {v if v is not None else 'not reached'}" for k, v in summary["reaches_65"].items()), ""]
    style = [r for r in summary["table"] if r["kind"] == "style" and r["labels"] == 500 and r.get("control_shift") is not None]
    if style:
        lines += ["Global styles at 500 labels: attribute shift of the run and of the control (base std, mean ± std "
                  "over seeds) and the run's shift over the control's spread:", ""]
        for r in style:
            spread = r["control_shift_std"] or float("nan")
            lines.append(f"- {r['data']}/{r['annotator']}: run {r['shift']:+.2f} ± {r['shift_std']:.2f}, control "
                         f"{r['control_shift']:+.2f} ± {r['control_shift_std']:.2f}, ratio {r['shift'] / spread:.1f}")
    lines += ["", "Base models (evaluation classifier, mean over seeds; recognizability, FD and continuity of every "
                  "model on each seed's quality noise, N sketches per class):", ""]
    for data, m in summary["base"].items():
        n = m.get("quality_per_class", QUALITY_PER_CLASS_BEFORE)
        lines.append(f"- {data} ({len(m.get('per_seed', {}))} seeds, N = {n}): " + ", ".join(
            f"{k} {m[k]:.3f}" for k in QUALITY if k in m))
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datas = sorted({r["data"] for r in summary["table"]})
    fig, axes = plt.subplots(1, max(1, len(datas)), figsize=(6.5 * max(1, len(datas)), 4.6), squeeze=False)
    for ax, data in zip(axes[0], datas):
        rows = [r for r in summary["table"] if r["data"] == data]
        for i, ann in enumerate(sorted({r["annotator"] for r in rows})):
            pts = sorted((r["labels"], r["win"], r["win_std"]) for r in rows if r["annotator"] == ann)
            x, y, s = (np.array(v) for v in zip(*pts))
            style = "--" if rows and next(r["kind"] for r in rows if r["annotator"] == ann) == "style" else "-"
            line, = ax.plot(x, 100 * y, style, marker="o", label=ann, color=f"C{i}")
            ax.fill_between(x, 100 * (y - s), 100 * (y + s), alpha=0.12, color=line.get_color())
            ctl = [r for r in rows if r["annotator"] == ann and r.get("control_win") is not None]
            if ctl:
                ax.plot([500], [100 * ctl[0]["control_win"]], "x", color=line.get_color(), markersize=8)
        ax.axhline(65, color="k", lw=0.8, ls=":")
        ax.axhline(50, color="grey", lw=0.6)
        ax.set_xscale("log")
        ax.minorticks_off()  # else a panel that stops at 500 labels gets 3x10^2-style minor labels
        ax.set_xticks([100, 200, 500, 1000], ["100", "200", "500", "1000"])
        ax.set_xlim(85, 1150)  # every panel on the same label axis
        ax.set_xlabel("human labels (online rounds of 100)")
        ax.set_ylabel("win rate vs base, noise-free annotator score (%)")
        ax.set_title(f"{data}: mean ± std over seeds; x = shuffled-label control at 500")
        ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(out: Path, plot_copy: str | None, json_copy: str | None = None) -> dict:
    summary = summarize(out)
    write_json(out / "suite.json", summary)
    if json_copy:  # the summary without every round's raw figures: small enough for docs/
        write_json(Path(json_copy), {k: v for k, v in summary.items() if k != "raw"})
    atomic_write_text(out / "suite.md", markdown(summary))
    if summary["table"]:
        png = plot(summary, out / "learning_curves.png")
        if plot_copy:
            Path(plot_copy).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(png, plot_copy)
    print(markdown(summary))
    return summary


# ---------------------------------------------------------------------------------------------- main
def setup_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments that shape a data set's setup (classifiers, the annotators' calibration samples) and its
    samplers; the reward probes share them, so they build the very annotators the suite runs."""
    p.add_argument("--out", default="runs/suite")
    p.add_argument("--eval-per-class", type=int, default=24)
    p.add_argument("--num-steps", type=int, default=6, help="midpoint steps of every sampler in the suite")
    p.add_argument("--cfg-scale", type=float, default=2.0)
    p.add_argument("--solver", default="midpoint")
    p.add_argument("--classifier-steps", type=int, default=400)
    p.add_argument("--foreign-steps", type=int, default=600)
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = setup_arguments(argparse.ArgumentParser(description=__doc__,
                                                formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--data", action="append", default=[], metavar="NAME=SPEC:BASE_CHECKPOINT",
                   help="a data set (builtin or an imported .npz) and the base model trained on it; repeatable")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--annotators", nargs="*", default=None,
                   help="only these annotators (default: all); the controls run unless --no-control, so "
                        "'--annotators control' runs only them")
    p.add_argument("--no-control", action="store_true")
    p.add_argument("--pairs-per-round", type=int, default=100)
    p.add_argument("--label-noise", type=float, default=0.1)
    p.add_argument("--tie-rate", type=float, default=0.05)
    p.add_argument("--groups-per-class", type=int, default=yaml_defaults("dpo.yaml:amplify")["groups_per_class"],
                   help="amplification groups (of 8) per class and round (default: the product's, configs/dpo.yaml; "
                        "earlier runs, which do not record it, used 4)")
    p.add_argument("--eval-num-t", type=int, default=2, help="time draws per held-out pair in train_dpo")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="DPO config override")
    p.add_argument("--reference", choices=["current", "base"], default=yaml_defaults("round.yaml:dpo")["reference"],
                   help="Flow-DPO's frozen reference each round: the model the round starts from, or the data set's "
                        "base (the round's dpo.reference; default: configs/round.yaml's)")
    gen = yaml_defaults("round.yaml:generate")
    p.add_argument("--selection", choices=["random", "uncertain"], default=gen["selection"],
                   help="which pairs a round asks about after round 0 (default: configs/round.yaml's "
                        "generate.selection)")
    p.add_argument("--candidates", type=int, default=gen["candidates"], help="uncertain: candidate pairs per pair asked")
    p.add_argument("--ensemble", type=int, default=gen["ensemble"], help="uncertain: reward models in the ensemble")
    p.add_argument("--min-labeled-pairs", type=int, default=gen["min_labeled_pairs"],
                   help="uncertain: random pairs while the store has fewer human pairs")
    p.add_argument("--oracle-reward", action="store_true",
                   help="rank amplification groups by the annotator's own noise-free score instead of a reward model "
                        "fit on the answers (a perfect reward; always passes the gate; needs --no-control): what the "
                        "loop could reach if the reward saw the taste exactly (benchmarks/oracle_reward.py)")
    p.add_argument("--human-veto", action="store_const", const=PromotionGate().human_veto_min_pairs, default=None,
                   help="the round's annotators' veto (configs/round.yaml gate.human_veto_min_pairs): evaluation "
                        "pairs of the current model against the base after every round, and the verdict on the "
                        "newest models before the next (benchmarks/suite_veto.py); off by default")
    p.add_argument("--taste-change", type=int, default=None, metavar="LABELS",
                   help="after this many labels (a multiple of --pairs-per-round) the annotators' taste turns around: "
                        "they prefer what they disliked, in training, evaluation and veto answers alike, and the win "
                        "is measured under the new taste after every later round")
    p.add_argument("--new-taste", default="reversed", metavar="reversed|plus-NAME",
                   help="the taste after --taste-change: reversed (they prefer what they disliked), or plus-NAME (equal "
                        "parts the old taste and annotator NAME's criterion, e.g. plus-smooth, each z-scored on base "
                        "samples)")
    p.add_argument("--taste-mark", action="store_true",
                   help="with --taste-change: the lab marks the change (driftsketch-labelstudio taste-mark), so the "
                        "reward, training and the veto read only the answers given since, and the veto goes back past "
                        "models promoted only before the mark")
    p.add_argument("--veto-pairs", type=int, default=None,
                   help="evaluation pairs answered per round with --human-veto (default: configs/labelstudio.yaml's "
                        "human_eval.share of --pairs-per-round)")
    p.add_argument("--shard", default="0/1", help="i/n: run every n-th cell starting at i")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--promotion-gate", action=argparse.BooleanOptionalAction, default=True,
                   help="promote a round's candidate only if the round's gate passes (configs/round.yaml), as the "
                        "product's round does; --no-promotion-gate: every candidate goes on (the suite before 4 December)")
    p.add_argument("--gate-per-class", type=int, default=yaml_defaults("round.yaml:eval")["samples_per_class"],
                   help="samples per class behind the gate's metrics (default: the round's, configs/round.yaml eval)")
    p.add_argument("--quality-per-class", type=int, default=yaml_defaults("round.yaml:eval")["samples_per_class"],
                   help="samples per class behind recognizability, FD and continuity, on noise of their own (default: "
                        "the round's evaluation, configs/round.yaml eval; runs before commit c4de993 used the 24 per class "
                        "of the win rates)")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--plot", default=None, help="also copy the learning-curve PNG here (e.g. docs/img/...)")
    p.add_argument("--json", default=None, help="also write the summary without the raw rounds here (e.g. docs/...)")
    args = p.parse_args(argv)
    if args.taste_change is not None and (args.taste_change <= 0 or args.taste_change % args.pairs_per_round):
        p.error(f"--taste-change {args.taste_change}: a positive multiple of --pairs-per-round {args.pairs_per_round}")
    if args.new_taste != "reversed" and not args.new_taste.startswith("plus-"):
        p.error(f"--new-taste {args.new_taste}: reversed or plus-<annotator name>")
    if args.taste_mark and args.taste_change is None:
        p.error("--taste-mark marks the change of --taste-change; pass both")
    if args.veto_pairs is None:
        args.veto_pairs = round(yaml_defaults("labelstudio.yaml:human_eval")["share"] * args.pairs_per_round)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    if args.oracle_reward and not args.no_control:
        raise SystemExit("--oracle-reward: a shuffled-label control has no taste to score with; add --no-control")
    if args.report_only:
        report(out, args.plot, args.json)
        return
    torch.set_num_threads(args.threads)
    setups = []
    for item in args.data:
        name, spec, base = data_arg(item)
        s = prepare(name, spec, base, out, args)
        write_json(out / name / "setup_info.json", s.info)
        write_base_metrics(out / name / "base_metrics.json",
                           {str(seed): quality_metrics(s, base_quality(s, seed, args), quality_labels(s, args))
                            for seed in args.seeds}, args.quality_per_class)
        setups.append(s)
    added = args.new_taste.removeprefix("plus-") if args.new_taste != "reversed" else None
    if added is not None and not all(added in {a.name for a in s.annotators} for s in setups):
        raise SystemExit(f"--new-taste {args.new_taste}: no annotator named {added} "
                         f"(known: {', '.join(a.name for a in setups[0].annotators)})")
    shard, nshard = (int(v) for v in args.shard.split("/"))
    todo = cells(setups, args)
    t0 = time.perf_counter()
    for i, (rounds, s, ann, seed) in enumerate(todo):
        if i % nshard != shard:
            continue
        print(f"== cell {i + 1}/{len(todo)}: {s.name} / {ann.name if ann else 'control'} / seed {seed} -> "
              f"{rounds} rounds ({time.perf_counter() - t0:.0f}s elapsed)", flush=True)
        try:
            run_cell(s, ann, seed, rounds, args)
        except DPOError as exc:  # e.g. an annotator that ties almost every pair: too few usable pairs
            cell = ann.name if ann else "control"
            write_json(out / s.name / cell / f"s{seed}" / "failed.json", {"error": str(exc).split("; data:")[0]})
            print(f"[{s.name}/{cell}/s{seed}] not measured: {exc}", flush=True)
    report(out, args.plot, args.json)


if __name__ == "__main__":
    main()
