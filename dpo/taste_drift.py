"""Noticing a change of taste: do the newest answers still agree with the answers before them?

When a lab's annotators change what "better" means (new instructions, new people) and nobody marks it
(:mod:`dpo.taste`), the loop keeps fitting its reward to a mixture of two tastes, and the annotators' veto, which
reads only the evaluation pairs, cannot tell "the taste changed" from "the model got worse": both make the
current model lose. The pairs themselves can. A reward fitted on the answers given before the newest ones predicts
how the annotators answer the newest pairs:

- the taste is unchanged: it agrees with at least half of them (as often as its accuracy on the older answers
  says, a little less on a tuned model's sketches), whatever the model did to the sketches;
- the taste turned: it agrees with fewer than half, and with a hundred pairs that shows.

The newest pairs alone show a change for a few rounds only: then the reward is fitted across it, on both tastes,
and knows neither. So the check also splits the answers further back (the newest 2x, 4x ... as many), and the
split nearest the change, whose reward saw the old taste alone, keeps contradicting the answers after it until a
lab marks the change.

    check = check_store(cfg, current_model_path)   # cfg: the round's DPO config
    check["flagged"]   # True: the answers after some split contradict those before it (p below alpha / splits)

Only what the reward can learn can be checked: a taste the reward does not see (accuracy near 1/2) agrees about
half the time before and after a change, and is never flagged. Nothing is decided here: the round reports the
check and a lab marks the change (``driftsketch-labelstudio taste-mark --at ...``) if it happened. Measured on the
preference suite's reversed and partly changed tastes: docs/online_loop.md.
"""
from __future__ import annotations

import math

from scipy.stats import binomtest

from dpo.amplify import fit_on_dataset
from dpo.config import DPOConfig, RewardConfig, TasteDriftConfig
from dpo.dataset import PreferenceDataset
from dpo.records import PreferenceRecord
from dpo.trainer import preference_dataset, reward_inputs
from driftsketch.checkpoint import load_model
from driftsketch.evaluation.classifier import SketchClassifier


def agreement_p_value(agree: int, pairs: int) -> float:
    """P(at most ``agree`` of ``pairs`` agree) when each agrees with probability 1/2: how surprising so few
    agreements are under an unchanged taste (one-sided binomial test; 1.0 for no pairs)."""
    return float(binomtest(agree, pairs, 0.5, alternative="less").pvalue) if pairs else 1.0


def taste_drift(data: PreferenceDataset, reward: RewardConfig, cfg: TasteDriftConfig,
                classifier: SketchClassifier | None, encoder=None, encoder_path: str = "") -> dict:
    """Fit a reward (``reward``'s inputs) on ``data``'s older pairs and count how many of its newest pairs of
    sketches it calls as the annotators did: the newest ``cfg.newest_pairs``, then twice, four times ... as many
    (``cfg.splits`` splits, while at least ``cfg.min_older_pairs`` pairs precede them). A change a few rounds back is
    found at the split nearest it, where the reward is fitted on the old taste alone. The split the answers
    contradict most is reported, and flagged when it agrees with fewer than half and its p-value is below
    ``cfg.alpha`` shared among the splits tested (Bonferroni).

    Returns ``{"checked": False, "reason": ...}`` when there is too little to check, else that split's
    ``older_pairs``, ``newest_pairs``, ``agree``, ``agreement``, ``older_loo_accuracy``, ``p_value`` and
    ``newest_since`` (ISO time of its first newest answer: where a taste mark would go), with ``checked``,
    ``flagged``, ``alpha_each`` and ``splits`` (every split's figures, newest first)."""
    if not cfg.enabled:
        return {"checked": False, "reason": "taste_drift.enabled is false"}
    data = data.newest(cfg.max_older_pairs + cfg.newest_pairs * 2 ** (cfg.splits - 1))  # all any split reads
    splits = []
    for j in range(cfg.splits):
        older, newest = data.split_newest(cfg.newest_pairs * 2 ** j)
        if len(newest) == 0 or len(older) < cfg.min_older_pairs:
            if not splits:
                return {"checked": False, "reason": f"{len(older)} pairs before the newest {len(newest)}; the check "
                                                    f"needs {cfg.min_older_pairs} before the newest {cfg.newest_pairs} "
                                                    "(taste_drift)"}
            break
        splits.append(split_agreement(older.newest(cfg.max_older_pairs), newest, reward, classifier,
                                      encoder, encoder_path))
    worst = min(splits, key=lambda c: (c["p_value"], c["agreement"]))
    alpha_each = cfg.alpha / len(splits)
    return {"checked": True, **worst, "flagged": bool(worst["agreement"] < 0.5 and worst["p_value"] < alpha_each),
            "alpha_each": alpha_each, "splits": splits}


def split_agreement(older: PreferenceDataset, newest: PreferenceDataset, reward: RewardConfig,
                    classifier: SketchClassifier | None, encoder=None, encoder_path: str = "") -> dict:
    """How many of ``newest``'s pairs a reward fitted on ``older`` calls as the annotators did, and how surprising
    so few would be under an unchanged taste. How well the reward knows the older taste is its leave-one-out
    accuracy there (the choice of its inputs and strength maximised it; cross-validating that choice would double
    the fit's cost)."""
    rm = fit_on_dataset(classifier, older, newest, reward, encoder, encoder_path, cross_validate=False)
    agreement = rm.metrics["heldout_accuracy"]
    agree = int(math.floor(agreement * len(newest) + 1e-9))  # a pair the reward calls even counts half: round down
    return {"older_pairs": len(older), "newest_pairs": len(newest), "agree": agree, "agreement": agreement,
            "older_loo_accuracy": rm.metrics["loo_accuracy"], "p_value": agreement_p_value(agree, len(newest)),
            "newest_since": min(r.timestamp for r in newest.records).isoformat()}


def check_store(cfg: DPOConfig, model_path: str, records: list[PreferenceRecord] | None = None) -> dict:
    """:func:`taste_drift` on the answers in ``cfg.preference_dir`` (or ``records`` of it) under ``cfg``'s rules
    (annotators, taste mark), with ``cfg.amplify.reward``'s inputs for tuning the model at ``model_path``."""
    if not cfg.taste_drift.enabled:
        return {"checked": False, "reason": "taste_drift.enabled is false"}
    model = load_model(model_path)
    data = preference_dataset(cfg, model.class_names, records)
    classifier, encoder, encoder_path = reward_inputs(cfg.amplify.reward, model, model_path)
    return taste_drift(data, cfg.amplify.reward, cfg.taste_drift, classifier, encoder, encoder_path)


def scanned(check: dict) -> str:
    """What the line says about the other splits: how many were tested and the p-value each had to beat."""
    tested = len(check.get("splits", []))
    return f"; the most contradicted of {tested} splits, each tested at {check['alpha_each']:.2g}" if tested > 1 else ""


def drift_line(check: dict) -> str:
    """One line for the round's report and log."""
    if not check.get("checked"):
        return f"taste drift: not checked ({check.get('reason', 'no check')})"
    head = (f"taste drift: a reward fitted on the {check['older_pairs']} pairs answered before the newest "
            f"{check['newest_pairs']} agrees with {check['agree']} of them ({100 * check['agreement']:.0f} %; its "
            f"leave-one-out accuracy {check['older_loo_accuracy']:.2f}; p = {check['p_value']:.2g}{scanned(check)})")
    if not check["flagged"]:
        return head + ": no sign of a change"
    return (head + f". The answers given since {check['newest_since']} contradict the ones before: if the annotators' "
            f"taste changed, mark it (driftsketch-labelstudio taste-mark --reason \"...\" --at {check['newest_since']}, "
            "or the round's taste_mark parameter with that time)")
