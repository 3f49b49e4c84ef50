"""ControlSketch loader: ``.npz`` files whose ``svg_32s`` holds 32 ``<path d="M x y C ...">`` on a
512 viewport (layout ``<split>/<category>/<id>.npz``; the category is the parent folder's name).

    data = import_controlsketch("controlsketch/train", categories=["cat", "dog"])
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from driftsketch.data.bezier_fit import split_to_count
from driftsketch.data.dataset import DataError, SketchData, read_npz
from driftsketch.data.settings import ImportConfig
from driftsketch.sketch import NUM_SEGMENTS

# An SVG number: sign, digits with at most one dot, optional exponent. Greedy matching splits
# "1.5.5" into 1.5 and .5, "-1-2" into -1 and -2, and keeps "1e-3" whole.
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_TOKEN = re.compile(rf"([MmCcLlHhVvZz])|({_NUMBER})|([\s,]+)|(.)")
_PATH_D = re.compile(r"<path\b[^>]*?\sd\s*=\s*(['\"])(.*?)\1", re.S)
_VIEWBOX = re.compile(r"viewBox\s*=\s*['\"]([^'\"]+)['\"]")
_ARITY = {"M": 2, "L": 2, "C": 6, "H": 1, "V": 1, "Z": 0}


class ControlSketchError(DataError):
    """One ControlSketch file that cannot be read or parsed (the import skips it and counts it)."""


def parse_numbers(text: str) -> list[float]:
    """All SVG numbers in ``text`` (any separators or none)."""
    return [float(m) for m in re.findall(_NUMBER, text)]


def tokenize_path(d: str) -> list[str | float]:
    """Commands (as letters) and numbers of a path ``d`` attribute; raises ControlSketchError on junk."""
    out: list[str | float] = []
    for cmd, num, _sep, bad in _TOKEN.findall(d):
        if bad:
            raise ControlSketchError(f"unexpected character {bad!r} in path data")
        if cmd:
            out.append(cmd)
        elif num:
            out.append(float(num))
    return out


def path_to_cubics(d: str) -> list[np.ndarray]:
    """Cubic segments ``(4, 2)`` (viewport units) of one path; lines become straight cubics."""
    tokens, segs, i = tokenize_path(d), [], 0
    cur = start = np.zeros(2)
    cmd = None
    while i < len(tokens):
        if isinstance(tokens[i], str):
            cmd, i = tokens[i], i + 1
        elif cmd is None or cmd in "Zz":
            raise ControlSketchError("path data must start with a command (M)")
        up, rel = cmd.upper(), cmd.islower()
        n = _ARITY.get(up)
        if n is None:
            raise ControlSketchError(f"unsupported path command {cmd!r}")
        if len(tokens[i:i + n]) < n or any(isinstance(t, str) for t in tokens[i:i + n]):
            raise ControlSketchError(f"command {cmd!r} needs {n} numbers")
        args = np.array(tokens[i:i + n], dtype=float)
        i += n
        base = cur if rel else np.zeros(2)
        if up == "M":
            cur = start = base + args
            cmd = "l" if rel else "L"  # extra pairs after M are line-tos
        elif up == "C":
            p = args.reshape(3, 2) + base
            segs.append(np.stack([cur, p[0], p[1], p[2]]))
            cur = p[2]
        elif up in "LHVZ":
            end = start.copy() if up == "Z" else (
                base + args if up == "L" else
                np.array([(cur[0] if rel else 0) + args[0], cur[1]]) if up == "H" else
                np.array([cur[0], (cur[1] if rel else 0) + args[0]]))
            segs.append(np.stack([cur, cur + (end - cur) / 3, cur + 2 * (end - cur) / 3, end]))
            cur = end
    return segs


def parse_svg_sketch(svg: str, viewport: float = 512.0) -> np.ndarray:
    """SVG string -> ``(32, 4, 2)`` float32 in [-1, 1] (fewer segments are split, more is an error)."""
    box = _VIEWBOX.search(svg)
    x0 = y0 = 0.0
    w = h = viewport
    if box:
        nums = parse_numbers(box.group(1))
        if len(nums) != 4 or nums[2] <= 0 or nums[3] <= 0:
            raise ControlSketchError(f"invalid viewBox {box.group(1)!r}")
        x0, y0, w, h = nums
    paths = _PATH_D.findall(svg)
    if not paths:
        raise ControlSketchError("no <path d=...> elements")
    segs = [c for _q, d in paths for c in path_to_cubics(d)]
    if not segs or len(segs) > NUM_SEGMENTS:
        raise ControlSketchError(f"expected 1-{NUM_SEGMENTS} cubic segments, found {len(segs)}")
    arr = np.stack(split_to_count(segs))
    arr = (arr - [x0, y0]) / [w, h] * 2.0 - 1.0
    if not np.all(np.isfinite(arr)):
        raise ControlSketchError("non-finite coordinates")
    return np.clip(arr, -1.0, 1.0).astype(np.float32)


def read_svg_npz(path: Path, key: str = "svg_32s") -> str:
    """The SVG string stored under ``key`` (no pickle); :class:`DataError` for a damaged file, an empty or
    non-text ``key``."""
    arrays = read_npz(Path(path), (), (key,), what="ControlSketch .npz")
    if key not in arrays:
        raise ControlSketchError(f"{path}: no key {key!r}")
    value = arrays[key]
    if value.size == 0:
        raise ControlSketchError(f"{path}: {key} is empty")
    if value.dtype.kind not in "SU":
        raise ControlSketchError(f"{path}: {key} holds {value.dtype} values, expected an SVG string")
    value = value.reshape(-1)[0].item()
    try:
        text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
    except UnicodeDecodeError:
        raise ControlSketchError(f"{path}: {key} is not UTF-8 text") from None
    if not text.strip():
        raise ControlSketchError(f"{path}: {key} is empty")
    return text


def load_controlsketch_file(path: Path, key: str = "svg_32s") -> np.ndarray:
    """One ControlSketch ``.npz`` as a ``(32, 4, 2)`` sketch; :class:`ControlSketchError` naming the file."""
    svg = read_svg_npz(path, key)
    try:
        return parse_svg_sketch(svg)
    except (ValueError, FloatingPointError, OverflowError) as exc:
        raise ControlSketchError(f"{path}: {key}: {exc}") from None


def import_controlsketch(source: str | Path, categories: Sequence[str] | None = None,
                         cfg: ImportConfig | None = None) -> SketchData:
    """Load every ``.npz`` under ``source`` (category = parent folder); bad files are skipped and counted."""
    import warnings

    cfg, source = cfg or ImportConfig(), Path(source)
    files = [source] if source.is_file() else sorted(source.rglob("*.npz"))
    if not files:
        raise DataError(f"{source}: no .npz files found")
    by_cat: dict[str, list[Path]] = {}
    for f in files:
        by_cat.setdefault(f.parent.name, []).append(f)
    names = list(categories) if categories else sorted(by_cat)
    unknown = [c for c in names if c not in by_cat]
    if unknown:
        raise DataError(f"unknown categories {unknown} in {source}; available: {sorted(by_cat)}")
    rng = np.random.default_rng(cfg.seed)
    beziers, labels, ids, bad = [], [], [], []
    for label, name in enumerate(names):
        chosen = by_cat[name]
        if cfg.max_per_class is not None and len(chosen) > cfg.max_per_class:
            chosen = [chosen[i] for i in np.sort(rng.choice(len(chosen), cfg.max_per_class, replace=False))]
        for f in tqdm(chosen, desc=name, unit="file", mininterval=1.0, leave=False):
            try:
                beziers.append(load_controlsketch_file(f))
            except (DataError, OSError) as exc:  # one bad file is skipped, counted and reported
                reason = str(exc).removeprefix(f"{f}: ")
                bad.append(f"{f}: {reason}")
                if len(bad) <= cfg.max_warnings_per_file:
                    warnings.warn(f"{f}: skipped: {reason}", stacklevel=2)
                continue
            labels.append(label)
            ids.append(str(f.relative_to(source).with_suffix("")) if f != source else f.stem)
    if not beziers:
        raise DataError(f"{source}: no usable ControlSketch files ({len(bad)} bad; e.g. {bad[:1]})")
    meta = {"source": f"controlsketch:{source.resolve()}", "format": "controlsketch",
            "options": {"categories": names, "max_per_class": cfg.max_per_class, "seed": cfg.seed},
            "skipped_malformed": len(bad), "malformed_examples": bad[:20]}
    return SketchData(np.stack(beziers), np.array(labels), names, np.array(ids), meta)
