"""Quick, Draw! importer: one ``.ndjson`` per category, ``raw`` or ``simplified`` format.

Each line is a JSON object with ``key_id``, ``word``, ``recognized`` and ``drawing``: a list of
strokes, ``[[x...], [y...]]`` (simplified, integers 0-255) or ``[[x...], [y...], [t...]]`` (raw,
float canvas pixels). Malformed lines are skipped, counted and warned about with file:line.

    data = import_quickdraw("../shared/data/quickdraw-raw", categories=["circle", "square"])
"""
from __future__ import annotations

import difflib
import json
import math
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import orjson
from tqdm import tqdm

from driftsketch.config import to_dict
from driftsketch.data.bezier_fit import FitConfig, fit_drawings
from driftsketch.data.dataset import DataError, SketchData
from driftsketch.data.importing import BatchStore, batch_name, ordered_map, worker_pool, write_dataset
from driftsketch.data.settings import ImportConfig

BLOCK_BYTES = 1 << 20  # pass 1 reads files in blocks of whole lines of about this size


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


# --- pass 1: which lines are usable (every line parsed once, in parallel blocks) -----------------

def file_blocks(path: Path, block_bytes: int = BLOCK_BYTES) -> list[tuple[str, int, int, int]]:
    """``(path, start, end, first line number)`` of blocks of whole lines covering the file."""
    blocks, start, line = [], 0, 1
    with open(path, "rb") as fh:
        while True:
            data = fh.read(block_bytes)
            if not data:
                break
            cut = data.rfind(b"\n") + 1
            if cut == 0 or len(data) < block_bytes:  # one huge line, or the end of the file
                cut = len(data)
            fh.seek(start + cut)
            blocks.append((str(path), start, start + cut, line))
            line += data.count(b"\n", 0, cut)
            start += cut
    return blocks


def _plain_numbers(values: list) -> bool:
    """True for a non-empty list of ints and finite floats that all convert to float64."""
    kinds = set(map(type, values))
    if kinds == {int}:
        return -1e300 < min(values) and max(values) < 1e300
    return kinds <= {int, float} and all(map(math.isfinite, values))


def surely_parses(obj: object) -> bool:
    """True when :func:`parse_drawing` certainly accepts ``obj`` (the common case, checked without
    numpy and about five times faster); False means "ask parse_drawing"."""
    drawing = obj.get("drawing") if type(obj) is dict else None
    if type(drawing) is not list or not drawing:
        return False
    for stroke in drawing:
        if type(stroke) is not list or len(stroke) not in (2, 3):
            return False
        xs, ys = stroke[0], stroke[1]
        if (type(xs) is not list or type(ys) is not list or len(xs) != len(ys) or not xs
                or not _plain_numbers(xs) or not _plain_numbers(ys)):
            return False
    return True


def loads(text: str) -> object:
    """``json.loads``, through orjson (about 4x faster) where orjson accepts the text; the standard
    parser decides (and words the error) for everything else (NaN, integers beyond 64 bits, ...)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def parse_line(text: str, recognized_only: bool, strokes: bool = True
               ) -> tuple[str, object, list[np.ndarray] | None]:
    """``("ok" or "unrecognized", obj, strokes)`` or ``("malformed", reason, None)`` for one line.

    With ``strokes=False`` only checks that the line would parse (strokes is then None).
    """
    try:
        obj = loads(text)
        drawing = parse_drawing(obj) if strokes or not surely_parses(obj) else None
    except (ValueError, RecursionError, OverflowError) as exc:  # JSONDecodeError is a ValueError
        return "malformed", exc, None
    if recognized_only and obj.get("recognized") is not True:
        return "unrecognized", obj, drawing
    return "ok", obj, drawing


def scan_block(task: tuple[str, int, int, int, bool, int]) -> dict:
    """Offsets, sizes and line numbers of the usable lines of one block, plus what was skipped."""
    path, start, end, line_no, recognized_only, max_examples = task
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(end - start)
    found: list[tuple[int, int, int]] = []
    lines = malformed = unrecognized = 0
    examples: list[str] = []
    pos = 0
    for raw in data.split(b"\n"):
        text = raw.decode("utf-8", errors="replace")
        if text.strip():
            lines += 1
            status, what, _ = parse_line(text, recognized_only, strokes=False)
            if status == "ok":
                found.append((start + pos, len(raw), line_no))
            elif status == "unrecognized":
                unrecognized += 1
            else:
                malformed += 1
                if len(examples) < max_examples:
                    examples.append(f"{path}:{line_no}: skipped malformed line: {what}")
        pos += len(raw) + 1
        line_no += 1
    arr = np.array(found, dtype=np.int64).reshape(-1, 3)
    return {"usable": arr, "lines": lines, "malformed": malformed, "unrecognized": unrecognized,
            "examples": examples}


def select_lines(path: Path, scans: list[dict], cfg: ImportConfig) -> tuple[np.ndarray, FileReport]:
    """Usable lines of one file (``(n, 3)``: offset, size, line number) after max-per-class selection."""
    report = FileReport(str(path), sum(s["lines"] for s in scans), sum(s["malformed"] for s in scans),
                        sum(s["unrecognized"] for s in scans),
                        [m for s in scans for m in s["examples"]][:cfg.max_warnings_per_file])
    _warn(report)
    usable = np.concatenate([s["usable"] for s in scans]) if scans else np.zeros((0, 3), np.int64)
    if not len(usable):
        why = "all lines malformed" if report.malformed == report.lines else "nothing left after filtering"
        raise DataError(f"{path}: no usable drawings ({report.lines} lines, {report.malformed} malformed, "
                        f"{report.unrecognized} not recognized; {why})")
    if cfg.max_per_class is not None and len(usable) > cfg.max_per_class:
        rng = np.random.default_rng([cfg.seed, _stable_int(path.stem)])
        usable = usable[np.sort(rng.choice(len(usable), cfg.max_per_class, replace=False))]
    return usable, report


def _warn(report: FileReport) -> None:
    for msg in report.examples:
        warnings.warn(msg, MalformedLineWarning, stacklevel=3)


def scan_files(files: dict[str, Path], cfg: ImportConfig, pool) -> tuple[list[np.ndarray], list[FileReport]]:
    """Pass 1 over every file (blocks in parallel): the selected lines and a report per file."""
    blocks = [b for path in files.values() for b in file_blocks(path)]
    total = sum(p.stat().st_size for p in files.values())
    tasks = [(*b, cfg.recognized_only, cfg.max_warnings_per_file) for b in blocks]
    per_file: dict[str, list[dict]] = {str(p): [] for p in files.values()}
    with tqdm(total=total, desc="reading", unit="B", unit_scale=True, mininterval=1.0) as bar:
        for block, scan in zip(blocks, ordered_map(pool, scan_block, tasks, 2 * cfg.workers)):
            per_file[block[0]].append(scan)
            bar.update(block[2] - block[1])
    selected, reports = [], []
    for path in files.values():
        usable, report = select_lines(path, per_file[str(path)], cfg)
        selected.append(usable)
        reports.append(report)
    return selected, reports


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


# --- pass 2: read and fit the selected lines, batch by batch -----------------------------------

def read_lines(path: str, rows: np.ndarray) -> list[tuple[str, list[np.ndarray] | str]]:
    """``(source_id, strokes)`` of the lines at ``rows`` (offset, size, line number); a line that no
    longer parses gives its error message instead of strokes."""
    out: list[tuple[str, list[np.ndarray] | str]] = []
    stem = Path(path).stem
    with open(path, "rb") as fh:
        for offset, size, line_no in rows.tolist():
            fh.seek(offset)
            status, obj, strokes = parse_line(fh.read(size).decode("utf-8", errors="replace"), False)
            if status == "malformed":
                out.append((f"{stem}:{line_no}", f"{path}:{line_no}: line changed since it was read: {obj}"))
            else:
                out.append((str(obj.get("key_id", f"{stem}:{line_no}")), strokes))
    return out


def _strings(values: list[str]) -> np.ndarray:
    return np.array(values, dtype=str) if values else np.zeros(0, dtype="<U1")


def fit_batch(task: tuple[str, int, np.ndarray, np.ndarray, dict]) -> dict[str, np.ndarray]:
    """Fit one batch of selected lines: the arrays :func:`~driftsketch.data.importing.write_dataset` reads."""
    path, label, rows, measure, fit = task
    items = read_lines(path, rows)
    batch = fit_drawings([d if isinstance(d, list) else [] for _, d in items], FitConfig(**fit), measure)
    finite = np.isfinite(batch.sketches).reshape(len(items), -1).all(axis=1)
    errors = [d if isinstance(d, str) else (e or ("" if f else "fit gave non-finite values"))
              for (_, d), e, f in zip(items, batch.errors, finite)]
    ok = np.array([not e for e in errors], dtype=bool)
    return {"beziers": batch.sketches[ok], "labels": np.full(int(ok.sum()), label, dtype=np.int64),
            "source_ids": _strings([sid for (sid, _), k in zip(items, ok) if k]),
            "chamfer": batch.chamfer_px[ok & measure], "failed": _strings([e for e in errors if e])}


def _fingerprint(source: Path, files: dict[str, Path], cfg: ImportConfig, fit: FitConfig) -> dict:
    options = {k: v for k, v in to_dict(cfg).items() if k != "workers"}  # workers do not change the file
    return {"format": "quickdraw", "version": 1, "source": str(source.resolve()), "importer": options,
            "fit": to_dict(fit), "files": [[name, str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns]
                                           for name, p in files.items()]}


def _stored_scan(store: BatchStore, files: dict[str, Path], cfg: ImportConfig, pool):
    """The selected lines and reports, from an interrupted run of the same command or by reading."""
    kept = store.read("selection")
    if kept is not None:
        reports = [FileReport(**r) for r in json.loads(str(kept["reports"]))]
        for report in reports:
            _warn(report)
        return [kept[f"file{i}"] for i in range(len(files))], reports
    selected, reports = scan_files(files, cfg, pool)
    store.write("selection", {"reports": np.asarray(json.dumps([vars(r) for r in reports])),
                              **{f"file{i}": s for i, s in enumerate(selected)}})
    return selected, reports


def write_quickdraw(out: str | Path, source: str | Path, categories: Sequence[str] | None = None,
                    cfg: ImportConfig | None = None, fit: FitConfig | None = None) -> dict:
    """Read and fit Quick, Draw! ndjson files into the data set file ``out`` (labels in category order).

    Streams (memory does not grow with the number of drawings), uses ``cfg.workers`` processes
    and resumes: after a kill, the same call continues from the batches already finished.
    Returns ``{"meta", "counts", "sketches"}`` of the written file.
    """
    cfg, fit = cfg or ImportConfig(), fit or FitConfig()
    source = Path(source)
    files = category_files(source, categories)
    names = list(files)
    store = BatchStore.open(out, _fingerprint(source, files, cfg, fit))
    with worker_pool(cfg.workers) as pool:
        try:
            selected, reports = _stored_scan(store, files, cfg, pool)
        except DataError:
            store.remove()  # nothing worth resuming
            raise
        tasks, start = [], 0
        for label, (path, rows) in enumerate(zip(files.values(), selected)):
            for lo in range(0, len(rows), cfg.batch_size):
                part = rows[lo:lo + cfg.batch_size]
                measure = (start + lo + np.arange(len(part))) % cfg.fit_error_every == 0
                tasks.append((str(path), label, part, measure, to_dict(fit)))
            start += len(rows)
        todo = [i for i in range(len(tasks)) if store.read(batch_name(i)) is None]
        done = start - sum(len(tasks[i][2]) for i in todo)
        with tqdm(total=start, initial=done, desc="fitting", unit="drawing", mininterval=1.0) as bar:
            for i, arrays in zip(todo, ordered_map(pool, fit_batch, (tasks[i] for i in todo), 2 * cfg.workers)):
                store.write(batch_name(i), arrays)
                bar.update(len(tasks[i][2]))
    meta = {"source": f"quickdraw:{source.resolve()}", "format": "quickdraw",
            "options": {"categories": names, "recognized_only": cfg.recognized_only,
                        "max_per_class": cfg.max_per_class, "seed": cfg.seed},
            "lines": sum(r.lines for r in reports),
            "skipped_malformed": sum(r.malformed for r in reports),
            "skipped_unrecognized": sum(r.unrecognized for r in reports),
            "malformed_examples": [m for r in reports for m in r.examples][:20], "fit": to_dict(fit)}
    result = write_dataset(out, store, len(tasks), names, meta)
    store.remove()
    return result


def import_quickdraw(source: str | Path, categories: Sequence[str] | None = None,
                     cfg: ImportConfig | None = None, fit: FitConfig | None = None) -> SketchData:
    """:func:`write_quickdraw` into a temporary file, loaded as a :class:`SketchData`."""
    with tempfile.TemporaryDirectory(prefix="driftsketch-import-") as tmp:
        out = Path(tmp) / "import.npz"
        write_quickdraw(out, source, categories, cfg, fit)
        return SketchData.load_npz(out)
