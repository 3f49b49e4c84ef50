"""Round report: a Prefect markdown artifact and a wandb log (offline unless WANDB_MODE=online)."""
from __future__ import annotations

import json
import math
from pathlib import Path

from prefect import task

METRIC_ROWS = ("recognizability", "frechet_distance", "continuity", "heldout_accuracy", "win_rate")


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def round_markdown(summary: dict) -> str:
    """Markdown of one round: decision, metrics table (base, current, candidate), grids, step timings."""
    d = summary.get("decision") or {}
    lines = [f"# online-dpo round {summary.get('round_index') or '-'} (`{summary.get('round_id') or 'no training'}`)",
             "", f"**Current model after the round:** `{summary['current']}`  ",
             f"**Candidate:** `{summary.get('candidate') or '-'}` (fine-tuned from `{summary.get('parent') or '-'}`"
             + (f" on {summary['trained_on']})  " if summary.get("trained_on") else ")  "),
             f"**Decision:** {'promoted' if d.get('promoted') else 'not promoted'}: {d.get('reason', '-')}", "",
             f"Pulled {summary.get('pulled', 0)} annotations; {summary.get('usable_pairs', 0)} new usable pairs; "
             f"pushed {summary.get('pushed', 0)} pairs; retired {summary.get('retired', 0)} stale tasks.", ""]
    pull = summary.get("pull") or {}
    if pull.get("quarantined") or pull.get("quarantine_open") or pull.get("released"):
        lines += [f"Quarantine: {pull.get('quarantined', 0)} annotations held back this round, "
                        f"{pull.get('released', 0)} released, {pull.get('quarantine_open', 0)} still held "
                        "(`driftsketch-labelstudio quarantine` lists them and why).", ""]
    lines += metric_lines(summary)
    lines += taste_lines(summary)
    grids = summary.get("grids") or {}
    if grids:
        lines += ["Sample grids (same noise for both models):", ""]
        lines += [f"- {name}: `{Path(p).resolve()}`" for name, p in grids.items()]
        lines.append("")
    lines += annotator_lines(summary)
    timings, cpu = summary.get("timings") or {}, summary.get("cpu_seconds") or {}
    if timings:
        lines += ["| step | seconds | CPU seconds |", "|---|---|---|"]
        lines += [f"| {k} | {v:.1f} | {cpu[k]:.1f} |" if k in cpu else f"| {k} | {v:.1f} | - |"
                  for k, v in timings.items()]
        lines += [f"| **all steps** | **{sum(timings.values()):.1f}** | {sum(cpu.values()):.1f} |"]
        if "reward_fit" in timings or "amplify" in timings:
            lines.append("(CPU seconds of train include its parts reward_fit and amplify)")
    if summary.get("peak_rss_mib"):
        lines += ["", f"Peak memory (resident) of the round: {summary['peak_rss_mib']:.0f} MiB"]
    return "\n".join(lines)


def metric_lines(summary: dict) -> list[str]:
    """Current vs candidate (and the original base, when the gate has limits relative to it)."""
    cols = [(name, summary.get(key) or {}) for name, key in
            (("base", "metrics_base"), ("current", "metrics_current"), ("candidate", "metrics_candidate"))]
    cols = [(name, m) for name, m in cols if m or name != "base"]
    if not any(m for _, m in cols):
        return []
    rows = [f"| {k} | " + " | ".join(_fmt(m.get(k)) for _, m in cols) + " |" for k in METRIC_ROWS
            if any(k in m for _, m in cols)]
    return ["| metric | " + " | ".join(name for name, _ in cols) + " |", "|---" * (len(cols) + 1) + "|", *rows, ""]


def taste_lines(summary: dict) -> list[str]:
    """The taste mark this round added (its ``taste_mark`` parameter), the people's verdict on the evaluation pairs,
    and the taste-drift check (in bold when it suspects a change)."""
    mark, drift, out = summary.get("taste_mark"), summary.get("taste_drift") or {}, []
    if mark:
        out += [f"Taste mark at {mark['at']} ({mark['reason']}): " + ("added by this round" if mark["added"] else
                "already in force, nothing added") + "; the round reads only answers given since.", ""]
    out += human_eval_lines(summary)
    if drift.get("line"):
        out += [f"**{drift['line']}**" if drift.get("flagged") else drift["line"], ""]
    return out


def human_eval_lines(summary: dict) -> list[str]:
    """How often people preferred each model to its base on its evaluation pairs (same noise, sides at random)."""
    human = summary.get("human_eval") or {}
    lines, since = human.get("lines") or [], human.get("since")
    if not lines and not since:
        return []
    out = ["Judged by the annotators, against the base from the same noise (evaluation pairs; a tie counts half)"
           + (f", answers since the taste mark of {since}" if since else "") + ":",
           "", *[f"- {line}" for line in lines or ["no answers yet"]], ""]
    veto = summary.get("human_veto")
    if veto and veto.get("rolled_back_to"):
        out += [f"**Annotators' veto:** {veto['reason']}; the round went back to `{veto['rolled_back_to']}` "
                f"(rolled back: {', '.join(f'`{m}`' for m in veto['models'])}).", ""]
    elif veto:
        out += [f"Annotators' veto: not called ({len(veto['models'])} newest model(s), {veto['pairs']} pairs, "
                f"{100 * veto['win_rate']:.1f} %, 95 % interval up to {100 * veto['ci95'][1]:.1f} %).", ""]
    return out


def annotator_lines(summary: dict) -> list[str]:
    """The annotator table (quality, agreement, weights, who is excluded from training and why)."""
    ann = summary.get("annotators") or {}
    if not ann.get("annotators"):
        return []
    sel = summary.get("selection") or {}
    out = ["## Annotators", "", ann["markdown"], ""]
    if sel:
        out += [f"Pairs pushed this round: {sel.get('selection')}"
                + (f" ({sel['reason']})" if sel.get("reason") else "")
                + f"; gold pairs among them: {summary.get('gold_pushed', 0)}, evaluation pairs: "
                  f"{summary.get('eval_pushed', 0)}.", ""]
    return out


def annotator_figures(summary: dict) -> dict[str, float]:
    """Per-annotator figures for wandb: ``annotators/<name>/<figure>`` and Krippendorff's alpha."""
    ann = summary.get("annotators") or {}
    keys = ("answers", "gold_accuracy", "tie_rate", "left_rate", "median_lead_time", "mean_kappa", "weight")
    rows = ann.get("annotators", [])
    flat = {f"annotators/{row['annotator']}/{k}": float(row[k]) for row in rows for k in (*keys, "excluded")}
    if ann.get("annotators"):
        flat["annotators/krippendorff_alpha"] = float(ann["krippendorff_alpha"])
    return flat


@task
def publish_report(summary: dict, out_dir: str, wandb_enabled: bool = True, wandb_project: str = "driftsketch") -> str:
    """Write ``report.md``/``summary.json`` to ``out_dir``, publish the artifact, log to wandb; returns the md path."""
    from prefect.artifacts import create_markdown_artifact

    from driftsketch.tracking import RunLogger

    text = round_markdown(summary)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    create_markdown_artifact(key="online-dpo-round", markdown=text,
                             description=f"round {summary.get('round_index') or '-'}: "
                                         f"{(summary.get('decision') or {}).get('reason', 'no training')}")
    logger = RunLogger(wandb_enabled, wandb_project, out, {"round_id": summary.get("round_id")},
                       name=f"round-{summary.get('round_index') or 0}", job_type="online-dpo")
    flat = {f"round/{k}": v for k, v in (summary.get("timings") or {}).items()}
    if summary.get("peak_rss_mib"):
        flat["round/peak_rss_mib"] = float(summary["peak_rss_mib"])
    for who in ("base", "current", "candidate"):
        flat.update({f"{who}/{k}": v for k, v in (summary.get(f"metrics_{who}") or {}).items()})
    flat["round/promoted"] = float(bool((summary.get("decision") or {}).get("promoted")))
    flat["round/vetoed"] = float(bool((summary.get("human_veto") or {}).get("rolled_back_to")))  # went back
    flat.update(annotator_figures(summary))
    human = ((summary.get("human_eval") or {}).get("models") or {}).get(summary.get("current"))
    if human:  # the current model's win over its base, as the annotators judged it
        flat["current/human_win_rate"] = float(human["win_rate"])
    logger.log(flat, step=int(summary.get("round_index") or 0))
    for name, path in (summary.get("grids") or {}).items():
        logger.log_image(f"samples/{name}", path, step=int(summary.get("round_index") or 0))
    logger.finish()
    return str(out / "report.md")
