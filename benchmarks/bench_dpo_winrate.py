"""Does Flow-DPO make the model better? Base -> judge-labeled pairs -> Flow-DPO -> hidden-judge win rate.

    python benchmarks/bench_dpo_winrate.py --base-checkpoint runs/base-builtin/model.pt \\
        --classifier runs/classifier_annotator.pt --eval-classifier runs/classifier.pt \\
        --hidden-classifier runs/classifier_hidden.pt --data builtin \\
        --pairs 500 --out runs/bench_dpo
    # another setting on the same pairs (pairs, base samples and classifiers are reused from --out):
    python benchmarks/bench_dpo_winrate.py ... --name beta500 --set beta=500 --set epochs=5

1. ``--pairs`` pairs from the base model (two samples of one class, each with its generation noise);
2. labeled by the *labeling* judge (classifier confidence + continuity) as a noisy human:
   decision flipped with ``--label-noise``, ties within ``--tie-margin`` or at ``--tie-rate``;
3. stored in a real preference store, trained with ``train_dpo`` (configs/dpo.yaml + ``--set``), and a
   control run on the same pairs with shuffled labels for as many epochs as the DPO model kept;
4. base, DPO and control sample from the same *new* noise; the *hidden* judge (another classifier,
   stroke count instead of continuity) compares each with the base: win rate with a 95% Wilson interval;
   recognizability, Frechet distance and continuity from ``evaluate_samples``.
Classifiers missing at the given paths are trained on ``--data`` and saved there (a third one,
``--reward-classifier``, is behind the reward model of ``--set amplify.enabled=true``, so that the reward
shares no network with either judge). Writes ``OUT/NAME/report.json``, which also holds the selection
ceilings: the hidden-judge win rate of best-of-k picks (by the labeling judge, by the simulated
annotator, and by the run's reward model when it amplified), i.e. of best-of-k sampling.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from driftsketch.stats import wilson_interval
from dpo.config import DEFAULT_DPO_CONFIG, load_dpo_config
from dpo.records import PreferenceRecord
from dpo.reward import RewardModel
from dpo.store import PreferenceStore
from dpo.trainer import train_dpo
from driftsketch.checkpoint import load_model
from driftsketch.evaluation import HiddenJudge, LabelingJudge, SketchClassifier, evaluate_samples, prefer
from driftsketch.evaluation.classifier import train_classifier
from driftsketch.evaluation.judges import prefer_from_scores
from driftsketch.evaluation.settings import load_eval_config
from driftsketch.sampling import generate_beziers

from bench_args import add_model_args, add_sampler_args, start


def get_classifier(path: Path, data, section: str) -> SketchClassifier:
    """The classifier at ``path``, trained on ``data`` with configs/eval.yaml ``section`` and saved there
    when missing: ``annotator_classifier`` (the simulated annotator's labeling judge), ``classifier``
    (metrics), ``hidden_classifier`` (hidden judge) or ``reward_classifier`` (the reward model's). The
    annotator's and the reward model's train on parts of the data that no judging classifier saw."""
    if path.is_file():
        return SketchClassifier.load(path)
    clf = train_classifier(data, getattr(load_eval_config(), section))
    clf.save(path)
    return clf


def sample(model, labels: np.ndarray, seed: int, args) -> tuple[np.ndarray, np.ndarray]:
    return generate_beziers(model, labels.tolist(), len(labels), num_steps=args.num_steps, cfg_scale=args.cfg_scale,
                            solver=args.solver, seed=seed)


def base_samples(base, labels: np.ndarray, seed: int, out: Path, args) -> np.ndarray:
    """The base model's evaluation samples, cached in ``out`` (same for every setting run on these pairs)."""
    key = f"{base.checkpoint_id}-{len(labels)}-{seed}-{args.solver}{args.num_steps}-cfg{args.cfg_scale}"
    path = out / f"base_eval_{key}.npy"
    if path.is_file():
        return np.load(path)
    x = sample(base, labels, seed, args)[0]
    out.mkdir(parents=True, exist_ok=True)
    np.save(path, x)
    return x


def build_store(model, judge: LabelingJudge, store: PreferenceStore, args) -> dict:
    """Generate and label ``args.pairs`` pairs into ``store`` (skipped when the store already holds them)."""
    if store.session_files():
        return {"reused": True, "records": len(store.records())}
    if args.group_size > 2:
        recs = label_groups(model, judge, store, args)
        return {"reused": False, "records": len(recs), "tasks": len(recs) // (args.group_size - 1)}
    recs = label_pairs(model, judge, store, args.pairs, args.seed, "bench", "p", args)
    return {"reused": False, "records": len(recs), **{c: sum(r.preference == c for r in recs) for c in ("a", "b", "tie")}}


def bot_record(model, judge: LabelingJudge, label: int, a: tuple[str, str | None], b: tuple[str, str | None],
               preference: str, source: dict) -> PreferenceRecord:
    """A pairwise record of the simulated annotator; ``a`` and ``b`` are (beziers, noise) store paths."""
    return PreferenceRecord(comparison_type="pairwise", class_label=label, class_name=model.class_names[label],
                            beziers_a=a[0], beziers_b=b[0], noise_a=a[1], noise_b=b[1], preference=preference,
                            checkpoint=model.checkpoint_id, annotator=f"bot:{judge.name}-judge",
                            source={"system": "bench_dpo_winrate", **source})


def label_pairs(model, judge: LabelingJudge, store: PreferenceStore, n: int, seed: int, session: str,
                prefix: str, args) -> list[PreferenceRecord]:
    """``n`` pairs sampled from ``model`` (two samples of one class each), labeled by the noisy
    ``judge`` and appended to ``store`` as session ``session``; returns the new records."""
    n_cls = len(model.class_names)
    labels = np.arange(n) % n_cls
    a, na = sample(model, labels, seed * 2 + 1, args)
    b, nb = sample(model, labels, seed * 2 + 2, args)
    rng = np.random.default_rng(seed)
    choices = prefer(judge, a, b, labels, rng, noise=args.label_noise, tie_margin=args.tie_margin,
                     tie_rate=args.tie_rate)
    recs = []
    for i, (c, y) in enumerate(zip(choices, labels)):
        ra, rna = store.save_sample(f"{prefix}{i:05d}a", a[i], na[i])
        rb, rnb = store.save_sample(f"{prefix}{i:05d}b", b[i], nb[i])
        recs.append(bot_record(model, judge, int(y), (ra, rna), (rb, rnb), c,
                               {"seed": seed, "session": session, "pair": i}))
    store.append(recs, session=session)
    return recs


def label_groups(model, judge: LabelingJudge, store: PreferenceStore, args) -> list[PreferenceRecord]:
    """"Pick the best of k" tasks: ``pairs / (k - 1)`` groups of k sketches of one class; the noisy
    annotator picks the best (a random other one with probability ``label_noise``; skips a task at
    ``tie_rate``), which yields k - 1 pairs (the pick against each other sketch)."""
    k, n_cls = args.group_size, len(model.class_names)
    n_tasks = args.pairs // (k - 1)
    labels = np.arange(n_tasks) % n_cls
    draws = [sample(model, labels, args.seed * 10 + 1 + j, args) for j in range(k)]
    scores = np.stack([judge.score(x, labels) for x, _ in draws], axis=1)  # (tasks, k)
    rng, recs = np.random.default_rng(args.seed), []
    for i, y in enumerate(labels):
        if rng.random() < args.tie_rate:
            continue
        best = int(np.argmax(scores[i]))
        if rng.random() < args.label_noise:
            best = int(rng.choice([j for j in range(k) if j != best]))
        paths = [store.save_sample(f"g{i:05d}-{j}", draws[j][0][i], draws[j][1][i]) for j in range(k)]
        for j in range(k):
            if j != best:
                recs.append(bot_record(model, judge, int(y), paths[best], paths[j], "a",
                                       {"seed": args.seed, "task": i, "other": j}))
    store.append(recs, session="bench")
    return recs


def online_rounds(args, judge: LabelingJudge, out: Path, shuffle: bool) -> dict:
    """``args.rounds`` rounds of the online loop: each samples ``pairs / rounds`` new pairs from the newest
    model, the judge labels them, and Flow-DPO tunes that model on them (reference = that model)."""
    name = "control" if shuffle else "dpo"
    store = PreferenceStore(out / f"prefs_{name}")
    current, rounds = args.base_checkpoint, []
    per_round = args.pairs // args.rounds
    for r in range(args.rounds):
        model = load_model(current)
        recs = label_pairs(model, judge, store, per_round, args.seed * 1000 + r, f"round{r}", f"r{r}-", args)
        res = train(args, store.root, out / f"{name}_r{r}", shuffle, base=current, records=recs)
        rounds.append(res)
        current = res["checkpoint"]
    return {"checkpoint": current, "rounds": rounds}


def repeated_runs(args, prefs: Path, out: Path, shuffle: bool) -> dict:
    """``--repeat`` Flow-DPO runs on the same stored pairs, each from (and referenced to) the previous
    run's checkpoint; with ``amplify`` on, each one ranks fresh samples of the newest model. One run is
    the plain offline benchmark."""
    if args.repeat <= 1:
        return train(args, prefs, out / "dpo", shuffle)
    current, rounds = args.base_checkpoint, []
    for r in range(args.repeat):
        rounds.append(train(args, prefs, out / f"dpo_r{r}", shuffle, base=current))
        current = rounds[-1]["checkpoint"]
    return {"checkpoint": current, "best_epoch": rounds[-1]["best_epoch"], "rounds": rounds}


def train(args, prefs: Path, run_dir: Path, shuffle: bool, epochs: int | None = None,
          base: str | None = None, records: list[PreferenceRecord] | None = None) -> dict:
    """One Flow-DPO run; ``epochs`` fixes the epoch count with no early stopping (the control run
    trains exactly as many epochs as the DPO model it is compared with)."""
    fixed = [(["epochs"], epochs), (["early_stopping_patience"], 0)] if epochs is not None else []
    over = list(args.set) + fixed + [(["base_checkpoint"], base or args.base_checkpoint), (["preference_dir"], str(prefs)),
                             (["checkpoint_dir"], str(run_dir)), (["wandb"], False),
                             (["shuffle_labels"], shuffle), (["num_threads"], args.num_threads)]
    cfg = load_dpo_config(args.config, over)
    res = train_dpo(cfg, records=records, progress=not args.quiet)
    return {"checkpoint": str(res.checkpoint_path), "best_epoch": res.best_epoch, "seconds": round(res.seconds, 1),
            "stopped_early": res.stopped_early, "history": res.history, "data": res.data_summary}


def compare(samples: dict[str, np.ndarray], labels: np.ndarray, hidden: HiddenJudge, labeling: LabelingJudge,
            real, clf: SketchClassifier) -> dict:
    out = {}
    for name, x in samples.items():
        ev = evaluate_samples(x, labels, real, clf)
        row = {k: ev[k] for k in ("recognizability", "frechet_distance", "frechet_distance_real_floor",
                                  "continuity", "continuity_real")}
        row["hidden_score"] = float(hidden.score(x, labels).mean())
        row["labeling_score"] = float(labeling.score(x, labels).mean())
        row["hidden_recognizability"] = float((hidden.classifier.predict(x) == labels).mean())
        if name != "base":
            for jname, judge in (("hidden", hidden), ("labeling", labeling)):
                d = judge.score(x, labels) - judge.score(samples["base"], labels)
                wins, ties = float((d > 0).sum()), float((d == 0).sum())
                lo, hi = wilson_interval(wins + ties / 2, len(d))
                row[f"{jname}_win_rate"] = (wins + ties / 2) / len(d)
                row[f"{jname}_win_ci"] = [lo, hi]
                if jname == "hidden":  # a model change moves a whole class together: look per class
                    row["hidden_win_per_class"] = [round(float((d[labels == c] > 0).mean()), 3)
                                                   for c in np.unique(labels)]
        out[name] = row
    return out


def selection_ceiling(hidden_scores: np.ndarray, pick_scores: np.ndarray, labels: np.ndarray,
                      ks=(2, 3, 4, 8, 16), trials: int = 4000, seed: int = 0) -> dict[str, float]:
    """What perfect learning of a picker could buy: the hidden-judge win rate of the best of ``k`` base
    samples (highest ``pick_scores``: the noise-free labeling judge, or a reward model) against another
    base sample of the same class. One round of pairwise labels teaches at most a best-of-2 shift; the
    same numbers are what best-of-k *sampling* with that picker gives."""
    rng, out = np.random.default_rng(seed), {}
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for k in (k for k in ks if k < min(len(g) for g in groups)):  # k + 1 sketches of one class per trial
        wins = 0.0
        for _ in range(trials):
            g = groups[rng.integers(len(groups))]
            idx = rng.choice(g, k + 1, replace=False)
            d = hidden_scores[idx[:k][np.argmax(pick_scores[idx[:k]])]] - hidden_scores[idx[k]]
            wins += float(d > 0) + 0.5 * float(d == 0)
        out[f"best_of_{k}"] = round(wins / trials, 3)
    return out


def ceilings(x: np.ndarray, labels: np.ndarray, hidden: HiddenJudge, labeling: LabelingJudge, runs: dict,
             args) -> dict:
    """Selection ceilings of the labeling judge, the simulated annotator and (when a run amplified)
    its reward model, all on the base's evaluation sketches ``x``."""
    hs = hidden.score(x, labels)
    out = {**selection_ceiling(hs, labeling.score(x, labels), labels),
           "best_of_2_noisy_labels": noisy_pick_ceiling(x, labels, hidden, labeling, args)}
    run = runs.get("dpo") or next(iter(runs.values()))
    last = (run.get("rounds") or [run])[-1]  # online: the last round's reward model
    amp = last.get("data", {}).get("amplify")
    if amp:
        rm = RewardModel.load(amp["reward_model"])
        out["reward_model"] = selection_ceiling(hs, rm.score(x, labels), labels)
    return out


def noisy_pick_ceiling(x: np.ndarray, labels: np.ndarray, hidden: HiddenJudge, labeling: LabelingJudge,
                       args, trials: int = 4000) -> float:
    """As :func:`selection_ceiling` for k = 2, but picked by the *noisy* simulated annotator of this
    benchmark (flips, ties resolved at random): what the training labels themselves select."""
    hs, ls = hidden.score(x, labels), labeling.score(x, labels)
    rng = np.random.default_rng(args.seed + 1)
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    wins = 0.0
    for _ in range(trials):
        g = groups[rng.integers(len(groups))]
        a, b, other = rng.choice(g, 3, replace=False)
        choice = prefer_from_scores(ls[[a]], ls[[b]], rng, args.label_noise, args.tie_margin, args.tie_rate)[0]
        pick = a if choice == "a" or (choice == "tie" and rng.random() < 0.5) else b
        d = hs[pick] - hs[other]
        wins += float(d > 0) + 0.5 * float(d == 0)
    return round(wins / trials, 3)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p, out="runs/bench_dpo")
    p.add_argument("--name", default="default", help="sub-folder for this DPO setting")
    p.add_argument("--config", default=str(DEFAULT_DPO_CONFIG))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="DPO config override")
    p.add_argument("--pairs", type=int, default=500)
    p.add_argument("--group-size", type=int, default=2,
                   help="> 2: 'pick the best of k' tasks, each giving k - 1 pairs (pairs / (k - 1) tasks)")
    p.add_argument("--rounds", type=int, default=1,
                   help="> 1: online loop, pairs / rounds fresh pairs from the newest model per round")
    p.add_argument("--repeat", type=int, default=1,
                   help="> 1 (offline): that many runs on the same pairs, each from the previous checkpoint")
    p.add_argument("--label-noise", type=float, default=0.1)
    p.add_argument("--tie-margin", type=float, default=0.02)
    p.add_argument("--tie-rate", type=float, default=0.05)
    add_sampler_args(p)
    p.add_argument("--no-control", action="store_true", help="skip the shuffled-label control run")
    p.add_argument("--control-only", action="store_true", help="with --rounds > 1: only the control run")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv=None) -> None:
    args, t0, out, real = start(parser(), argv)
    labeling = LabelingJudge(get_classifier(Path(args.classifier), real, "annotator_classifier"))
    clf = get_classifier(Path(args.eval_classifier), real, "classifier")  # recognizability and FD
    hidden = HiddenJudge(get_classifier(Path(args.hidden_classifier), real, "hidden_classifier"))
    get_classifier(Path(args.reward_classifier), real, "reward_classifier")
    args.set = [f"amplify.reward.classifier={args.reward_classifier}"] + list(args.set)
    base = load_model(args.base_checkpoint)
    if args.rounds > 1:  # online: fresh on-policy pairs each round
        store_info = {"rounds": args.rounds, "pairs_per_round": args.pairs // args.rounds}
        runs = {} if args.control_only else {"dpo": online_rounds(args, labeling, out / args.name, shuffle=False)}
        if not args.no_control:
            runs["control"] = online_rounds(args, labeling, out / args.name, shuffle=True)
    else:
        store_info = build_store(base, labeling, PreferenceStore(out / "prefs"), args)
        print(f"pairs: {store_info}")
        runs = {"dpo": repeated_runs(args, out / "prefs", out / args.name, shuffle=False)}
    if args.rounds <= 1 and not args.no_control:
        runs["control"] = train(args, out / "prefs", out / args.name / "control", shuffle=True,
                                epochs=max(1, runs["dpo"]["best_epoch"]))
    labels = np.repeat(np.arange(len(base.class_names)), args.eval_per_class)
    eval_seed = 10_000 + args.seed  # new noise, never used for the training pairs
    samples = {"base": base_samples(base, labels, eval_seed, out, args)}
    for name, r in runs.items():
        samples[name] = sample(load_model(r["checkpoint"]), labels, eval_seed, args)[0]
    (out / args.name).mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / args.name / "eval_samples.npz", labels=labels, **samples)  # for grids and analysis
    result = {"args": vars(args), "pairs": store_info, "runs": runs,
              "compare": compare(samples, labels, hidden, labeling, real, clf),
              "selection_ceiling": ceilings(samples["base"], labels, hidden, labeling, runs, args),
              "seconds": round(time.perf_counter() - t0, 1)}
    path = out / args.name / "report.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))
    print_table(result["compare"])
    print(f"hidden win rate of perfect best-of-k selection by the labeling judge: {result['selection_ceiling']}")
    print(f"report: {path}")


def print_table(cmp: dict) -> None:
    cols = ["hidden_win_rate", "labeling_win_rate", "recognizability", "hidden_recognizability",
            "frechet_distance", "continuity", "hidden_score"]
    print(f"{'model':8s} " + " ".join(f"{c[:18]:>18s}" for c in cols))
    for name, row in cmp.items():
        cells = []
        for c in cols:
            v = row.get(c)
            ci = row.get(c.replace("_rate", "_ci"))
            cells.append(f"{v:.3f} [{ci[0]:.2f},{ci[1]:.2f}]" if ci and c.endswith("win_rate")
                         else (f"{v:.3f}" if v is not None else "-"))
        print(f"{name:8s} " + " ".join(f"{c:>18s}" for c in cells))


if __name__ == "__main__":
    main()
