"""Which features would let a gate see the FD drift the evaluation classifier sees? One preference-suite data set.

    python benchmarks/suite_fd_inputs.py --out runs/research/suite-g16 \\
        --data mnist=data/mnist1000.npz:runs/research/base-mnist/model.pt --cells smooth mixed quality

For every cell and seed, the newest kept checkpoint (the suite keeps only that one) samples the suite's quality
noise (``--quality-per-class`` of each class), and its Frechet distance to the base's held-out sketches is divided by
the base's on the same seed's noise, under four feature sets: the evaluation classifier's (the suite's FD figure),
the reward's classifier (what the suite's gate reads), and two classifier-free ones that no network learned:
``local`` and ``shape``, the reward's random ReLU features of local segment geometry and of global shape
(``dpo.reward``, 128 wide). A gate input is useful if its ratio is high where the evaluation classifier's is and
low where it is not.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import preference_suite as ps  # noqa: E402

from dpo.reward import local_geometry_features, shape_features  # noqa: E402
from driftsketch.checkpoint import load_model  # noqa: E402
from driftsketch.evaluation import SketchClassifier  # noqa: E402
from driftsketch.evaluation.frechet import frechet_distance  # noqa: E402

WIDTH = 128  # random features per pooling (mean and max): 256 dimensions, well under the 1,280 samples


def feature_sets(setup: ps.Setup) -> dict:
    reward = SketchClassifier.load(setup.reward_classifier)
    return {"evaluation": setup.eval_clf.features, "reward classifier": reward.features,
            "local": lambda x: local_geometry_features(x, WIDTH), "shape": lambda x: shape_features(x, WIDTH)}


def fd_ratios(sets: dict, real: dict, x: np.ndarray, base_fd: dict) -> dict:
    return {k: frechet_distance(f(x), real[k]) / base_fd[k] for k, f in sets.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", nargs="+", required=True, help="annotator names")
    own, rest = p.parse_known_args(argv)
    args = ps.parse_args(rest)  # the suite's own settings: the same noise and sample counts
    torch.set_num_threads(args.threads)
    name, spec, base_path = ps.data_arg(args.data[0])
    setup = ps.prepare(name, spec, base_path, Path(args.out), args)
    sets = feature_sets(setup)
    real = {k: f(setup.holdout) for k, f in sets.items()}
    labels = ps.quality_labels(setup, args)
    print(f"{name}: FD of the newest checkpoint / FD of the base, same noise ({len(labels)} sketches)")
    print("cell / seed / round | " + " | ".join(sets))
    for seed in args.seeds:
        xb = ps.base_quality(setup, seed, args)
        base_fd = {k: frechet_distance(f(xb), real[k]) for k, f in sets.items()}
        for cell in own.cells:
            kept = sorted((Path(args.out) / name / cell / f"s{seed}").glob("r*/model.pt"))
            if not kept:
                print(f"{cell} / {seed}: no kept checkpoint")
                continue
            x = ps.sample(load_model(str(kept[-1])), labels, ps.QUALITY_NOISE + seed, args)[0]
            ratios = fd_ratios(sets, real, x, base_fd)
            print(f"{cell} / {seed} / {kept[-1].parent.name} | " + " | ".join(f"{v:.2f}" for v in ratios.values()),
                  flush=True)


if __name__ == "__main__":
    main()
