"""`driftsketch-models`: inspect and steer the model registry of the online loop.

    driftsketch-models list                      # all models, the current one marked with *
    driftsketch-models show dpo-1a2b3c4d5e6f7a8b # one entry as JSON (metrics, lineage, decision)
    driftsketch-models promote ID --reason "looked better to us"
    driftsketch-models rollback                  # back to the model current before this one
    driftsketch-models --registry runs/other list
    driftsketch-models export runs/base/model.pt base-small.pt   # weights only (EMA), a quarter of the size

The registry folder defaults to ``registry_dir`` in ``configs/round.yaml``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from driftsketch.checkpoint import export_weights
from driftsketch.config import CONFIG_DIR, read_yaml
from driftsketch.errors import UsageError, run_cli
from driftsketch.registry import Registry, RegistryState

FALLBACK_REGISTRY = "runs/registry"


def default_registry_dir(config: Path = CONFIG_DIR / "round.yaml") -> str:
    """``registry_dir`` from the round config (the one source of truth), else ``runs/registry``."""
    if config.is_file():
        return str(read_yaml(config).get("registry_dir", FALLBACK_REGISTRY))
    return FALLBACK_REGISTRY


def format_table(state: RegistryState) -> str:
    """One line per model, oldest first; ``*`` marks the current model."""
    header = f"  {'id':<28} {'kind':<5} {'round':>5} {'prefs':>6} {'status':<11} {'parent':<28} created"
    lines = [header]
    for m in sorted(state.models.values(), key=lambda m: (m.created_at, m.round_index)):
        mark = "*" if m.id == state.current else " "
        lines.append(f"{mark} {m.id:<28} {m.kind:<5} {m.round_index:>5} {m.num_preferences:>6} "
                     f"{m.status:<11} {m.parent or '-':<28} {m.created_at}")
    if not state.models:
        lines.append("  (no models registered)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="driftsketch-models", description=__doc__.split("\n")[0])
    p.add_argument("--registry", default=None, help="registry folder (default: registry_dir in configs/round.yaml)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list registered models")
    show = sub.add_parser("show", help="print one model's entry as JSON")
    show.add_argument("id")
    promote = sub.add_parser("promote", help="make a model current (no-op if it already is)")
    promote.add_argument("id")
    promote.add_argument("--reason", default="manual promotion")
    rollback = sub.add_parser("rollback", help="make the previously current model current again")
    rollback.add_argument("--reason", default="manual rollback")
    export = sub.add_parser("export", help="write a weights-only copy of a checkpoint (EMA weights; no optimizer)")
    export.add_argument("checkpoint")
    export.add_argument("out")
    export.add_argument("--raw-weights", action="store_true", help="the trained weights instead of their EMA")
    return p


def _export(src: str, out: Path, use_ema: bool) -> int:
    if out.is_dir():
        raise UsageError(f"{out}: is a folder, expected the output checkpoint file")
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt_id = export_weights(src, out, use_ema=use_ema)
    print(f"{out}: {ckpt_id}, {out.stat().st_size / 2**20:.1f} MiB (from {Path(src).stat().st_size / 2**20:.1f} MiB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``driftsketch-models``; bad input is one line on stderr and exit code 2."""
    return run_cli("driftsketch-models", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "export":
        return _export(args.checkpoint, Path(args.out), use_ema=not args.raw_weights)
    root = Path(args.registry or default_registry_dir())
    if root.exists() and not root.is_dir():
        raise UsageError(f"--registry {root}: is a file, expected the registry folder")
    reg = Registry(root)
    if args.command == "list":
        print(format_table(reg.load()))
    elif args.command == "show":
        entry = reg.get(args.id).model_dump()
        entry["current"] = reg.current == args.id
        entry["checkpoint"] = str(reg.path_of(args.id))
        print(json.dumps(entry, indent=2))
    elif args.command == "promote":
        changed = reg.promote(args.id, reason=args.reason)
        print(f"{args.id} is current" + ("" if changed else " (it already was)"))
    elif args.command == "rollback":
        print(f"rolled back; current model is now {reg.rollback(reason=args.reason)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
