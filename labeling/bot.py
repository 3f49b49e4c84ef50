"""A simulated annotator: answers Label Studio tasks through the API as a person would.

It judges with a judge from :mod:`driftsketch.evaluation.judges` (``labeling``: classifier confidence +
continuity; ``hidden``: the evaluation judge) made noisy by :func:`prefer` (``noise``: flip
probability; ``tie_margin`` / ``tie_rate``: ties). Sketches come from the preference store, found through
the sample paths in the task data. It annotates as its own Label Studio user (``bot@driftsketch.local``
by default), so every record it causes says ``annotator=bot@...``: bot judgements are never mistaken
for human ones.

One answer per task unless overlap is configured, also with several bots and people at once: the bot
logs in as its own user and takes one task at a time from Label Studio's own next-task dispatch
(``GET /api/projects/<id>/next/``, the label stream a person gets), which skips tasks that have their
``maximum_annotations`` (annotations plus other users' locks) and locks the task it hands out until it is
answered; bots on one machine also ask one at a time (a file lock in the store), because on SQLite Label
Studio's row locks are no-ops. The bot's account is made through the organisation's invite link on first
use, with a password derived from the API token it runs with (nothing written to disk). A task whose
arrays are missing is skipped in Label Studio (like a person's "Skip") and counted, never a reason to stop.

It can also behave like the annotators an annotation lead has to defend against (:func:`misbehave`):
``careless_share`` of its pairwise answers are coin flips between A and B, ``always_left_share`` pick
whatever is shown on the left, ``reversed_share`` pick the sketch its judge likes less (an annotator
whose taste runs against the others'), and ``tie_rate`` are ties whatever the sketches. Several identities
(:func:`bot_emails`) answer the same project as different Label Studio users, each with its own seed.

    judge = load_judge("labeling", "runs/classifier.pt")
    run_bot(ls, project_id, PreferenceStore("data/preferences"), judge, BotConfig())
    for email in bot_emails("bot@driftsketch.local", 3):       # bot-1@..., bot-2@..., bot-3@...
        run_bot(ls, project_id, store, judge, replace_config(cfg, email=email, careless_share=1.0))
"""
from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import httpx
import numpy as np
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from tqdm import tqdm

from dpo.store import PreferenceStore
from driftsketch.errors import DriftSketchError
from driftsketch.fileio import exclusive_lock
from driftsketch.evaluation.judges import prefer
from driftsketch.sketch import validate_sketch
from driftsketch.split import unit_hash
from labeling.client import api_key_of, client_url, with_retries
from labeling.config import BotConfig, check_misbehaviour_shares
from labeling.projects import control_names, project_kind


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
              always_left_share: float = 0.0, reversed_share: float = 0.0) -> list[str]:
    """Pairwise answers ``"a" | "b" | "tie"`` after careless answers (a coin flip between the two
    sketches, with probability ``careless_share``), position bias (the sketch shown on the left,
    ``left[i]``, with probability ``always_left_share``) and a reversed taste (the sketch the judge
    did not pick, with probability ``reversed_share``; a tie stays a tie) replaced the judge's ``choices``."""
    check_misbehaviour_shares(careless_share, always_left_share, reversed_share)
    u, coin = rng.random(len(choices)), rng.random(len(choices)) < 0.5
    out = []
    for c, side, ui, heads in zip(choices, left, u, coin):
        if ui < careless_share:
            c = "a" if heads else "b"
        elif ui < careless_share + always_left_share:
            c = side
        elif ui < careless_share + always_left_share + reversed_share:
            c = {"a": "b", "b": "a"}.get(c, c)
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
                     cfg.always_left_share, cfg.reversed_share)


def task_rng(seed: int, data: dict) -> np.random.Generator:
    """The random draws behind one answer: from the bot's seed and the sketches the task shows, so an answer
    does not depend on the order Label Studio hands tasks out (nor on its task ids): the same bot gives the
    same answers to the same pairs on every run."""
    key = "\n".join(str(data.get(k, "")) for k in ("beziers_a", "beziers_b", "class_label"))
    return np.random.default_rng([seed, int(unit_hash(key) * 2**53)])


def _answer(kind: str, names: dict, task, store: PreferenceStore, judge, cfg: BotConfig) -> tuple[str, list[dict]]:
    """The bot's answer to one task (its key for the counts, and the annotation result)."""
    choice = decide(kind, [task], store, judge, cfg, task_rng(cfg.seed, task.data))[0]
    return str(choice), _results(kind, names, [choice], [task.data.get("left", "a")])[0]


def run_bot(ls: LabelStudio, project_id: int, store: PreferenceStore, judge, cfg: BotConfig,
            limit: int | None = None, progress: bool = True) -> dict:
    """Answer up to ``limit`` tasks of ``project_id`` as the bot user ``cfg.email``, one at a time through
    Label Studio's own next-task dispatch (see the module docstring); ``{"answered": n, "choices": {...},
    "skipped": k, "skipped_tasks": [...]}``. A task whose arrays are missing or invalid is skipped in Label
    Studio (a cancelled annotation, as a person's "Skip") and counted; the others are still answered."""
    from types import SimpleNamespace

    url = client_url(ls)
    config = with_retries(lambda: ls.projects.get(project_id).label_config, url)
    kind, names = project_kind(config), control_names(config)
    me = BotUser.login(ls, cfg.email)
    counts: dict[str, int] = {}
    skipped: list[str] = []
    seen: set[int] = set()
    dispatch = store.root / ".bot-dispatch.lock"
    bar = tqdm(total=limit, desc=f"bot {cfg.email}", unit="task", disable=not progress)
    try:
        while limit is None or sum(counts.values()) < limit:
            with exclusive_lock(dispatch):  # local bots ask one at a time: a database without row locks
                got = me.next_task(project_id)  # (SQLite) cannot hand one task to two of them
            if got is None or int(got["id"]) in seen:  # nothing left for this user
                break
            task = SimpleNamespace(id=int(got["id"]), data=got.get("data") or {})
            seen.add(task.id)
            try:
                key, result = _answer(kind, names, task, store, judge, cfg)
            except (FileNotFoundError, KeyError, TypeError, ValueError, DriftSketchError) as exc:
                with exclusive_lock(dispatch):
                    me.annotate(task.id, [], cancelled=True)  # releases the lock; others may still take it
                skipped.append(f"task {task.id}: {exc}")
                continue
            with exclusive_lock(dispatch):  # Label Studio stores the answer, then drops the task's lock: a
                me.annotate(task.id, result, lead_time=cfg.lead_time_s)  # next/ in between skips the task
            counts[key] = counts.get(key, 0) + 1
            bar.update(1)
    finally:
        bar.close()
        me.close()
    return {"answered": sum(counts.values()), "choices": counts, "skipped": len(skipped), "skipped_tasks": skipped}


class BotError(DriftSketchError, RuntimeError):
    """The bot cannot act as its own Label Studio user; the message says why and what to do."""


def bot_password(ls: LabelStudio, email: str) -> str:
    """The bot account's password, derived from the API token the bot was started with (HMAC): nothing is
    written to disk, and whoever holds that token can already do everything the bot can."""
    key = api_key_of(ls)
    return "ds-" + hmac.new(key.encode(), f"driftsketch bot {email.lower()}".encode(), hashlib.sha256).hexdigest()[:32]


def _form_post(http: httpx.Client, path: str, fields: dict) -> httpx.Response:
    """POST a Django form the way a browser does (CSRF cookie + token + same-origin Referer)."""
    page = http.get(path)
    token = http.cookies.get("csrftoken") or ""
    return http.post(path, data={**fields, "csrfmiddlewaretoken": token},
                     headers={"Referer": str(page.url), "X-CSRFToken": token})


class BotUser:
    """A session as the bot's own Label Studio user: its API token, the next-task dispatch, answers."""

    def __init__(self, url: str, email: str, token: str, timeout: float = 30.0):
        self.url, self.email = url, email
        self.http = httpx.Client(base_url=url, timeout=timeout, headers={"Authorization": f"Token {token}"})

    @classmethod
    def login(cls, ls: LabelStudio, email: str, timeout: float = 30.0) -> "BotUser":
        """Log in as ``email`` (signing up through the organisation's invite link on first use)."""
        url = client_url(ls)
        password = bot_password(ls, email)
        with httpx.Client(base_url=url, timeout=timeout) as http:
            if not with_retries(lambda: cls._login(http, email, password), url):
                invite = with_retries(lambda: _admin_get(ls, "/api/invite", timeout), url)
                with_retries(lambda: _form_post(http, f"/user/signup/?token={invite['token']}",
                                                {"email": email, "password": password}), url, idempotent=False)
                if not with_retries(lambda: cls._login(http, email, password), url):
                    raise BotError(f"Label Studio at {url}: cannot log in as {email!r}: the account exists but was "
                                   "not made by the bot with this API token (another tool, or the token changed); "
                                   "use another --email / bot.email")
            resp = with_retries(lambda: http.get("/api/current-user/token"), url)
            token = resp.json().get("token") if resp.status_code == 200 else None
        if not token:
            raise BotError(f"Label Studio at {url} gives {email!r} no API token (HTTP {resp.status_code}); the bot "
                           "needs legacy API tokens enabled (`driftsketch-labelstudio start` enables them)")
        return cls(url, email, token, timeout)

    @staticmethod
    def _login(http: httpx.Client, email: str, password: str) -> bool:
        http.cookies.clear()
        resp = _form_post(http, "/user/login/", {"email": email, "password": password})
        if resp.status_code >= 500:
            raise ApiError(status_code=resp.status_code, body=resp.text[:200])
        return resp.status_code in (301, 302) and "sessionid" in http.cookies

    def next_task(self, project_id: int) -> dict | None:
        """``GET /api/projects/<id>/next/`` as this user: the next task Label Studio hands it (and locks for
        it, honouring ``maximum_annotations``), or None when it has nothing left for this user."""
        def call():
            resp = self.http.get(f"/api/projects/{int(project_id)}/next/")
            if resp.status_code == 404:
                return None
            if resp.status_code >= 400:
                raise ApiError(status_code=resp.status_code, body=resp.text[:300])
            return resp.json()

        return with_retries(call, self.url)

    def annotate(self, task_id: int, result: list[dict], lead_time: float | None = None,
                 cancelled: bool = False) -> dict:
        """Create this user's annotation (``cancelled``: a skip) of ``task_id``; Label Studio releases the lock."""
        body = {"result": result, "was_cancelled": cancelled, **({"lead_time": lead_time} if lead_time else {})}

        def call():
            resp = self.http.post(f"/api/tasks/{int(task_id)}/annotations/", json=body)
            if resp.status_code >= 400:
                raise ApiError(status_code=resp.status_code, body=resp.text[:300])
            return resp.json()

        return with_retries(call, self.url, idempotent=False)

    def close(self) -> None:
        self.http.close()


def _admin_get(ls: LabelStudio, path: str, timeout: float) -> dict:
    resp = httpx.get(client_url(ls) + path, headers=ls._client_wrapper.get_headers(), timeout=timeout)
    if resp.status_code >= 400:
        raise ApiError(status_code=resp.status_code, body=resp.text[:300])
    return resp.json()
