"""Fuzz targets: every parser of outside data, a hypothesis strategy of inputs for it, and the property.

The property is the same for all: an input is accepted (and what comes out is well formed), refused
with one of the project's own errors (a :class:`DriftSketchError` subclass naming what is wrong), or
skipped and counted. Anything else (a KeyError, an IndexError, a BadZipFile, a RecursionError, ...) is a
finding. ``tests/test_fuzz_parsers.py`` runs each target with a few hundred inputs;
``benchmarks/fuzz_parsers.py`` runs >= 10,000 per target and prints the counts (importable because
tests/conftest.py, and the benchmark, put tests/ on sys.path).

    target = TARGETS["quickdraw_ndjson"]
    outcome = target.check(example)    # "accepted" / "refused" / "skipped"; a finding raises
"""
from __future__ import annotations

import io
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np
import yaml
from hypothesis import strategies as st

from driftsketch.errors import DriftSketchError

# ---- shared strategies --------------------------------------------------------------------------

SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=20))
JSON_VALUES = st.recursive(SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                           max_size=4), max_leaves=12)
DEEP = "__DEEP__"  # a placeholder value replaced by 1-3000 nested brackets in the JSON text


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def json_text(obj: Any, depth: int) -> str:
    """``obj`` as JSON (NaN/Infinity allowed, as Python writes them), with ``DEEP`` placeholders nested."""
    return json.dumps(obj, allow_nan=True).replace(json.dumps(DEEP), _nested(depth))


@st.composite
def mutated(draw, template: dict, extra_keys: tuple[str, ...] = ()) -> dict:
    """``template`` with 0-4 fields deleted, replaced (by any JSON value or the deep placeholder) or added."""
    out = json.loads(json.dumps(template))
    keys = list(template) + list(extra_keys)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 4]))):  # untouched ~40 %: the deeper code runs too
        op = draw(st.sampled_from(["delete", "replace", "replace", "add", "deep"]))
        key = draw(st.sampled_from(keys) if op != "add" else st.text(max_size=10) | st.sampled_from(keys))
        if op == "delete":
            out.pop(key, None)
        elif op == "deep":
            out[key] = DEEP
        else:
            out[key] = draw(JSON_VALUES)
    return out


def raw_bytes(valid: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, or ``valid`` truncated, with bytes flipped, or with garbage appended."""
    n = len(valid)

    @st.composite
    def damaged(draw) -> bytes:
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 6))):
            i = draw(st.integers(0, n - 1))
            data[i] = draw(st.integers(0, 255))
        return bytes(data)

    return st.one_of(st.binary(max_size=200), st.integers(0, n).map(lambda k: valid[:k]), damaged(),
                     st.binary(min_size=1, max_size=50).map(lambda b: valid + b), st.just(valid))


class Scratch:
    """One temporary folder per process for the file-based targets (files are overwritten per input)."""

    _dir: Path | None = None

    @classmethod
    def path(cls, name: str) -> Path:
        if cls._dir is None:
            cls._dir = Path(tempfile.mkdtemp(prefix="driftsketch-fuzz-"))
        return cls._dir / name


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@dataclass
class Target:
    """A parser under fuzzing: ``strategy`` draws inputs, ``check`` feeds one and returns the outcome."""

    name: str
    what: str
    strategy: st.SearchStrategy
    run: Callable[[Any], str]

    def check(self, example: Any) -> str:
        """The outcome for ``example``: "accepted", "skipped" or "refused" (a DriftSketchError); any other
        exception propagates: a finding."""
        try:
            return self.run(example)
        except DriftSketchError:
            return "refused"


# ---- Quick, Draw! ndjson lines ------------------------------------------------------------------

QD_RECORD = {"word": "cat", "countrycode": "DE", "timestamp": "2017-03-01 20:41:36.70725 UTC", "recognized": True,
             "key_id": "5201136883597312", "drawing": [[[0, 10, 20], [5, 15, 25]], [[3, 4], [7, 8], [0, 10]]]}
COORD = (st.integers(-300, 600) | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-2**1100, 2**1100)
         | SCALARS)


@st.composite
def qd_drawing(draw) -> list:
    strokes = []
    for _ in range(draw(st.integers(0, 4))):
        n = draw(st.integers(0, 6))
        xs = draw(st.lists(COORD if draw(st.booleans()) else st.integers(0, 255), min_size=n, max_size=n))
        ys = draw(st.lists(COORD if draw(st.booleans()) else st.integers(0, 255), min_size=n,
                           max_size=n + draw(st.integers(0, 1))))
        stroke = [xs, ys] + ([draw(st.lists(st.integers(0, 9999), max_size=n))] if draw(st.booleans()) else [])
        strokes.append(stroke if draw(st.integers(0, 9)) else draw(JSON_VALUES))
    return strokes


@st.composite
def qd_line(draw) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=120))
    if kind == 1:
        return draw(st.text(max_size=120)).encode("utf-8", "surrogatepass")
    rec = draw(mutated(QD_RECORD))
    if kind >= 4:
        rec["drawing"] = draw(qd_drawing())
    return json_text(rec, draw(st.integers(1, 3000))).encode()


def _run_qd_line(raw: bytes) -> str:
    from driftsketch.data.quickdraw import parse_line

    text = raw.decode("utf-8", errors="replace")  # what scan_block and read_lines do
    status, what, strokes = parse_line(text, recognized_only=True)
    quick, _, _ = parse_line(text, recognized_only=True, strokes=False)
    assert quick == status, f"pass 1 says {quick}, pass 2 says {status}: the import would fail between them"
    if status == "malformed":
        assert isinstance(what, Exception) and str(what)
        return "skipped"
    if status == "unrecognized":
        return "skipped"
    assert strokes and all(s.ndim == 2 and s.shape[1] == 2 and len(s) and np.isfinite(s).all() for s in strokes)
    return "accepted"


FIT_COORD = (st.integers(0, 255) | st.floats(-1e6, 1e6) | st.sampled_from([1e300, -1e300, 1e-300, 0.0, 5e-324])
             | st.integers(-2**62, 2**62))


@st.composite
def qd_strokes(draw) -> list[np.ndarray]:
    """Drawings that parse_line accepts, including degenerate and extreme ones (a dot, a line, 1e300)."""
    strokes = []
    for _ in range(draw(st.integers(1, 8) | st.integers(30, 36))):
        n = draw(st.integers(1, 12))
        xy = draw(st.lists(st.tuples(FIT_COORD, FIT_COORD), min_size=n, max_size=n))
        if draw(st.integers(0, 3)) == 0:
            xy = [xy[0]] * n  # every point the same
        strokes.append(np.array(xy, dtype=np.float64))
    return strokes


def _run_qd_fit(strokes: list[np.ndarray]) -> str:
    from driftsketch.data.bezier_fit import fit_drawings

    batch = fit_drawings([strokes], measure=np.array([True]))
    if batch.errors[0]:
        assert isinstance(batch.errors[0], str)
        return "skipped"  # the import counts it under skipped_fit
    finite = np.isfinite(batch.sketches[0]).all()
    return "accepted" if finite else "skipped"  # non-finite: fit_batch skips it ("fit gave non-finite values")


# ---- ControlSketch SVG text and .npz files -------------------------------------------------------

SVG_NUMBER = (st.floats(allow_nan=True, allow_infinity=True).map(repr) | st.integers(-10**6, 10**6).map(str)
              | st.sampled_from(["1e-3", ".5", "-.5e2", "1.5.5", "-1-2", "1e400", "+7", "1E+2", "0x10", "--1", "."]))
SVG_TOKEN = st.sampled_from(list("MmCcLlHhVvZzQqAaSsTt")) | SVG_NUMBER | st.sampled_from([" ", ",", "\n", "\t"])


@st.composite
def svg_text(draw) -> str:
    if draw(st.integers(0, 5)) == 0:
        return draw(st.text(max_size=200))
    paths = []
    for _ in range(draw(st.integers(0, 40))):
        if draw(st.booleans()):  # a well-formed cubic, possibly with odd numbers
            nums = draw(st.lists(SVG_NUMBER if draw(st.integers(0, 4)) == 0 else st.integers(0, 512).map(str),
                                 min_size=8, max_size=8))
            d = f"M{nums[0]} {nums[1]}C{' '.join(nums[2:])}"
        else:
            d = "".join(draw(st.lists(SVG_TOKEN, max_size=30)))
        quote = draw(st.sampled_from(['"', "'"]))
        paths.append(f"<path stroke=\"black\" d={quote}{d}{quote}/>")
    box = ""
    if draw(st.booleans()):
        box = f' viewBox="{" ".join(draw(st.lists(SVG_NUMBER, max_size=5)))}"'
    return f"<svg{box}>{''.join(paths)}{draw(st.text(max_size=10))}</svg>"


def _run_svg(svg: str) -> str:
    from driftsketch.data.controlsketch import parse_svg_sketch

    sketch = parse_svg_sketch(svg)
    assert sketch.shape == (32, 4, 2) and sketch.dtype == np.float32
    assert np.isfinite(sketch).all() and np.abs(sketch).max() <= 1.0
    return "accepted"


VALID_SVG = "<svg>" + "".join(f'<path d="M{i} {i} C 1 2 3 4 {i + 5} {i + 6}"/>' for i in range(32)) + "</svg>"


@st.composite
def controlsketch_npz(draw) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(raw_bytes(_npz_bytes(svg_32s=np.array(VALID_SVG), caption=np.array("a cat"))))
    value = draw(st.one_of(
        svg_text().map(np.array), svg_text().map(lambda s: np.array(s.encode("utf-8", "surrogatepass"))),
        st.lists(svg_text(), max_size=3).map(lambda v: np.array(v, dtype=str)),
        st.binary(max_size=30).map(lambda b: np.array(b)),
        st.lists(st.floats(), max_size=4).map(np.array), st.just(np.array([], dtype=str)), st.just(np.array(""))))
    key = "svg_32s" if draw(st.integers(0, 5)) else draw(st.sampled_from(["svg", "svg_64s", "x"]))
    return _npz_bytes(**{key: value})


def _run_controlsketch_npz(data: bytes) -> str:
    from driftsketch.data.controlsketch import load_controlsketch_file

    path = Scratch.path("sketch.npz")
    path.write_bytes(data)
    sketch = load_controlsketch_file(path)
    assert sketch.shape == (32, 4, 2) and np.isfinite(sketch).all()
    return "accepted"


# ---- data set .npz (driftsketch-data show / train --data) ---------------------------------------

def _valid_dataset() -> bytes:
    from driftsketch.data.dataset import atomic_save_npz, dataset_arrays

    path = Scratch.path("valid-dataset.npz")
    rng = np.random.default_rng(0)
    atomic_save_npz(path, dataset_arrays(rng.uniform(-1, 1, (3, 32, 4, 2)).astype(np.float32), np.array([0, 1, 1]),
                                         ["a", "b"], np.array(["x", "y", "z"]), {"source": "fuzz"}))
    return path.read_bytes()


ARRAYS = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=6).map(np.array),
    st.lists(st.integers(-5, 5), max_size=6).map(np.array), st.lists(st.text(max_size=4), max_size=4).map(np.array),
    st.tuples(st.integers(0, 4), st.sampled_from([(32, 4, 2), (16, 4, 2), (32, 4), ()])).map(
        lambda t: np.zeros((t[0], *t[1]), np.float32)), st.just(np.array(np.nan)), JSON_VALUES.map(
        lambda v: np.array(json.dumps(v))))


@st.composite
def dataset_npz(draw) -> bytes:
    if draw(st.booleans()):
        return draw(raw_bytes(_DATASET()))
    arrays = {"beziers": np.zeros((3, 32, 4, 2), np.float32), "labels": np.array([0, 1, 1]),
              "class_names": np.array(["a", "b"]), "source_ids": np.array(["x", "y", "z"]),
              "meta_json": np.array("{}")}
    for key in draw(st.lists(st.sampled_from(list(arrays)), max_size=3)):
        if draw(st.booleans()):
            arrays.pop(key, None)
        else:
            arrays[key] = draw(ARRAYS)
    return _npz_bytes(**arrays)


_DATASET_CACHE: list[bytes] = []


def _DATASET() -> bytes:  # noqa: N802 - built once, lazily (strategies are defined at import)
    if not _DATASET_CACHE:
        _DATASET_CACHE.append(_valid_dataset())
    return _DATASET_CACHE[0]


def _run_dataset_npz(data: bytes) -> str:
    from driftsketch.data.dataset import SketchData

    path = Scratch.path("data.npz")
    path.write_bytes(data)
    loaded = SketchData.load_npz(path)
    n = len(loaded)
    assert loaded.beziers.shape == (n, 32, 4, 2) and np.isfinite(loaded.beziers).all()
    assert isinstance(loaded.meta, dict) and len(loaded.source_ids) == n
    from driftsketch.data.cli import summary

    summary(loaded)  # what `driftsketch-data show` prints
    return "accepted"


# ---- preference store session lines (JSONL) -----------------------------------------------------

PREF_RECORD = {"id": "r-0001", "timestamp": "2026-01-01T00:00:00Z", "comparison_type": "pairwise",
               "class_label": 0, "class_name": "cat", "beziers_a": "beziers/s1.npy", "beziers_b": "beziers/s2.npy",
               "noise_a": "noise/s1.npy", "noise_b": None, "preference": "a", "rating": None, "both_bad": False,
               "checkpoint": "ck", "annotator": "a@b", "source": {"system": "test", "n": 1}, "lead_time": 3.5,
               "supersedes": None, "left": "a", "round_id": "r1"}
PATHS = st.sampled_from(["../x.npy", "/etc/passwd", "beziers/../../x", "C:/x", "a\\b", "", "beziers/ok.npy",
                         "beziers/./../beziers/x.npy", "./x", "beziers//x", "~/x"]) | st.text(max_size=20)


@st.composite
def pref_record(draw) -> dict:
    rec = draw(mutated(PREF_RECORD))
    for key in ("beziers_a", "beziers_b", "noise_a"):
        if draw(st.integers(0, 3)) == 0:
            rec[key] = draw(PATHS)
    if draw(st.integers(0, 4)) == 0:
        rec["comparison_type"], rec["rating"] = "absolute", draw(st.integers(-1, 7) | SCALARS)
    if draw(st.integers(0, 5)) == 0:
        rec["source"] = {"deep": DEEP}
    return rec


@st.composite
def session_file(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 5))
        if kind == 0:
            lines.append(draw(st.binary(max_size=80)).replace(b"\n", b" "))
        else:
            lines.append(json_text(draw(pref_record()), draw(st.integers(1, 3000))).encode())
    return b"\n".join(lines) + (b"\n" if draw(st.booleans()) else b"")


def _run_session(data: bytes) -> str:
    from dpo.records import latest_of_chains
    from dpo.store import _read_session

    path = Scratch.path("session.jsonl")
    path.write_bytes(data)
    records, issues = _read_session(path)
    nonblank = sum(1 for ln in data.split(b"\n") if ln.strip())
    assert len(records) + len(issues) == nonblank, "a line was neither read nor reported"
    for rec in records:  # an accepted record's array paths stay inside the store
        for rel in (rec.beziers_a, rec.beziers_b, rec.noise_a, rec.noise_b):
            if rel is not None:
                assert not PurePosixPath(rel).is_absolute() and ".." not in PurePosixPath(rel).parts
        json.loads(rec.to_json_line())
        assert rec.source_key
    latest_of_chains(records)
    return "accepted" if records and not issues else "skipped"


# ---- Label Studio export / annotation JSON and label configs --------------------------------------

LS_ANNOTATION = {"id": 7, "completed_by": 1, "updated_at": "2026-01-01T10:00:00.123456Z", "lead_time": 2.5,
                 "was_cancelled": False,
                 "result": [{"from_name": "preference", "to_name": "a", "type": "choices", "value": {"choices": ["A"]}},
                            {"from_name": "flags", "to_name": "a", "type": "choices",
                             "value": {"choices": ["both_bad"]}},
                            {"from_name": "rating", "to_name": "a", "type": "rating", "value": {"rating": 4}}]}
LS_DATA = {"beziers_a": "beziers/s1.npy", "beziers_b": "beziers/s2.npy", "noise_a": "noise/s1.npy",
           "class_label": 1, "class_name": "cat", "checkpoint": "ck", "left": "b", "round_id": "r1"}


@st.composite
def ls_result_item(draw) -> Any:
    item = json.loads(json.dumps(draw(st.sampled_from(LS_ANNOTATION["result"]))))
    if draw(st.booleans()):
        item["value"] = draw(st.sampled_from([{"choices": draw(st.lists(st.sampled_from(["A", "B", "tie", "x"]) |
                                                                         SCALARS, max_size=3))},
                                              {"rating": draw(st.integers(-2, 9) | SCALARS)}]) | JSON_VALUES)
    return item if draw(st.integers(0, 9)) else draw(JSON_VALUES)


@st.composite
def ls_export(draw) -> bytes:
    kind = draw(st.integers(0, 7))
    if kind == 0:
        return draw(st.binary(max_size=100))
    tasks = []
    for i in range(draw(st.integers(0, 3))):
        ann = draw(mutated(LS_ANNOTATION, ("ground_truth",)))
        if draw(st.booleans()):
            ann["result"] = draw(st.lists(ls_result_item(), max_size=3))
        data = draw(mutated(LS_DATA))
        if draw(st.integers(0, 3)) == 0:
            data["beziers_a"] = draw(PATHS)
        task = draw(mutated({"id": i + 1, "updated_at": "2026-01-01T10:00:00Z", "data": data,
                             "annotations": [ann] * draw(st.integers(0, 2))}))
        tasks.append(task if draw(st.integers(0, 15)) else draw(JSON_VALUES))
    body = tasks if kind > 1 else draw(JSON_VALUES)
    return json_text(body, draw(st.integers(1, 3000))).encode()


def _run_ls_export(body: bytes) -> str:
    from labeling.export import parse_export
    from labeling.pull import annotation_key, make_record

    names = {"preference": "preference", "flags": "flags", "rating": "rating"}
    made = 0
    for task in parse_export(body):
        for ann in task.annotations:
            for kind in ("pairwise", "rating"):
                try:
                    rec = make_record(kind, 3, task, ann, names, {1: "a@b"}, "http://127.0.0.1:8080", None)
                except DriftSketchError:
                    continue
                if rec is not None:
                    made += 1
                    assert rec.source["annotation"] == int(ann["id"])
                    assert annotation_key(3, ann["id"], ann["updated_at"])
    return "accepted" if made else "skipped"


LABEL_CONFIG = ('<View><Image name="a" value="$image_a"/><Choices name="preference" toName="a">'
                '<Choice value="A"/><Choice value="B"/><Choice value="tie"/></Choices></View>')


@st.composite
def label_config(draw) -> str:
    if draw(st.booleans()):
        return draw(st.text(max_size=100))
    cut = draw(st.integers(0, len(LABEL_CONFIG)))
    return LABEL_CONFIG[:cut] + draw(st.text(max_size=20)) + LABEL_CONFIG[cut:]


def _run_label_config(xml: str) -> str:
    from labeling.projects import control_names, project_kind

    control_names(xml)
    assert project_kind(xml) in ("pairwise", "rating")
    return "accepted"


# ---- checkpoint metadata and checkpoint files ----------------------------------------------------

_CKPT: list[dict] = []


def _tiny_checkpoint() -> dict:
    if not _CKPT:
        import torch

        from driftsketch.checkpoint import load_checkpoint, save_checkpoint
        from driftsketch.model import ModelConfig, SketchFlowTransformer

        torch.manual_seed(0)
        model = SketchFlowTransformer(ModelConfig(num_classes=2, dim=8, depth=1, heads=2))
        path = Scratch.path("tiny.pt")
        save_checkpoint(path, model, ["a", "b"], step=3)
        _CKPT.append(load_checkpoint(path))
        _CKPT.append(path.read_bytes())
    return _CKPT[0]


MODEL_FIELDS = ("num_classes", "dim", "depth", "heads", "mlp_ratio", "dropout", "codec", "gap_scale", "handle_scale")
META_VALUES = (SCALARS | JSON_VALUES | st.integers(-3, 70) | st.sampled_from(["relative", "absolute", "x"]))


@st.composite
def checkpoint_meta(draw) -> dict:
    import torch

    base = _tiny_checkpoint()
    ckpt = {k: v for k, v in base.items()}
    ckpt["config"] = json.loads(json.dumps(base["config"]))
    ckpt["model_state_dict"] = dict(base["model_state_dict"])
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from(["top", "model", "class_names", "state", "state"]))
        if where == "top":
            key = draw(st.sampled_from([*base, "format", "format_version"]))
            if draw(st.booleans()):
                ckpt.pop(key, None)
            else:
                ckpt[key] = draw(META_VALUES)
        elif where == "model" and isinstance(ckpt.get("config"), dict):
            if isinstance(ckpt["config"].get("model"), dict):  # "top" may have put any JSON value at "config"
                ckpt["config"]["model"][draw(st.sampled_from(MODEL_FIELDS))] = draw(META_VALUES)
        elif where == "class_names" and isinstance(ckpt.get("config"), dict):
            ckpt["config"]["class_names"] = draw(st.lists(st.text(max_size=5), max_size=4) | META_VALUES)
        elif isinstance(ckpt.get("model_state_dict"), dict) and ckpt["model_state_dict"]:
            name = draw(st.sampled_from(sorted(ckpt["model_state_dict"])))
            shape = draw(st.lists(st.integers(0, 9), max_size=3))
            ckpt["model_state_dict"][name] = torch.zeros(shape) if draw(st.integers(0, 5)) else draw(SCALARS)
            if draw(st.integers(0, 3)) == 0:
                ckpt["model_state_dict"].pop(name)
    return ckpt


def _run_checkpoint_meta(ckpt: dict) -> str:
    from driftsketch.checkpoint import build_model, check_checkpoint

    check_checkpoint(ckpt, "fuzz.pt")
    model = build_model(ckpt, where="fuzz.pt")  # accepted metadata must give a working model
    assert model.class_names == ckpt["config"]["class_names"]
    return "accepted"


@st.composite
def checkpoint_file(draw) -> bytes:
    _tiny_checkpoint()
    return draw(raw_bytes(_CKPT[1]))


def _run_checkpoint_file(data: bytes) -> str:
    from driftsketch.checkpoint import load_model

    path = Scratch.path("fuzz.pt")
    path.write_bytes(data)
    load_model(path)
    return "accepted"


# ---- YAML config files and --set overrides --------------------------------------------------------

CONFIG_KEYS = ("max_steps", "lr", "batch_size", "model", "model.depth", "model.dim", "model.heads", "sampling",
               "sampling.num_steps", "holdout_fraction", "augment.scale", "data", "wandb", "seed", "bogus", "")
YAML_VALUES = st.sampled_from(["0", "-1", "1", "3.5", "nan", ".inf", "null", "[1, 2]", "{a: 1}", "yes", "'x'", "[",
                               "!!python/object:os.system x", "*alias", "&a [*a]", "2026-01-01", "0x1F", "1e999",
                               "~", ": :", "- a"]) | st.text(max_size=10)


@st.composite
def config_input(draw) -> tuple[str, str, list[str]]:
    cls = draw(st.sampled_from(["train", "dpo", "data", "eval", "labelstudio"]))
    if draw(st.integers(0, 2)) == 0:  # the shipped defaults plus plausible overrides: values reach validation
        keys = {"train": ["max_steps", "lr", "model.depth", "sampling.num_steps", "holdout_fraction"],
                "dpo": ["epochs", "beta", "num_t", "amplify.group_size", "annotators.prior_accuracy"],
                "data": ["importer.workers", "fit.tolerance_px", "builtin.per_class", "importer.max_per_class"],
                "eval": ["evaluate.num_per_class", "classifier.steps", "classifier.widths", "render.stroke_width"],
                "labelstudio": ["pull.page_size", "server.port", "bot.noise", "push.image_size"]}[cls]
        values = st.integers(-2, 5).map(str) | st.sampled_from(["0.5", "1.5", "null", "[8, 16]", "x", "nan", "1e9"])
        return cls, "", [f"{draw(st.sampled_from(keys))}={draw(values)}" for _ in range(draw(st.integers(1, 3)))]
    if draw(st.booleans()):
        text = draw(st.text(max_size=150))
    else:
        doc: dict = {}
        for _ in range(draw(st.integers(0, 4))):
            doc[draw(st.sampled_from(CONFIG_KEYS) | st.text(max_size=6))] = draw(JSON_VALUES)
        try:
            text = yaml.safe_dump(doc)
        except yaml.YAMLError:
            text = "{}"
        if draw(st.booleans()):
            text += draw(st.sampled_from(["\n- x", ": y", "\n  bad: [", "\t", "\n" + _nested(draw(st.integers(1, 3000)))]))
    overrides = [f"{draw(st.sampled_from(CONFIG_KEYS) | st.text(max_size=8))}"
                 f"{draw(st.sampled_from(['=', '', '==', ' = ']))}{draw(YAML_VALUES)}"
                 for _ in range(draw(st.integers(0, 3)))]
    return cls, text, overrides


def _run_config(example: tuple[str, str, list[str]]) -> str:
    from dpo.config import DPOConfig
    from driftsketch.config import load_config
    from driftsketch.data.settings import DataConfig
    from driftsketch.evaluation.settings import EvalConfig
    from driftsketch.train_config import TrainConfig
    from labeling.config import LabelStudioConfig

    cls_name, text, overrides = example
    cls = {"train": TrainConfig, "dpo": DPOConfig, "data": DataConfig, "eval": EvalConfig,
           "labelstudio": LabelStudioConfig}[cls_name]
    path = Scratch.path("config.yaml")
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    cfg = load_config(cls, path, overrides)
    assert isinstance(cfg, cls)
    for name in ("max_steps", "batch_size", "epochs"):
        if hasattr(cfg, name):
            assert getattr(cfg, name) >= 1 and not math.isnan(getattr(cfg, name))
    return "accepted"


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("quickdraw_ndjson", "Quick, Draw! ndjson line (parse_line, both import passes)", qd_line(), _run_qd_line),
    Target("quickdraw_fit", "Quick, Draw! drawing -> 32 Beziers (fit_drawings: skip, never crash)", qd_strokes(),
           _run_qd_fit),
    Target("controlsketch_svg", "ControlSketch SVG text (parse_svg_sketch)", svg_text(), _run_svg),
    Target("controlsketch_npz", "ControlSketch .npz file (load_controlsketch_file)", controlsketch_npz(),
           _run_controlsketch_npz),
    Target("dataset_npz", "data set .npz (SketchData.load_npz + summary)", dataset_npz(), _run_dataset_npz),
    Target("preference_jsonl", "preference store session file (_read_session, PreferenceRecord)", session_file(),
           _run_session),
    Target("labelstudio_export", "Label Studio export JSON + annotations (parse_export, make_record)", ls_export(),
           _run_ls_export),
    Target("labelstudio_config", "Label Studio label config XML (control_names, project_kind)", label_config(),
           _run_label_config),
    Target("checkpoint_meta", "checkpoint metadata (check_checkpoint, build_model)", checkpoint_meta(),
           _run_checkpoint_meta),
    Target("checkpoint_file", "checkpoint file bytes (load_model, torch.load weights_only)", checkpoint_file(),
           _run_checkpoint_file),
    Target("yaml_config", "YAML config file + --set overrides (load_config of 5 config classes)", config_input(),
           _run_config),
]}
