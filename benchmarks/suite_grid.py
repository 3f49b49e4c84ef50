"""Base vs tuned sketches of one preference-suite cell, side by side on the same evaluation noise.

    python benchmarks/suite_grid.py --out runs/research/suite --data builtin=builtin:runs/research/base-builtin/model.pt \\
        --cell smooth --seed 0 --png docs/img/preference_suite_grid_smooth.png

Every row is one class; columns alternate base / tuned, each pair drawn from the same noise (the suite's
evaluation noise of that seed), titled with the annotator's noise-free score. The tuned model is the
cell's newest checkpoint (the suite keeps only that one).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import preference_suite as ps  # noqa: E402

from driftsketch.checkpoint import load_model  # noqa: E402
from driftsketch.render import plot_bezier_sketches  # noqa: E402


def newest_round(cell_dir: Path) -> dict:
    """The last finished round of a cell (its ``round_XX.json``)."""
    done = sorted(cell_dir.glob("round_*.json"))
    if not done:
        raise SystemExit(f"suite_grid: no finished round under {cell_dir}")
    return json.loads(done[-1].read_text())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cell", required=True, help="annotator name (the cell)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-class", type=int, default=4, help="base/tuned pairs per class")
    p.add_argument("--png", required=True)
    own, rest = p.parse_known_args(argv)
    args = ps.parse_args(rest)  # the suite's own settings (sampler, evaluation size): the same noise
    torch.set_num_threads(args.threads)
    name, spec, base_path = ps.data_arg(args.data[0])
    setup = ps.prepare(name, spec, base_path, Path(args.out), args)
    ann = next(a for a in setup.annotators if a.name == own.cell)
    row = newest_round(Path(args.out) / name / own.cell / f"s{own.seed}")
    labels = ps.eval_labels(setup, args)
    base_x = ps.base_eval(setup, own.seed, args)
    tuned_x = ps.sample(load_model(row["checkpoint"]), labels, 10_000 + own.seed, args)[0]
    sb, st = ann.score(base_x, labels), ann.score(tuned_x, labels)
    pick = np.concatenate([np.flatnonzero(labels == c)[:own.per_class] for c in range(len(setup.class_names))])
    sketches, titles = [], []
    for i in pick:
        name_c = setup.class_names[int(labels[i])]
        sketches += [base_x[i], tuned_x[i]]
        titles += [f"{name_c} base {sb[i]:.2f}", f"tuned {st[i]:.2f}"]
    plot_bezier_sketches(np.stack(sketches), own.png, titles=titles, ncols=2 * own.per_class)
    win = float(((st > sb) + 0.5 * (st == sb)).mean())
    print(f"{name}/{own.cell}/s{own.seed} after {row['labels']} labels: win {win:.3f} on {len(labels)} pairs; "
          f"grid of {len(pick)} pairs -> {own.png}")


if __name__ == "__main__":
    main()
