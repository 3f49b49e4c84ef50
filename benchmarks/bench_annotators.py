"""Five simulated annotators, two of them careless, always-left or reversed, three answers per pair: does weighting
by measured reliability recover the honest annotators' preference?

    python benchmarks/bench_annotators.py --base-checkpoint runs/base-builtin/model.pt \\
        --classifier runs/classifier.pt --hidden-classifier runs/classifier_hidden.pt \\
        --reward-classifier runs/classifier_reward.pt --pairs 500 --gold 50 --seeds 0 1 2 --out runs/bench_annotators
    # add --dpo to also fine-tune with Flow-DPO on each condition's pairs (minutes per run)
    python benchmarks/bench_annotators.py --summarise runs/B_careless/report.json runs/B_left/report.json
    # pools the runs of several reports (seeds or panels run in separate processes) and prints the tables

1. ``--pairs`` pairs of base-model sketches (bench_dpo_winrate.py's sampler) and ``--gold`` gold pairs
   (dpo/gold.py: a real drawing vs a scrambled / wrong-class / noisy copy), answered by 3 of 5 annotators
   each, drawn at random per pair: 3 honest (the noisy labeling judge of docs/dpo.md: 10 % flips, ties
   within 0.02 and 5 % random ties) and 2 careless (coin flips), always-left or reversed (the honest
   annotator's answer with A and B swapped: a taste against the others'; labeling.bot.misbehave);
   which sketch is shown left is random per pair. Stored in a real preference store per panel and seed.
2. Conditions, each a PreferenceDataset over the same store: ``honest_only`` (only the honest answers),
   ``weighted`` (configs/dpo.yaml: soft labels, Dawid-Skene weights, gold-accuracy exclusion),
   ``weighted_no_exclusion``, ``unweighted`` (soft labels, every answer weight 1, nobody excluded) and
   ``unweighted_each`` (every answer its own training pair, weight 1: the pipeline before issue 11).
3. Per condition: the share of training pairs whose winner the noise-free labeling judge also prefers
   (label accuracy), and the same weighted by each pair's |2 target - 1|, the pull of the label-smoothed
   Flow-DPO loss (signal accuracy: a near-even soft label counts little); a Bradley-Terry reward model fit
   on them (the one reward amplification uses, on a
   third classifier); its agreement with the hidden judge on new base pairs; and the win rate it buys:
   the hidden judge's win rate of its best of 8 base sketches against another base sketch (best-of-8
   sampling, bench_dpo_winrate.py's selection ceiling). With ``--dpo``: Flow-DPO (configs/dpo.yaml) on
   the condition's pairs, hidden-judge win rate of the tuned model against the base on new noise.
4. Per annotator (configs/dpo.yaml weighting): gold accuracy with its 95 % interval, mean Cohen's kappa
   with the others, weight, exclusion; Krippendorff's alpha. Mean and spread over ``--seeds``; with ``--dpo``
   the paired differences weighted - unweighted and weighted - honest_only per seed, with their standard error.
Writes OUT/report.json and prints markdown tables.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from bench_args import add_model_args, add_sampler_args, start
from bench_dpo_winrate import base_samples, get_classifier, sample, train
from preference_sim import PROFILES, FeatureCache, agreement, answers, best_of_8, cached_fitter, mean_spread

from dpo.amplify import dataset_arrays
from dpo.annotators import assess_annotators, collect_answers
from dpo.config import AnnotatorsConfig, RewardConfig
from dpo.dataset import PreferenceDataset
from dpo.gold import GoldSet, make_gold_pairs
from dpo.records import PreferenceRecord
from dpo.store import PreferenceStore
from driftsketch.checkpoint import load_model
from driftsketch.evaluation import HiddenJudge, LabelingJudge

PANELS = ["careless", "left", "reversed"]  # the two bad annotators of a panel
CONDITIONS = {  # name -> (only honest answers?, annotators config)
    "honest_only": (True, AnnotatorsConfig(weighting="none", min_gold_accuracy=None)),
    "weighted": (False, AnnotatorsConfig()),
    "weighted_no_exclusion": (False, AnnotatorsConfig(min_gold_accuracy=None)),
    "unweighted": (False, AnnotatorsConfig(weighting="none", min_gold_accuracy=None)),
    "unweighted_each": (False, AnnotatorsConfig(aggregate="each", weighting="none", min_gold_accuracy=None)),
}


def base_pairs(model, n: int, out: Path, args) -> dict:
    """``n`` pairs of base sketches (cached in ``out``)."""
    path = out / f"pairs_{model.checkpoint_id}_{n}_{args.pair_seed}_{args.solver}{args.num_steps}-cfg{args.cfg_scale}.npz"
    if path.is_file():
        return dict(np.load(path))
    labels = np.arange(n) % len(model.class_names)
    a, na = sample(model, labels, args.pair_seed * 2 + 1, args)
    b, nb = sample(model, labels, args.pair_seed * 2 + 2, args)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(path, a=a, b=b, na=na, nb=nb, labels=labels)
    return dict(np.load(path))


def build_store(root: Path, pairs: dict, gold, judge: LabelingJudge, panel: str, seed: int, class_names,
                per_pair: int = 3) -> tuple[PreferenceStore, list[str]]:
    """Every pair and gold pair answered by ``per_pair`` of the 5 annotators; returns the store and the
    honest annotators' names. Reused when it exists."""
    store = PreferenceStore(root)
    names = [f"honest-{i}" for i in (1, 2, 3)] + [f"{panel}-{i}" for i in (1, 2)]
    if store.session_files():
        return store, names[:3]
    n, g = len(pairs["labels"]), len(gold)
    a = np.concatenate([pairs["a"], gold.good]) if g else pairs["a"]
    b = np.concatenate([pairs["b"], gold.bad]) if g else pairs["b"]
    labels = np.concatenate([pairs["labels"], gold.labels]) if g else pairs["labels"]
    noise = lambda key, i: pairs[key][i] if i < n else None  # noqa: E731  (gold sketches have no noise)
    paths = [(store.save_sample(f"t{i:05d}a", a[i], noise("na", i)),
              store.save_sample(f"t{i:05d}b", b[i], noise("nb", i))) for i in range(len(labels))]
    GoldSet(store).register([{"good": paths[n + j][0][0], "bad": paths[n + j][1][0], "kind": gold.kinds[j],
                              "class_name": class_names[int(gold.labels[j])]} for j in range(g)])
    rng = np.random.default_rng(seed)
    sa, sb = judge.score(a, labels), judge.score(b, labels)
    left = list(rng.choice(["a", "b"], size=len(labels)))
    who = [rng.choice(5, size=per_pair, replace=False) for _ in labels]
    recs = []
    for k, name in enumerate(names):
        mine = [i for i in range(len(labels)) if k in who[i]]
        profile = PROFILES["honest" if k < 3 else panel]
        picks = answers(sa[mine], sb[mine], [left[i] for i in mine], profile, np.random.default_rng([seed, k]))
        for i, pref in zip(mine, picks):
            recs.append(PreferenceRecord(
                comparison_type="pairwise", class_label=int(labels[i]), class_name=class_names[int(labels[i])],
                beziers_a=paths[i][0][0], beziers_b=paths[i][1][0], noise_a=paths[i][0][1],
                noise_b=paths[i][1][1], preference=pref, left=left[i], annotator=name, lead_time=3.0,
                source={"system": "bench_annotators", "panel": panel, "seed": seed, "task": i, "annotator": name}))
    store.append(recs, session="panel")
    return store, names[:3]


def condition_dataset(store: PreferenceStore, honest: list[str], only_honest: bool, cfg: AnnotatorsConfig,
                      class_names) -> PreferenceDataset:
    records = store.records()
    if only_honest:
        records = [r for r in records if r.annotator in honest]
    return PreferenceDataset(store, class_names, records=records, annotators=cfg, use_noise=False)


def evaluate_condition(ds: PreferenceDataset, judge: LabelingJudge, features: FeatureCache, l2: float,
                       ev: dict) -> dict:
    """Label accuracy, reward-model agreement with the hidden judge, best-of-8 hidden win rate."""
    w, lo, y = dataset_arrays(ds)
    d = judge.score(w, y) - judge.score(lo, y)
    reward = cached_fitter(features, l2)(w, lo, y)
    confidence = np.abs(2 * np.array([p.target for p in ds.pairs]) - 1)  # the label-smoothed loss's pull
    return {"pairs": len(y), "label_accuracy": float(np.mean(d[d != 0] > 0)),
            "signal_accuracy": float(np.sum(confidence * (d > 0)) / np.sum(confidence[d != 0])),
            "mean_target": float(np.mean([p.target for p in ds.pairs])),
            "reward_hidden_agreement": agreement(reward, ev["pa"], ev["pb"], ev["pl"], ev["ptruth"]),
            "best_of_8_hidden_win": best_of_8(reward, ev["x"], ev["labels"], ev["hidden"]),
            "excluded": sorted(ds.assessment.excluded)}


def panel_table(store: PreferenceStore) -> dict:
    report = assess_annotators(collect_answers(store.records()), GoldSet(store).entries(), AnnotatorsConfig())
    return {"alpha": report.alpha, "rows": {r.annotator: {
        "answers": r.answers, "gold_accuracy": r.gold_accuracy, "gold_ci": list(r.gold_ci),
        "mean_kappa": r.mean_kappa, "left_rate": r.left_rate, "tie_rate": r.tie_rate, "accuracy": r.accuracy,
        "weight": r.weight, "excluded": r.excluded} for r in report.rows}}


def dpo_win(args, store: PreferenceStore, honest: list[str], name: str, only_honest: bool,
            cfg: AnnotatorsConfig, run_dir: Path, ev: dict, hidden: HiddenJudge, base_x: np.ndarray) -> dict:
    """Flow-DPO (configs/dpo.yaml + --set) on the condition's pairs; hidden win rate vs the base. With
    ``--amplify`` as the online loop trains: a reward model fit on the condition's own training pairs (never
    on the store's other answers) amplifies them."""
    saved = args.set
    args.set = list(saved) + [(["annotators", k], v) for k, v in cfg.__dict__.items()] + [(["use_stored_noise"], False)]
    if args.amplify:
        args.set += [(["amplify", "enabled"], True), (["amplify", "reward", "classifier"], args.reward_classifier),
                     (["amplify", "reward", "fit_on"], "training")]
    recs = [r for r in store.records() if r.annotator in honest] if only_honest else None
    try:
        res = train(args, store.root, run_dir / name, shuffle=False, records=recs)
    finally:
        args.set = saved
    x = sample(load_model(res["checkpoint"]), ev["labels"], ev["eval_seed"], args)[0]
    dd = hidden.score(x, ev["labels"]) - hidden.score(base_x, ev["labels"])
    row = {"dpo_hidden_win": float(((dd > 0) + 0.5 * (dd == 0)).mean()), "dpo_best_epoch": res["best_epoch"]}
    amp = res["data"].get("amplify")
    if amp:
        row["amplify"] = {k: amp.get(k) for k in ("used", "cv_accuracy", "inputs", "pairs")}
    return row


def eval_set(base, hidden: HiddenJudge, out: Path, args) -> dict:
    labels = np.repeat(np.arange(len(base.class_names)), args.eval_per_class)
    seed = 10_000 + args.pair_seed
    x = base_samples(base, labels, seed, out, args)
    rng = np.random.default_rng(99)
    perm = np.concatenate([rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)])
    pa, pb = x[perm[0::2]], x[perm[1::2]]
    pl = labels[perm[0::2]]
    return {"x": x, "labels": labels, "hidden": hidden.score(x, labels), "eval_seed": seed, "pa": pa, "pb": pb,
            "pl": pl, "ptruth": hidden.score(pa, pl) - hidden.score(pb, pl)}


def load_judges(args: argparse.Namespace, real) -> tuple[LabelingJudge, HiddenJudge, RewardConfig, FeatureCache]:
    """The simulated annotator's judge, the hidden judge, and the reward model's features (its own classifier)."""
    judge = LabelingJudge(get_classifier(Path(args.classifier), real, "annotator_classifier"))
    hidden = HiddenJudge(get_classifier(Path(args.hidden_classifier), real, "hidden_classifier"))
    reward_cfg = RewardConfig(classifier=args.reward_classifier)
    return judge, hidden, reward_cfg, FeatureCache(get_classifier(Path(args.reward_classifier), real, "reward_classifier"),
                                                   reward_cfg)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p, out="runs/bench_annotators")
    p.add_argument("--pairs", type=int, default=500)
    p.add_argument("--gold", type=int, default=50, help="gold pairs among the tasks")
    p.add_argument("--panels", nargs="+", default=PANELS, choices=PANELS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="annotator draws (same pairs)")
    p.add_argument("--pair-seed", type=int, default=0)
    add_sampler_args(p)
    p.add_argument("--dpo", action="store_true", help="also Flow-DPO per condition (slow)")
    p.add_argument("--amplify", action="store_true",
                   help="with --dpo: reward amplification on (configs/dpo.yaml amplify, the reward fit on each "
                        "condition's training pairs with --reward-classifier), as the online loop trains")
    p.add_argument("--dpo-conditions", nargs="+", default=["honest_only", "weighted", "unweighted"])
    p.add_argument("--config", default=None, help="DPO config for --dpo (default configs/dpo.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="DPO config override")
    p.add_argument("--report", default="report.json", help="file name of the report inside --out")
    p.add_argument("--summarise", nargs="+", default=None, metavar="REPORT",
                   help="only pool every run of these report.json files (seeds run in separate processes) "
                        "and print the tables (each panel over the seeds it has)")
    return p


def pooled_runs(reports: list[str]) -> dict:
    """``panel-s<seed>`` -> run, from several reports (a run in two reports must be the same run)."""
    runs: dict = {}
    for path in reports:
        for key, run in json.loads(Path(path).read_text())["runs"].items():
            if key in runs and runs[key] != run:
                raise SystemExit(f"{path}: run {key} differs from the same run in an earlier report")
            runs[key] = run
    return runs


def main(argv=None) -> None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--summarise", nargs="+", default=None)
    reports = pre.parse_known_args(argv)[0].summarise
    if reports:  # pool earlier runs: every panel and seed in the reports
        runs = pooled_runs(reports)
        keys = [k.rsplit("-s", 1) for k in runs]
        panels = sorted({p for p, _ in keys}, key=PANELS.index)
        seeds = sorted({int(s) for _, s in keys})
        summary = summarise(runs, argparse.Namespace(panels=panels, seeds=seeds))
        print(json.dumps({p: s["paired"] for p, s in summary.items()}, indent=2))
        print_tables(summary)
        return
    args, t0, out, real = start(parser(), argv)
    from dpo.config import DEFAULT_DPO_CONFIG
    args.config = args.config or str(DEFAULT_DPO_CONFIG)
    judge, hidden, reward_cfg, features = load_judges(args, real)
    base = load_model(args.base_checkpoint)
    pairs = base_pairs(base, args.pairs, out, args)
    gold = make_gold_pairs(real.beziers, real.labels, real.class_names, base.class_names, args.gold,
                           np.random.default_rng(args.pair_seed))
    ev = eval_set(base, hidden, out, args)
    results: dict = {}
    for panel in args.panels:
        for seed in args.seeds:
            store, honest = build_store(out / "stores" / f"{panel}-s{seed}", pairs, gold, judge, panel, seed,
                                        base.class_names)
            row = {"annotators": panel_table(store)}
            for name, (only_honest, cfg) in CONDITIONS.items():
                ds = condition_dataset(store, honest, only_honest, cfg, base.class_names)
                row[name] = evaluate_condition(ds, judge, features, reward_cfg.l2, ev)
                if args.dpo and name in args.dpo_conditions:
                    row[name].update(dpo_win(args, store, honest, name, only_honest, cfg,
                                             out / "dpo" / f"{panel}-s{seed}", ev, hidden, ev["x"]))
                print(f"{panel} seed {seed} {name}: {json.dumps(row[name])}", flush=True)
            results[f"{panel}-s{seed}"] = row
    summary = summarise(results, args)
    report = {"args": vars(args), "runs": results, "summary": summary, "seconds": round(time.perf_counter() - t0, 1)}
    out.mkdir(parents=True, exist_ok=True)
    (out / args.report).write_text(json.dumps(report, indent=2, default=str))
    print_tables(summary)
    print(f"report: {out / args.report}")


PAIRED = {"weighted - unweighted": ("weighted", "unweighted"), "weighted - honest_only": ("weighted", "honest_only")}
METRICS = ("label_accuracy", "signal_accuracy", "reward_hidden_agreement", "best_of_8_hidden_win", "dpo_hidden_win",
           "pairs")


def summarise(results: dict, args) -> dict:
    """Mean and spread per panel over the seeds it has in ``results`` (pooled reports may differ)."""
    out: dict = {}
    for panel in args.panels:
        runs = [results[f"{panel}-s{s}"] for s in args.seeds if f"{panel}-s{s}" in results]
        out[panel] = {name: {m: mean_spread([r[name][m] for r in runs]) for m in METRICS if m in runs[0][name]}
                      for name in CONDITIONS}
        names = runs[0]["annotators"]["rows"].keys()
        out[panel]["annotators"] = {n: {m: mean_spread([r["annotators"]["rows"][n][m] for r in runs])
                                        for m in ("gold_accuracy", "mean_kappa", "left_rate", "weight")}
                                    for n in names}
        out[panel]["annotators"]["excluded_share"] = {
            n: float(np.mean([r["annotators"]["rows"][n]["excluded"] for r in runs])) for n in names}
        out[panel]["alpha"] = mean_spread([r["annotators"]["alpha"] for r in runs])
        out[panel]["paired"] = paired_differences(runs)
        out[panel]["seeds"] = len(runs)
    return out


def paired_differences(runs: list[dict]) -> dict:
    """Flow-DPO hidden win of one condition minus another's, per seed (same pairs, same evaluation noise):
    mean, sample sd and the standard error of the mean over seeds."""
    out = {}
    for name, (a, b) in PAIRED.items():
        if all("dpo_hidden_win" in r[a] and "dpo_hidden_win" in r[b] for r in runs):
            d = [r[a]["dpo_hidden_win"] - r[b]["dpo_hidden_win"] for r in runs]
            stats = mean_spread(d)
            out[name] = {**stats, "se": round(stats["std"] / np.sqrt(len(d)), 4)}
    return out


def print_tables(summary: dict) -> None:
    fmt = lambda s: f"{s['mean']:.3f} +- {s['std']:.3f}" if s else "-"  # noqa: E731
    for panel, rows in summary.items():
        print(f"\n### panel: 3 honest + 2 {panel} (mean +- sd over {rows['seeds']} seeds)\n")
        cols = [m for m in METRICS if m in rows["weighted"]]
        print("| condition | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
        for name in CONDITIONS:
            print(f"| {name} | " + " | ".join(fmt(rows[name].get(m)) for m in cols) + " |")
        print("\n| annotator | gold accuracy | mean kappa | left rate | weight | excluded (share of seeds) |\n"
              "|---|---|---|---|---|---|")
        for n, r in rows["annotators"].items():
            if n != "excluded_share":
                print(f"| {n} | {fmt(r['gold_accuracy'])} | {fmt(r['mean_kappa'])} | {fmt(r['left_rate'])} | "
                      f"{fmt(r['weight'])} | {rows['annotators']['excluded_share'][n]:.2f} |")
        print(f"\nKrippendorff's alpha: {fmt(rows['alpha'])}")
        for name, d in rows["paired"].items():
            print(f"Flow-DPO hidden win, {name} (paired over {d['n']} seeds): {100 * d['mean']:+.1f} points, "
                  f"sd {100 * d['std']:.1f}, standard error {100 * d['se']:.1f}")


if __name__ == "__main__":
    main()
