"""Where models train and sample: one config type for every ``device`` setting, one availability check.

    device: cuda        # configs/train.yaml, configs/dpo.yaml, configs/round.yaml

``Device`` checks the spelling when a config is loaded (a Prefect form or a CPU machine can hold
``cuda``); :func:`require_device` checks that this machine has it, right before work starts, with a
one-line error that names the field. Checkpoints always load to the CPU first (``map_location``), so a
model trained on a GPU worker loads on a laptop and back.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator

from driftsketch.errors import DriftSketchError

if TYPE_CHECKING:
    import torch


class DeviceError(DriftSketchError, ValueError):
    """A ``device`` setting this machine cannot run."""


def _parse(name: str) -> str:
    import torch  # here, not at the top: loading a config does not pay for importing torch

    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name!r} is not a device: use cpu, cuda, cuda:N or mps") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{name!r}: device type {dev.type!r} is not supported (cpu, cuda, cuda:N, mps)")
    return name


Device = Annotated[str, AfterValidator(_parse)]  # config field type: "cpu", "cuda", "cuda:1", "mps"


def require_device(name: str, field: str = "device") -> "torch.device":
    """``torch.device(name)`` when this machine has it; else :class:`DeviceError` naming ``field``."""
    import torch

    dev = torch.device(_parse(name))
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{field}: {name!r} but this torch ({torch.__version__}) sees no CUDA GPU; use "
                              "cpu, or install a CUDA build of torch (README, 'GPU and cluster installs')")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"{field}: {name!r} but this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"{field}: {name!r} but this machine has no Apple GPU (MPS); use cpu")
    return dev


def numerics_fingerprint(device: str = "cpu") -> dict[str, str]:
    """What decides a run's last bits on this machine: torch's version, the CPU kernel set ATen dispatches
    to (``AVX512``, ``AVX2``, ``DEFAULT``; ``ATEN_CPU_CAPABILITY`` lowers it), the CPU and, for a CUDA
    ``device``, the GPU and CUDA version. The same seed gives other digits where any of them differs, so
    benchmarks and fine-tuned checkpoints record it next to their figures."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux: platform's name is all there is
    found = {"torch": str(torch.__version__), "cpu_kernels": str(torch.backends.cpu.get_cpu_capability()), "cpu": cpu}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        found.update(gpu=torch.cuda.get_device_name(torch.device(device)), cuda=str(torch.version.cuda))
    return found


def describe_machine(fingerprint: dict[str, str] | None) -> str:
    """One line for reports: ``torch 2.13.0+cpu, AVX512, AMD EPYC`` (torch, CPU kernels, CPU; + the GPU);
    "not recorded" for runs made before they recorded it."""
    if not fingerprint:
        return "not recorded"
    parts = [f"torch {fingerprint.get('torch', '?')}", fingerprint.get("cpu_kernels", "?"),
             fingerprint.get("cpu", "?")]
    if fingerprint.get("gpu"):
        parts.append(f"{fingerprint['gpu']} (CUDA {fingerprint.get('cuda', '?')})")
    return ", ".join(parts)
