"""``driftsketch-labelstudio``: run a local Label Studio and move sketches and preferences through it.

    driftsketch-labelstudio start            # local server on 127.0.0.1 (prints its URL and login file)
    driftsketch-labelstudio setup            # pairwise + rating projects (idempotent)
    driftsketch-labelstudio push --model runs/base/model.pt --pairs 50 --ratings 10 --round-id r1
    driftsketch-labelstudio push --model runs/dpo/model.pt --pairs 100 --against runs/base/model.pt
    driftsketch-labelstudio bot --judge labeling --classifier runs/classifier.pt
    driftsketch-labelstudio bot --bots 2 --careless-share 1 --email careless@driftsketch.local ...
    driftsketch-labelstudio pull             # new annotations -> data/preferences (exactly once)
    driftsketch-labelstudio quarantine       # annotations a pull held back, and why (retried by every pull)
    driftsketch-labelstudio annotators       # per-annotator quality, agreement, training weights
    driftsketch-labelstudio taste-mark --reason "new instructions"   # answers from now on are the taste in force
    driftsketch-labelstudio queue            # open tasks per project
    driftsketch-labelstudio retire --keep-checkpoint <id>
    driftsketch-labelstudio status | stop

Defaults come from configs/labelstudio.yaml (``--set client.read_timeout_s=5`` overrides). With
$LABEL_STUDIO_URL and $LABEL_STUDIO_API_KEY set, every command but start/stop/status talks to that server.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from driftsketch.config import replace_config
from driftsketch.errors import UsageError, count_arg, non_negative_arg, run_cli
from labeling.config import DEFAULT_LABELSTUDIO_CONFIG, LabelStudioConfig, load_labelstudio_config


def _client(cfg: LabelStudioConfig):
    from labeling.client import connect, resolve_connection

    return connect(resolve_connection(cfg.server), cfg.client)


def _projects(cfg: LabelStudioConfig, ls, enforce_overlap: bool = False) -> dict[str, int]:
    from labeling.projects import setup_projects

    return setup_projects(ls, cfg.projects, enforce_overlap=enforce_overlap)


def cmd_start(cfg: LabelStudioConfig, args) -> int:
    from labeling.server import start_server

    server = replace_config(cfg.server, host=args.host) if args.host else cfg.server
    info = start_server(server, allow_remote=args.allow_remote)
    creds = json.loads((info.data_dir / "credentials.json").read_text())
    where = f"${creds['password_env']}" if "password_env" in creds else info.data_dir / "credentials.json"
    print(f"Label Studio running at {info.url} (pid {info.pid}, database {server.database}); log in as "
          f"{creds['email']} with the password in {where}")
    return 0


def cmd_stop(cfg: LabelStudioConfig, args) -> int:
    from labeling.server import stop_server

    print("stopped" if stop_server(cfg.server) else "not running")
    return 0


def cmd_status(cfg: LabelStudioConfig, args) -> int:
    from labeling.server import server_status

    status = server_status(cfg.server)
    print(json.dumps(status, indent=1))
    return 0 if status["healthy"] and status.get("database", {}).get("running", True) else 1


def cmd_setup(cfg: LabelStudioConfig, args) -> int:
    print(json.dumps(_projects(cfg, _client(cfg), enforce_overlap=True)))
    return 0


def _generate(model, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from driftsketch.sampling import generate_beziers

    return generate_beziers(model, [int(c) for c in labels], len(labels), seed=seed)


def cmd_push(cfg: LabelStudioConfig, args) -> int:
    from dpo.store import PreferenceStore
    from driftsketch.checkpoint import load_model
    from labeling.images import TaskImages
    from labeling.push import RatingBatch, push_tasks

    if args.against and not args.pairs:
        raise UsageError("--against compares pairs of sketches: give --pairs too")
    model = load_model(args.model)
    base = _against(model, args.against) if args.against else None  # checked before anything connects
    images = TaskImages.from_config(cfg.push, cfg.server)
    ls = _client(cfg)
    ids, store, p = _projects(cfg, ls), PreferenceStore(cfg.push.store_root), cfg.push
    names = list(model.class_names)
    kw = dict(store=store, checkpoint=model.checkpoint_id, round_id=args.round_id, images=images,
              batch_size=p.batch_size, seed=p.seed)
    if args.pairs:
        _push_pairs(cfg, args, ls, ids["pairwise"], model, base, kw)
    if args.ratings:
        labels = np.arange(args.ratings) % len(names)
        x, nx = _generate(model, labels, args.seed + 1)
        pushed = push_tasks(ls, ids["rating"], RatingBatch(x, labels, names, nx), **kw)
        print(f"pushed {len(pushed)} rating tasks to project {ids['rating']}{_already(args.ratings - len(pushed))}")
    return 0


def _push_pairs(cfg: LabelStudioConfig, args, ls, project: int, model, base, kw: dict) -> None:
    """``--pairs`` pairwise tasks: the model's pairs, ``gold.share`` gold pairs and, with a ``base`` (``--against``),
    ``human_eval.share`` evaluation pairs, shuffled in."""
    from dpo.gold import special_pair_counts
    from labeling.push import PairBatch, make_gold, push_tasks

    names = list(model.class_names)
    n_gold, n_eval = special_pair_counts(args.pairs, cfg.gold.share, cfg.human_eval.share, base is not None)
    labels = np.repeat(np.arange(args.pairs - n_gold - n_eval) % len(names), 2)  # samples 2i and 2i+1 share a class
    x, nx = _generate(model, labels, args.seed)
    batch = PairBatch(x[0::2], x[1::2], labels[0::2], names, nx[0::2], nx[1::2])
    gold = make_gold(cfg.gold, names, n_gold, model.checkpoint_id, args.round_id) if n_gold else None
    evaluation = _eval_batch(model, base, n_eval, args) if n_eval else None
    pushed = push_tasks(ls, project, batch, gold=gold, evaluation=evaluation, **kw)
    against = f", {n_eval} evaluation pairs against {base.checkpoint_id}" if base is not None else ""
    print(f"pushed {len(pushed)} pairwise tasks ({n_gold} gold pairs{against}) to project {project}"
          f"{_already(args.pairs - len(pushed))}")


def _against(model, path: str):
    """The model ``--against`` names, checked before anything is pushed: another checkpoint of the same classes."""
    from driftsketch.checkpoint import load_model

    base = load_model(path)
    if base.checkpoint_id == model.checkpoint_id:
        raise UsageError(f"--against {path}: that is the pushed model itself ({model.checkpoint_id})")
    if list(base.class_names) != list(model.class_names):
        raise UsageError(f"--against {path}: it draws {list(base.class_names)}, the pushed model "
                         f"{list(model.class_names)}")
    return base


def _eval_batch(model, base, n: int, args):
    """``n`` evaluation pairs (:mod:`dpo.human_eval`): the pushed model's sketch and ``base``'s from one noise."""
    from driftsketch.sampling import same_noise_beziers
    from labeling.push import PairBatch, batch_rng

    seed = int(batch_rng(args.seed, model.checkpoint_id, args.round_id, 5).integers(2**31))
    labels = np.arange(n) % len(model.class_names)
    a, b, noise = same_noise_beziers(model, base, labels, seed)
    return PairBatch(a, b, labels, list(model.class_names), noise, noise), base.checkpoint_id


def _already(n: int) -> str:
    return f"; {n} already in the project (an earlier push of the same sketches)" if n else ""


def cmd_pull(cfg: LabelStudioConfig, args) -> int:
    from dpo.store import PreferenceStore
    from labeling.pull import pull_annotations

    ls, p = _client(cfg), cfg.pull
    report = pull_annotations(ls, _projects(cfg, ls), PreferenceStore(p.store_root), cursor_path=p.cursor_path,
                              session=p.session, page_size=p.page_size, retries=cfg.client.retries,
                              backoff_s=cfg.client.backoff_s)
    out = report.to_dict()
    out.pop("record_ids")
    print(json.dumps(out, indent=1))
    return 0


def cmd_quarantine(cfg: LabelStudioConfig, args) -> int:
    """Annotations a pull held back (still open; ``--all``: also released and dropped ones), as a table."""
    from dpo.store import PreferenceStore
    from labeling.pull import quarantine_rows

    store = PreferenceStore(cfg.pull.store_root)
    rows = quarantine_rows(store, include_closed=args.all)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    cols = ("status", "project", "task", "annotation", "updated_at", "reason")
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    print(f"\n{sum(r['status'] == 'held' for r in rows)} held back in {store.quarantine_path}; every pull retries "
          "them (fix the cause, e.g. restore the missing arrays, then `driftsketch-labelstudio pull`)")
    return 0


def cmd_bot(cfg: LabelStudioConfig, args) -> int:
    from dpo.store import PreferenceStore
    from labeling.bot import bot_emails, load_judge, run_bot

    given = {k: getattr(args, k) for k in ("judge", "classifier", "noise", "tie_rate", "careless_share",
                                           "always_left_share", "reversed_share") if getattr(args, k) is not None}
    bot = replace_config(cfg.bot, **given)
    emails = args.email or bot_emails(bot.email, args.bots)
    ls = _client(cfg)
    ids = _projects(cfg, ls)
    judge = load_judge(bot.judge, bot.classifier)
    for i, email in enumerate(emails):  # each identity its own user and its own random stream
        who = replace_config(bot, email=email, seed=bot.seed + i)
        for kind in args.project:
            out = run_bot(ls, ids[kind], PreferenceStore(cfg.push.store_root), judge, who, args.limit)
            print(email, kind, json.dumps(out))
    return 0


def cmd_annotators(cfg: LabelStudioConfig, args) -> int:
    from dpo.annotators import assess_annotators, collect_answers, format_table
    from dpo.config import DEFAULT_DPO_CONFIG, load_dpo_config
    from dpo.gold import GoldSet
    from dpo.human_eval import EvalSet, answers_since, bases_in_order, judgement
    from dpo.store import PreferenceStore
    from dpo.taste import TasteMarks

    store = PreferenceStore(cfg.pull.store_root)
    overrides = [f"annotators.{o}" for o in args.annotators_set]
    annotators = load_dpo_config(args.dpo_config or DEFAULT_DPO_CONFIG, overrides).annotators
    answers = collect_answers(store.records())
    report = assess_annotators(answers, GoldSet(store).entries(), annotators)
    entries, since = EvalSet(store).entries(), TasteMarks(store).since()
    current = answers_since(answers, since)  # the models are judged by the taste in force
    human = {base: judgement(current, entries, cfg.human_eval.pool, set(report.excluded), base)
             for base in bases_in_order(entries)}  # each base its own comparison (push --against names others)
    if args.json:
        print(json.dumps({**report.to_dict(), "human_eval": {b: h["models"] for b, h in human.items()},
                          "human_eval_recent": {b: h["recent"] for b, h in human.items()}}, indent=1))
        return 0
    print(format_table(report, markdown=args.markdown))
    if since is not None and entries:
        print(f"human evaluation: answers since the taste mark of {since.isoformat()} "
              f"({len(answers) - len(current)} older answers not counted)")
    for line in (line for h in human.values() for line in h["lines"]):  # each model against its base, as judged
        print(f"human evaluation: {line}")
    return 0


def cmd_taste_mark(cfg: LabelStudioConfig, args) -> int:
    """Add a taste mark (``--reason``), withdraw one (``--withdraw AT --reason``), or list them and the one in force."""
    from dpo.store import PreferenceStore
    from dpo.taste import TasteMarks

    marks = TasteMarks(PreferenceStore(cfg.pull.store_root))
    if args.reason is None:
        if args.withdraw is not None:
            raise UsageError("--withdraw: give --reason too (why the mark was wrong)")
        entries = marks.entries()  # the file read once: a bad line warns once
        gone, current = marks.withdrawn(entries), marks.in_force(entries)
        for m in (e for e in entries if "at" in e):
            print(f"{m['at'].isoformat()}  {m.get('reason', '')}"
                  + (f"  (withdrawn: {gone[m['at']]})" if m["at"] in gone else ""))
        print(f"in force: {current['at'].isoformat()}" if current else f"no taste mark in force in {marks.path}")
        return 0
    if args.withdraw is not None:
        current = marks.withdraw(_time_arg("--withdraw", args.withdraw), args.reason)["in_force"]
        print(f"taste mark at {args.withdraw} withdrawn; in force now: {current['at'].isoformat() if current else 'none'}")
        return 0
    mark = marks.add(args.reason, None if args.at is None else _time_arg("--at", args.at))
    print(f"taste mark at {mark['at'].isoformat()} in {marks.path}: training, the reward model and the annotators' "
          "veto now read only answers given since")
    return 0


def _time_arg(flag: str, text: str):
    from dpo.taste import parse_time

    try:
        return parse_time(text)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{flag} {text!r}: not an ISO 8601 time ({exc})") from None


def cmd_queue(cfg: LabelStudioConfig, args) -> int:
    from labeling.queue import open_task_count

    ls = _client(cfg)
    print(json.dumps({k: open_task_count(ls, pid) for k, pid in _projects(cfg, ls).items()}))
    return 0


def cmd_retire(cfg: LabelStudioConfig, args) -> int:
    from labeling.queue import retire_tasks

    ls = _client(cfg)
    print(json.dumps({k: len(retire_tasks(ls, pid, args.keep_checkpoint)) for k, pid in _projects(cfg, ls).items()}))
    return 0


COMMANDS = {"start": cmd_start, "stop": cmd_stop, "status": cmd_status, "setup": cmd_setup, "push": cmd_push,
            "pull": cmd_pull, "bot": cmd_bot, "queue": cmd_queue, "retire": cmd_retire,
            "annotators": cmd_annotators, "quarantine": cmd_quarantine, "taste-mark": cmd_taste_mark}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=str(DEFAULT_LABELSTUDIO_CONFIG), help="YAML settings")
    common.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    parser = argparse.ArgumentParser(prog="driftsketch-labelstudio", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    helps = {"start": "start the local server (data dir, 127.0.0.1, credentials file; --set server.database="
                      "postgresql: on a PostgreSQL it starts too)", "stop": "stop it (and its PostgreSQL)",
             "status": "is it (and its PostgreSQL) running and healthy (exit 1 if not)", "setup": "create / check the projects",
             "pull": "new annotations -> preference store (exactly once)", "queue": "open tasks per project"}
    for name, text in helps.items():
        sub.add_parser(name, parents=[common], help=text)
    start = sub.choices["start"]
    start.add_argument("--host", default=None, help="address to listen on (default server.host, 127.0.0.1)")
    start.add_argument("--allow-remote", action="store_true",
                       help="allow a --host other than loopback (other machines can then reach the login page)")
    push = sub.add_parser("push", parents=[common], help="generate sketches with a model and push them as tasks")
    push.add_argument("--model", required=True, help="checkpoint (.pt)")
    push.add_argument("--pairs", type=non_negative_arg, default=0, help="pairwise tasks to push")
    push.add_argument("--ratings", type=non_negative_arg, default=0, help="rating tasks to push")
    push.add_argument("--round-id", default=None)
    push.add_argument("--seed", type=int, default=0)
    push.add_argument("--against", default=None, metavar="BASE.pt",
                      help="also push evaluation pairs (human_eval.share of the pairs): the model's sketch against this "
                           "checkpoint's from the same noise, for `annotators` to report the model's win over it")
    bot = sub.add_parser("bot", parents=[common], help="answer open tasks with a simulated annotator")
    bot.add_argument("--judge", choices=["labeling", "hidden"], default=None)
    bot.add_argument("--classifier", default=None, help="trained SketchClassifier for the judge")
    bot.add_argument("--noise", type=float, default=None, help="probability of flipping the judge's choice")
    bot.add_argument("--tie-share", "--tie-rate", dest="tie_rate", type=float, default=None,
                     help="share of answers that are ties whatever the sketches")
    bot.add_argument("--careless-share", type=float, default=None, help="share of coin-flip answers (A or B)")
    bot.add_argument("--always-left-share", type=float, default=None,
                     help="share of answers that pick the sketch shown on the left")
    bot.add_argument("--reversed-share", type=float, default=None,
                     help="share of answers that pick the sketch the judge likes less (a reversed taste)")
    bot.add_argument("--bots", type=count_arg, default=1, help="identities answering: bot-1@..., bot-2@... (bot.email)")
    bot.add_argument("--email", action="append", default=None, help="an identity (repeatable; overrides --bots)")
    bot.add_argument("--limit", type=count_arg, default=None, help="answer at most this many tasks per project")
    bot.add_argument("--project", nargs="+", choices=["pairwise", "rating"], default=["pairwise"])
    ann = sub.add_parser("annotators", parents=[common],
                         help="per-annotator quality (gold accuracy, kappa, ties, left rate, lead time) and weights, "
                              "and how often they preferred each model to its base on the evaluation pairs")
    ann.add_argument("--dpo-config", default=None, help="DPO config whose `annotators` section decides the weights")
    ann.add_argument("--annotators-set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a key of that section, e.g. weighting=gold")
    ann.add_argument("--markdown", action="store_true", help="print a markdown table")
    ann.add_argument("--json", action="store_true", help="print JSON")
    quar = sub.add_parser("quarantine", parents=[common],
                          help="annotations a pull held back (missing arrays, foreign tasks, ...) and why")
    quar.add_argument("--all", action="store_true", help="also those released (stored later) or dropped")
    quar.add_argument("--json", action="store_true", help="print JSON")
    taste = sub.add_parser("taste-mark", parents=[common],
                           help="mark that the annotators' taste changed (new instructions, new people): training, the "
                                "reward model and the veto read only answers given since; without --reason, list marks")
    taste.add_argument("--reason", default=None, help="what changed (kept with the mark)")
    taste.add_argument("--at", default=None, help="when it changed, ISO 8601 (default: now; no zone = UTC)")
    taste.add_argument("--withdraw", default=None, metavar="AT",
                       help="withdraw the mark at AT (as listed), set by mistake; --reason says why")
    retire = sub.add_parser("retire", parents=[common], help="delete open tasks of superseded checkpoints")
    retire.add_argument("--keep-checkpoint", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``driftsketch-labelstudio``; bad input (a bad ``--set`` or ``--config`` too) is one
    line on stderr and exit code 2."""
    return run_cli("driftsketch-labelstudio", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_labelstudio_config(args.config, args.set)
    return COMMANDS[args.command](cfg, args)


if __name__ == "__main__":
    sys.exit(main())
