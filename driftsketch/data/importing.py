"""Fit many drawings in parallel and assemble a :class:`SketchData` with fit statistics."""
from __future__ import annotations

import multiprocessing as mp
from typing import Sequence

import numpy as np
from tqdm import tqdm

from driftsketch.config import to_dict
from driftsketch.data.bezier_fit import FitConfig, FitError, fit_drawing
from driftsketch.data.dataset import DataError, SketchData

Drawing = list  # list of (n, 2) stroke arrays in source units


def _fit_task(args: tuple[Drawing, dict]) -> tuple[np.ndarray | None, float, str]:
    strokes, cfg = args
    try:
        sketch, stats = fit_drawing(strokes, FitConfig(**cfg))
    except FitError as exc:
        return None, float("nan"), str(exc)
    return sketch, stats["chamfer_px"], ""


def fit_many(drawings: Sequence[Drawing], cfg: FitConfig, workers: int = 2,
             desc: str = "fitting") -> tuple[list[np.ndarray | None], np.ndarray, list[str]]:
    """Fit every drawing; returns sketches (None where fitting failed), Chamfer px, failure reasons."""
    tasks = [(d, to_dict(cfg)) for d in drawings]
    bar = dict(total=len(tasks), desc=desc, unit="drawing", mininterval=1.0)
    if workers > 1 and len(tasks) > 200:
        with mp.get_context("fork").Pool(workers) as pool:
            results = list(tqdm(pool.imap(_fit_task, tasks, chunksize=64), **bar))
    else:
        results = [_fit_task(t) for t in tqdm(tasks, **bar)]
    sketches = [r[0] for r in results]
    return sketches, np.array([r[1] for r in results]), [r[2] for r in results]


def assemble(items: list[tuple[int, str, Drawing]], class_names: list[str], cfg: FitConfig,
             workers: int, meta: dict) -> SketchData:
    """Fit ``(label, source_id, drawing)`` items into a data set; failures are counted in ``meta``."""
    sketches, errors, reasons = fit_many([d for _, _, d in items], cfg, workers)
    ok = [i for i, s in enumerate(sketches) if s is not None]
    if not ok:
        raise DataError(f"no drawing could be fitted ({len(items)} tried; e.g. {reasons[0] if reasons else '-'})")
    failed: dict[str, int] = {}
    for r in reasons:
        if r:
            key = "more than 32 strokes" if "strokes, more than" in r else r
            failed[key] = failed.get(key, 0) + 1
    err = errors[ok]
    meta = dict(meta, fit=to_dict(cfg), skipped_fit=failed,
                fit_chamfer_mean=float(np.mean(err)), fit_chamfer_p95=float(np.percentile(err, 95)))
    return SketchData(np.stack([sketches[i] for i in ok]), np.array([items[i][0] for i in ok]),
                      class_names, np.array([items[i][1] for i in ok], dtype=str), meta)
