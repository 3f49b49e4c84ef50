"""What a GPU buys: the online round's compute and base training, timed on one device with the product's functions.

    python benchmarks/bench_device.py --device cuda --out runs/bench_device          # on a GPU machine
    python benchmarks/bench_device.py --device cpu --out runs/bench_device_cpu --train-steps 100

No servers: the round's Label Studio steps (pull, render, push) do not depend on the device. The rest runs as the
round runs it (configs/round.yaml, configs/dpo.yaml with the round's overrides), from ``--base``:
1. ``pairs``: sample ``--pairs`` pairs with the round's sampler; a simulated annotator (the labeling judge, 10 %
   flipped answers, ties under 0.02) answers them into a fresh preference store (CPU, not timed as device work);
2. ``finetune``: Flow-DPO with reward amplification on those answers (reward fit, amplification sampling, training);
3. ``evaluate``: the gate's evaluation of the candidate and of ``--base`` (``eval.samples_per_class`` per class
   on the same noise), with recognizability and FD;
4. ``base_train``: ``driftsketch-train`` of configs/train.yaml's model for ``--train-steps`` steps, and its grid.
Classifiers (CPU, trained once per data set by the round) are built first and not counted. Prints one JSON
object (also ``<out>/bench_device.json``); the grids are ``<out>/grid_*.png``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def round_settings():
    """configs/round.yaml's generate, eval and dpo sections, read without Prefect (``flows.params`` imports it;
    a bare GPU machine may not have it)."""
    from types import SimpleNamespace

    from driftsketch.config import yaml_defaults

    return SimpleNamespace(**{k: SimpleNamespace(**yaml_defaults(f"round.yaml:{k}")) for k in ("generate", "eval", "dpo")})


def classifiers(data, out: Path) -> dict[str, str]:
    """The round's two classifiers (gate/judge and reward), trained once into ``out``."""
    from driftsketch.evaluation.classifier import train_classifier
    from driftsketch.evaluation.settings import load_eval_config

    paths = {}
    for section in ("classifier", "reward_classifier"):
        path = out / f"{section}.pt"
        if not path.is_file():
            train_classifier(data, getattr(load_eval_config(), section), progress=False).save(path)
        paths[section] = str(path)
    return paths


def answered_pairs(model, judge, store_dir: Path, num_pairs: int, params, seed: int) -> int:
    """Sample ``num_pairs`` pairs like the round and store the simulated annotator's answers; returns the count."""
    from dpo import PreferenceRecord, PreferenceStore
    from driftsketch.evaluation.judges import prefer
    from driftsketch.sampling import generate_beziers

    g, n = params.generate, len(model.class_names)
    labels = [i % n for i in range(num_pairs)] * 2
    x, noise = generate_beziers(model, labels, 2 * num_pairs, num_steps=g.num_steps, cfg_scale=g.cfg_scale,
                                solver=g.solver, seed=seed)
    y = np.asarray(labels[:num_pairs])
    a, b = x[:num_pairs], x[num_pairs:]
    prefs = prefer(judge, a, b, y, np.random.default_rng(seed))
    store, recs = PreferenceStore(store_dir), []
    for i, pref in enumerate(prefs):
        ra, na = store.save_sample(f"p{i}a", a[i], noise[i])
        rb, nb = store.save_sample(f"p{i}b", b[i], noise[num_pairs + i])
        recs.append(PreferenceRecord(comparison_type="pairwise", class_label=int(y[i]),
                                     class_name=model.class_names[y[i]], beziers_a=ra, beziers_b=rb, noise_a=na,
                                     noise_b=nb, preference=pref, annotator="bot", checkpoint=model.checkpoint_id,
                                     source={"bench_device": i}))
    store.append(recs, session="bench")
    return len(recs)


def evaluate(model, data, clf, params, device, out_png: Path) -> dict[str, float]:
    """The gate's evaluation of one model on the round's noise; writes a grid."""
    from driftsketch.evaluation.evaluate import evaluate_samples, generate_per_class
    from driftsketch.render import plot_bezier_sketches

    g, e = params.generate, params.eval
    samples, labels = generate_per_class(model.to(device), clf.class_names, e.samples_per_class, e.seed,
                                         progress=False, num_steps=g.num_steps, cfg_scale=g.cfg_scale,
                                         solver=g.solver)
    report = evaluate_samples(samples, labels, data, clf, seed=e.seed)
    show = np.concatenate([np.flatnonzero(labels == c)[:e.grid_per_class] for c in np.unique(labels)])
    plot_bezier_sketches(samples[show], out_png, titles=[clf.class_names[i] for i in labels[show]],
                         ncols=e.grid_per_class)
    return {"recognizability": report["recognizability"], "frechet_distance": report["frechet_distance"]}


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(args: argparse.Namespace) -> dict:
    from dpo.config import load_dpo_config
    from dpo.trainer import train_dpo
    from driftsketch.checkpoint import load_model
    from driftsketch.data import load_dataset
    from driftsketch.device import require_device
    from driftsketch.evaluation.classifier import SketchClassifier
    from driftsketch.evaluation.judges import LabelingJudge
    from driftsketch.fileio import atomic_write_text
    from driftsketch.train import train_base
    from driftsketch.train_config import load_train_config

    device = str(require_device(args.device))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    params = round_settings()
    data = load_dataset(args.data)
    clf_paths = classifiers(data, out)
    clf = SketchClassifier.load(clf_paths["classifier"])
    result: dict = {"device": device, "device_name": device_name(device), "pairs": args.pairs, "seconds": {}}
    sec = result["seconds"]

    t = time.perf_counter()
    base = load_model(args.base, device)
    result["stored_pairs"] = answered_pairs(base, LabelingJudge(clf), out / "prefs", args.pairs, params, args.seed)
    sec["pairs"] = time.perf_counter() - t

    overrides = [f"device={device}", *params.dpo.overrides]  # as flows.params.dpo_overrides builds them
    cfg = load_dpo_config(params.dpo.config, [*overrides, f"amplify.reward.classifier={clf_paths['reward_classifier']}",
                                              f"base_checkpoint={args.base}", f"preference_dir={out / 'prefs'}",
                                              f"checkpoint_dir={out / 'dpo'}", "wandb=false"])
    t = time.perf_counter()
    tuned = train_dpo(cfg, progress=False)
    synchronize(device)
    sec["finetune"] = time.perf_counter() - t
    result["finetune_parts"] = {k: round(v, 2) for k, v in tuned.timings.items()}
    result["amplify"] = {k: v for k, v in (tuned.data_summary.get("amplify") or {}).items()
                         if isinstance(v, (int, float, str, bool))}

    t = time.perf_counter()
    result["candidate"] = evaluate(load_model(tuned.checkpoint_path), data, clf, params, device, out / "grid_candidate.png")
    result["base"] = evaluate(base, data, clf, params, device, out / "grid_base.png")
    sec["evaluate"] = time.perf_counter() - t

    train_cfg = load_train_config(overrides=[f"device={device}", f"data={args.data}", f"max_steps={args.train_steps}",
                                             f"checkpoint_dir={out / 'base_train'}", "wandb=false", "sample_every=0",
                                             f"checkpoint_every={args.train_steps}"])
    t = time.perf_counter()
    grid_step = train_base(train_cfg, progress=False)
    synchronize(device)
    sec["base_train"] = time.perf_counter() - t
    result["train_steps_per_s"] = args.train_steps / sec["base_train"]
    result["base_train_grid"] = str(next(grid_step.parent.glob("samples_step*.png")))
    sec["round_compute"] = sec["pairs"] + sec["finetune"] + sec["evaluate"]
    result["seconds"] = {k: round(v, 2) for k, v in sec.items()}
    atomic_write_text(out / "bench_device.json", json.dumps(result, indent=2))
    return result


def device_name(device: str) -> str:
    import platform

    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--base", default="driftsketch/pretrained/builtin-base.pt", help="the round's current model")
    p.add_argument("--data", default="builtin")
    p.add_argument("--pairs", type=int, default=200, help="human pairs of the round")
    p.add_argument("--train-steps", type=int, default=3000, help="base training steps (configs/train.yaml model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default="runs/bench_device")
    args = p.parse_args()
    if args.num_threads:
        import torch

        torch.set_num_threads(args.num_threads)
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
