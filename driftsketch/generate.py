"""Generate sketches from a checkpoint: one SVG and one PNG per sketch, plus a grid PNG.

    driftsketch-generate --checkpoint runs/base/model.pt --class house --num-samples 16 --out out/house --seed 0

Defaults for steps, solver and guidance come from the ``sampling`` section of configs/train.yaml.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from driftsketch.checkpoint import load_model
from driftsketch.config import load_config
from driftsketch.device import require_device
from driftsketch.errors import check_out_dir, count_arg, non_negative_float_arg, run_cli
from driftsketch.train_config import DEFAULT_TRAIN_CONFIG, SamplingConfig, load_train_config


def write_samples(sketches: np.ndarray, out: Path, class_name: str, size: int = 512, stroke_width: float | None = None,
                  prefix: str | None = None) -> list[Path]:
    """Write ``<prefix>_<i>.svg/.png`` for each sketch and ``grid.png``; returns the PNG paths."""
    from driftsketch.render import plot_bezier_sketches, write_png, write_svg

    out.mkdir(parents=True, exist_ok=True)
    prefix = prefix or class_name.replace(" ", "_")
    pngs = []
    for i, sketch in enumerate(sketches):
        write_svg(sketch, out / f"{prefix}_{i:03d}.svg", size=size, stroke_width=stroke_width)
        png = out / f"{prefix}_{i:03d}.png"
        write_png(sketch, png, size=size, stroke_width=stroke_width)
        pngs.append(png)
    plot_bezier_sketches(sketches, out / "grid.png", titles=[f"{class_name} {i}" for i in range(len(sketches))])
    return pngs


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="driftsketch-generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--class", dest="class_", required=True, help="class name or id")
    p.add_argument("--num-samples", type=count_arg, default=16)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--steps", type=count_arg, help="ODE steps")
    p.add_argument("--solver", choices=("euler", "midpoint", "heun"))
    p.add_argument("--cfg-scale", type=float, help="classifier-free guidance scale (1 = none)")
    p.add_argument("--snap-eps", type=non_negative_float_arg, default=None,
                   help="join segment gaps shorter than this ([-1,1] units); off by default")
    p.add_argument("--size", type=count_arg, default=512, help="PNG/SVG size in pixels")
    p.add_argument("--stroke-width", type=non_negative_float_arg, help="pixels (default: configs/eval.yaml render.stroke_width, "
                   "scaled with --size)")
    p.add_argument("--device", help="where the model samples: cpu, cuda, cuda:N, mps (default: the config's device)")
    p.add_argument("--config", default=str(DEFAULT_TRAIN_CONFIG), help="where sampling defaults come from")
    return p.parse_args(argv)


def main(argv=None) -> int:
    """Entry point of ``driftsketch-generate``; bad input is one line on stderr and exit code 2."""
    return run_cli("driftsketch-generate", lambda: _main(argv))


def _main(argv) -> int:
    from driftsketch.sampling import generate_beziers, resolve_class

    args = parse_args(argv)
    out = check_out_dir(args.out, "--out")
    sampling = load_config(SamplingConfig, args.config, section="sampling")
    device = args.device or load_train_config(args.config).device
    model = load_model(args.checkpoint, require_device(device, "--device"))
    sketches, noise = generate_beziers(
        model, args.class_, args.num_samples, num_steps=args.steps or sampling.num_steps,
        cfg_scale=args.cfg_scale if args.cfg_scale is not None else sampling.cfg_scale,
        solver=args.solver or sampling.solver, seed=args.seed, snap_eps=args.snap_eps)
    name = model.class_names[resolve_class(model, args.class_)]
    write_samples(sketches, out, name, args.size, args.stroke_width)
    np.save(out / "beziers.npy", sketches)
    np.save(out / "noise.npy", noise)
    (out / "generation.json").write_text(json.dumps({
        "checkpoint": str(args.checkpoint), "checkpoint_id": model.checkpoint_id, "class": name,
        "num_samples": args.num_samples, "seed": args.seed}, indent=2))
    print(f"wrote {len(sketches)} sketches of '{name}' to {out} (grid: {out / 'grid.png'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
