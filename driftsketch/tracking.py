"""Experiment logging: console always, wandb optionally (offline unless the user logged in).

``WANDB_MODE`` in the environment wins (``online`` after ``wandb login``); default ``offline`` so
nothing leaves the machine. ``enabled=False`` (``--no-wandb``) skips wandb entirely.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class RunLogger:
    """Minimal logger: ``log(metrics, step)`` and ``finish()``."""

    def __init__(self, enabled: bool, project: str, run_dir: str | Path, config: dict[str, Any] | None = None,
                 name: str | None = None, job_type: str | None = None):
        self._run = None
        if not enabled:
            return
        import wandb  # imported lazily: slow, and optional for --no-wandb runs

        Path(run_dir).mkdir(parents=True, exist_ok=True)
        mode = os.environ.get("WANDB_MODE", "offline")
        self._run = wandb.init(project=project, dir=str(run_dir), config=config or {}, name=name,
                               job_type=job_type, mode=mode, reinit="finish_previous")

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self._run is not None:
            self._run.log(metrics, step=step)

    def log_image(self, key: str, path: str | Path, step: int) -> None:
        if self._run is not None:
            import wandb

            self._run.log({key: wandb.Image(str(path))}, step=step)

    def finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None
