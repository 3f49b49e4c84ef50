"""``driftsketch-data``: import, inspect, download and build sketch data sets.

    driftsketch-data import ../shared/data/mnist-strokes --out data/mnist.npz --max-per-class 2000
    driftsketch-data import ../shared/data/quickdraw-raw --categories circle,square --out data/qd.npz
    driftsketch-data import controlsketch_dir/ --format controlsketch --out data/cs.npz
    driftsketch-data show data/mnist.npz
    driftsketch-data download "cat,smiley face" --out downloads/quickdraw
    driftsketch-data builtin --out data/builtin.npz
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from driftsketch.data.dataset import DataError, SketchData
from driftsketch.data.settings import load_data_config
from driftsketch.errors import check_out_dir, check_out_file, count_arg, run_cli


def _split_list(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def detect_format(source: Path) -> str:
    """``quickdraw`` for ``.ndjson`` files, ``controlsketch`` for ``.npz`` files (or folders of them)."""
    if source.is_file():
        suffixes = {source.suffix}
    elif source.is_dir():
        suffixes = {p.suffix for p in source.iterdir()}
    else:
        raise DataError(f"{source}: no such file or directory")
    if ".ndjson" in suffixes:
        return "quickdraw"
    if ".npz" in suffixes or (source.is_dir() and next(source.rglob("*.npz"), None) is not None):
        return "controlsketch"  # ControlSketch nests <category>/<id>.npz
    raise DataError(f"{source}: cannot detect the format (no .ndjson or .npz files); pass --format")


def summary(data: SketchData, seconds: float | None = None) -> str:
    """A human-readable summary: size, per-class counts, fit error, skipped input."""
    return summary_text(data.meta, data.class_counts(), seconds)


def summary_text(meta: dict, counts: dict[str, int], seconds: float | None = None) -> str:
    """:func:`summary` from a data set's meta and per-class counts (no sketches needed)."""
    m, total = meta, sum(counts.values())
    lines = [f"source: {m.get('source', '?')}", f"sketches: {total} in {len(counts)} classes"]
    if isinstance(m.get("fit_chamfer_mean"), (int, float)) and isinstance(m.get("fit_chamfer_p95"), (int, float)):
        measured = m.get("fit_chamfer_measured")
        on = f" (measured on {measured} drawings)" if isinstance(measured, int) and measured < total else ""
        lines.append(f"fit error (Chamfer, px on the 512 canvas): mean {m['fit_chamfer_mean']:.2f}, "
                     f"p95 {m['fit_chamfer_p95']:.2f}{on}")
    for key in ("lines", "skipped_malformed", "skipped_unrecognized", "skipped_fit", "options", "import_seconds"):
        if m.get(key):
            lines.append(f"{key.replace('_', ' ')}: {m[key]}")
    if seconds is not None:
        lines.append(f"time: {seconds:.1f} s ({total / max(seconds, 1e-9):.0f} sketches/s)")
    lines.append("per class: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return "\n".join(lines)


def cmd_import(args: argparse.Namespace) -> None:
    over = list(args.set or [])
    for flag, key in (("max_per_class", "max_per_class"), ("seed", "seed"), ("workers", "workers")):
        if getattr(args, flag) is not None:
            over.append(f"importer.{key}={getattr(args, flag)}")
    if args.recognized_only:
        over.append("importer.recognized_only=true")
    cfg = load_data_config(args.config, over)
    check_out_file(args.out, "--out")
    source = Path(args.source)
    fmt = args.format or detect_format(source)
    start = time.perf_counter()
    if fmt == "quickdraw":  # streamed to args.out, resumable
        from driftsketch.data.quickdraw import write_quickdraw
        done = write_quickdraw(args.out, source, _split_list(args.categories), cfg.importer, cfg.fit)
        text = summary_text(done["meta"], done["counts"], time.perf_counter() - start)
    else:
        from driftsketch.data.controlsketch import import_controlsketch
        data = import_controlsketch(source, _split_list(args.categories), cfg.importer)
        data.save_npz(args.out)
        text = summary(data, time.perf_counter() - start)
    print(text)
    print(f"wrote {args.out}")


def cmd_show(args: argparse.Namespace) -> None:
    print(summary(SketchData.load_npz(args.file)))


def cmd_download(args: argparse.Namespace) -> None:
    from driftsketch.data.download import DEFAULT_BASE_URL, download_categories
    check_out_dir(args.out, "--out")
    paths = download_categories(_split_list(args.categories) or [], args.out, args.base_url or DEFAULT_BASE_URL)
    for p in paths:
        print(p)


def cmd_builtin(args: argparse.Namespace) -> None:
    from driftsketch.data.builtin import build_builtin
    over = list(args.set or [])
    if args.per_class is not None:
        over.append(f"builtin.per_class={args.per_class}")
    if args.seed is not None:
        over.append(f"builtin.seed={args.seed}")
    cfg = load_data_config(args.config, over)
    check_out_file(args.out, "--out")
    start = time.perf_counter()
    data = build_builtin(cfg.builtin)
    data.save_npz(args.out)
    print(summary(data, time.perf_counter() - start))
    print(f"wrote {args.out}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="driftsketch-data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="import Quick, Draw! ndjson or ControlSketch npz files")
    imp.add_argument("source", help="a directory of files or one file")
    imp.add_argument("--format", choices=["quickdraw", "controlsketch"], help="detected when omitted")
    imp.add_argument("--out", required=True, help="output .npz")
    imp.add_argument("--categories", help="comma-separated category names (default: all files)")
    imp.add_argument("--max-per-class", type=count_arg)
    imp.add_argument("--recognized-only", action="store_true")
    imp.add_argument("--seed", type=int)
    imp.add_argument("--workers", type=count_arg)
    show = sub.add_parser("show", help="print a summary of a data set .npz")
    show.add_argument("file")
    dl = sub.add_parser("download", help="download Quick, Draw! simplified ndjson files (resumable)")
    dl.add_argument("categories", help='comma-separated, e.g. "cat,smiley face"')
    dl.add_argument("--out", required=True, help="directory for <category>.ndjson")
    dl.add_argument("--base-url", help="default: the public quickdraw_dataset bucket")
    bi = sub.add_parser("builtin", help="build the procedural doodle data set")
    bi.add_argument("--out", required=True)
    bi.add_argument("--per-class", type=count_arg)
    bi.add_argument("--seed", type=int)
    for sp in (imp, bi):
        sp.add_argument("--config", help="data config YAML (default configs/data.yaml)")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. fit.tolerance_px=3")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``driftsketch-data``; bad input is one line on stderr and exit code 2."""
    return run_cli("driftsketch-data", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"import": cmd_import, "show": cmd_show, "download": cmd_download, "builtin": cmd_builtin}
    handler[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
