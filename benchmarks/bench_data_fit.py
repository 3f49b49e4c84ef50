"""Data import figures: Bezier fit error, continuity and import speed on the real data sets.

    .venv/bin/python benchmarks/bench_data_fit.py --shared ../shared/data --mnist-per-class 1000

Prints a Markdown table (fit error = symmetric Chamfer distance between the original polyline and
the 32 fitted cubics, px on the 512 canvas; continuity = share of segments whose end meets another
segment's start within 0.02) and writes sample grids plus a staircase-vs-fit overlay under --out.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from driftsketch.data.bezier_fit import FitConfig, bezier_eval, normalise_strokes
from driftsketch.data.builtin import build_builtin
from driftsketch.data.quickdraw import import_quickdraw, parse_drawing
from driftsketch.data.settings import BuiltinConfig, ImportConfig
from driftsketch.evaluation.metrics import continuity
from driftsketch.render import plot_bezier_sketches


def fullest_categories(folder: Path, n: int) -> list[str]:
    """The ``n`` categories with the most lines (ties broken by name)."""
    counts = {p.stem: sum(1 for _ in open(p)) for p in folder.glob("*.ndjson")}
    return sorted(counts, key=lambda c: (-counts[c], c))[:n]


def measure(name: str, source: Path, categories: list[str] | None, cfg: ImportConfig) -> dict:
    start = time.perf_counter()
    data = import_quickdraw(source, categories, cfg, FitConfig())
    wall = time.perf_counter() - start
    return {"name": name, "data": data, "n": len(data), "wall_s": wall,
            "chamfer_mean": data.meta["fit_chamfer_mean"], "chamfer_p95": data.meta["fit_chamfer_p95"],
            "continuity": continuity(data.beziers), "skipped_fit": data.meta["skipped_fit"]}


def grid(data, path: Path, per_class: int = 8) -> None:
    idx = np.concatenate([np.where(data.labels == c)[0][:per_class] for c in range(len(data.class_names))])
    plot_bezier_sketches(data.beziers[idx], path, titles=[data.class_names[data.labels[i]] for i in idx],
                         ncols=per_class)


def overlay(ndjson: Path, path: Path, count: int = 8) -> None:
    """Original polyline (grey, with its points) under the fitted cubics (black)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from driftsketch.data.bezier_fit import fit_drawing

    lines = open(ndjson).read().splitlines()[:count]
    fig, axes = plt.subplots(1, count, figsize=(2.2 * count, 2.4))
    for ax, line in zip(axes, lines):
        strokes = parse_drawing(json.loads(line))
        sketch, stats = fit_drawing(strokes)
        for s in normalise_strokes(strokes, FitConfig().margin)[0]:
            ax.plot(s[:, 0], s[:, 1], ".-", color="0.7", lw=2.5, ms=3)
        for seg in bezier_eval(sketch, np.linspace(0, 1, 20)):
            ax.plot(seg[:, 0], seg[:, 1], "k-", lw=1.0)
        ax.set(xlim=(-1, 1), ylim=(1, -1), aspect="equal", xticks=[], yticks=[],
               title=f"{stats['chamfer_px']:.1f} px")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=Path("../shared/data"))
    p.add_argument("--mnist-per-class", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("outputs/bench_data"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    mnist = args.shared / "mnist-strokes"
    rows.append(measure(f"MNIST strokes ({args.mnist_per_class}/digit)", mnist, None,
                        ImportConfig(max_per_class=args.mnist_per_class, workers=args.workers)))
    qd = args.shared / "quickdraw-raw"
    cats = fullest_categories(qd, 10)
    rows.append(measure("Quick, Draw! raw, 10 fullest", qd, cats, ImportConfig(workers=args.workers)))
    start = time.perf_counter()
    builtin = build_builtin(BuiltinConfig())
    rows.append({"name": f"built-in doodles ({len(builtin.class_names)} x {BuiltinConfig().per_class})",
                 "data": builtin, "n": len(builtin), "wall_s": time.perf_counter() - start,
                 "chamfer_mean": float("nan"), "chamfer_p95": float("nan"),
                 "continuity": continuity(builtin.beziers), "skipped_fit": {}})
    print(f"10 fullest Quick, Draw! categories: {', '.join(cats)}\n")
    print("| data | sketches | fit error mean (px) | fit error p95 (px) | continuity | time (s) | sketches/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['n']} | {r['chamfer_mean']:.2f} | {r['chamfer_p95']:.2f} | "
              f"{r['continuity']:.3f} | {r['wall_s']:.1f} | {r['n'] / r['wall_s']:.0f} |")
        if r["skipped_fit"]:
            print(f"|  skipped: {r['skipped_fit']} | | | | | | |")
    for r, stem in zip(rows, ("mnist", "quickdraw10", "builtin")):
        grid(r["data"], args.out / f"grid_{stem}.png")
    overlay(mnist / "3.ndjson", args.out / "overlay_mnist.png")
    overlay(qd / f"{cats[1]}.ndjson", args.out / "overlay_quickdraw.png")
    print(f"\ngrids and overlays in {args.out}/ (workers={args.workers})")


if __name__ == "__main__":
    main()
