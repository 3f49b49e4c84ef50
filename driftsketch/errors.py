"""The project's error base class and the one error-reporting path of every command-line tool.

Every error the project raises on purpose derives from :class:`DriftSketchError`, with a message that
names the file, line, record or field at fault. A CLI runs its body through :func:`run_cli`, which
turns such an error (and the operating system's errors about files, and ``ValueError``: a value that
cannot be used) into one line on stderr and exit code 2; anything else is a bug and keeps its traceback.

    def main(argv=None) -> int:
        return run_cli("driftsketch-data", lambda: _main(argv))

Flags that are counts take ``type=count_arg`` (>= 1) or ``type=non_negative_arg`` (>= 0): argparse then
refuses ``--num-samples 0`` with its usual one-line usage error (exit code 2). Output paths are checked
before any work with :func:`check_out_dir` / :func:`check_out_file`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

EXIT_USAGE = 2  # bad input: a file, a flag or a config value the user can fix


class DriftSketchError(Exception):
    """Base of every error the project raises on purpose; ``str(exc)`` is the one-line user message."""


class UsageError(DriftSketchError, ValueError):
    """A command-line argument that cannot be used (e.g. ``--out`` names a file where a folder is needed)."""


def error_line(prog: str, exc: BaseException) -> str:
    """``prog: error: <message>`` on one line (extra lines of a long message are joined)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{prog}: error: {text}"


def run_cli(prog: str, body: Callable[[], int | None]) -> int:
    """Run a CLI body; project errors, file-system errors and bad values become one stderr line and exit
    code 2 (nothing is written after the error: bodies check their inputs before they write)."""
    try:
        return int(body() or 0)
    except (DriftSketchError, OSError, ValueError) as exc:
        print(error_line(prog, exc), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _int_arg(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def count_arg(text: str) -> int:
    """argparse ``type`` of a flag that counts something that must happen at least once (>= 1)."""
    return _int_arg(text, 1, "a whole number >= 1")


def non_negative_arg(text: str) -> int:
    """argparse ``type`` of a flag whose 0 means "none" (>= 0)."""
    return _int_arg(text, 0, "a whole number >= 0")


def non_negative_float_arg(text: str) -> float:
    """argparse ``type`` of a float flag that cannot be negative (a finite number >= 0)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def check_out_dir(path: str | Path, flag: str) -> Path:
    """``path`` as an output folder: raise :class:`UsageError` naming ``flag`` when it (or a parent) is a file."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise UsageError(f"{flag} {path}: {p} is a file, expected a folder")
    return path


def check_out_file(path: str | Path, flag: str) -> Path:
    """``path`` as an output file: raise :class:`UsageError` naming ``flag`` when it is a folder or a parent
    of it is a file."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder, expected a file name")
    for p in path.parents:
        if p.exists() and not p.is_dir():
            raise UsageError(f"{flag} {path}: {p} is a file, expected a folder")
    return path
