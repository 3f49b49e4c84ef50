"""Would the round's taste-drift check have noticed? Replay it on preference-suite runs, round by round.

For every run (``--out`` folders of ``preference_suite.py``), cell and seed, and every round k from 1 on, this takes
the run's store as it stood when round k trained (the answers of rounds 0..k), builds the round's preference
dataset from it (taste mark in force included) and runs the product's check (:func:`dpo.taste_drift.taste_drift`,
configs/dpo.yaml ``taste_drift``): a reward with the round's inputs, fitted on the answers before round k's, predicts
round k's 100 answers. The embedding's encoder is the model that was current when round k's pairs were answered,
as in the round (``amplify.reward.encoder: ""``).

    python benchmarks/taste_drift_probe.py runs/research/suite-taste-veto runs/research/suite-taste-mark \
        --names "no mark" mark --seeds 0 1 2 --cell slant --taste-change 5 \
        --data mnist=data/mnist1000.npz:runs/research/base-mnist/model.pt --json docs/taste_drift_reversal.json

``--taste-change K``: the answers of round K on were given under the new taste (the suite's ``--taste-change 500``
with 100 pairs a round is K = 5); rows before it count as "no change", the others as "changed". ``--reverse-newest``
also checks every round with its own answers turned around: a reversal of the taste just before that round, exact
for the first round after a change (its pairs came from the model of the old taste), on runs of any annotator:

    python benchmarks/taste_drift_probe.py runs/research/suite-nochange --cell smooth --reverse-newest \
        --data mnist=data/mnist1000.npz:runs/research/base-mnist/model.pt

``--reverse-from K`` turns around every answer from round K on: a reversal that lasts, to count the rounds a lab
that does not mark it stays warned (later rounds' pairs came from models that never learned the new taste):

    python benchmarks/taste_drift_probe.py runs/research/suite-nochange --cell smooth --reverse-from 3 \
        --data mnist=data/mnist1000.npz:runs/research/base-mnist/model.pt

Prints one row per check and the share flagged on each side.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import preference_suite as ps  # noqa: E402
from suite_rounds import add_run_args, run_names  # noqa: E402

from dpo.config import load_dpo_config  # noqa: E402
from dpo.records import PreferenceRecord  # noqa: E402
from dpo.store import PreferenceStore  # noqa: E402
from dpo.taste_drift import check_store  # noqa: E402


def current_at(run: Path, rows: Path, k: int, base: str) -> str:
    """The model current while round k's pairs were drawn and answered: row k-1's checkpoint (the base for k=0);
    a path recorded in another run folder (runs that shared their first rounds) is looked up in ``run`` too."""
    if k == 0:
        return base
    recorded = Path(json.loads((rows / f"round_{k - 1:02d}.json").read_text())["checkpoint"])
    if recorded.is_file():
        return str(recorded)
    local = rows / recorded.parent.name / recorded.name
    return str(local if local.is_file() else recorded)


def reversed_answer(rec: PreferenceRecord) -> PreferenceRecord:
    """``rec`` answered the other way (a tie stays a tie)."""
    return rec.model_copy(update={"preference": {"a": "b", "b": "a"}.get(rec.preference, rec.preference)})


def check_round(setup: ps.Setup, run: Path, rows: Path, k: int, reverse_from: int | None = None,
                overrides: list[str] = ()) -> dict:
    """The round's check as round k ran it (answers of rounds 0..k); ``reverse_from``: the answers of that round on
    turned around, as if the taste reversed just before it (exact for that round, whose pairs came from the model of
    the unchanged taste; later rounds' pairs came from models that never learned the new taste); ``overrides`` of
    configs/dpo.yaml (``taste_drift.splits=1``)."""
    store = PreferenceStore(rows / "prefs")
    records = [r for r in store.records() if int(r.source.get("round", -1)) <= k]
    if reverse_from is not None:
        records = [reversed_answer(r) if int(r.source["round"]) >= reverse_from else r for r in records]
    cfg = load_dpo_config(overrides=[f"amplify.reward.classifier={setup.reward_classifier}",
                                     f"preference_dir={store.root}", *overrides])
    return check_store(cfg, current_at(run, rows, k, setup.base_path), records)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_args(p)
    p.add_argument("--cell", default="slant", help="the annotator whose runs to replay")
    p.add_argument("--rounds", type=int, nargs="+", default=list(range(1, 10)), help="rounds k to check (0-based)")
    p.add_argument("--taste-change", type=int, default=None, help="first round answered under the new taste")
    p.add_argument("--data", required=True, help="NAME=SPEC:BASE.pt, as for preference_suite.py")
    p.add_argument("--reverse-newest", action="store_true",
                   help="also check every round with its own answers turned around (a reversal just before it)")
    p.add_argument("--reverse-from", type=int, default=None,
                   help="turn around the answers of this round on (a lasting reversal there; sets --taste-change)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override configs/dpo.yaml for the check, e.g. taste_drift.splits=1 (repeatable)")
    args = p.parse_args(argv)
    names = run_names(p, args)
    if args.reverse_from is not None:
        args.taste_change = args.reverse_from
    out: dict = {}
    print("| run | seed | round | answers | older pairs | agree | loo | p | flagged |\n|---|---|---|---|---|---|---|---|---|")
    for name, folder in zip(names, args.outs):
        suite_args = ps.parse_args(["--data", args.data, "--out", str(folder)])
        setup = ps.prepare(*ps.data_arg(args.data), folder, suite_args)
        for s in args.seeds:
            rows = folder / setup.name / args.cell / f"s{s}"
            for k in args.rounds:
                if not (rows / "prefs" / "sessions" / f"round{k:02d}.jsonl").is_file():
                    continue
                side = "changed" if args.taste_change is not None and k >= args.taste_change else "unchanged"
                for reverse in (False, True) if args.reverse_newest else (False,):
                    check = check_round(setup, folder, rows, k, k if reverse else args.reverse_from, args.overrides)
                    kind = "reversed just before" if reverse else side
                    key = f"{k}r" if reverse else str(k)
                    out.setdefault(name, {}).setdefault(str(s), {})[key] = {**check, "answers": kind}
                    print_row(name, s, k, kind, check)
    summarise(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str) + "\n")
    return out


def print_row(name: str, s: int, k: int, kind: str, check: dict) -> None:
    figures = (f"{check['older_pairs']} | {check['agree']}/{check['newest_pairs']} | {check['older_loo_accuracy']:.2f} | "
               f"{check['p_value']:.2g} | {'**yes**' if check['flagged'] else 'no'} |" if check["checked"] else
               f"not checked: {check['reason']} | | | | |")
    print(f"| {name} | {s} | {k} | {kind} | {figures}", flush=True)


def summarise(out: dict) -> None:
    """The share of checks flagged, per run, on answers given under an unchanged and under a changed taste."""
    for name, seeds in out.items():
        for side in ("unchanged", "changed", "reversed just before"):
            checks = [c for by_round in seeds.values() for c in by_round.values() if c["answers"] == side and c["checked"]]
            if checks:
                print(f"{name}: {side} taste: {sum(c['flagged'] for c in checks)} of {len(checks)} checks flagged")


if __name__ == "__main__":
    main()
