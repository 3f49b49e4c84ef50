"""Rendering throughput: SVG strings/s, cairosvg PNG renders/s, rasterised sketches/s, grid time.

    .venv/bin/python benchmarks/bench_render.py [--num-threads 1] [--n 200]

Sketches are the built-in data set's (``load_dataset("builtin")``). Prints one line per figure.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from driftsketch.data import load_dataset
from driftsketch.raster import rasterize
from driftsketch.render import plot_bezier_sketches, png_bytes, sketch_to_svg


def rate(fn, n: int) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-threads", type=int, default=1, help="torch threads for the rasteriser")
    p.add_argument("--n", type=int, default=200, help="sketches per PNG/SVG measurement")
    p.add_argument("--batch", type=int, default=2000, help="sketches per rasteriser call")
    args = p.parse_args()
    torch.set_num_threads(args.num_threads)
    data = load_dataset("builtin")
    few, many = data.beziers[: args.n], data.beziers[: args.batch]
    print(f"svg strings/s (512):      {rate(lambda: [sketch_to_svg(x) for x in few], len(few)):8.0f}")
    for size in (512, 256):
        print(f"png renders/s ({size}):      {rate(lambda: [png_bytes(x, size) for x in few], len(few)):8.0f}")
    rasterize(many[:10], 64)  # warm-up
    for res in (64, 32):
        print(f"rasterised sketches/s ({res}): {rate(lambda: rasterize(many, res), len(many)):8.0f}"
              f"  (batch {len(many)}, {args.num_threads} thread(s))")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        plot_bezier_sketches(data.beziers[:64], Path(tmp) / "grid.png", ncols=8)
        print(f"matplotlib grid of 64:    {time.perf_counter() - start:8.2f} s")


if __name__ == "__main__":
    main()
