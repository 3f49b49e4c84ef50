"""The velocity network: a class-conditional DiT-style transformer over 32 stroke tokens.

Reads top to bottom: building blocks -> ``ModelConfig`` -> ``SketchFlowTransformer``.
The network maps ``(x_t, t, class)`` to a velocity, all in codec space (see ``driftsketch.codec``);
``encode``/``decode`` convert Bezier data to and from that space.
"""
from __future__ import annotations

import copy
import math
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from driftsketch import codec as sketch_codec
from driftsketch.config import Config, Count, Fraction, PositiveFloat
from driftsketch.sketch import NUM_SEGMENTS, TOKEN_DIM


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # x: (B, T, D); shift/scale: (B, D)
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of ``t`` in [0, 1] (scaled by 1000, as in DiT) -> MLP."""

    def __init__(self, dim: int, freq_dim: int = 128):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # (B,) -> (B, D)
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = (t.float() * 1000.0)[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


def self_attention(attn: nn.MultiheadAttention, x: torch.Tensor, packed: dict | None = None) -> torch.Tensor:
    """Multi-head self-attention with ``attn``'s weights through ``F.scaled_dot_product_attention``.

    The same fused kernel in training and evaluation (``nn.MultiheadAttention.forward`` switches
    between a slow path and a fast path that round differently), and ~2x cheaper than its fast path's
    q/k/v re-packing on CPU. ``nn.MultiheadAttention`` stays the parameter holder, so checkpoints keep
    their keys. Runs in the weights' dtype (see :func:`inference_copy`); ``packed`` (from
    :func:`pack_block`) holds oneDNN-packed copies of the two projections.
    """
    b, n, d = x.shape
    heads = attn.num_heads
    if packed:
        qkv = packed["in_proj"](x)
    else:
        qkv = F.linear(x.to(attn.in_proj_weight.dtype), attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.view(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, d/H)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=attn.dropout if attn.training else 0.0)
    out = out.transpose(1, 2).reshape(b, n, d)
    return packed["out_proj"](out) if packed else attn.out_proj(out)


class DiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN-Zero conditioning (gates start at zero).

    The residual stream, norms and modulation stay float32 whatever the dtype of the attention and MLP
    weights (``inference_copy`` makes them bfloat16): their outputs are promoted back by the gate product.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[-1].weight)
        nn.init.zeros_(self.ada[-1].bias)
        self.packed: dict | None = None  # oneDNN-packed products of an inference copy (pack_block)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.packed:
            return self._packed_forward(x, c)
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)  # each (B, D)
        h = modulate(self.norm1(x), shift1, scale1)
        x = x + gate1.unsqueeze(1) * self_attention(self.attn, h)
        h = modulate(self.norm2(x), shift2, scale2)
        h = self.mlp(h.to(self.mlp[0].weight.dtype))
        return x + gate2.unsqueeze(1) * h

    def _packed_forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` of an inference copy with packed products: the same arithmetic, with each
        modulation and gated residual in one pass (``addcmul``) and the modulation written straight in
        the products' dtype."""
        p, dtype = self.packed, self.mlp[0].weight.dtype
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).unsqueeze(1).chunk(6, dim=-1)  # (B, 1, D)
        h = torch.addcmul(shift1, self.norm1(x), scale1 + 1, out=x.new_empty(x.shape, dtype=dtype))
        x = torch.addcmul(x, gate1, self_attention(self.attn, h, p))
        h = torch.addcmul(shift2, self.norm2(x), scale2 + 1, out=x.new_empty(x.shape, dtype=dtype))
        return torch.addcmul(x, gate2, p["mlp_out"](p["mlp_in_gelu"](h)))


class FinalLayer(nn.Module):
    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.out = nn.Linear(dim, out_dim)
        for layer in (self.ada[-1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.out(modulate(self.norm(x), shift, scale))


class ModelConfig(Config):
    """Size and conditioning of the velocity network (defaults: ``model`` in configs/train.yaml)."""

    defaults_from: ClassVar[str] = "train.yaml:model"
    num_classes: Count | None  # None in the YAML: training takes it from the data set
    dim: Count
    depth: Count
    heads: Count
    mlp_ratio: PositiveFloat
    dropout: Fraction
    codec: str  # "relative" (gap/handles/end) or "absolute"; see driftsketch.codec
    gap_scale: PositiveFloat
    handle_scale: PositiveFloat


class SketchFlowTransformer(nn.Module):
    """Velocity field ``v(x_t, t, class)`` over 32 segment tokens.

    ``forward(x (B, 32, 8), t (B,), class_labels (B,) long) -> (B, 32, 8)``. Class id
    ``null_class == num_classes`` is the learned unconditional class used for classifier-free guidance.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.codec not in sketch_codec.CODECS:
            raise ValueError(f"model.codec: unknown codec {cfg.codec!r}; valid: {sketch_codec.CODECS}")
        if cfg.num_classes is None:
            raise ValueError("model.num_classes is not set (training takes it from the data set)")
        self.config = cfg
        self.class_names: list[str] = []
        self.checkpoint_id: str | None = None
        self.input_proj = nn.Linear(TOKEN_DIM, cfg.dim)
        self.pos_emb = nn.Parameter(torch.randn(1, NUM_SEGMENTS, cfg.dim) * 0.02)
        self.time_emb = TimestepEmbedding(cfg.dim)
        self.class_emb = nn.Embedding(cfg.num_classes + 1, cfg.dim)  # last row: null class
        nn.init.normal_(self.class_emb.weight, std=0.02)
        self.blocks = nn.ModuleList(DiTBlock(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth))
        self.final = FinalLayer(cfg.dim, TOKEN_DIM)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        states, c = self._trunk(x, t, class_labels)
        return self.final(states[-1], c)  # (B, 32, 8)

    def hidden_states(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> list[torch.Tensor]:
        """Every block's token states, ``depth`` tensors ``(B, 32, D)``: the network's own description of
        ``x`` at time ``t`` (the reward model embeds sketches with them)."""
        return self._trunk(x, t, class_labels)[0]

    def _trunk(self, x: torch.Tensor, t: torch.Tensor,
               class_labels: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        c = self.time_emb(t) + self.class_emb(class_labels)  # (B, D)
        h = self.input_proj(x) + self.pos_emb  # (B, 32, D)
        states = []
        for block in self.blocks:
            h = block(h, c)
            states.append(h)
        return states, c

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Bezier ``(B, 32, 8)`` -> codec space ``(B, 32, 8)``."""
        cfg = self.config
        return sketch_codec.encode(x, cfg.codec, cfg.gap_scale, cfg.handle_scale)

    def decode(self, z: torch.Tensor, snap_eps: float | None = None) -> torch.Tensor:
        """Codec space ``(B, 32, 8)`` -> Bezier ``(B, 32, 8)``; see ``driftsketch.codec.decode``."""
        cfg = self.config
        return sketch_codec.decode(z, cfg.codec, cfg.gap_scale, cfg.handle_scale, snap_eps)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def pack_block(block: DiTBlock) -> None:
    """Give ``block`` oneDNN-packed copies of its attention and MLP products (GELU fused into the first
    MLP product; ``driftsketch.onednn``), used by its forward from then on. Inference only: the packed
    weights are a snapshot, so call it on a frozen copy (:func:`inference_copy`)."""
    from driftsketch.onednn import PackedLinear

    attn, mlp = block.attn, block.mlp
    block.packed = {"in_proj": PackedLinear(attn.in_proj_weight, attn.in_proj_bias),
                    "out_proj": PackedLinear(attn.out_proj.weight, attn.out_proj.bias),
                    "mlp_in_gelu": PackedLinear(mlp[0].weight, mlp[0].bias, post="gelu"),
                    "mlp_out": PackedLinear(mlp[2].weight, mlp[2].bias)}


def inference_copy(model: SketchFlowTransformer, dtype: torch.dtype = torch.bfloat16,
                   packed: bool | None = None) -> SketchFlowTransformer:
    """A frozen eval-mode copy of ``model`` whose attention and MLP weights (>99 % of the arithmetic) are
    ``dtype``; the residual stream, norms, conditioning and output layer stay float32. For sampling:
    bfloat16 matrix products run ~3x faster on CPUs with native bf16 (AVX512-BF16, AMX) and on GPUs.

    ``packed`` (default: where the model is on a CPU with oneDNN) also packs those products for oneDNN
    with GELU fused (:func:`pack_block`): another ~2x for sampling on such a CPU."""
    from driftsketch.onednn import available

    fast = copy.deepcopy(model).eval().requires_grad_(False)
    for block in fast.blocks:
        block.attn.to(dtype)
        block.mlp.to(dtype)
    if packed is None:
        packed = available(fast.pos_emb.device)
    if packed:
        for block in fast.blocks:
            pack_block(block)
    return fast
