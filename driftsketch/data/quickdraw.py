"""Quick, Draw! importer: one ``.ndjson`` per category, ``raw`` or ``simplified`` format.

Each line is a JSON object with ``key_id``, ``word``, ``recognized`` and ``drawing``: a list of
strokes, ``[[x...], [y...]]`` (simplified, integers 0-255) or ``[[x...], [y...], [t...]]`` (raw,
float canvas pixels). Malformed lines are skipped, counted and warned about with file:line.

    data = import_quickdraw("../shared/data/quickdraw-raw", categories=["circle", "square"])
"""
from __future__ import annotations

import difflib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from driftsketch.data.bezier_fit import FitConfig
from driftsketch.data.dataset import DataError, SketchData
from driftsketch.data.importing import assemble
from driftsketch.data.settings import ImportConfig


class MalformedLineWarning(UserWarning):
    """A line of an ndjson file that was skipped."""


@dataclass
class FileReport:
    """What reading one category file found."""

    path: str
    lines: int = 0
    malformed: int = 0
    unrecognized: int = 0
    examples: list[str] = field(default_factory=list)  # first malformed-line messages


def parse_drawing(obj: object) -> list[np.ndarray]:
    """The strokes of one record as ``(n, 2)`` float arrays; raises ValueError naming the problem."""
    if not isinstance(obj, dict):
        raise ValueError("line is not a JSON object")
    drawing = obj.get("drawing")
    if not isinstance(drawing, list) or not drawing:
        raise ValueError("field 'drawing' missing or not a non-empty list of strokes")
    strokes = []
    for i, stroke in enumerate(drawing):
        if not isinstance(stroke, list) or len(stroke) not in (2, 3):
            raise ValueError(f"drawing[{i}]: expected [[x...], [y...]] or [[x...], [y...], [t...]]")
        xs, ys = stroke[0], stroke[1]
        if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys) or not xs:
            raise ValueError(f"drawing[{i}]: x and y must be non-empty lists of equal length")
        try:
            pts = np.array([xs, ys], dtype=np.float64).T
        except (TypeError, ValueError):
            raise ValueError(f"drawing[{i}]: coordinates are not numbers") from None
        if not np.all(np.isfinite(pts)):
            raise ValueError(f"drawing[{i}]: coordinates are not finite")
        strokes.append(pts)
    return strokes


def read_category(path: Path, cfg: ImportConfig) -> tuple[list[tuple[str, list[np.ndarray]]], FileReport]:
    """Usable ``(source_id, strokes)`` of one file (after recognized/max-per-class selection)."""
    report, items = FileReport(str(path)), []
    for line_no, text in _lines(path):
        report.lines += 1
        try:
            obj = json.loads(text)
            strokes = parse_drawing(obj)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            report.malformed += 1
            msg = f"{path}:{line_no}: skipped malformed line: {exc}"
            if len(report.examples) < cfg.max_warnings_per_file:
                report.examples.append(msg)
                warnings.warn(msg, MalformedLineWarning, stacklevel=2)
            continue
        if cfg.recognized_only and obj.get("recognized") is not True:
            report.unrecognized += 1
            continue
        items.append((str(obj.get("key_id", f"{path.stem}:{line_no}")), strokes))
    if not items:
        why = "all lines malformed" if report.malformed == report.lines else "nothing left after filtering"
        raise DataError(f"{path}: no usable drawings ({report.lines} lines, {report.malformed} malformed, "
                        f"{report.unrecognized} not recognized; {why})")
    if cfg.max_per_class is not None and len(items) > cfg.max_per_class:
        rng = np.random.default_rng([cfg.seed, _stable_int(path.stem)])
        keep = np.sort(rng.choice(len(items), cfg.max_per_class, replace=False))
        items = [items[i] for i in keep]
    return items, report


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line_no, text in enumerate(fh, start=1):
            if text.strip():
                yield line_no, text


def _stable_int(text: str) -> int:
    return int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "big")


def category_files(source: str | Path, categories: Sequence[str] | None = None) -> dict[str, Path]:
    """``{category: file}`` for a directory of ``<category>.ndjson`` files or one such file."""
    source = Path(source)
    if source.is_file():
        files = {source.stem: source}
    elif source.is_dir():
        files = {p.stem: p for p in sorted(source.glob("*.ndjson"))}
    else:
        raise DataError(f"{source}: no such file or directory")
    if not files:
        raise DataError(f"{source}: no .ndjson files found")
    if not categories:
        return files
    unknown = [c for c in categories if c not in files]
    if unknown:
        close = sorted({m for c in unknown for m in difflib.get_close_matches(c, files, n=3)})
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        shown = ", ".join(sorted(files)[:20]) + (" ..." if len(files) > 20 else "")
        raise DataError(f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {unknown} in {source}{hint}; "
                        f"available ({len(files)}): {shown}")
    return {c: files[c] for c in categories}


def import_quickdraw(source: str | Path, categories: Sequence[str] | None = None,
                     cfg: ImportConfig | None = None, fit: FitConfig | None = None) -> SketchData:
    """Read and fit Quick, Draw! ndjson files into a :class:`SketchData` (labels in category order)."""
    cfg, fit = cfg or ImportConfig(), fit or FitConfig()
    files = category_files(source, categories)
    names, items, reports = list(files), [], []
    for label, name in enumerate(names):
        drawings, report = read_category(files[name], cfg)
        reports.append(report)
        items += [(label, sid, strokes) for sid, strokes in drawings]
    if not items:
        raise DataError(f"{source}: the import is empty")
    meta = {"source": f"quickdraw:{Path(source).resolve()}", "format": "quickdraw",
            "options": {"categories": names, "recognized_only": cfg.recognized_only,
                        "max_per_class": cfg.max_per_class, "seed": cfg.seed},
            "lines": sum(r.lines for r in reports),
            "skipped_malformed": sum(r.malformed for r in reports),
            "skipped_unrecognized": sum(r.unrecognized for r in reports),
            "malformed_examples": [m for r in reports for m in r.examples][:20]}
    return assemble(items, names, fit, cfg.workers, meta)
