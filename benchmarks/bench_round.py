"""Latency of one online-DPO round for N pairs, split by step, and the hidden-judge win rate after 2 rounds.

    .venv/bin/python benchmarks/bench_round.py --pairs 200 --base runs/base/model.pt

Starts its own Label Studio (under --out) and a temporary Prefect API (prefect_test_harness), then:
round 0 bootstraps from --base and pushes N pairs; the bot (labeling judge) answers them; round 1 pulls
N annotations, fine-tunes, evaluates, decides, generates/renders/pushes N new pairs (the timed round);
the bot answers; round 2 fine-tunes again. Finally the current model and the base sample from the same
noise and the *hidden* judge (another classifier + stroke count, not the bot's judge) scores them.
Writes ``<out>/bench_round.json``. Settings are configs/round.yaml's unless given with --set.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path


STEPS = ("bootstrap", "pull", "reward_fit", "amplify", "train", "evaluate", "generate", "render", "push")


def start_labelstudio(data_dir: Path):
    from labeling.config import ServerConfig
    from labeling.server import copy_template, start_server

    template = Path("data/labelstudio-template")
    if template.is_dir() and not data_dir.exists():
        copy_template(template, data_dir)  # skips ~50 s of migrations
    cfg = ServerConfig(data_dir=str(data_dir), port=0)
    return cfg, start_server(cfg)


def bot_answer(params, ls_cfg, classifier: str) -> int:
    from dpo.store import PreferenceStore
    from labeling.bot import load_judge, run_bot
    from labeling.client import connect, resolve_connection
    from labeling.config import load_labelstudio_config
    from labeling.projects import find_project

    cfg = load_labelstudio_config()
    ls = connect(resolve_connection(ls_cfg))
    pid = find_project(ls, cfg.projects.pairwise_title)
    return run_bot(ls, pid, PreferenceStore(params.preference_dir), load_judge("labeling", classifier), cfg.bot,
                   progress=False)["answered"]


def hidden_win_rate(model_path: str, base_path: str, data: str, clf_path: Path, per_class: int, seed: int) -> dict:
    """Win rate of ``model_path`` over ``base_path`` under the hidden judge, on paired noise."""
    from driftsketch.checkpoint import load_model
    from driftsketch.data import load_dataset
    from driftsketch.evaluation.classifier import SketchClassifier, train_classifier
    from driftsketch.evaluation.evaluate import generate_per_class
    from driftsketch.evaluation.judges import HiddenJudge, win_rate
    from driftsketch.evaluation.settings import load_eval_config

    cfg = load_eval_config()
    if clf_path.is_file():
        clf = SketchClassifier.load(clf_path)
    else:
        clf = train_classifier(load_dataset(data), cfg.hidden_classifier)
        clf.save(clf_path)
    judge = HiddenJudge(clf, cfg.hidden_judge)
    scores = []
    for p in (model_path, base_path):
        x, y = generate_per_class(load_model(p), clf.class_names, per_class, seed)
        scores.append(judge.score(x, y))
    return win_rate(scores[0], scores[1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=200)
    p.add_argument("--base", default="runs/base/model.pt", help="base checkpoint to bootstrap from")
    p.add_argument("--out", default="runs/bench_round")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="round.yaml override")
    p.add_argument("--hidden-classifier", default=None,
                   help="trained hidden-judge classifier (default: train one with configs/eval.yaml hidden_classifier)")
    p.add_argument("--win-per-class", type=int, default=50, help="sketches per class for the hidden-judge win rate")
    args = p.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    for k in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"):
        os.environ.pop(k, None)
    from prefect.testing.utilities import prefect_test_harness

    from flows.online_dpo import online_dpo
    from flows.params import load_round_params
    from tasks.evaluate import ensure_classifier

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    ls_cfg, info = start_labelstudio(out / "labelstudio")
    params = load_round_params(overrides=[
        f"registry_dir={out}/registry", f"preference_dir={out}/preferences", f"work_dir={out}/work",
        f"base.checkpoint={args.base}", f"generate.queue_target={args.pairs}", f"generate.max_new_pairs={args.pairs}",
        f"dpo.min_new_preferences={args.pairs // 2}", f"labelstudio.overrides=[server.data_dir={ls_cfg.data_dir}]",
        *args.overrides])
    rounds = []
    try:
        with prefect_test_harness(server_startup_timeout=180):
            for r in range(3):
                t0 = time.perf_counter()
                summary = online_dpo(params)
                summary["wall_s"] = time.perf_counter() - t0
                rounds.append(summary)
                (out / "rounds_partial.json").write_text(json.dumps(rounds, indent=2, default=str))
                print(f"round {r}: {summary['wall_s']:.1f} s {json.dumps({k: round(v, 1) for k, v in summary['timings'].items()})}"
                      f" | {summary['decision']['reason'][:100]}", flush=True)
                if r < 2:
                    clf = ensure_classifier.fn(params.data, params.eval.config, params.eval.overrides,
                                               f"{params.work_dir}/annotator", section="annotator_classifier")
                    t0 = time.perf_counter()
                    n = bot_answer(params, ls_cfg, clf)
                    print(f"bot answered {n} tasks in {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        from labeling.server import stop_server

        stop_server(ls_cfg)
    from driftsketch.registry import Registry

    reg = Registry(params.registry_dir)
    clf_path = Path(args.hidden_classifier) if args.hidden_classifier else out / "hidden_classifier.pt"
    win = hidden_win_rate(str(reg.current_path()), args.base, params.data, clf_path, args.win_per_class, seed=777)
    result = {"pairs": args.pairs, "timed_round": {s: rounds[1]["timings"].get(s, 0.0) for s in STEPS},
              "timed_round_cpu_s": rounds[1].get("cpu_seconds", {}),
              "load_average": os.getloadavg(),
              "timed_round_wall_s": rounds[1]["wall_s"], "rounds": [
                  {"timings": r["timings"], "wall_s": r["wall_s"], "decision": r["decision"], "current": r["current"],
                   "pulled": r["pulled"], "pushed": r["pushed"]} for r in rounds],
              "current_after_round_2": reg.current, "lineage": [m.id for m in reg.load().models.values()],
              "hidden_judge_win_rate_vs_base": win}
    (out / "bench_round.json").write_text(json.dumps(result, indent=2, default=str))
    cpu = result["timed_round_cpu_s"]
    print("\n| step | seconds (round 1, %d pairs) | CPU seconds |\n|---|---|---|" % args.pairs)
    for s in STEPS:
        print(f"| {s} | {result['timed_round'][s]:.1f} | {cpu.get(s, '-')} |")
    print(f"| whole round (wall) | {result['timed_round_wall_s']:.1f} | {sum(cpu.values()):.1f} |")
    print("(CPU seconds of this process, all threads; train's include reward_fit and amplify; "
          "load average %.1f / %.1f / %.1f on %d CPUs)" % (*os.getloadavg(), os.cpu_count()))
    print(f"\nhidden-judge win rate of {reg.current} over the base: {win['win_rate']:.3f} "
          f"(95% CI {win['ci_low']:.3f}-{win['ci_high']:.3f}, n={win['n']})")


if __name__ == "__main__":
    main()
