"""Fixtures of the builder tests: a local HTTP server for ADD of URLs."""

from __future__ import annotations

import http.server
import io
import tarfile
import threading
from collections.abc import Iterator

import pytest

BODY = b"#!/bin/sh\necho downloaded\n"
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"


def _tar_bytes() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("inside.txt")
        info.size = 6
        tf.addfile(info, io.BytesIO(b"inside"))
    return buf.getvalue()


TAR = _tar_bytes()  # served for paths ending in .tar


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.startswith("/missing"):
            self.send_error(404, "Not Found")
            return
        body = TAR if self.path.endswith(".tar") else BODY
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        if not self.path.startswith("/notime"):
            self.send_header("Last-Modified", LAST_MODIFIED)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
