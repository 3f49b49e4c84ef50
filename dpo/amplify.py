"""Reward amplification: turn a few hundred human pairs into thousands of on-policy training pairs.

    rm = fit_on_dataset(classifier, human_train, RewardConfig(...))
    records = amplify(model, rm, PreferenceStore("runs/dpo/amplified"), AmplifyConfig(), session="amp")

1. A :class:`~dpo.reward.RewardModel` is fit on the human pairs (Bradley-Terry heads on the flow model's
   hidden states and a few hand-made features, strength chosen by cross-validation).
2. The model to tune draws ``groups_per_class`` groups of ``group_size`` sketches of every class, from
   noise seeded by its checkpoint id (``seed_per_model``), so every online round ranks new draws.
3. The reward model picks the best of each group; "best vs each other sketch" gives up to ``group_size - 1``
   pairs per group (those its ensemble prefers with probability ``min_pair_probability`` or more), stored as
   ordinary pairwise records (annotator ``reward-model:<digest>``) in a store of their own, never mixed into
   the human store.

Why: one round of pairwise labels only shows the learner a "better of two" shift, and Flow-DPO on 500
such pairs moved the hidden-judge win rate to about 55%. Ranking many fresh samples with a reward model
fit on the same 500 pairs gives a far stronger and on-policy signal (docs/dpo.md, "Reward amplification").
"""
from __future__ import annotations

import hashlib
import warnings

import numpy as np
from tqdm import tqdm

from dpo.config import AmplifyConfig, RewardConfig
from dpo.dataset import PreferenceDataset
from dpo.records import PreferenceRecord
from dpo.reward import RewardModel, fit_reward_model
from dpo.store import PreferenceStore, StoreWarning
from driftsketch.config import replace_config
from driftsketch.evaluation.classifier import SketchClassifier
from driftsketch.sampling import generate_beziers
from driftsketch.split import unit_hash


def dataset_arrays(data: PreferenceDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(winners, losers) ``(P, 32, 4, 2)`` and class labels ``(P,)`` of a preference dataset."""
    items = [data[i] for i in range(len(data))]
    if not items:
        empty = np.zeros((0, 32, 4, 2), np.float32)
        return empty, empty, np.zeros(0, np.int64)
    stack = lambda key: np.stack([it[key].numpy() for it in items]).reshape(-1, 32, 4, 2)  # noqa: E731
    return stack("winner_beziers"), stack("loser_beziers"), np.array([int(it["class_label"]) for it in items])


def fit_on_dataset(classifier: SketchClassifier | None, train: PreferenceDataset, held: PreferenceDataset,
                   cfg: RewardConfig, encoder=None, encoder_path: str = "", cross_validate: bool = True) -> RewardModel:
    """Fit a reward model on ``train``'s pairs; ``metrics['heldout_accuracy']`` on ``held``'s (NaN if none).
    ``encoder`` (the flow model saved at ``encoder_path``) embeds sketches when ``cfg.embedding_t`` is set;
    ``cross_validate`` as for :func:`dpo.reward.fit_reward_model`."""
    rm = fit_reward_model(classifier, *dataset_arrays(train), cfg, encoder=encoder, encoder_path=encoder_path,
                          cross_validate=cross_validate)
    w, l, y = dataset_arrays(held)
    rm.metrics["heldout_pairs"] = len(y)
    rm.metrics["heldout_accuracy"] = rm.pair_accuracy(w, l, y) if len(y) else float("nan")
    return rm


def sample_groups(model, labels: np.ndarray, k: int, cfg: AmplifyConfig,
                  progress: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` independent draws ``(beziers, noise)`` for every label, with ``cfg``'s sampler and seeds."""
    return [generate_beziers(model, labels.tolist(), len(labels), num_steps=cfg.num_steps, cfg_scale=cfg.cfg_scale,
                             solver=cfg.solver, seed=cfg.seed * cfg.draw_seed_stride + j)
            for j in tqdm(range(k), desc="sampling groups", disable=not progress, mininterval=2.0)]


def best_of_n(model, rm: RewardModel, labels: np.ndarray, n: int, cfg: AmplifyConfig | None = None,
              progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Best-of-n sampling: for each of ``labels`` draw ``n`` sketches and keep the one ``rm`` ranks
    highest. Returns ``(beziers (N, 32, 4, 2), reward (N,))``; costs ``n`` times plain sampling."""
    labels = np.asarray(labels, dtype=np.int64)
    draws = sample_groups(model, labels, n, cfg or AmplifyConfig(), progress)
    rewards = np.stack([rm.score(x, labels) for x, _ in draws], axis=1)
    pick = rewards.argmax(axis=1)
    beziers = np.stack([x for x, _ in draws], axis=1)[np.arange(len(labels)), pick]
    return beziers, rewards[np.arange(len(labels)), pick]


def _pair_id(group: int, best: int, other: int, a: np.ndarray, b: np.ndarray) -> str:
    """Record id from the pair's content (not a random uuid): the trainer's held-out split hashes record
    ids, so a rerun on the same model and reward holds out the same amplified pairs."""
    digest = hashlib.sha256(np.ascontiguousarray(a).tobytes() + np.ascontiguousarray(b).tobytes()).hexdigest()[:16]
    return f"amp-g{group:05d}-{best}-{other}-{digest}"


def best_probability(member_rewards: np.ndarray, best: int, other: int) -> float:
    """The reward ensemble's P(best preferred to other): the mean over its Platt-scaled heads of
    ``sigmoid(r_best - r_other)``; ``member_rewards`` is ``(M, group_size)``."""
    diff = member_rewards[:, best] - member_rewards[:, other]
    return float(np.mean(1.0 / (1.0 + np.exp(-diff))))


def _whole(store: PreferenceStore, records: list[PreferenceRecord]) -> bool:
    """Whether every array ``records`` refer to is on disk. Only presence: an unreadable array is one bad pair,
    which the trainer skips with a warning; drawing the session again could not replace it."""
    return all((store.root / rel).is_file() for rec in records
               for rel in (rec.beziers_a, rec.beziers_b, rec.noise_a, rec.noise_b) if rel)


def amplify(model, rm: RewardModel, store: PreferenceStore, cfg: AmplifyConfig, session: str,
            progress: bool = True) -> list[PreferenceRecord]:
    """Sample groups from ``model``, rank each with ``rm``, append best-vs-rest pairs to ``store``
    as session ``session`` and return the records. Re-running with the same arguments reuses them, or, when
    some of their arrays are gone, draws the same groups again and rewrites the missing arrays."""
    existing = [r for r in store.records() if r.source.get("session") == session]
    if existing and _whole(store, existing):
        return existing
    if existing:  # e.g. a folder cleaned while the run was killed: the same seeds draw the same arrays again
        warnings.warn(f"{store.root}: amplified session {session!r} has records whose arrays are missing; "
                      "drawing its groups again", StoreWarning, stacklevel=2)
    n_cls, k = len(model.class_names), cfg.group_size
    labels = np.repeat(np.arange(n_cls), cfg.groups_per_class)
    tag = f"reward-model:{rm.digest()}"
    records: list[PreferenceRecord] = []
    if cfg.seed_per_model:  # each model, i.e. each online round, ranks draws of its own
        cfg = replace_config(cfg, seed=cfg.seed + int(unit_hash(str(model.checkpoint_id)) * cfg.model_seed_range))
    draws = sample_groups(model, labels, k, cfg, progress)
    feats = [rm.features(x, labels) for x, _ in draws]
    members = np.stack([rm.scores_of(f, labels) for f in feats], axis=2)  # (M, groups, k): every head's reward
    rewards = members.mean(axis=0)  # (groups, k): rm.score
    with store.batch_writes():  # one sync for all samples; the records are appended after it
        paths = [[store.save_sample(f"{session}-g{g:05d}-{j}", draws[j][0][g], draws[j][1][g]) for j in range(k)]
                 for g in range(len(labels))]
    for g, y in enumerate(labels):
        best = int(np.argmax(rewards[g]))
        for j in range(k):
            prob = best_probability(members[:, g], best, j)
            if j == best or prob < cfg.min_pair_probability:
                continue
            records.append(PreferenceRecord(
                id=_pair_id(g, best, j, draws[best][0][g], draws[j][0][g]),
                comparison_type="pairwise", class_label=int(y), class_name=model.class_names[int(y)],
                beziers_a=paths[g][best][0], beziers_b=paths[g][j][0], noise_a=paths[g][best][1],
                noise_b=paths[g][j][1],
                preference="a", checkpoint=model.checkpoint_id, annotator=tag,
                source={"system": "reward-amplification", "session": session, "group": g, "other": j,
                        "probability": round(prob, 4)}))
    known = {r.id for r in store.records()}  # the same draws under another session name: stored once
    store.append([r for r in records if r.id not in known], session=session)
    return records
