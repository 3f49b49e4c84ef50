"""How a Label Studio task shows its sketches: a URL of a PNG file Label Studio serves, or the PNG inlined.

``url`` (the default): each sketch's PNG is written once to ``png_dir`` (content-addressed,
``<sample_id>.png``) and the task holds ``/data/local-files/?d=png/<sample_id>.png``. Label Studio
serves it from its local-files storage: ``LOCAL_FILES_SERVING_ENABLED=true`` and
``LOCAL_FILES_DOCUMENT_ROOT=<server.files_root>`` (``driftsketch-labelstudio start`` sets both) plus a
local-files storage connection on the project for ``png_dir`` and ``svg_dir``
(:func:`ensure_local_storage`, never synced: it only grants access). A task is ~0.5 KiB instead of
~22 KiB, so the database and every task-list response stay small (Label Studio's guidance: keep media
in storage, not in task data).

``data_uri``: the PNG is inlined as ``data:image/png;base64,...``; for a remote Label Studio that cannot
read our files. Annotators see the same pixels either way (tests/test_labeling_browser.py).

    images = TaskImages.from_config(cfg.push, cfg.server)
    ref = images.save("s0123", beziers)       # writes the SVG (+ PNG), returns what the task holds
    ensure_local_storage(ls, project_id, images)
"""
from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from driftsketch.errors import DriftSketchError
from driftsketch.fileio import atomic_write_bytes
from driftsketch.render import png_bytes, write_svg
from labeling.client import client_url, with_retries
from labeling.config import PushConfig, ServerConfig

MODES = ("url", "data_uri")
LOCAL_FILES_URL = "/data/local-files/?d="
STORAGE_TITLE = "driftsketch sketches"


class ImageConfigError(DriftSketchError, ValueError):
    """The image settings cannot work (a folder outside Label Studio's document root, not writable, ...)."""


def _inside(path: Path, root: Path) -> bool:
    return path != root and path.is_relative_to(root)


@dataclass(frozen=True)
class TaskImages:
    """Where the SVG / PNG of pushed sketches go and how tasks refer to the PNG."""

    mode: str = "data_uri"
    svg_dir: Path = Path("data/labelstudio-files/svg")
    png_dir: Path | None = None
    files_root: Path | None = None
    size: int = 256

    @classmethod
    def from_config(cls, push: PushConfig, server: ServerConfig) -> TaskImages:
        """Images as ``push`` and ``server`` configure them (null dirs: ``<server.files_root>/svg|png``)."""
        root = Path(server.files_root).resolve()
        svg = Path(push.svg_dir).resolve() if push.svg_dir else root / "svg"
        png = Path(push.png_dir).resolve() if push.png_dir else root / "png"
        images = cls(push.image_mode, svg, png, root, push.image_size)
        images.check()
        return images

    def check(self) -> None:
        """Raise :class:`ImageConfigError` naming the setting when these images cannot work."""
        if self.mode not in MODES:
            raise ImageConfigError(f"push.image_mode: {self.mode!r} is not one of {', '.join(MODES)}")
        if self.mode != "url":
            return
        if self.files_root is None or self.png_dir is None:
            raise ImageConfigError("push.image_mode=url needs server.files_root and push.png_dir")
        for name, path in (("push.png_dir", self.png_dir), ("push.svg_dir", self.svg_dir)):
            if not _inside(Path(path).resolve(), Path(self.files_root).resolve()):
                raise ImageConfigError(f"{name}: {path} must be a folder inside server.files_root "
                                       f"{self.files_root} (Label Studio serves files only from there)")

    def folders(self) -> list[Path]:
        """The folders this mode writes (``svg_dir``, and ``png_dir`` in url mode)."""
        return [Path(self.svg_dir)] + ([Path(self.png_dir)] if self.mode == "url" else [])

    def url_of(self, path: Path) -> str:
        """The Label Studio local-files URL of ``path`` (a file under ``files_root``)."""
        rel = Path(path).resolve().relative_to(Path(self.files_root).resolve())
        return LOCAL_FILES_URL + quote(rel.as_posix())

    def save(self, sid: str, beziers: np.ndarray) -> str:
        """Write ``<sid>.svg`` (and in url mode ``<sid>.png``, once); what the task's image field holds."""
        write_svg(beziers, Path(self.svg_dir) / f"{sid}.svg")
        if self.mode == "data_uri":
            return "data:image/png;base64," + base64.b64encode(png_bytes(beziers, size=self.size)).decode("ascii")
        png = Path(self.png_dir) / f"{sid}.png"
        if not png.is_file():  # content-addressed: the same sketch is the same picture
            atomic_write_bytes(png, png_bytes(beziers, size=self.size))
        return self.url_of(png)


def check_writable(path: str | Path, what: str) -> Path:
    """Create ``path`` if needed and prove it takes files; :class:`ImageConfigError` naming ``what``."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ImageConfigError(f"{what}: {path} is not writable ({exc.strerror or exc})") from None
    return path


def ensure_local_storage(ls: LabelStudio, project_id: int, images: TaskImages) -> list[int]:
    """A local-files storage on ``project_id`` for each of the folders Label Studio must serve (created
    once, never synced: it grants access to ``/data/local-files/`` URLs, it imports nothing)."""
    if images.mode != "url":
        return []
    url = client_url(ls)
    existing = {os.path.normpath(s.path or ""): s.id for s in
                with_retries(lambda: ls.import_storage.local.list(project=project_id), url)}
    ids = []
    for folder in images.folders():
        path = os.path.normpath(str(check_writable(folder, "push image folder").resolve()))
        if path not in existing:
            existing[path] = _create_storage(ls, url, project_id, path)
        ids.append(existing[path])
    return ids


def _create_storage(ls: LabelStudio, url: str, project_id: int, path: str) -> int:
    try:
        return with_retries(lambda: ls.import_storage.local.create(
            project=project_id, path=path, title=STORAGE_TITLE, use_blob_urls=False), url).id
    except ApiError as exc:
        if exc.status_code != 400:
            raise
        raise ImageConfigError(
            f"Label Studio at {url} refused a local-files storage for {path}: {exc.body}. Its "
            "LOCAL_FILES_DOCUMENT_ROOT must be server.files_root with LOCAL_FILES_SERVING_ENABLED=true "
            "(`driftsketch-labelstudio start` sets both); a server that cannot read our files needs "
            "push.image_mode=data_uri") from None
