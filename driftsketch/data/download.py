"""Download Quick, Draw! ``simplified`` ndjson files, with a progress bar and resume.

A download goes to ``<category>.ndjson.part``; an interrupted one continues from there with an HTTP
Range request, and the finished file is renamed into place atomically.

    download_categories(["cat", "smiley face"], "downloads/quickdraw")
"""
from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from driftsketch.errors import DriftSketchError

DEFAULT_BASE_URL = "https://storage.googleapis.com/quickdraw_dataset/full/simplified"


class DownloadError(DriftSketchError, OSError):
    """A download that failed; a ``.part`` file, if any, is kept for the next attempt."""


def category_url(category: str, base_url: str = DEFAULT_BASE_URL) -> str:
    """URL of ``<category>.ndjson`` under ``base_url`` (the name is URL-escaped: "smiley face")."""
    return f"{base_url.rstrip('/')}/{urllib.parse.quote(category)}.ndjson"


def _open(url: str, offset: int, timeout: float) -> tuple[http.client.HTTPResponse | None, int]:
    """Response and the offset it starts at (0 if the server ignored the Range header)."""
    headers = {"User-Agent": "driftsketch-data"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the .part file already holds everything
            return None, offset
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"{url}: {exc.reason}") from None
    return resp, offset if resp.status == 206 else 0


def _transfer(url: str, part: Path, desc: str, timeout: float, chunk: int) -> None:
    resp, offset = _open(url, part.stat().st_size if part.exists() else 0, timeout)
    if resp is None:
        return
    with resp:
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        mode = "ab" if offset else "wb"
        with open(part, mode) as fh, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                           desc=desc, mininterval=0.5) as bar:
            fh.truncate(offset)
            try:
                while block := resp.read(chunk):
                    fh.write(block)
                    bar.update(len(block))
            except (http.client.IncompleteRead, OSError) as exc:
                raise DownloadError(f"{url}: interrupted after {fh.tell()} bytes ({exc})") from None
            finally:
                fh.flush()
                os.fsync(fh.fileno())
            if total is not None and fh.tell() < total:
                raise DownloadError(f"{url}: interrupted after {fh.tell()} of {total} bytes")


def download_file(url: str, dest: str | Path, retries: int = 3, timeout: float = 60.0,
                  chunk: int = 1 << 16) -> Path:
    """Fetch ``url`` to ``dest`` resuming from ``dest.part``; an existing ``dest`` is kept as is."""
    dest = Path(dest)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, dest.name, timeout, chunk)
            break
        except DownloadError:
            if attempt == retries or not part.exists():
                raise
            time.sleep(min(2.0**attempt, 10.0) * 0.1)
    os.replace(part, dest)
    return dest


def category_file(category: str, out_dir: str | Path) -> Path:
    """``out_dir/<category>.ndjson``; :class:`DownloadError` for a name that is not a plain file name
    (``../x``, ``a/b``, a leading dot, control characters), which could write outside ``out_dir``."""
    name = str(category)
    bad = (not name.strip() or name.startswith(".") or any(c in name for c in "/\\\0")
           or any(ord(c) < 32 for c in name) or len(name.encode()) > 200)
    out = Path(out_dir)
    path = out / f"{name}.ndjson"
    if bad or path.resolve().parent != out.resolve():
        raise DownloadError(f"category {name!r}: not a plain category name (no '/', '\\', leading '.' or "
                            "control characters); the file must stay inside the download folder")
    return path


def download_categories(categories: Sequence[str], out_dir: str | Path,
                        base_url: str = DEFAULT_BASE_URL, **kwargs) -> list[Path]:
    """Download ``<category>.ndjson`` for each category into ``out_dir``; returns the file paths. Every
    name is checked before anything is downloaded."""
    if not categories:
        raise DownloadError("no categories given (e.g. 'cat,smiley face')")
    paths = [category_file(c, out_dir) for c in categories]
    return [download_file(category_url(c, base_url), p, **kwargs) for c, p in zip(categories, paths)]
