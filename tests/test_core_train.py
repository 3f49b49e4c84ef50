"""End-to-end CLI behaviour of training, resuming and generation on the built-in data (tiny model)."""
import json

import numpy as np
import pytest

from driftsketch.checkpoint import load_checkpoint, load_model
from driftsketch.generate import main as generate_main
from driftsketch.train import main as train_main

pytestmark = pytest.mark.slow  # trains (tiny) models end to end through the CLIs

TINY = ["--set", "model.dim=32", "--set", "model.depth=2", "--set", "model.heads=2", "--set", "sample_every=0",
        "--set", "checkpoint_every=3", "--batch-size", "16", "--no-wandb"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert train_main(["--data", "builtin", "--max-steps", "4", "--checkpoint-dir", str(out), *TINY]) == 0
    return out


def test_train_leaves_a_loadable_checkpoint_with_lineage(trained):
    ckpt = load_checkpoint(trained / "model.pt")
    assert ckpt["step"] == 4 and ckpt["ema"] is not None
    assert ckpt["lineage"]["dataset_id"] and ckpt["lineage"]["parent"] is None
    assert ckpt["optimizer_state_dict"] and ckpt["scheduler_state_dict"]
    assert len(ckpt["config"]["class_names"]) >= 8
    assert (trained / "samples_step4.png").stat().st_size > 1000


def test_resume_continues_from_last_step(trained, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    assert train_main(["--data", "builtin", "--max-steps", "6", "--checkpoint-dir", str(run), "--resume", *TINY]) == 0
    assert load_checkpoint(run / "model.pt")["step"] == 6


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert train_main(["--data", "builtin", "--max-steps", "2", "--checkpoint-dir", str(tmp_path), "--resume", *TINY]) == 2
    assert "last.pt" in capsys.readouterr().err


def test_generate_cli_writes_svg_png_grid_and_is_reproducible(trained, tmp_path):
    args = ["--checkpoint", str(trained / "model.pt"), "--class", "star", "--num-samples", "3", "--seed", "5",
            "--steps", "3", "--size", "128"]
    assert generate_main([*args, "--out", str(tmp_path / "a")]) == 0
    assert generate_main([*args, "--out", str(tmp_path / "b")]) == 0
    a, b = tmp_path / "a", tmp_path / "b"
    assert len(list(a.glob("*.svg"))) == 3 and len(list(a.glob("star_*.png"))) == 3 and (a / "grid.png").exists()
    assert np.array_equal(np.load(a / "beziers.npy"), np.load(b / "beziers.npy"))
    assert json.loads((a / "generation.json").read_text())["class"] == "star"
    assert load_model(trained / "model.pt").class_names[3] == "star"


def test_generate_unknown_class_lists_valid_ones(trained, tmp_path, capsys):
    code = generate_main(["--checkpoint", str(trained / "model.pt"), "--class", "dragon", "--out", str(tmp_path)])
    assert code == 2 and "circle" in capsys.readouterr().err
