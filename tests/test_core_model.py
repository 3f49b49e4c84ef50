"""Model, checkpoint, sampling and config behaviour on a tiny real network."""
import numpy as np
import pytest
import torch

from driftsketch.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from driftsketch.config import ConfigError
from driftsketch.flow import velocity_mse
from driftsketch.model import ModelConfig, SketchFlowTransformer
from driftsketch.sampling import generate_beziers, resolve_class
from driftsketch.train_config import load_train_config

NAMES = ["circle", "square", "star"]


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = SketchFlowTransformer(ModelConfig(num_classes=3, dim=32, depth=2, heads=2))
    for p in m.parameters():  # adaLN-Zero starts as the zero map; perturb so outputs depend on inputs
        p.data.add_(0.05 * torch.randn_like(p))
    m.class_names = NAMES
    return m.eval()


def test_forward_shape_and_conditioning(model):
    x, t = torch.randn(4, 32, 8), torch.rand(4)
    out = model(x, t, torch.tensor([0, 1, 2, 3]))
    assert out.shape == (4, 32, 8)
    assert not torch.allclose(out[0], model(x[:1], t[:1], torch.tensor([1]))[0])  # class matters


def test_time_embedding_varies_over_unit_interval(model):
    emb = model.time_emb(torch.linspace(0, 1, 11))
    dists = torch.cdist(emb, emb)
    assert dists[~torch.eye(11, dtype=bool)].min() > 1e-3


def test_velocity_mse_is_per_sample(model):
    x1 = torch.rand(5, 32, 8) * 2 - 1
    mse = velocity_mse(model, x1, torch.zeros(5, dtype=torch.long), x0=torch.zeros(5, 32, 8), t=torch.zeros(5))
    assert mse.shape == (5,) and torch.all(mse > 0)


def test_checkpoint_round_trip(model, tmp_path):
    path = tmp_path / "m.pt"
    ckpt_id = save_checkpoint(path, model, NAMES, step=7, parent="abc", dataset_id="ds1")
    loaded = load_model(path)
    assert loaded.class_names == NAMES and loaded.checkpoint_id == ckpt_id and not loaded.training
    x, t, y = torch.randn(2, 32, 8), torch.rand(2), torch.tensor([0, 2])
    assert torch.equal(loaded(x, t, y), model(x, t, y))
    raw = load_checkpoint(path)
    assert raw["step"] == 7 and raw["lineage"] == {"parent": "abc", "dataset_id": "ds1"}


def test_export_keeps_the_ema_weights_the_model_loads_and_drops_training_state(model, tmp_path):
    from driftsketch.registry_cli import main as models_cli

    ema = {k: v + 0.01 for k, v in model.state_dict().items()}
    opt = {"state": {0: {"exp_avg": torch.randn(64, 64)}}, "param_groups": []}
    src, dst = tmp_path / "full.pt", tmp_path / "small.pt"
    save_checkpoint(src, model, NAMES, step=9, ema_state=ema, optimizer_state=opt, parent="p", dataset_id="d")
    assert models_cli(["export", str(src), str(dst)]) == 0
    full, small = load_model(src), load_model(dst)
    x, t, y = torch.randn(2, 32, 8), torch.rand(2), torch.tensor([0, 2])
    assert torch.equal(full(x, t, y), small(x, t, y)) and small.checkpoint_id == full.checkpoint_id
    raw = load_checkpoint(dst)
    assert raw["ema"] is None and raw["optimizer_state_dict"] is None and raw["step"] == 9
    assert raw["lineage"] == {"parent": "p", "dataset_id": "d"} and dst.stat().st_size < src.stat().st_size
    assert models_cli(["export", str(src), str(tmp_path)]) == 2  # a folder as the output: one-line error
    assert models_cli(["export", str(tmp_path / "missing.pt"), str(dst)]) == 2


def test_non_checkpoint_files_get_clear_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_model(bad)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a DriftSketch checkpoint"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pt")


def test_generate_is_reproducible_from_seed_and_noise(model):
    a, noise = generate_beziers(model, "star", 3, num_steps=4, seed=1)
    b, _ = generate_beziers(model, 2, 3, num_steps=4, seed=1)
    c, _ = generate_beziers(model, "star", 3, num_steps=4, noise=noise)
    assert a.shape == (3, 32, 4, 2) and a.dtype == np.float32 and noise.shape == (3, 32, 8)
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_unknown_class_lists_valid_ones(model):
    with pytest.raises(ValueError, match="circle, square, star"):
        resolve_class(model, "dog")
    with pytest.raises(ValueError, match="out of range"):
        resolve_class(model, 7)


def test_config_rejects_unknown_keys_and_applies_overrides():
    cfg = load_train_config(overrides=["model.depth=3", "lr=0.002"])
    assert cfg.model.depth == 3 and cfg.lr == 0.002
    with pytest.raises(ConfigError, match="depthh"):
        load_train_config(overrides=["model.depthh=3"])
    with pytest.raises(ConfigError, match="lr"):
        load_train_config(overrides=["lr=fast"])


def test_attention_matches_multihead_attention_and_keeps_checkpoint_keys(model):
    """The block's attention (scaled_dot_product_attention on nn.MultiheadAttention's weights) computes
    what nn.MultiheadAttention itself computes, in training mode and in its eval fast path."""
    from driftsketch.model import self_attention

    attn = model.blocks[0].attn
    x = torch.randn(3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(self_attention(attn, x), attn(x, x, x, need_weights=False)[0], atol=1e-5)
    attn.train()
    assert torch.allclose(self_attention(attn, x), attn(x, x, x, need_weights=False)[0], atol=1e-5)
    assert "blocks.0.attn.in_proj_weight" in model.state_dict()  # old checkpoints load unchanged


def test_bf16_inference_copy_is_close_and_leaves_the_model_alone(model):
    from driftsketch.model import inference_copy

    fast = inference_copy(model)
    assert fast.blocks[0].mlp[0].weight.dtype == torch.bfloat16 and fast.final.out.weight.dtype == torch.float32
    assert model.blocks[0].mlp[0].weight.dtype == torch.float32 and fast.class_names == NAMES
    x, t, y = torch.randn(4, 32, 8), torch.rand(4), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        ref, out = model(x, t, y), fast(x, t, y)
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() < 0.02 * ref.abs().max()  # bf16 keeps ~3 significant digits
    assert not torch.equal(out, ref)  # it really ran in bf16


def test_sampling_precisions_agree_on_the_same_noise(model):
    a, noise = generate_beziers(model, "star", 6, num_steps=4, seed=3, precision="fp32")
    b, _ = generate_beziers(model, "star", 6, num_steps=4, noise=noise, precision="bf16")
    assert np.abs(a - b).max() < 0.05 and not np.array_equal(a, b)
    again, _ = generate_beziers(model, "star", 6, num_steps=4, noise=noise, precision="bf16")
    assert np.array_equal(b, again)
    with pytest.raises(ValueError, match="precision"):
        generate_beziers(model, "star", 2, num_steps=2, seed=0, precision="fp8")


@pytest.mark.skipif(not __import__("driftsketch.onednn").onednn.available("cpu"), reason="no oneDNN in this torch")
def test_onednn_packed_copy_matches_the_unpacked_one(model):
    from driftsketch.model import inference_copy

    plain, packed = inference_copy(model, packed=False), inference_copy(model, packed=True)
    assert plain.blocks[0].packed is None and packed.blocks[0].packed is not None and model.blocks[0].packed is None
    x, t, y = torch.randn(6, 32, 8), torch.rand(6), torch.tensor([0, 1, 2, 3, 0, 1])
    with torch.no_grad():
        ref, a, b = model(x, t, y), plain(x, t, y), packed(x, t, y)
    assert b.dtype == torch.float32
    assert (b - a).abs().max() < 0.02 * ref.abs().max() and (b - ref).abs().max() < 0.02 * ref.abs().max()
    for name in ("in_proj", "out_proj", "mlp_in_gelu", "mlp_out"):  # the packed products are the layers'
        assert packed.blocks[1].packed[name].dtype == torch.bfloat16


def test_sampling_threads_give_the_same_sketches(model):
    """n torch threads: n batches at once, one thread each; every sketch as on one thread, bit for bit."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, noise = generate_beziers(model, "star", 7, num_steps=3, seed=5, batch_size=4)
        torch.set_num_threads(2)
        two, _ = generate_beziers(model, "star", 7, num_steps=3, noise=noise, batch_size=4)
        assert torch.get_num_threads() == 2  # restored after the threads finished
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(one, two)


def test_checkpoint_ids_come_from_content(model, tmp_path):
    """Same weights, classes, step and lineage: the same id (so seeds derived from it repeat); any change: another."""
    names = ["a", "b", "c"]
    first = save_checkpoint(tmp_path / "1.pt", model, names, step=3, parent="p")
    assert save_checkpoint(tmp_path / "2.pt", model, names, step=3, parent="p") == first
    assert load_checkpoint(tmp_path / "2.pt")["id"] == first
    assert save_checkpoint(tmp_path / "3.pt", model, names, step=3, parent="q") != first
    assert save_checkpoint(tmp_path / "4.pt", model, names, step=4, parent="p") != first
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert save_checkpoint(tmp_path / "5.pt", model, names, step=3, parent="p") != first
    assert save_checkpoint(tmp_path / "6.pt", model, names, checkpoint_id="given") == "given"
