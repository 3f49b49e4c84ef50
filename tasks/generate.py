"""Generate the next batch of pairs from the current model (classes cycled or weighted toward weak ones),
and optionally keep the candidates the reward-model ensemble is least sure about (``selection: uncertain``)."""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
from prefect import task

from driftsketch.fileio import atomic_write_bytes, atomic_write_text

PUSHED = "pushed.json"  # in a batch folder once its tasks went out
BATCH = "batch.json"  # in a batch folder from its start: the round id it is rendered under


def allocate_classes(num_pairs: int, num_classes: int, weights: list[float] | None = None,
                     offset: int = 0) -> list[int]:
    """Class id of each pair: round-robin from ``offset``, or proportional to ``weights`` (largest remainder).

    Every class with positive weight gets at least one pair when ``num_pairs >= num_classes``.
    """
    if num_pairs <= 0:
        return []
    if weights is None:
        return [(offset + i) % num_classes for i in range(num_pairs)]
    w = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    if w.shape != (num_classes,) or w.sum() <= 0:
        raise ValueError(f"need {num_classes} non-negative weights with a positive sum, got {weights}")
    floor = 1 if num_pairs >= num_classes else 0
    share = w / w.sum() * (num_pairs - floor * num_classes)
    counts = np.floor(share).astype(int) + floor
    for i in np.argsort(-(share - np.floor(share)), kind="stable")[: num_pairs - counts.sum()]:
        counts[i] += 1
    return [c for c in range(num_classes) for _ in range(counts[c])]


def weak_class_weights(per_class_recognizability: dict[str, float], class_names: list[str],
                       floor: float = 0.1) -> list[float] | None:
    """Weight ``1 - recognizability + floor`` per class; None (cycle) if any class is unmeasured."""
    if not all(name in per_class_recognizability for name in class_names):
        return None
    return [1.0 - float(per_class_recognizability[n]) + floor for n in class_names]


def next_batch_key(work_dir: str, model_id: str) -> str:
    """``batch<n>``, n = the batches of ``model_id`` already pushed (:func:`mark_pushed`): a re-run after a
    crash before the mark gets the same key, hence the same seed and sketches; the next round a new one."""
    return f"batch{len(list(Path(work_dir, 'batches', model_id).glob('*/' + PUSHED))):04d}"


def mark_pushed(batch_dir: str, summary: dict) -> None:
    """Record that the batch in ``batch_dir`` went out (the next batch of its model gets a new key)."""
    atomic_write_text(Path(batch_dir) / PUSHED, json.dumps(summary, sort_keys=True))


def batch_round_id(batch_dir: str, round_id: str | None) -> str | None:
    """The round id a batch is rendered under: the first run's, kept in ``batch_dir/batch.json``. The gold
    pairs and the sides of every pair are drawn from it, so a re-run after a crash (which trains nothing
    when the killed run had promoted already, and so has no round id of its own) renders the same tasks
    instead of other gold pairs whose arrays nobody would use."""
    path = Path(batch_dir) / BATCH
    if path.is_file():
        return json.loads(path.read_text())["round_id"]
    atomic_write_text(path, json.dumps({"round_id": round_id}))
    return round_id


def batch_seed(model_id: str, batch_key: str, seed: int) -> int:
    """A deterministic seed, so a re-run after a crash regenerates the identical batch."""
    return int.from_bytes(hashlib.sha256(f"{model_id}/{batch_key}/{seed}".encode()).digest()[:4], "big")


@task
def generate_pairs(checkpoint: str, model_id: str, num_pairs: int, out_path: str, *, weights: list[float] | None = None,
                   batch_key: str, seed: int, num_steps: int, cfg_scale: float, solver: str,
                   device: str = "cpu") -> str | None:
    """Sample ``num_pairs`` (a, b) pairs of one class each, fresh noise per sketch; writes an .npz.

    The .npz holds ``beziers_a/b`` (P, 32, 4, 2), ``noise_a/b`` (P, 32, 8), ``labels`` (P,),
    ``class_names``, ``checkpoint`` (= ``model_id``, the registry id). Returns its path (None when no pairs are needed).
    """
    if num_pairs <= 0:
        return None
    from driftsketch.checkpoint import load_model
    from driftsketch.device import require_device
    from driftsketch.sampling import generate_beziers

    model = load_model(checkpoint, require_device(device))
    s = batch_seed(model_id, batch_key, seed)
    labels = allocate_classes(num_pairs, len(model.class_names), weights, offset=s % len(model.class_names))
    both = labels + labels  # first half a, second half b: same class, independent noise
    beziers, noise = generate_beziers(model, both, 2 * num_pairs, num_steps=num_steps, cfg_scale=cfg_scale,
                                      seed=s, solver=solver)
    buf = io.BytesIO()
    np.savez(buf, beziers_a=beziers[:num_pairs], beziers_b=beziers[num_pairs:], noise_a=noise[:num_pairs],
             noise_b=noise[num_pairs:], labels=np.asarray(labels, dtype=np.int64),
             class_names=np.asarray(model.class_names), checkpoint=np.asarray(model_id))
    return str(atomic_write_bytes(out_path, buf.getvalue()))


@task
def generate_eval_pairs(candidate: str, candidate_id: str, base: str, base_id: str, num_pairs: int, out_path: str, *,
                        batch_key: str, seed: int, num_steps: int, cfg_scale: float, solver: str,
                        device: str = "cpu") -> str | None:
    """``num_pairs`` evaluation pairs (:mod:`dpo.human_eval`): sketch ``a`` from the candidate model, ``b`` from
    the base, both from one noise (classes cycled); written like :func:`generate_pairs`, plus ``base``
    (= ``base_id``). Returns the path, or None when no pairs are asked for."""
    if num_pairs <= 0:
        return None
    from driftsketch.checkpoint import load_model
    from driftsketch.device import require_device
    from driftsketch.sampling import same_noise_beziers

    dev = require_device(device)
    model, base_model = load_model(candidate, dev), load_model(base, dev)
    s = batch_seed(candidate_id, f"{batch_key}/evaluation", seed)
    labels = allocate_classes(num_pairs, len(model.class_names), offset=s % len(model.class_names))
    try:
        a, b, noise = same_noise_beziers(model, base_model, labels, s, num_steps=num_steps, cfg_scale=cfg_scale,
                                         solver=solver)
    except ValueError as exc:
        raise ValueError(f"evaluation pairs of {candidate} against the base {base}: {exc}") from None
    buf = io.BytesIO()
    np.savez(buf, beziers_a=a, beziers_b=b, noise_a=noise, noise_b=noise, labels=np.asarray(labels, dtype=np.int64),
             class_names=np.asarray(model.class_names), checkpoint=np.asarray(candidate_id), base=np.asarray(base_id))
    return str(atomic_write_bytes(out_path, buf.getvalue()))


@task
def select_pairs(candidates_npz: str, out_path: str, num_pairs: int, preference_dir: str, classifier: str,
                 class_names: list[str], dpo_config: str, overrides: list[str], ensemble: int,
                 seed: int = 0) -> tuple[str, dict]:
    """Keep the ``num_pairs`` candidate pairs an ensemble of ``ensemble`` reward models (fit on bootstrap
    resamples of the store's human pairs, with the DPO config's reward features and annotator rules)
    is least sure about; writes them like :func:`generate_pairs`. Returns (path, info)."""
    from dpo.config import load_dpo_config
    from dpo.selection import select_from_store
    from driftsketch.evaluation.classifier import SketchClassifier

    z = dict(np.load(candidates_npz))
    keep, info = select_from_store(preference_dir, class_names, SketchClassifier.load(classifier),
                                   load_dpo_config(dpo_config, overrides), z["beziers_a"], z["beziers_b"], z["labels"],
                                   num_pairs, ensemble, seed)
    buf = io.BytesIO()
    np.savez(buf, **{k: (v[keep] if k in PAIR_ARRAYS else v) for k, v in z.items()})
    return str(atomic_write_bytes(out_path, buf.getvalue())), info


PAIR_ARRAYS = ("beziers_a", "beziers_b", "noise_a", "noise_b", "labels")
