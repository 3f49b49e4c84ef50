"""Label Studio tasks: pull annotations, retire stale tasks, count the open queue, render, push.

Network steps retry with backoff (`retries=3, retry_delay_seconds=[2, 5, 15]`) on top of the SDK-level
retries in ``labeling.client``; each is safe to repeat (pulls are exactly-once, pushes re-check the queue
and skip the task keys already in the project).
The token is resolved inside each task (tasks.credentials), never passed as a parameter.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from prefect import task
from pydantic import Field

from driftsketch.config import Config
from driftsketch.fileio import atomic_write_text
from tasks.credentials import labelstudio_connection

NETWORK = dict(retries=3, retry_delay_seconds=[2, 5, 15])


class LabelStudioParams(Config):
    """Where Label Studio is and how the round uses it (section ``labelstudio`` of configs/round.yaml)."""

    defaults_from: ClassVar[str] = "round.yaml:labelstudio"
    config: str = Field(description="Label Studio integration config (projects, push, pull)")
    overrides: list[str] = Field(description="dotted overrides for it, e.g. push.image_size=192")
    url: str | None = Field(description="Label Studio URL; null: $LABEL_STUDIO_URL, else the local server's")
    token_env: str = Field(description="environment variable holding the API token")
    token_secret_block: str | None = Field(description="Prefect Secret block with the token (wins if set)")
    ratings: bool = Field(description="also push one rating task per new sketch")


def ls_config(ls: LabelStudioParams, preference_dir: str, work_dir: str):
    """The labeling config with the round's store; the pull cursor lives in the store it describes. SVGs
    and PNGs go where the labeling config says (``server.files_root``: Label Studio serves them)."""
    from labeling.config import load_labelstudio_config

    return load_labelstudio_config(ls.config, [f"push.store_root={preference_dir}", f"pull.store_root={preference_dir}",
                                               f"pull.cursor_path={preference_dir}/labelstudio_cursor.json",
                                               *ls.overrides])


def client(ls: LabelStudioParams, cfg):
    from labeling.client import connect

    return connect(labelstudio_connection(ls.url, ls.token_env, ls.token_secret_block, cfg.server), cfg.client)


@task
def check_round_storage(ls: LabelStudioParams, registry_dir: str, preference_dir: str, work_dir: str) -> None:
    """Every folder the round writes (possibly shared storage) takes files and locks, or one clear error
    naming the setting (driftsketch/storage.py says which storage keeps the guarantees)."""
    from driftsketch.storage import check_storage
    from labeling.images import TaskImages

    cfg = ls_config(ls, preference_dir, work_dir)
    images = TaskImages.from_config(cfg.push, cfg.server)
    folders = {"registry_dir": registry_dir, "preference_dir": preference_dir, "work_dir": work_dir,
               "labelstudio push.svg_dir": images.svg_dir}
    if images.mode == "url":
        folders["labelstudio push.png_dir"] = images.png_dir
    check_storage(folders)


@task(**NETWORK)
def ensure_projects(ls: LabelStudioParams, preference_dir: str, work_dir: str) -> dict[str, int]:
    """``{"pairwise": id[, "rating": id]}``, created on first use (idempotent)."""
    from labeling.projects import setup_projects

    cfg = ls_config(ls, preference_dir, work_dir)
    return setup_projects(client(ls, cfg), cfg.projects, ("pairwise", "rating") if ls.ratings else ("pairwise",),
                          enforce_overlap=True)


@task(**NETWORK)
def pull(ls: LabelStudioParams, preference_dir: str, work_dir: str, projects: dict[str, int]) -> dict:
    """Append every new completed annotation to the store, exactly once; returns the counts."""
    from dpo.store import PreferenceStore
    from labeling.pull import pull_annotations

    cfg = ls_config(ls, preference_dir, work_dir)
    p = cfg.pull
    report = pull_annotations(client(ls, cfg), projects, PreferenceStore(p.store_root), cursor_path=p.cursor_path,
                              session=p.session, page_size=p.page_size, retries=cfg.client.retries,
                              backoff_s=cfg.client.backoff_s)
    return {k: v for k, v in report.to_dict().items() if k != "record_ids"}


@task(**NETWORK)
def retire_stale(ls: LabelStudioParams, preference_dir: str, work_dir: str, projects: dict[str, int],
                 keep_checkpoint: str) -> int:
    """Remove open tasks made by any model but ``keep_checkpoint``; returns how many."""
    from labeling.queue import retire_tasks

    ls_client = client(ls, ls_config(ls, preference_dir, work_dir))
    return sum(len(retire_tasks(ls_client, pid, keep_checkpoint)) for pid in projects.values())


@task(**NETWORK)
def open_pairs(ls: LabelStudioParams, preference_dir: str, work_dir: str, project_id: int) -> int:
    """Open (unanswered, unskipped) tasks in the pairwise project."""
    from labeling.queue import open_task_count

    return open_task_count(client(ls, ls_config(ls, preference_dir, work_dir)), project_id)


def special_shares(ls: LabelStudioParams, preference_dir: str, work_dir: str) -> tuple[float, float]:
    """Shares of pushed pairwise tasks that are gold pairs and evaluation pairs (``gold.share``,
    ``human_eval.share`` of the labeling config)."""
    cfg = ls_config(ls, preference_dir, work_dir)
    return cfg.gold.share, cfg.human_eval.share


def human_eval_pool(ls: LabelStudioParams, preference_dir: str, work_dir: str) -> int:
    """How many of the newest models the round also reports pooled (``human_eval.pool``)."""
    return ls_config(ls, preference_dir, work_dir).human_eval.pool


@task
def render_pairs(ls: LabelStudioParams, preference_dir: str, work_dir: str, pairs_npz: str, out_json: str,
                 round_id: str | None = None, kind: str = "pairwise", gold: int = 0,
                 gold_data: str | None = None, eval_npz: str | None = None) -> str:
    """Save arrays into the store, write SVGs, render PNG task data; returns the JSON path of the tasks.

    ``kind="rating"`` makes one rating task per pair's sketch ``a`` instead of a pairwise task.
    ``gold`` gold pairs from the real drawings of ``gold_data`` (default ``gold.data``) are shuffled in, and
    the evaluation pairs of ``eval_npz`` (:func:`tasks.generate.generate_eval_pairs`), if any.
    """
    import numpy as np

    from dpo.store import PreferenceStore
    from driftsketch.config import replace_config
    from labeling.images import TaskImages
    from labeling.push import PairBatch, RatingBatch, build_tasks_with_gold, make_gold

    cfg = ls_config(ls, preference_dir, work_dir)
    z = np.load(pairs_npz)
    names, checkpoint = [str(c) for c in z["class_names"]], str(z["checkpoint"])
    batch = (PairBatch(z["beziers_a"], z["beziers_b"], z["labels"], names, z["noise_a"], z["noise_b"])
             if kind == "pairwise" else RatingBatch(z["beziers_a"], z["labels"], names, z["noise_a"]))
    golden = None
    if gold and kind == "pairwise":
        golden = make_gold(replace_config(cfg.gold, data=gold_data or cfg.gold.data), names, gold, checkpoint, round_id)
    evaluation = None
    if eval_npz and kind == "pairwise":
        e = np.load(eval_npz)
        evaluation = (PairBatch(e["beziers_a"], e["beziers_b"], e["labels"], names, e["noise_a"], e["noise_b"]),
                      str(e["base"]))
    tasks = build_tasks_with_gold(batch, PreferenceStore(cfg.push.store_root), TaskImages.from_config(cfg.push, cfg.server),
                                  golden, checkpoint=checkpoint, round_id=round_id, seed=cfg.push.seed, progress=False,
                                  evaluation=evaluation)
    return str(atomic_write_text(out_json, json.dumps(tasks)))


@task(**NETWORK)
def push_rendered(ls: LabelStudioParams, preference_dir: str, work_dir: str, project_id: int, tasks_json: str,
                  queue_target: int) -> int:
    """Import rendered tasks until the open queue reaches ``queue_target``; returns how many were imported.
    A retry or a re-run after a crash re-checks the queue and leaves out the tasks whose ``task_key`` is
    already in the project, so it can neither overfill the queue nor import a pair twice."""
    from labeling.images import TaskImages, ensure_local_storage
    from labeling.push import existing_task_keys, import_tasks, new_tasks
    from labeling.queue import open_task_count

    cfg = ls_config(ls, preference_dir, work_dir)
    ls_client = client(ls, cfg)
    ensure_local_storage(ls_client, project_id, TaskImages.from_config(cfg.push, cfg.server))
    room = queue_target - open_task_count(ls_client, project_id)
    tasks = new_tasks(json.loads(Path(tasks_json).read_text()), existing_task_keys(ls_client, project_id))
    tasks = tasks[:max(room, 0)]
    return len(import_tasks(ls_client, project_id, tasks, cfg.push.batch_size, progress=False,
                            skip_existing=False)) if tasks else 0
