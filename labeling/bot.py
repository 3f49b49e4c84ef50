"""A simulated annotator: answers open Label Studio tasks through the API as a person would.

It judges with a judge from :mod:`driftsketch.evaluation.judges` (``labeling``: classifier confidence +
continuity; ``hidden``: the evaluation judge) made noisy by :func:`prefer` (``noise``: flip
probability; ``tie_margin`` / ``tie_rate``: ties). Sketches come from the preference store, found through
the sample paths in the task data. It annotates as its own Label Studio user (``bot@driftsketch.local``
by default), so every record it causes says ``annotator=bot@...``: bot judgements are never mistaken
for human ones.

It can also behave like the annotators an annotation lead has to defend against (:func:`misbehave`):
``careless_share`` of its pairwise answers are coin flips between A and B, ``always_left_share`` pick
whatever is shown on the left, and ``tie_rate`` are ties whatever the sketches. Several identities
(:func:`bot_emails`) answer the same project as different Label Studio users, each with its own seed.

    judge = load_judge("labeling", "runs/classifier.pt")
    run_bot(ls, project_id, PreferenceStore("data/preferences"), judge, BotConfig())
    for email in bot_emails("bot@driftsketch.local", 3):       # bot-1@..., bot-2@..., bot-3@...
        run_bot(ls, project_id, store, judge, replace_config(cfg, email=email, careless_share=1.0))
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from label_studio_sdk import LabelStudio
from tqdm import tqdm

from dpo.store import PreferenceStore
from driftsketch.evaluation.judges import prefer
from driftsketch.sketch import validate_sketch
from labeling.client import client_url, with_retries
from labeling.config import BotConfig
from labeling.projects import control_names, project_kind
from labeling.queue import open_tasks

RATING_RANGE = (0.0, 2.0)  # judge scores mapped linearly onto 1..5 stars (labeling judge: ~[-2, 2])


def load_judge(name: str, classifier_path: str | Path | None):
    """``labeling`` or ``hidden`` judge around a trained classifier (``driftsketch-eval train-classifier``)."""
    from driftsketch.evaluation.classifier import SketchClassifier
    from driftsketch.evaluation.judges import HiddenJudge, LabelingJudge
    from driftsketch.evaluation.settings import load_eval_config

    judges = {"labeling": LabelingJudge, "hidden": HiddenJudge}
    if name not in judges:
        raise ValueError(f"unknown judge {name!r}; choose one of {sorted(judges)}")
    if not classifier_path or not Path(classifier_path).is_file():
        raise FileNotFoundError(f"judge {name!r} needs a trained classifier: {classifier_path!r} not found "
                                "(make one with `driftsketch-eval train-classifier --out runs/classifier.pt`)")
    cfg = load_eval_config()
    judge_cfg = cfg.labeling_judge if name == "labeling" else cfg.hidden_judge
    return judges[name](SketchClassifier.load(classifier_path), judge_cfg)


def ensure_bot_user(ls: LabelStudio, email: str) -> int:
    """Id of the Label Studio user ``email`` (created on first use)."""
    url = client_url(ls)
    for user in with_retries(lambda: list(ls.users.list()), url):
        if user.email == email:
            return user.id
    return with_retries(lambda: ls.users.create(email=email, username=email.split("@")[0],
                                                first_name="DriftSketch", last_name="bot"), url).id


def load_task_sketch(store: PreferenceStore, rel: str, task_id: int) -> np.ndarray:
    """The sketch a task refers to (a path inside the store root), validated."""
    root = store.root.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise FileNotFoundError(f"task {task_id}: sketch {rel!r} is not a file inside the store {root}")
    return validate_sketch(np.load(path, allow_pickle=False), where=f"task {task_id}: {rel}")


def score_to_rating(scores: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Judge scores -> 1..5 stars (linear over :data:`RATING_RANGE`), one star off with probability ``noise``."""
    lo, hi = RATING_RANGE
    stars = 1 + np.clip(np.floor((np.asarray(scores) - lo) / (hi - lo) * 5), 0, 4).astype(int)
    jitter = np.where(rng.random(len(stars)) < noise, rng.choice([-1, 1], size=len(stars)), 0)
    return np.clip(stars + jitter, 1, 5)


def _results(kind: str, names: dict, choices: list, data_left: list[str]) -> list[list[dict]]:
    if kind == "rating":
        return [[{"from_name": names["rating"], "to_name": "image", "type": "rating",
                  "value": {"rating": int(c)}}] for c in choices]
    out = []
    for pref, left in zip(choices, data_left):
        screen = "tie" if pref == "tie" else ("A" if pref == left else "B")
        out.append([{"from_name": names["preference"], "to_name": "image_left", "type": "choices",
                     "value": {"choices": [screen]}}])
    return out


def bot_emails(email: str, count: int) -> list[str]:
    """``count`` bot identities from ``email``: itself for 1, else ``name-1@domain`` ... ``name-count@domain``."""
    if count < 1:
        raise ValueError(f"bot identities: need at least 1, got {count}")
    if count == 1:
        return [email]
    name, _, domain = email.partition("@")
    return [f"{name}-{i}@{domain}" for i in range(1, count + 1)]


def misbehave(choices: list[str], left: list[str], rng: np.random.Generator, careless_share: float = 0.0,
              always_left_share: float = 0.0) -> list[str]:
    """Pairwise answers ``"a" | "b" | "tie"`` after careless answers (a coin flip between the two
    sketches, with probability ``careless_share``) and position bias (the sketch shown on the left,
    ``left[i]``, with probability ``always_left_share``) replaced the judge's ``choices``."""
    if min(careless_share, always_left_share) < 0 or careless_share + always_left_share > 1:
        raise ValueError(f"bot: careless_share and always_left_share must be >= 0 with a sum <= 1, got "
                         f"{careless_share} and {always_left_share}")
    u, coin = rng.random(len(choices)), rng.random(len(choices)) < 0.5
    out = []
    for c, side, ui, heads in zip(choices, left, u, coin):
        if ui < careless_share:
            c = "a" if heads else "b"
        elif ui < careless_share + always_left_share:
            c = side
        out.append(c)
    return out


def decide(kind: str, tasks: list, store: PreferenceStore, judge, cfg: BotConfig, rng: np.random.Generator) -> list:
    """The bot's answers for ``tasks``: "a" | "b" | "tie" (pairwise) or 1..5 (rating)."""
    labels = np.array([int(t.data["class_label"]) for t in tasks])
    a = np.stack([load_task_sketch(store, t.data["beziers_a"], t.id) for t in tasks])
    if kind == "rating":
        return list(score_to_rating(judge.score(a, labels), rng, cfg.noise))
    b = np.stack([load_task_sketch(store, t.data["beziers_b"], t.id) for t in tasks])
    choices = prefer(judge, a, b, labels, rng, noise=cfg.noise, tie_margin=cfg.tie_margin, tie_rate=cfg.tie_rate)
    return misbehave(choices, [t.data.get("left", "a") for t in tasks], rng, cfg.careless_share,
                     cfg.always_left_share)


def run_bot(ls: LabelStudio, project_id: int, store: PreferenceStore, judge, cfg: BotConfig,
            limit: int | None = None, progress: bool = True) -> dict:
    """Answer up to ``limit`` open tasks of ``project_id``; ``{"answered": n, "choices": {...}}``."""
    url = client_url(ls)
    config = with_retries(lambda: ls.projects.get(project_id).label_config, url)
    kind, names = project_kind(config), control_names(config)
    tasks = open_tasks(ls, project_id)[:limit]
    if not tasks:
        return {"answered": 0, "choices": {}}
    bot_id = ensure_bot_user(ls, cfg.email)
    rng = np.random.default_rng(cfg.seed)
    answers = decide(kind, tasks, store, judge, cfg, rng)
    results = _results(kind, names, answers, [t.data.get("left", "a") for t in tasks])
    for task, result in tqdm(list(zip(tasks, results)), desc="bot answers", unit="task", disable=not progress):
        with_retries(lambda: ls.annotations.create(id=task.id, result=result, completed_by=bot_id,
                                                   lead_time=cfg.lead_time_s), url, idempotent=False)
    keys, counts = [str(x) for x in answers], {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    return {"answered": len(tasks), "choices": counts}
