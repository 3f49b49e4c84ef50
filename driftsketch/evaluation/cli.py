"""``driftsketch-eval``: train the judging classifiers and evaluate a model against real sketches.

    driftsketch-eval train-classifier --data builtin --out runs/classifier.pt
    driftsketch-eval train-classifier --data builtin --hidden --out runs/classifier_hidden.pt
    driftsketch-eval train-classifier --data builtin --section annotator_classifier --out runs/classifier_annotator.pt
    driftsketch-eval evaluate --checkpoint runs/base/model.pt --data builtin \\
        --classifier runs/classifier.pt --num-per-class 50 --out runs/eval

Defaults come from configs/eval.yaml (``--config``); ``--set key=value`` overrides any of them
(e.g. ``--set classifier.steps=400``). ``evaluate`` writes ``DIR/metrics.json``, the generated
sketches ``DIR/samples.npz`` (beziers, labels, class_names) and one grid ``DIR/samples_<class>.png``
per class.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from driftsketch.errors import check_out_dir, check_out_file, count_arg, non_negative_arg, run_cli
from driftsketch.fileio import atomic_write_bytes, atomic_write_text
from driftsketch.evaluation.settings import CLASSIFIER_SECTIONS, DEFAULT_EVAL_CONFIG, EvalConfig, load_eval_config


def _load_data(spec: str):
    from driftsketch.data import load_dataset

    return load_dataset(spec)


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n")


def _write_samples(path: Path, samples, labels, class_names: list[str]) -> None:
    import numpy as np

    buf = io.BytesIO()
    np.savez_compressed(buf, beziers=samples, labels=labels, class_names=np.array(class_names))
    atomic_write_bytes(path, buf.getvalue())


def cmd_train_classifier(args: argparse.Namespace, cfg: EvalConfig) -> int:
    import torch

    from driftsketch.evaluation.classifier import train_classifier

    check_out_file(args.out, "--out")
    torch.set_num_threads(args.num_threads or torch.get_num_threads())
    data = _load_data(args.data)
    ccfg = getattr(cfg, "hidden_classifier" if args.hidden else args.section)
    print(f"training a {ccfg.resolution}-px classifier on {args.data}: {len(data)} sketches, "
          f"{len(data.class_names)} classes, {ccfg.steps} steps", file=sys.stderr)
    clf = train_classifier(data, ccfg)
    clf.save(args.out)
    print(json.dumps({"out": str(args.out), **clf.metrics}, indent=2))
    return 0


def _summary(report: dict[str, Any]) -> str:
    rows = [("recognizability", "recognizability", "recognizability_real"),
            ("continuity (eps 0.02)", "continuity", "continuity_real")]
    lines = [f"{'metric':<24}{'generated':>11}{'real':>11}"]
    lines += [f"{name:<24}{report[g]:>11.3f}{report[r]:>11.3f}" for name, g, r in rows]
    gs, rs = report["vector_stats"], report["vector_stats_real"]
    lines += [f"{k:<24}{gs[k]:>11.3f}{rs[k]:>11.3f}" for k in gs if k != "continuity"]
    if "continuity_unsnapped" in report:
        lines.append(f"{'continuity (no snapping)':<24}{report['continuity_unsnapped']:>11.3f}")
    lines.append(f"{'frechet distance':<24}{report['frechet_distance']:>11.3f}"
                 f"{report['frechet_distance_real_floor']:>11.3f}  (real: train vs held-out floor)")
    return "\n".join(lines)


def cmd_evaluate(args: argparse.Namespace, cfg: EvalConfig) -> int:
    from driftsketch.checkpoint import load_model
    from driftsketch.device import require_device
    from driftsketch.evaluation.classifier import SketchClassifier
    from driftsketch.evaluation.evaluate import evaluate_model_with_samples
    from driftsketch.render import plot_bezier_sketches

    ev = cfg.evaluate
    out = check_out_dir(args.out, "--out")
    model = load_model(args.checkpoint, require_device(ev.device, "evaluate.device (--device)"))
    clf = SketchClassifier.load(args.classifier)
    real = _load_data(args.data)
    sampling = {"num_steps": ev.num_steps, "cfg_scale": ev.cfg_scale, "solver": ev.solver, "snap_eps": ev.snap_eps}
    report, samples, labels = evaluate_model_with_samples(model, real, clf, ev.num_per_class, ev.seed, **sampling)
    report["sampling"]["checkpoint"] = str(args.checkpoint)
    _write_json(out / "metrics.json", report)
    _write_samples(out / "samples.npz", samples, labels, clf.class_names)
    for c, name in enumerate(clf.class_names):
        sel = samples[labels == c][: ev.grid_per_class]
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        plot_bezier_sketches(sel, out / f"samples_{safe}.png", titles=[name] * len(sel), ncols=8)
    print(_summary(report))
    print(f"wrote {out / 'metrics.json'} and {len(clf.class_names)} sample grids", file=sys.stderr)
    return 0 if all(math.isfinite(report[k]) for k in ("frechet_distance", "recognizability")) else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="driftsketch-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_EVAL_CONFIG), help="YAML defaults (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train-classifier", help="train the sketch classifier on a data set's training split")
    t.add_argument("--data", required=True, help="builtin or a .npz written by driftsketch-data import")
    t.add_argument("--out", required=True, type=Path, help="classifier file to write (.pt)")
    t.add_argument("--section", default="classifier", choices=CLASSIFIER_SECTIONS,
                   help="which classifier of the config: metrics and gate (default), the hidden judge's, the "
                   "simulated annotator's or the reward model's (each on its own part of the training split)")
    t.add_argument("--hidden", action="store_true", help="the same as --section hidden_classifier")
    t.add_argument("--num-threads", type=non_negative_arg, default=0, help="torch threads (default: torch's choice)")
    e = sub.add_parser("evaluate", help="generate per class and compare with real held-out sketches")
    e.add_argument("--checkpoint", required=True, type=Path)
    e.add_argument("--data", required=True, help="the real data set (the classifier's)")
    e.add_argument("--classifier", required=True, type=Path)
    e.add_argument("--num-per-class", type=count_arg, help="evaluate.num_per_class")
    e.add_argument("--device", help="evaluate.device: where the model samples (cpu, cuda, cuda:N, mps)")
    e.add_argument("--steps", type=count_arg, help="evaluate.num_steps")
    e.add_argument("--cfg-scale", type=float, help="evaluate.cfg_scale")
    e.add_argument("--solver", help="evaluate.solver")
    e.add_argument("--seed", type=int, help="evaluate.seed")
    e.add_argument("--snap-eps", type=float, help="evaluate.snap_eps: snap end points after sampling "
                   "(continuity is then also reported without snapping)")
    e.add_argument("--out", type=Path, default=Path("runs/eval"))
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``driftsketch-eval``; bad input is one line on stderr and exit code 2."""
    return run_cli("driftsketch-eval", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    overrides = list(args.set)
    for flag, key in (("num_per_class", "num_per_class"), ("steps", "num_steps"), ("cfg_scale", "cfg_scale"),
                      ("solver", "solver"), ("seed", "seed"), ("snap_eps", "snap_eps"), ("device", "device")):
        if getattr(args, flag, None) is not None:
            overrides.append(f"evaluate.{key}={getattr(args, flag)}")
    run = cmd_train_classifier if args.command == "train-classifier" else cmd_evaluate
    return run(args, load_eval_config(args.config, overrides))


if __name__ == "__main__":
    sys.exit(main())
