"""What the round's reward fit costs as the store grows: seconds per fit at 1,000-16,000 answered pairs.

The round fits its amplification reward (dpo/trainer.py ``amplified_pairs``) on the human pairs since the taste
mark, at most ``amplify.reward.max_pairs`` of them (those answered last), with the gate's nested 5-fold
cross-validation. This grows a store to each size by copying a real run's answered pairs (as
benchmarks/taste_drift_cost.py does: fresh sample files and ids, later times) and times what the round does
(read the store, hold out the trainer's pairs, fit), with the product's defaults and, where asked, uncapped.

    python benchmarks/reward_fit_cost.py runs/research/suite-nochange/mnist/quality/s0/prefs \
        --model runs/research/base-mnist/model.pt \
        --reward-classifier runs/research/suite-nochange/mnist/setup/reward_classifier.pt \
        --pairs 1000 2000 4000 8000 16000 --uncapped-up-to 4000

Prints one row per size and setting; timings are from one run on a noisy machine: compare within a size.
What a cap costs in accuracy is measured by benchmarks/reward_probe.py (docs/dpo.md "A store of many thousand
pairs").
"""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from taste_drift_cost import grown_stores, growth_parser  # noqa: E402

from dpo.config import load_dpo_config  # noqa: E402
from dpo.trainer import build_datasets, fit_round_reward  # noqa: E402
from driftsketch.checkpoint import load_model  # noqa: E402


def timed_fit(cfg, model) -> tuple[float, int]:
    """(seconds, pairs fitted) of the round's reward fit under ``cfg``, its cross-validation included (whose
    accuracy means nothing here: the copies of a pair fall into other folds)."""
    t0 = time.perf_counter()
    rm = fit_round_reward(cfg, model, *build_datasets(cfg, model.class_names))
    return time.perf_counter() - t0, rm.metrics["train_pairs"]


def main(argv=None) -> None:
    p = growth_parser(__doc__, [1000, 2000, 4000, 8000, 16000])
    p.add_argument("--uncapped-up-to", type=int, default=4000, metavar="N",
                   help="also time the uncapped fit (max_pairs=null) on stores of at most N answered pairs")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    model = load_model(args.model)
    print("| answered pairs | setting | pairs fitted | seconds |\n|---|---|---|---|")
    for pairs, dst in grown_stores(args.store, args.pairs):
        settings = {"defaults": []}
        if pairs <= args.uncapped_up_to:
            settings["uncapped"] = ["amplify.reward.max_pairs=null"]
        for name, overrides in settings.items():
            cfg = load_dpo_config(overrides=[f"amplify.reward.classifier={args.reward_classifier}",
                                             f"preference_dir={dst.root}", f"base_checkpoint={args.model}", *overrides])
            seconds, fitted = timed_fit(cfg, model)
            print(f"| {pairs} | {name} | {fitted} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
