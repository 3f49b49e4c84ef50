"""Noticing a change of taste: do the newest answers still agree with the answers before them?

When a lab's annotators change what "better" means (new instructions, new people) and nobody marks it
(:mod:`dpo.taste`), the loop keeps fitting its reward to a mixture of two tastes, and the annotators' veto, which
reads only the evaluation pairs, cannot tell "the taste changed" from "the model got worse": both make the
current model lose. The pairs themselves can. A reward fitted on the answers given before the newest ones predicts
how the annotators answer the newest pairs:

- the taste is unchanged: it agrees with at least half of them (as often as its cross-validated accuracy says,
  a little less on a tuned model's sketches), whatever the model did to the sketches;
- the taste turned: it agrees with fewer than half, and with a hundred pairs that shows.

    check = check_store(cfg, current_model_path)   # cfg: the round's DPO config
    check["flagged"]   # True: the newest answers contradict the older ones (p-value below cfg.alpha)

Only what the reward can learn can be checked: a taste the reward does not see (cross-validated accuracy near
1/2) agrees about half the time before and after a change, and is never flagged. Nothing is decided here: the
round reports the check and a lab marks the change (``driftsketch-labelstudio taste-mark --at ...``) if it
happened. Measured on the preference suite's reversed and partly changed tastes: docs/online_loop.md.
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
    """Fit a reward (``reward``'s inputs) on ``data``'s older pairs and count how many of its newest
    ``cfg.newest_pairs`` pairs of sketches it calls as the annotators did.

    Returns ``{"checked": False, "reason": ...}`` when there is too little to check, else ``checked``,
    ``older_pairs``, ``newest_pairs``, ``agree``, ``agreement``, ``older_cv_accuracy``, ``p_value``, ``flagged``
    and ``newest_since`` (ISO time of the first newest answer: where a taste mark would go)."""
    if not cfg.enabled:
        return {"checked": False, "reason": "taste_drift.enabled is false"}
    older, newest = data.split_newest(cfg.newest_pairs)
    if len(newest) == 0 or len(older) < cfg.min_older_pairs:
        return {"checked": False, "reason": f"{len(older)} pairs before the newest {len(newest)}; the check needs "
                                            f"{cfg.min_older_pairs} before the newest {cfg.newest_pairs} (taste_drift)"}
    rm = fit_on_dataset(classifier, older, newest, reward, encoder, encoder_path)
    agreement = rm.metrics["heldout_accuracy"]
    agree = int(math.floor(agreement * len(newest) + 1e-9))  # a pair the reward calls even counts half: round down
    p = agreement_p_value(agree, len(newest))
    return {"checked": True, "older_pairs": len(older), "newest_pairs": len(newest), "agree": agree,
            "agreement": agreement, "older_cv_accuracy": rm.metrics["cv_accuracy"], "p_value": p,
            "flagged": bool(agreement < 0.5 and p < cfg.alpha),
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


def drift_line(check: dict) -> str:
    """One line for the round's report and log."""
    if not check.get("checked"):
        return f"taste drift: not checked ({check.get('reason', 'no check')})"
    head = (f"taste drift: a reward fitted on the {check['older_pairs']} pairs answered before the newest "
            f"{check['newest_pairs']} agrees with {check['agree']} of them ({100 * check['agreement']:.0f} %; its "
            f"cross-validated accuracy {check['older_cv_accuracy']:.2f}; p = {check['p_value']:.2g})")
    if not check["flagged"]:
        return head + ": no sign of a change"
    return (head + ". The newest answers contradict the older ones: if the annotators' taste changed, mark it "
            f"(driftsketch-labelstudio taste-mark --reason \"...\" --at {check['newest_since']}, or the round's "
            "taste_mark parameter with that time)")
