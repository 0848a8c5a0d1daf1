"""`python -m bot.healthcheck`, the container's health probe, run as Docker runs it: a process
whose exit code decides, and whose one line of output `docker inspect` shows."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import LiveServer


def probe(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.healthcheck", url], capture_output=True,
                          text=True, timeout=30)


class CannedHealth(ThreadingHTTPServer):
    """A server that answers /healthz with whatever a test sets."""

    status = 200
    body = b""
    delay = 0.0


class Handler(BaseHTTPRequestHandler):
    server: CannedHealth

    def do_GET(self) -> None:
        time.sleep(self.server.delay)
        with contextlib.suppress(OSError):  # a probe that gave up has closed the socket
            self.send_response(self.server.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(self.server.body)))
            self.end_headers()
            self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[CannedHealth]:
    server = CannedHealth(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def url_of(server: CannedHealth) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/healthz"


def test_a_running_hub_is_healthy(live_server: LiveServer) -> None:
    result = probe(f"{live_server.url}/healthz")
    assert (result.returncode, result.stdout.strip()) == (0, "healthy"), result.stderr


def test_degraded_is_unhealthy_and_names_the_part_that_is_down(canned: CannedHealth) -> None:
    canned.body = json.dumps({"status": "degraded", "components": {
        "database": {"state": "down", "error": "OperationalError"},
        "model": {"state": "configured"}}}).encode()
    result = probe(url_of(canned))
    assert result.returncode == 1
    assert result.stdout.strip() == "unhealthy: status 'degraded' (database down)"


@pytest.mark.parametrize(("status", "body", "line"), [
    (503, b'{"status": "ok"}', "answered HTTP 503"),
    (200, b"<html>proxy error</html>", "did not answer JSON"),
    (200, b'["ok"]', "unhealthy: status None"),
    (200, b"", "did not answer JSON"),
])
def test_anything_but_ok_is_unhealthy(canned: CannedHealth, status: int, body: bytes,
                                      line: str) -> None:
    canned.status, canned.body = status, body
    result = probe(url_of(canned))
    assert result.returncode == 1
    assert line in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_nothing_listening_is_unhealthy() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = probe(f"http://127.0.0.1:{port}/healthz")
    assert result.returncode == 1
    assert result.stdout.startswith(f"unhealthy: no answer from http://127.0.0.1:{port}/healthz")
    assert "Traceback" not in result.stderr


def test_a_hung_server_is_unhealthy_before_docker_gives_up(canned: CannedHealth) -> None:
    from bot import healthcheck

    canned.delay, canned.body = 2.0, b'{"status": "ok"}'
    started = time.monotonic()
    healthy, line = healthcheck.probe(url_of(canned), timeout=0.5)
    assert not healthy and line.startswith("unhealthy: no answer")
    assert time.monotonic() - started < 1.9


def test_a_bad_argument_is_a_usage_line_not_a_traceback() -> None:
    result = subprocess.run([sys.executable, "-m", "bot.healthcheck", "a", "b"],
                            capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout.strip()) == (
        2, "usage: python -m bot.healthcheck [URL]")
    result = probe("not a url")
    assert result.returncode == 1 and "is not a URL to probe" in result.stdout
