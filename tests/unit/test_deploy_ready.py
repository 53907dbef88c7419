"""A deploy ends only once the manager and the scanner API answer through the edge (`wait_ready`)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from appliance.deploy import READY_PATHS, wait_ready


class _Edge(http.server.BaseHTTPRequestHandler):
    """Answers 503 to the scanner API for its first `busy` requests (ingest restarting), then 200."""

    busy = 0

    def do_GET(self) -> None:
        status = 200
        if self.path.startswith("/scanner/") and type(self).busy > 0:
            type(self).busy -= 1
            status = 503
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def edge() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Edge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_waits_through_503_until_both_answer(edge: str) -> None:
    _Edge.busy = 2
    assert wait_ready(edge, "", timeout=30) == ""
    assert _Edge.busy == 0


def test_says_what_did_not_answer(edge: str) -> None:
    _Edge.busy = 10**6
    problem = wait_ready(edge, "", timeout=1.5)
    assert problem.startswith(f"{edge} did not answer within 2 s") and f"{READY_PATHS[1]}: HTTP 503" in problem
