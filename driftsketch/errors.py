"""The project's error base class and the one error-reporting path of every command-line tool.

Every error the project raises on purpose derives from :class:`DriftSketchError`, with a message that
names the file, line, record or field at fault. A CLI runs its body through :func:`run_cli`, which
turns such an error (and the operating system's errors about files) into one line on stderr and exit
code 2; anything else is a bug and keeps its traceback.

    def main(argv=None) -> int:
        return run_cli("driftsketch-data", lambda: _main(argv))
"""
from __future__ import annotations

import sys
from typing import Callable

EXIT_USAGE = 2  # bad input: a file, a flag or a config value the user can fix


class DriftSketchError(Exception):
    """Base of every error the project raises on purpose; ``str(exc)`` is the one-line user message."""


def error_line(prog: str, exc: BaseException) -> str:
    """``prog: error: <message>`` on one line (extra lines of a long message are joined)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{prog}: error: {text}"


def run_cli(prog: str, body: Callable[[], int | None]) -> int:
    """Run a CLI body; project errors and file-system errors become one stderr line and exit code 2."""
    try:
        return int(body() or 0)
    except (DriftSketchError, OSError) as exc:
        print(error_line(prog, exc), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
