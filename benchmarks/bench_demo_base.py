"""Does a base model draw every built-in class recognisably? Recognizability under a classifier that never
saw a sketch the base trained on, per class, with FD and continuity, and a sample grid per model.

    python benchmarks/bench_demo_base.py checkpoints/builtin-base.pt runs/base_demo1500/model.pt

The evaluation classifier (``classifier`` of configs/eval.yaml) trains on built-in doodles drawn from
another generator seed (``--eval-data``, default ``builtin:seed=1``): the same ten classes, but none of
the sketches the base's ``builtin`` (seed 0) data holds. Every model samples the same classes from the
same noise (``--seed``) with the default sampler (configs/train.yaml ``sampling``). Prints one row per
model and the per-class table; writes ``<out>/<name>.png`` (8 sketches per class) and ``<out>/report.json``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from driftsketch.checkpoint import load_model
from driftsketch.data import load_dataset
from driftsketch.evaluation.classifier import SketchClassifier, train_classifier
from driftsketch.evaluation.evaluate import evaluate_model_with_samples
from driftsketch.evaluation.settings import load_eval_config
from driftsketch.fileio import atomic_write_text
from driftsketch.render import plot_bezier_sketches
from driftsketch.train_config import SamplingConfig


def eval_classifier(data_spec: str, path: Path) -> SketchClassifier:
    """The evaluation classifier of ``data_spec``, trained once and cached at ``path``."""
    if path.is_file():
        return SketchClassifier.load(path)
    clf = train_classifier(load_dataset(data_spec), load_eval_config().classifier)
    path.parent.mkdir(parents=True, exist_ok=True)
    clf.save(path)
    return clf


def grid(samples: np.ndarray, labels: np.ndarray, names: list[str], path: Path, per_class: int = 8) -> None:
    """``per_class`` sketches of every class, one class per row."""
    rows = [samples[labels == c][:per_class] for c in range(len(names))]
    titles = [n for n in names for _ in range(per_class)]
    plot_bezier_sketches(np.concatenate(rows), path, titles=titles, ncols=per_class, cell_inches=1.1)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+", help="model checkpoints (name = the file's parent folder and stem)")
    p.add_argument("--eval-data", default="builtin:seed=1", help="data the evaluation classifier trains on")
    p.add_argument("--classifier", default="runs/bench_demo_base/classifier_seed1.pt")
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/bench_demo_base")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    clf = eval_classifier(args.eval_data, Path(args.classifier))
    real = load_dataset(args.eval_data)
    s = SamplingConfig()
    print(f"evaluation classifier: {args.eval_data}, held-out accuracy {clf.metrics['holdout_accuracy']:.3f}; "
          f"sampler {s.solver} {s.num_steps} steps CFG {s.cfg_scale}; {args.per_class} per class, seed {args.seed}")
    report = {}
    for ckpt in args.checkpoints:
        name = f"{Path(ckpt).parent.name}-{Path(ckpt).stem}"
        start = time.time()
        model = load_model(ckpt)
        r, x, y = evaluate_model_with_samples(model, real, clf, args.per_class, args.seed, num_steps=s.num_steps,
                                              cfg_scale=s.cfg_scale, solver=s.solver)
        grid(x, y, clf.class_names, out / f"{name}.png")
        params = sum(t.numel() for t in model.parameters())
        report[name] = {"checkpoint": ckpt, "parameters": params, "recognizability": r["recognizability"],
                        "recognizability_per_class": r["recognizability_per_class"],
                        "frechet_distance": r["frechet_distance"], "fd_real_floor": r["frechet_distance_real_floor"],
                        "continuity": r["continuity"], "continuity_real": r["continuity_real"]}
        print(f"{name:32s} {params / 1e6:5.2f}M params  recognizability {r['recognizability']:.3f} "
              f"(worst {min(r['recognizability_per_class'].values()):.2f})  FD {r['frechet_distance']:.2f} "
              f"(real floor {r['frechet_distance_real_floor']:.2f})  continuity {r['continuity']:.3f}  "
              f"[{time.time() - start:.0f} s]")
    print("\nper class: " + " ".join(f"{n[:7]:>7s}" for n in clf.class_names))
    for name, row in report.items():
        print(f"{name[:9]:9s}: " + " ".join(f"{v:7.2f}" for v in row["recognizability_per_class"].values()))
    atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    print(f"grids and report.json under {out}")


if __name__ == "__main__":
    main()
