"""Peak resident memory of this process, resettable so one run inside a long-lived process can be measured.

    reset_peak_rss()          # e.g. at the start of a round
    ...
    peak_rss_mib()            # the most resident memory since then (the process's lifetime without a reset)
"""
from __future__ import annotations

import contextlib
import resource
import sys
from pathlib import Path


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process's resident memory (Linux); False where impossible."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
        return True
    return False


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB, since the last :func:`reset_peak_rss`."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere
