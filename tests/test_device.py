"""The ``device`` setting: checked spelling in every config, a one-line error where the machine lacks it, and
(on a machine with a CUDA GPU, ``-m cuda``) training, Flow-DPO and sampling there, with checkpoints that load
back on the CPU. Self-contained (no conftest fixtures), so a GPU machine runs it with
``python -m pytest --noconftest -m cuda tests/test_device.py``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dpo import PreferenceRecord, PreferenceStore
from dpo.config import load_dpo_config
from driftsketch.checkpoint import load_checkpoint, load_model, save_checkpoint
from driftsketch.config import ConfigError
from driftsketch.device import DeviceError, describe_machine, numerics_fingerprint, require_device
from driftsketch.model import ModelConfig, SketchFlowTransformer
from driftsketch.sampling import generate_beziers
from driftsketch.train import train_base
from driftsketch.train_config import load_train_config

HAS_CUDA = torch.cuda.is_available()
cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (run on a GPU machine: -m cuda)")


def test_numerics_fingerprint_names_torch_and_the_kernels_a_lowered_capability_switches_to():
    import os
    import subprocess
    import sys

    here = numerics_fingerprint()
    assert here["torch"] == torch.__version__ and here["cpu"]
    assert here["cpu_kernels"] == torch.backends.cpu.get_cpu_capability()
    code = "from driftsketch.device import numerics_fingerprint as f; print(f()['cpu_kernels'])"
    lowered = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "ATEN_CPU_CAPABILITY": "default"}).stdout.strip()
    assert lowered == "DEFAULT"  # the same seed gives other digits on these kernels: suites record which ran
    line = describe_machine(here)
    assert line == f"torch {torch.__version__}, {here['cpu_kernels']}, {here['cpu']}"
    gpu = describe_machine({**here, "gpu": "NVIDIA H100 80GB HBM3", "cuda": "12.8"})
    assert gpu.endswith(", NVIDIA H100 80GB HBM3 (CUDA 12.8)") and describe_machine(None) == "not recorded"


@pytest.mark.parametrize("loader", [load_train_config, load_dpo_config])
def test_device_spelling_is_checked_when_the_config_loads(loader):
    assert loader(overrides=["device=cuda:1"]).device == "cuda:1"  # a CPU machine can hold a GPU config
    with pytest.raises(ConfigError, match=r"device: .*'gpu' is not a device"):
        loader(overrides=["device=gpu"])
    with pytest.raises(ConfigError, match=r"device: .*not supported"):
        loader(overrides=["device=meta"])


def test_round_device_goes_first_so_dpo_overrides_win():
    from flows.params import dpo_overrides, load_round_params, train_overrides

    p = load_round_params(overrides=["device=cuda", "dpo.overrides=[device=cpu]", "base.train_overrides=[seed=3]"])
    assert dpo_overrides(p) == ["device=cuda", "device=cpu"]
    assert load_dpo_config(overrides=dpo_overrides(p)).device == "cpu"
    assert train_overrides(p) == ["device=cuda", "seed=3"]
    assert load_train_config(overrides=train_overrides(p)).device == "cuda"


def test_require_device():
    assert require_device("cpu") == torch.device("cpu")
    if HAS_CUDA:
        assert require_device("cuda").type == "cuda"
        with pytest.raises(DeviceError, match="CUDA GPU"):
            require_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(DeviceError, match=r"^dpo.device: 'cuda' but this torch .* sees no CUDA GPU"):
            require_device("cuda", "dpo.device")


BASE = "driftsketch/pretrained/builtin-base.pt"
CLIS = {  # every command that trains or samples, asked for a GPU the machine lacks
    "train": ("driftsketch.train", ["--data", "builtin", "--max-steps", "2", "--no-wandb", "--checkpoint-dir"]),
    "dpo": ("dpo.cli", ["--base-checkpoint", BASE, "--no-wandb", "--checkpoint-dir"]),
    "generate": ("driftsketch.generate", ["--checkpoint", BASE, "--class", "circle", "--out"]),
    "eval": ("driftsketch.evaluation.cli", ["evaluate", "--checkpoint", BASE, "--data", "builtin", "--classifier",
                                            "missing.pt", "--out"]),
}


@pytest.mark.skipif(HAS_CUDA, reason="the machine has a GPU")
@pytest.mark.parametrize("name", sorted(CLIS))
def test_cli_on_a_missing_gpu_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, name):
    import importlib

    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parent.parent)
    module, argv = CLIS[name]
    out = tmp_path / "run"
    code = importlib.import_module(module).main([*argv, str(out), "--device", "cuda"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "'cuda' but this torch" in err[0] and "Traceback" not in err[0], err
    assert not out.exists()


def tiny_train_config(out, device: str, steps: int, **kw):
    over = dict(data="builtin", checkpoint_dir=str(out), max_steps=steps, batch_size=32, warmup_steps=5, wandb=False,
                sample_every=0, checkpoint_every=steps, log_every=5, device=device, num_threads=2)
    over.update(kw)
    return load_train_config(overrides=[*(([k], v) for k, v in over.items()), "model.dim=32", "model.depth=2",
                                        "model.heads=2"])


@cuda
@pytest.mark.cuda
def test_train_on_gpu_loads_and_resumes_on_cpu(tmp_path):
    path = train_base(tiny_train_config(tmp_path / "gpu", "cuda", 30), progress=False)
    ckpt = load_checkpoint(path)  # map_location: a machine without CUDA reads it
    assert ckpt["step"] == 30 and all(t.device.type == "cpu" for t in ckpt["model_state_dict"].values())
    model = load_model(path)
    assert next(model.parameters()).device.type == "cpu"
    x, _ = generate_beziers(model, [0, 1], 2, num_steps=4, seed=0)
    assert np.isfinite(x).all() and np.abs(x).max() <= 1.0 + 1e-5
    more = train_base(tiny_train_config(tmp_path / "gpu", "cpu", 40), resume=True, progress=False)  # GPU -> CPU
    assert load_checkpoint(more)["step"] == 40


@cuda
@pytest.mark.cuda
def test_gpu_and_cpu_sample_the_same_sketches_from_the_same_noise(tmp_path):
    torch.manual_seed(0)
    model = SketchFlowTransformer(ModelConfig(num_classes=3, dim=32, depth=2, heads=2)).eval()
    model.class_names = ["a", "b", "c"]
    args = dict(num_steps=6, seed=7, precision="fp32")
    a, noise_a = generate_beziers(model, [0, 1, 2] * 4, 12, **args)
    b, noise_b = generate_beziers(model.to("cuda"), [0, 1, 2] * 4, 12, **args)
    np.testing.assert_array_equal(noise_a, noise_b)  # the noise is drawn on the CPU: paired across devices
    assert np.abs(a - b).max() < 1e-3


@cuda
@pytest.mark.cuda
def test_flow_dpo_on_gpu(tmp_path):
    from dpo.trainer import train_dpo

    torch.manual_seed(0)
    model = SketchFlowTransformer(ModelConfig(num_classes=2, dim=32, depth=2, heads=2))
    save_checkpoint(tmp_path / "base.pt", model, ["circle", "blob"], step=1)
    store, rng, recs = PreferenceStore(tmp_path / "prefs"), np.random.default_rng(0), []
    a = np.linspace(0, 2 * np.pi, 33)
    t = np.stack([a[:-1], a[:-1] + np.diff(a) / 3, a[1:] - np.diff(a) / 3, a[1:]], axis=1)
    for i in range(50):
        r, cx, cy = rng.uniform(0.3, 0.7), rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2)
        good = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], -1).astype(np.float32)
        bad = rng.uniform(-1, 1, (32, 4, 2)).astype(np.float32)
        ra, na = store.save_sample(f"g{i}", good, rng.standard_normal((32, 8)).astype(np.float32))
        rb, nb = store.save_sample(f"b{i}", bad, rng.standard_normal((32, 8)).astype(np.float32))
        recs.append(PreferenceRecord(comparison_type="pairwise", class_label=0, class_name="circle", beziers_a=ra,
                                     beziers_b=rb, noise_a=na, noise_b=nb, preference="a", annotator="test",
                                     source={"i": i}))
    store.append(recs, session="s1")
    over = dict(base_checkpoint=str(tmp_path / "base.pt"), preference_dir=str(store.root), wandb=False,
                checkpoint_dir=str(tmp_path / "dpo"), lr=2e-5, beta=100.0, epochs=10, batch_size=16, num_t=2,
                eval_num_t=4, holdout_fraction=0.2, early_stopping_patience=0, sft_weight=0.0, min_pairs=10,
                device="cuda")
    result = train_dpo(load_dpo_config(overrides=[([k], v) for k, v in over.items()]), progress=False)
    assert result.history[-1]["heldout/implicit_accuracy"] > 0.8
    assert next(load_model(result.checkpoint_path).parameters()).device.type == "cpu"
    machine = load_checkpoint(result.checkpoint_path)["extra"]["dpo"]["machine"]
    assert machine["gpu"] == torch.cuda.get_device_name(0) and machine["cuda"] == torch.version.cuda
