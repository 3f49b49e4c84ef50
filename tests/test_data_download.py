"""Quick, Draw! downloader against a real local HTTP server (Range support, dropped connections)."""
import http.server
import json
import threading

import pytest

from driftsketch.data.download import category_url, download_categories, download_file
from driftsketch.data.quickdraw import import_quickdraw

pytestmark = pytest.mark.slow


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict = {}
    log: list = []
    drop_first_after: int | None = None

    def do_GET(self):  # noqa: N802 (http.server API)
        body = self.files.get(self.path)
        self.log.append((self.path, self.headers.get("Range")))
        if body is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        part = body[start:]
        if type(self).drop_first_after is not None:  # simulate a dropped connection once
            part, type(self).drop_first_after = part[: type(self).drop_first_after], None
        self.wfile.write(part)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    lines = [json.dumps({"word": "smiley face", "key_id": str(i), "recognized": True, "countrycode": "US",
                         "timestamp": "", "drawing": [[[0, 100, 200, 255], [0, 50 + i, 80, 0]]]})
             for i in range(300)]
    body = ("\n".join(lines) + "\n").encode()
    _Handler.files = {"/simplified/smiley%20face.ndjson": body}
    _Handler.log = []
    _Handler.drop_first_after = None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/simplified", body
    httpd.shutdown()
    httpd.server_close()


def test_url_is_escaped():
    assert category_url("smiley face", "http://h/x/").endswith("/x/smiley%20face.ndjson")


def test_download_and_import(server, tmp_path):
    base, body = server
    (path,) = download_categories(["smiley face"], tmp_path, base)
    assert path.read_bytes() == body and not (tmp_path / "smiley face.ndjson.part").exists()
    assert len(import_quickdraw(tmp_path)) == 300


def test_resume_from_partial_file(server, tmp_path):
    base, body = server
    dest = tmp_path / "smiley face.ndjson"
    (tmp_path / "smiley face.ndjson.part").write_bytes(body[:1000])
    download_file(category_url("smiley face", base), dest)
    assert dest.read_bytes() == body
    assert _Handler.log == [("/simplified/smiley%20face.ndjson", "bytes=1000-")]


def test_dropped_connection_is_resumed(server, tmp_path):
    base, body = server
    _Handler.drop_first_after = 5000
    dest = download_file(category_url("smiley face", base), tmp_path / "s.ndjson", retries=2)
    assert dest.read_bytes() == body
    assert [r for _, r in _Handler.log] == [None, "bytes=5000-"]


def test_missing_category_is_a_clear_error(server, tmp_path):
    base, _ = server
    with pytest.raises(OSError, match="HTTP 404"):
        download_categories(["no such thing"], tmp_path, base)
