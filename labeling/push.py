"""Push generated sketches to Label Studio as pairwise or rating tasks.

For every sketch: save its Bezier array (and generation noise) into the preference store, write its SVG
and, depending on ``push.image_mode``, either write its PNG where Label Studio serves it and put the
file's URL in the task (``url``) or inline the PNG as a ``data:image/png;base64`` URI (``data_uri``;
see :mod:`labeling.images`); then import the tasks in bulk. Every task carries the sample ids, the store
paths of their arrays, the class, the checkpoint id and the round id, so a pull (or the bot) needs
nothing but the task.

Idempotent: every task carries a ``task_key`` made of content ids (kind, the sample ids of A and B, the
checkpoint); before importing, the keys already in the project are read (one pass over its task list) and
those tasks are left out. The arrays, SVGs and PNGs written before the import are content-addressed, so a
push killed anywhere (while rendering, in the middle of the import, just after it) and run again imports
each pair exactly once and reuses the files of the first run.

Gold pairs (:mod:`dpo.gold`, ``gold.share`` of the pairwise tasks) are rendered exactly like the
others, shuffled in among them, and registered in the store's gold set, never in the task data. So are
evaluation pairs (:mod:`dpo.human_eval`, ``human_eval.share``: the current model against its base).

Why two image modes: a URL keeps each task ~0.5 KiB (Label Studio's task lists and database stay small
at tens of thousands of tasks) but needs a server that reads our files; an inline data URI (~22 KiB per
pair) works against any Label Studio, local or remote, with no storage setup, and survives moving the
server.

    images = TaskImages.from_config(cfg.push, cfg.server)
    batch = PairBatch(beziers_a, beziers_b, labels, class_names, noise_a, noise_b)
    task_ids = push_tasks(ls, project_id, batch, store=PreferenceStore("data/preferences"),
                          checkpoint="ck-3f2a", round_id="round-0007", images=images)
"""
from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from label_studio_sdk import LabelStudio
from tqdm import tqdm

from dpo.gold import GoldBatch, GoldSet, fake_noise, make_gold_pairs
from dpo.human_eval import EvalSet
from dpo.store import PreferenceStore
from driftsketch.sketch import validate_sketch
from labeling.client import client_url, with_retries
from labeling.config import GoldConfig
from labeling.images import TaskImages, ensure_local_storage


@dataclass
class PairBatch:
    """N pairs of same-class sketches: arrays ``(N, 32, 4, 2)``, noise ``(N, 32, 8)``, labels ``(N,)``."""

    beziers_a: np.ndarray
    beziers_b: np.ndarray
    class_labels: np.ndarray
    class_names: list[str]  # indexed by class label
    noise_a: np.ndarray | None = None
    noise_b: np.ndarray | None = None


@dataclass
class RatingBatch:
    """N single sketches to rate: ``(N, 32, 4, 2)``, noise ``(N, 32, 8)``, labels ``(N,)``."""

    beziers: np.ndarray
    class_labels: np.ndarray
    class_names: list[str]
    noise: np.ndarray | None = None


def sample_id(beziers: np.ndarray) -> str:
    """Content-addressed id of one sketch: pushing the same array twice reuses its files."""
    return "s" + hashlib.sha1(validate_sketch(beziers).tobytes()).hexdigest()[:20]


def task_key(kind: str, sample_a: str, sample_b: str | None, checkpoint: str) -> str:
    """Deterministic identity of one task (kind, samples, checkpoint): a re-run of a push finds it."""
    return "t" + hashlib.sha1(f"{kind}|{sample_a}|{sample_b or ''}|{checkpoint}".encode()).hexdigest()[:20]


def _save(store: PreferenceStore, images: TaskImages, beziers: np.ndarray, noise: np.ndarray | None) -> dict:
    sid = sample_id(beziers)
    rel_b, rel_n = store.save_sample(sid, beziers, noise)
    return {"id": sid, "beziers": rel_b, "noise": rel_n, "image": images.save(sid, beziers)}


def _common(class_label: int, class_names: list[str], checkpoint: str, round_id: str | None) -> dict:
    return {"class_label": int(class_label), "class_name": class_names[int(class_label)],
            "checkpoint": checkpoint, "round_id": round_id}


def pair_task(store: PreferenceStore, images: TaskImages, batch: PairBatch, i: int, left: str,
              checkpoint: str, round_id: str | None) -> dict:
    """Task data of pair ``i``; ``left`` ("a" | "b") is the stored sample shown on the left as "A"."""
    na = None if batch.noise_a is None else batch.noise_a[i]
    nb = None if batch.noise_b is None else batch.noise_b[i]
    a = _save(store, images, batch.beziers_a[i], na)
    b = _save(store, images, batch.beziers_b[i], nb)
    shown_left, shown_right = (a, b) if left == "a" else (b, a)
    return {"image_left": shown_left["image"], "image_right": shown_right["image"],
            "left": left, "sample_a": a["id"], "sample_b": b["id"], "beziers_a": a["beziers"],
            "beziers_b": b["beziers"], "noise_a": a["noise"], "noise_b": b["noise"],
            "task_key": task_key("pairwise", a["id"], b["id"], checkpoint),
            **_common(batch.class_labels[i], batch.class_names, checkpoint, round_id)}


def rating_task(store: PreferenceStore, images: TaskImages, batch: RatingBatch, i: int,
                checkpoint: str, round_id: str | None) -> dict:
    """Task data of sketch ``i`` for the rating project."""
    a = _save(store, images, batch.beziers[i], None if batch.noise is None else batch.noise[i])
    return {"image": a["image"], "sample_a": a["id"],
            "beziers_a": a["beziers"], "noise_a": a["noise"],
            "task_key": task_key("rating", a["id"], None, checkpoint),
            **_common(batch.class_labels[i], batch.class_names, checkpoint, round_id)}


def _images(images: TaskImages | str | Path, image_size: int) -> TaskImages:
    """``images`` itself, or inline data URIs with SVGs in the folder ``images``."""
    return images if isinstance(images, TaskImages) else TaskImages("data_uri", Path(images), size=image_size)


def build_tasks(batch: PairBatch | RatingBatch, store: PreferenceStore, images: TaskImages | str | Path, *,
                checkpoint: str, round_id: str | None = None, image_size: int = 256, seed: int = 0,
                progress: bool = True) -> list[dict]:
    """Save arrays, SVGs and (url mode) PNGs; the task data dicts (left/right drawn from ``seed``,
    checkpoint and round id). A folder for ``images`` means data URIs of ``image_size`` px, SVGs there."""
    images = _images(images, image_size)
    n = len(batch.class_labels)
    if isinstance(batch, PairBatch):
        # a different but reproducible left/right draw for every (seed, checkpoint, round)
        lefts = batch_rng(seed, checkpoint, round_id).choice(["a", "b"], size=n)
        make = lambda i: pair_task(store, images, batch, i, str(lefts[i]), checkpoint, round_id)  # noqa: E731
    else:
        make = lambda i: rating_task(store, images, batch, i, checkpoint, round_id)  # noqa: E731
    with store.batch_writes():  # one sync for the batch's arrays instead of a fsync per file
        return [make(i) for i in tqdm(range(n), desc="render tasks", unit="task", disable=not progress)]


def batch_rng(seed: int, checkpoint: str, round_id: str | None, stream: int = 0) -> np.random.Generator:
    """A different but reproducible random stream for every (seed, checkpoint, round)."""
    return np.random.default_rng([seed, zlib.crc32(f"{checkpoint}/{round_id}".encode()), stream])


def make_gold(cfg: GoldConfig, class_names: list[str], n: int, checkpoint: str,
              round_id: str | None) -> GoldBatch:
    """``n`` gold pairs from the real drawings of ``cfg.data`` (different ones for every batch)."""
    from driftsketch.data import load_dataset

    data = load_dataset(cfg.data)
    return make_gold_pairs(data.beziers, data.labels, data.class_names, class_names, n,
                           batch_rng(cfg.seed, checkpoint, round_id, 1), cfg.kinds, cfg.noise_std)


def gold_tasks(gold: GoldBatch, class_names: list[str], store: PreferenceStore, images: TaskImages | str | Path, *,
               checkpoint: str, round_id: str | None = None, image_size: int = 256, seed: int = 0,
               progress: bool = True) -> list[dict]:
    """Pair tasks of ``gold`` that look like any other (the real drawing on a random side, noise files
    like a generated sketch's), registered in ``store``'s gold set before anyone can answer them."""
    swap = batch_rng(seed, checkpoint, round_id, 2).random(len(gold)) < 0.5
    a = np.where(swap[:, None, None, None], gold.bad, gold.good)
    b = np.where(swap[:, None, None, None], gold.good, gold.bad)
    batch = PairBatch(a, b, gold.labels, class_names, np.stack([fake_noise(x) for x in a]) if len(a) else None,
                      np.stack([fake_noise(x) for x in b]) if len(b) else None)
    tasks = build_tasks(batch, store, images, checkpoint=checkpoint, round_id=round_id, image_size=image_size,
                        seed=seed + 1, progress=progress)
    sides = lambda t, sw: (t["beziers_b"], t["beziers_a"]) if sw else (t["beziers_a"], t["beziers_b"])  # noqa: E731
    GoldSet(store).register([{"good": sides(t, sw)[0], "bad": sides(t, sw)[1], "kind": kind,
                              "class_name": t["class_name"]} for t, sw, kind in zip(tasks, swap, gold.kinds)])
    return tasks


def eval_tasks(batch: PairBatch, base_model: str, store: PreferenceStore, images: TaskImages | str | Path, *,
               checkpoint: str, round_id: str | None = None, image_size: int = 256, seed: int = 0,
               progress: bool = True) -> list[dict]:
    """Pair tasks of the evaluation pairs ``batch`` (``a``: the model ``checkpoint``'s sketch, ``b``: the base
    model's from the same noise) that look like any other, registered in ``store``'s evaluation set
    (:mod:`dpo.human_eval`) before anyone can answer them."""
    tasks = build_tasks(batch, store, images, checkpoint=checkpoint, round_id=round_id, image_size=image_size,
                        seed=seed + 2, progress=progress)
    EvalSet(store).register([{"candidate": t["beziers_a"], "base": t["beziers_b"], "candidate_model": checkpoint,
                              "base_model": base_model, "class_name": t["class_name"]} for t in tasks])
    return tasks


def mix_in(tasks: list[dict], extra: list[dict], rng: np.random.Generator) -> list[dict]:
    """``tasks`` with ``extra`` inserted at random places (the relative order of each kept)."""
    slots = np.zeros(len(tasks) + len(extra), dtype=bool)
    slots[rng.choice(len(slots), size=len(extra), replace=False)] = True
    it, ex = iter(tasks), iter(extra)
    return [next(ex) if s else next(it) for s in slots]


def existing_task_keys(ls: LabelStudio, project_id: int, page_size: int = 500) -> set[str]:
    """The ``task_key`` of every task already in ``project_id`` (one pass over its task list, no
    annotations, URIs left unresolved); tasks without one (another tool's) are ignored."""
    tasks = with_retries(lambda: list(ls.tasks.list(project=project_id, fields="task_only", resolve_uri=False,
                                                    page_size=page_size)), client_url(ls))
    return {str(t.data["task_key"]) for t in tasks if isinstance(t.data, dict) and t.data.get("task_key")}


def new_tasks(tasks: list[dict], existing: set[str]) -> list[dict]:
    """``tasks`` minus those whose key is in ``existing`` (and minus repeats within ``tasks``), in order."""
    seen, out = set(existing), []
    for t in tasks:
        key = t.get("task_key")
        if key is not None and key in seen:
            continue
        if key is not None:
            seen.add(key)
        out.append(t)
    return out


def import_tasks(ls: LabelStudio, project_id: int, tasks: list[dict], batch_size: int = 100,
                 progress: bool = True, skip_existing: bool = True) -> list[int]:
    """Bulk import ``tasks`` (``batch_size`` per request); returns the new task ids. With ``skip_existing``
    the tasks whose ``task_key`` is already in the project (an earlier, maybe killed, push) are left out."""
    if skip_existing:
        tasks = new_tasks(tasks, existing_task_keys(ls, project_id))
    url, ids = client_url(ls), []
    for start in tqdm(range(0, len(tasks), batch_size), desc="import tasks", unit="batch", disable=not progress):
        chunk = tasks[start:start + batch_size]
        resp = with_retries(lambda: ls.projects.import_tasks(project_id, request=chunk, return_task_ids=True),
                            url, idempotent=False)
        ids.extend(resp.task_ids or [])
    return ids


def build_tasks_with_gold(batch: PairBatch | RatingBatch, store: PreferenceStore, images: TaskImages | str | Path,
                          gold: GoldBatch | None, *, checkpoint: str, round_id: str | None = None,
                          image_size: int = 256, seed: int = 0, progress: bool = True,
                          evaluation: tuple[PairBatch, str] | None = None) -> list[dict]:
    """:func:`build_tasks` with the ``gold`` pairs and the ``evaluation`` pairs (a batch and its base model's
    id), if any, rendered, registered and shuffled in."""
    kw = dict(checkpoint=checkpoint, round_id=round_id, image_size=image_size, seed=seed, progress=progress)
    tasks = build_tasks(batch, store, images, **kw)
    if gold is not None and len(gold):
        tasks = mix_in(tasks, gold_tasks(gold, batch.class_names, store, images, **kw),
                       batch_rng(seed, checkpoint, round_id, 3))
    if evaluation is not None and len(evaluation[0].class_labels):
        tasks = mix_in(tasks, eval_tasks(evaluation[0], evaluation[1], store, images, **kw),
                       batch_rng(seed, checkpoint, round_id, 4))
    return tasks


def push_tasks(ls: LabelStudio, project_id: int, batch: PairBatch | RatingBatch, *, store: PreferenceStore,
               checkpoint: str, round_id: str | None = None, svg_dir: str | Path = "data/labelstudio-files/svg",
               image_size: int = 256, batch_size: int = 100, seed: int = 0, progress: bool = True,
               gold: GoldBatch | None = None, images: TaskImages | None = None,
               on_stage: Callable[[str], None] | None = None,
               evaluation: tuple[PairBatch, str] | None = None) -> list[int]:
    """Render, store and import ``batch`` (plus the ``gold`` pairs and the ``evaluation`` pairs, a batch and its
    base model's id, shuffled in) into project
    ``project_id``; returns the ids of the tasks this call imported (tasks already in the project, e.g. from
    a killed earlier run of the same push, are not imported again). ``images`` (url or data_uri mode) wins
    over ``svg_dir`` + ``image_size`` (data URIs). ``on_stage`` is called with "rendered" (files written, nothing imported)
    and "imported" (every task in the project): the points a crash test kills at."""
    images = images or _images(svg_dir, image_size)
    ensure_local_storage(ls, project_id, images)
    tasks = build_tasks_with_gold(batch, store, images, gold, checkpoint=checkpoint, round_id=round_id,
                                  image_size=image_size, seed=seed, progress=progress, evaluation=evaluation)
    if on_stage:
        on_stage("rendered")
    ids = import_tasks(ls, project_id, tasks, batch_size, progress)
    if on_stage:
        on_stage("imported")
    return ids
