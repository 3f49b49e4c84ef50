"""Generate sketches: noise -> ODE solve of the (guided) velocity field -> Bezier arrays.

    sketches, noise = generate_beziers(model, "house", num_samples=16, seed=0)
    again, _ = generate_beziers(model, "house", num_samples=16, noise=noise)   # same sketches
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from driftsketch.guidance import GuidedVelocity
from driftsketch.model import inference_copy
from driftsketch.sketch import FLAT_SHAPE, from_flat
from driftsketch.solver import integrate
from driftsketch.train_config import SamplingConfig

# "auto": the attention and MLP products in bfloat16 where the hardware has native bf16 (CPUs with
# AVX512-BF16/AMX, GPUs), else float32. Same quality on the same noise (benchmarks/bench_sampler.py).
PRECISIONS = ("auto", "bf16", "fp32")


def resolve_class(model_or_names, name_or_id: int | str) -> int:
    """Class id from an id or a name; an unknown one raises ValueError listing the valid classes."""
    names = list(getattr(model_or_names, "class_names", model_or_names))
    if isinstance(name_or_id, (int, np.integer)) and not isinstance(name_or_id, bool):
        if 0 <= int(name_or_id) < len(names):
            return int(name_or_id)
        raise ValueError(f"class id {name_or_id} out of range 0..{len(names) - 1}; classes: {names}")
    text = str(name_or_id)
    if text in names:
        return names.index(text)
    if text.isdigit() and int(text) < len(names):
        return int(text)
    raise ValueError(f"unknown class {text!r}; valid classes: {', '.join(names)}")


def _labels(model, class_label, num_samples: int) -> torch.Tensor:
    if isinstance(class_label, (list, tuple, np.ndarray, torch.Tensor)):
        ids = [resolve_class(model, int(c) if isinstance(c, (np.integer, torch.Tensor)) else c) for c in class_label]
        if len(ids) != num_samples:
            raise ValueError(f"{len(ids)} class labels for num_samples={num_samples}")
        return torch.tensor(ids, dtype=torch.long)
    return torch.full((num_samples,), resolve_class(model, class_label), dtype=torch.long)


def native_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matrix products are fast on ``device`` (not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def sampling_network(model, precision: str, device: torch.device):
    """The network the sampler evaluates: ``model`` itself (fp32) or its bfloat16 inference copy."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {PRECISIONS}")
    if precision == "fp32" or (precision == "auto" and not native_bf16(device)):
        return model
    return inference_copy(model, torch.bfloat16)


def map_batches(fn: Callable[[slice], torch.Tensor], count: int, batch_size: int,
                device: torch.device) -> Iterator[torch.Tensor]:
    """``fn(slice)`` over ``count`` samples in batches of at most ``batch_size``, in order.

    On a CPU with ``torch.get_num_threads() == n > 1`` the samples are cut into at least ``n`` batches
    that ``n`` Python threads solve at once, each with one torch thread: every sample sees the same
    arithmetic as on one thread (the same sketches, bit for bit), and no thread waits in a barrier
    for the others after each of the ~1,000 small ops of a solve, which is what intra-op threads do
    and what makes them slow on a busy machine (3x less work per CPU second with 2 threads on a
    shared 2-core machine, benchmarks/bench_sampler.py).
    """
    workers = torch.get_num_threads() if device.type == "cpu" else 1
    pieces = max(-(-count // batch_size), min(workers, count))
    cuts = np.linspace(0, count, pieces + 1).round().astype(int)
    slices = [slice(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]
    if workers <= 1 or len(slices) == 1:
        yield from map(fn, slices)
        return
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            yield from pool.map(fn, slices)
    finally:
        torch.set_num_threads(workers)


@torch.inference_mode()
def generate_beziers(model, class_label: int | str | Sequence[int | str], num_samples: int,
                     num_steps: int | None = None, cfg_scale: float | None = None,
                     seed: int | None = None, noise: np.ndarray | torch.Tensor | None = None,
                     solver: str | None = None, device: str | torch.device | None = None,
                     snap_eps: float | None = None, fit_canvas: bool = True,
                     batch_size: int | None = None,
                     precision: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``num_samples`` sketches of a class (or one class per sample).

    Returns ``(beziers float32 (N, 32, 4, 2), noise float32 (N, 32, 8))``; ``noise`` is the initial
    ``x0`` in the model's codec space, so passing it back reproduces the sketches exactly.
    ``snap_eps`` (off by default) joins segment gaps shorter than it; see ``driftsketch.codec``.
    ``fit_canvas`` (on by default) shrinks a sketch that leaves [-1, 1] about the origin until it fits,
    so outputs honour the representation (guidance tends to enlarge sketches slightly).
    ``precision``: "auto" (bf16 products where native, else fp32), "bf16" or "fp32" (see ``PRECISIONS``).
    ``num_steps``, ``cfg_scale``, ``solver``, ``batch_size``, ``precision``: None = ``sampling`` of
    configs/train.yaml (midpoint, 10 steps, CFG 2: as good as 50 Euler steps at 2.1-2.5x the speed,
    benchmarks/bench_sampler.py).
    """
    d = SamplingConfig()
    num_steps = d.num_steps if num_steps is None else num_steps
    cfg_scale = d.cfg_scale if cfg_scale is None else cfg_scale
    solver = d.solver if solver is None else solver
    batch_size = d.batch_size if batch_size is None else batch_size
    precision = d.precision if precision is None else precision
    device = torch.device(device) if device is not None else next(model.parameters()).device
    labels = _labels(model, class_label, num_samples).to(device)
    if noise is None:
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        x0 = torch.randn((num_samples, *FLAT_SHAPE), generator=gen)
    else:
        x0 = torch.as_tensor(np.asarray(noise, dtype=np.float32)).reshape(-1, *FLAT_SHAPE)
        if x0.shape[0] != num_samples:
            raise ValueError(f"noise holds {x0.shape[0]} samples, num_samples={num_samples}")
    was_training = model.training
    net = sampling_network(model.eval(), precision, device)

    def solve(sl: slice) -> torch.Tensor:
        with torch.inference_mode():
            z1 = integrate(GuidedVelocity(net, labels[sl], cfg_scale), x0[sl].to(device), num_steps, solver)
            return model.decode(z1, snap_eps=snap_eps).cpu()

    out = list(map_batches(solve, num_samples, batch_size, device))
    model.train(was_training)
    beziers = from_flat(torch.cat(out)).numpy().astype(np.float32)
    if fit_canvas:
        peak = np.abs(beziers).reshape(num_samples, -1).max(axis=1).clip(min=1.0)
        beziers = beziers / peak[:, None, None, None]
    return beziers, x0.numpy().astype(np.float32)


def same_noise_beziers(model, other, class_labels: Sequence[int], seed: int,
                       **kwargs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sketch of ``model`` and one of ``other`` per entry of ``class_labels``, each pair from the same noise
    (a paired comparison of two models): ``(beziers of model, beziers of other, noise)``. ``kwargs`` go to
    :func:`generate_beziers`; the two models must draw the same classes."""
    if list(model.class_names) != list(other.class_names):
        raise ValueError(f"the two models draw different classes: {list(model.class_names)} and "
                         f"{list(other.class_names)}")
    a, noise = generate_beziers(model, list(class_labels), len(class_labels), seed=seed, **kwargs)
    b, _ = generate_beziers(other, list(class_labels), len(class_labels), noise=noise, **kwargs)
    return a, b, noise
