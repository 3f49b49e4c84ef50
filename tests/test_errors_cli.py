"""Bad input to every CLI: one line naming the file, line or field, exit code 2, no traceback, nothing
already stored changed (docs/errors.md lists each case)."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from driftsketch.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from driftsketch.data import SketchData
from driftsketch.data.cli import main as data_main
from driftsketch.data.controlsketch import import_controlsketch
from driftsketch.data.download import download_categories
from driftsketch.data.quickdraw import MalformedLineWarning, import_quickdraw
from driftsketch.errors import DriftSketchError
from driftsketch.generate import main as generate_main
from driftsketch.model import ModelConfig, SketchFlowTransformer
from driftsketch.train import main as train_main

REPO = Path(__file__).resolve().parent.parent
CLASSES = ["circle", "square"]
TINY = ["--max-steps", "1", "--set", "model.dim=16", "--set", "model.depth=1", "--set", "model.heads=2", "--set", "sample_every=0",
        "--batch-size", "4", "--no-wandb", "--num-threads", "1"]


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A good data set and checkpoint, and damaged or foreign files next to them."""
    d = tmp_path_factory.mktemp("bad-input")
    rng = np.random.default_rng(0)
    good = SketchData(rng.uniform(-1, 1, (8, 32, 4, 2)), np.arange(8) % 2, CLASSES, [f"s{i}" for i in range(8)])
    good.save_npz(d / "good.npz")
    raw = (d / "good.npz").read_bytes()
    (d / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    crc = bytearray(raw)
    crc[raw.index(b"beziers.npy") + 300] ^= 0xFF  # inside the member's data: the zip's CRC no longer matches
    (d / "crc.npz").write_bytes(bytes(crc))
    (d / "text.npz").write_text("not a data set\n")
    (d / "pickle.npz").write_bytes(pickle.dumps({"beziers": [1, 2]}))
    arrays = dict(np.load(d / "good.npz"))
    np.savez(d / "shape.npz", **{**arrays, "beziers": arrays["beziers"][:, :16]})
    nan = arrays["beziers"].copy()
    nan[5, 3, 1, 0] = np.nan
    np.savez(d / "nan.npz", **{**arrays, "beziers": nan})
    torch.manual_seed(0)
    save_checkpoint(d / "model.pt", SketchFlowTransformer(ModelConfig(num_classes=2, dim=16, depth=1, heads=2)),
                    CLASSES, step=1)
    (d / "text.pt").write_text("hello\n")
    (d / "pickle.pt").write_bytes(pickle.dumps({"format": "driftsketch-checkpoint"}))
    torch.save({"format": "driftsketch-checkpoint", "id": "x"}, d / "foreign.pt")
    torch.save([1, 2, 3], d / "list.pt")
    ckpt = load_checkpoint(d / "model.pt")
    ckpt["config"]["model"]["depth"] = "deep"
    torch.save(ckpt, d / "badconfig.pt")
    ckpt = load_checkpoint(d / "model.pt")
    ckpt["model_state_dict"] = {k: v[..., :1] for k, v in ckpt["model_state_dict"].items()}
    ckpt["ema"] = None
    torch.save(ckpt, d / "badweights.pt")
    (d / "a-file").write_text("x")
    return {p.name: p for p in d.iterdir()}


@pytest.mark.parametrize("name, says", [
    ("truncated.npz", "damaged DriftSketch data set"), ("crc.npz", "Bad CRC-32"),
    ("text.npz", "not a zip archive"), ("pickle.npz", "not a zip archive"),
    ("shape.npz", "beziers: expected shape (8, 32, 4, 2), got (8, 16, 4, 2)"),
    ("nan.npz", "NaN or infinite values (1 sketches, e.g. index 5)")])
def test_data_show_names_the_damaged_file(files, name, says, capsys):
    assert data_main(["show", str(files[name])]) == 2
    err = _err(capsys)
    assert str(files[name]) in err and says in err and "pickled" not in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("name", ["truncated.npz", "crc.npz", "text.npz"])
def test_train_refuses_a_damaged_data_set_before_writing(files, name, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(["--data", str(files[name]), "--checkpoint-dir", str(out), *TINY]) == 2
    assert str(files[name]) in _err(capsys) and not any(out.glob("*.pt"))


@pytest.mark.parametrize("name, says", [
    ("text.pt", "not a torch file"), ("pickle.pt", "not a torch file"), ("good.npz", "not a readable"),
    ("foreign.pt", "missing key(s)"), ("list.pt", "no 'format'"), ("badconfig.pt", "config.model"),
    ("badweights.pt", "does not match config.model"), ("missing.pt", "not found")])
def test_generate_refuses_anything_but_a_checkpoint(files, name, says, tmp_path, capsys):
    path = files.get(name, tmp_path / name)
    assert generate_main(["--checkpoint", str(path), "--class", "circle", "--out", str(tmp_path / "o")]) == 2
    err = _err(capsys)
    assert str(path) in err and says in err and not (tmp_path / "o").exists()


def test_checkpoint_load_wraps_any_exception_of_torch_load(files, tmp_path):
    zipped = tmp_path / "zip.pt"
    zipped.write_bytes(files["good.npz"].read_bytes()[:200])  # starts like a zip, then nothing
    for path in (zipped, files["good.npz"]):
        with pytest.raises(CheckpointError, match="not a readable DriftSketch checkpoint"):
            load_checkpoint(path)


def test_resume_with_another_model_config_names_the_field(files, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(["--data", str(files["good.npz"]), "--checkpoint-dir", str(run),
                       *TINY]) == 0
    before = (run / "last.pt").read_bytes()
    capsys.readouterr()
    assert train_main(["--data", str(files["good.npz"]), "--checkpoint-dir", str(run),
                       *TINY, "--set", "model.depth=2", "--resume"]) == 2
    err = _err(capsys)
    assert "last.pt was trained with another model config: model.depth=1 (now 2)" in err
    assert (run / "last.pt").read_bytes() == before


@pytest.mark.parametrize("argv, says", [
    (["--set", "log_every=0"], "log_every: Input should be greater than or equal to 1"),
    (["--set", "warmup_steps=-4"], "warmup_steps: Input should be greater than or equal to 0"),
    (["--set", "holdout_fraction=1.5"], "holdout_fraction: Input should be less than or equal to 1"),
    (["--set", "model.heads=0"], "model.heads"),
    (["--set", "lr"], "expected KEY=VALUE"), (["--set", "=3"], "empty key name"),
    (["--set", "model.depth.x=1"], "depth is not a section"), (["--set", "lr=[1"], "not valid YAML"),
    (["--set", "bogus=1"], "bogus: unknown key"), (["--config", "{missing}"], "config file not found"),
    (["--config", "{text}"], "not a YAML"), (["--config", "{binary}"], "not UTF-8"),
    (["--checkpoint-dir", "{file}"], "is a file, expected a folder")])
def test_train_bad_config_values_name_the_field(files, tmp_path, argv, says, capsys):
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00garbage")
    subst = {"missing": tmp_path / "nope.yaml", "text": tmp_path / "list.yaml", "binary": tmp_path / "bin.yaml",
             "file": files["a-file"]}
    argv = [a.format(**subst) for a in argv]
    says = {"not a YAML": "expected a mapping at the top level"}.get(says, says)
    # --max-steps 1 first: --set comes before the flags, so a test that failed to fail stays short
    assert train_main(["--data", str(files["good.npz"]), "--checkpoint-dir", str(tmp_path / "r"), *TINY, *argv]) == 2
    assert says in _err(capsys)


@pytest.mark.parametrize("argv", [["--steps", "0"], ["--num-samples", "-1"], ["--size", "0"], ["--snap-eps", "-1"]])
def test_count_flags_refuse_zero_and_negatives(files, tmp_path, argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        generate_main(["--checkpoint", str(files["model.pt"]), "--class", "circle", "--out", str(tmp_path), *argv])
    assert exit_.value.code == 2 and argv[0] in _err(capsys)


def test_train_max_steps_zero_is_refused(files, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_main(["--data", str(files["good.npz"]), "--checkpoint-dir", str(tmp_path), "--max-steps", "0"])
    assert exit_.value.code == 2 and "--max-steps: expected a whole number >= 1, got 0" in _err(capsys)


def test_out_that_is_a_file_is_refused(files, tmp_path, capsys):
    a_file = str(files["a-file"])
    assert generate_main(["--checkpoint", str(files["model.pt"]), "--class", "circle", "--out", a_file]) == 2
    assert f"--out {a_file}: {a_file} is a file, expected a folder" in _err(capsys)
    assert data_main(["builtin", "--out", str(tmp_path), "--per-class", "1"]) == 2
    assert "is a folder, expected a file name" in _err(capsys)
    assert data_main(["builtin", "--out", f"{a_file}/x.npz", "--per-class", "1"]) == 2
    assert f"{a_file} is a file, expected a folder" in _err(capsys)
    assert files["a-file"].read_text() == "x"


def test_download_category_cannot_escape_the_folder(tmp_path, capsys):
    out = tmp_path / "dl"
    for bad in ("../evil", "a/b", "..", ".hidden", "x\\..\\y", "nul\0", ""):
        with pytest.raises(DriftSketchError, match="not a plain category name|no categories"):
            download_categories([bad] if bad else [], out, base_url="http://127.0.0.1:9")
    assert data_main(["download", "cat,../../evil", "--out", str(out), "--base-url", "http://127.0.0.1:9"]) == 2
    assert "'../../evil': not a plain category name" in _err(capsys)
    assert not out.exists() and not (tmp_path / "evil.ndjson").exists()


def test_broken_ndjson_lines_are_skipped_and_counted_with_file_and_line(tmp_path):
    good = {"key_id": "1", "word": "box", "recognized": True, "drawing": [[[0, 100, 100], [0, 0, 100]]]}
    lines = [json.dumps(good).encode(), b"\xff\xfe not utf-8", b"[" * 5000 + b"]" * 5000, b'{"drawing": "x"}',
             b'{"drawing": [[[1e400], [2]]]}', b'{"drawing": [[["a"], [1]]]}', b"null", json.dumps(good).encode()]
    (tmp_path / "box.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = import_quickdraw(tmp_path, ["box"])
    assert len(data) == 2 and data.meta["skipped_malformed"] == 6 and data.meta["lines"] == 8
    where = sorted(int(str(w.message).split(":")[1]) for w in caught if w.category is MalformedLineWarning)
    assert where == [2, 3, 4, 5, 6, 7]


def test_controlsketch_import_skips_damaged_files_and_goes_on(tmp_path):
    svg = '<svg><path d="M0 0 C 128 128 384 384 512 512"/></svg>'
    for cat in ("cat", "dog"):
        (tmp_path / cat).mkdir()
        for i in range(2):
            np.savez(tmp_path / cat / f"{i}.npz", svg_32s=np.array(svg))
    raw = (tmp_path / "cat" / "0.npz").read_bytes()
    (tmp_path / "cat" / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    np.savez(tmp_path / "dog" / "empty.npz", svg_32s=np.array([], dtype=str))
    np.savez(tmp_path / "dog" / "garbage.npz", svg_32s=np.array('<svg><path d="M0 0 C 1 2 $$ 3"/></svg>'))
    np.savez(tmp_path / "dog" / "numbers.npz", svg_32s=np.zeros(3))
    (tmp_path / "dog" / "text.npz").write_text("svg?")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = import_controlsketch(tmp_path)
    assert data.class_counts() == {"cat": 2, "dog": 2} and data.meta["skipped_malformed"] == 5
    said = {str(w.message).split(": skipped: ")[0].rsplit("/", 1)[-1]: str(w.message) for w in caught}
    for name, why in (("truncated", "damaged ControlSketch .npz"), ("empty", "svg_32s is empty"),
                      ("garbage", "svg_32s: unexpected character '$'"), ("numbers", "expected an SVG string"),
                      ("text", "not a zip archive")):
        assert why in said[f"{name}.npz"]


def test_train_dpo_says_the_preference_folder_is_missing(files, tmp_path, capsys):
    from dpo.cli import main as dpo_main

    argv = ["--base-checkpoint", str(files["model.pt"]), "--checkpoint-dir", str(tmp_path / "run"), "--no-wandb"]
    assert dpo_main([*argv, "--preference-dir", str(tmp_path / "nowhere")]) == 2
    err = _err(capsys)
    assert f"preference folder {tmp_path / 'nowhere'} does not exist" in err and "usable" not in err
    assert dpo_main([*argv, "--preference-dir", str(files["a-file"])]) == 2
    assert "is a file" in _err(capsys)
    assert dpo_main([*argv, "--set", "beta=0"]) == 2
    assert "beta: Input should be greater than 0" in _err(capsys)


def test_models_and_labelstudio_bad_input(files, tmp_path, capsys):
    from driftsketch.registry_cli import main as models_main
    from labeling.cli import main as ls_main

    assert models_main(["--registry", str(files["a-file"]), "list"]) == 2
    assert "is a file" in _err(capsys)
    assert ls_main(["queue", "--set", "pull.page_size"]) == 2  # was a traceback: config loaded outside the try
    assert "expected KEY=VALUE" in _err(capsys)
    assert ls_main(["queue", "--config", str(files["good.npz"])]) == 2
    assert str(files["good.npz"]) in _err(capsys)
    assert ls_main(["queue", "--set", "bogus.x=1"]) == 2
    assert "bogus: unknown key" in _err(capsys)
    for bad, field in (("pull.page_size=0", "pull.page_size"), ("bot.noise=1.5", "bot.noise"),
                       ("client.read_timeout_s=0", "client.read_timeout_s"), ("server.port=70000", "server.port")):
        assert ls_main(["queue", "--set", bad]) == 2
        assert f"{field}: Input should be" in _err(capsys)
    with pytest.raises(SystemExit) as exit_:
        ls_main(["push", "--model", str(files["model.pt"]), "--pairs", "-1"])
    assert exit_.value.code == 2 and "--pairs: expected a whole number >= 0" in _err(capsys)


SCRIPTS = ["driftsketch-data", "driftsketch-train", "driftsketch-generate", "driftsketch-eval",
           "driftsketch-train-dpo", "driftsketch-labelstudio", "driftsketch-models", "driftsketch-annotation-events"]


def test_every_console_script_goes_through_run_cli():
    """pyproject's [project.scripts] entry points each call run_cli (the one error path)."""
    import importlib
    import inspect
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert sorted(scripts) == sorted(SCRIPTS)
    for target in scripts.values():
        module, func = target.split(":")
        assert "run_cli(" in inspect.getsource(getattr(importlib.import_module(module), func)), target


@pytest.mark.slow
def test_console_scripts_print_one_line_and_exit_2(files, tmp_path):
    """As a user runs them (subprocess): one line naming the bad input, exit code 2, no traceback."""
    cases = {
        "driftsketch-data": (["show", str(files["crc.npz"])], str(files["crc.npz"])),
        "driftsketch-train": (["--data", str(files["truncated.npz"]), "--checkpoint-dir", str(tmp_path / "t")],
                              str(files["truncated.npz"])),
        "driftsketch-generate": (["--checkpoint", str(files["text.pt"]), "--class", "a", "--out", str(tmp_path)],
                                 str(files["text.pt"])),
        "driftsketch-eval": (["evaluate", "--checkpoint", str(files["model.pt"]), "--data", str(files["good.npz"]),
                              "--classifier", str(files["pickle.pt"]), "--out", str(tmp_path / "e")],
                             str(files["pickle.pt"])),
        "driftsketch-train-dpo": (["--base-checkpoint", str(files["model.pt"]), "--preference-dir",
                                   str(tmp_path / "none"), "--checkpoint-dir", str(tmp_path / "d")], "does not exist"),
        "driftsketch-labelstudio": (["pull", "--set", "pull.page_size"], "pull.page_size"),
        "driftsketch-models": (["--registry", str(files["a-file"]), "list"], str(files["a-file"])),
        "driftsketch-annotation-events": (["--config", str(files["text.pt"])], str(files["text.pt"])),
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    for script, (argv, says) in cases.items():
        exe = Path(sys.executable).parent / script
        out = subprocess.run([str(exe), *argv], capture_output=True, text=True, env=env, timeout=120)
        lines = [ln for ln in out.stderr.splitlines() if "Warning" not in ln and ln.strip()]
        assert out.returncode == 2 and "Traceback" not in out.stderr, (script, out.stderr[-2000:])
        assert lines[-1].startswith(f"{script}: error: ") and says in lines[-1], (script, out.stderr[-2000:])


def test_damaged_pull_cursor_is_ignored_not_fatal(tmp_path):
    """The cursor only makes fetches small: a damaged one means one full fetch (exact by the stored keys)."""
    from labeling.pull import load_cursor

    path = tmp_path / "cursor.json"
    for text in ('{"url": "x", "projects": {"3": "2026-01-01T00:00:00Z"}}', "{torn", "[1, 2]",
                 '{"projects": {"3": 5}}'):
        path.write_text(text)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cursor = load_cursor(path)
        good = text.startswith('{"url"')
        assert (cursor == json.loads(text)) if good else (cursor == {} and "unreadable pull cursor" in
                                                          str(caught[0].message))
