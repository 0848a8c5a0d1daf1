"""Broken HTTP on a raw socket, at the routes that read bodies: the server answers 4xx or
closes the connection, never a 5xx or a trace, never hangs, and goes on serving."""

from __future__ import annotations

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.fuzz.known_bugs import explained_crash
from tests.fuzz.sanity import still_serves
from tests.fuzz.world import ServerLog, World

ROUTES = ("/api/chat", "/slack/events", "/api/messages", "/admin/login", "/healthz")

# (name, request bytes after the request line's path; {path} is filled in, half-close)
BROKEN: list[tuple[str, bytes, bool]] = [
    ("body shorter than content-length",
     b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{}",
     True),
    ("two content-lengths",
     b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 5\r\n"
     b"Connection: close\r\n\r\n{}", False),
    ("content-length and chunked (smuggling)",
     b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n"
     b"Connection: close\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n", False),
    ("bad chunk size",
     b"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
     b"\r\nzz\r\n{}\r\n0\r\n\r\n", False),
    ("unterminated chunks",
     b"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
     b"\r\n2\r\n{}\r\n", True),
    ("negative content-length",
     b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\nConnection: close\r\n\r\n{}",
     False),
    ("header without a colon",
     b"POST {path} HTTP/1.1\r\nHost: x\r\nthis is not a header\r\nConnection: close\r\n\r\n",
     False),
    ("space before the colon",
     b"POST {path} HTTP/1.1\r\nHost : x\r\nConnection: close\r\n\r\n", False),
    ("header continuation line",
     b"POST {path} HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\nConnection: close\r\n\r\n", False),
    ("NUL in a header",
     b"POST {path} HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\nConnection: close\r\n\r\n", False),
    ("bare LF line endings",
     b"POST {path} HTTP/1.1\nHost: x\nContent-Length: 2\nConnection: close\n\n{}", False),
    ("HTTP/1.0 without host", b"POST {path} HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}", False),
    ("HTTP/9.9", b"POST {path} HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n", False),
    ("lowercase method", b"post {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", False),
    ("a 100 kB header",
     b"POST {path} HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n"
     b"Connection: close\r\n\r\n", False),
    ("2000 headers",
     b"POST {path} HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(2000))
     + b"Connection: close\r\n\r\n", False),
    ("expect 100-continue, no body",
     b"POST {path} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n"
     b"Connection: close\r\n\r\n", True),
    ("http/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", True),
    ("not http at all", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, True),
]


@pytest.mark.parametrize("world_name", ["open", "secure"])
def test_broken_http_is_refused_cleanly(world_name: str, request: pytest.FixtureRequest,
                                        crashes: ServerLog, fake_openai: FakeOpenAI) -> None:
    world: World = request.getfixturevalue(f"{world_name}_app")
    for path in ROUTES:
        for name, template, half_close in BROKEN:
            sent = world.raw(template.replace(b"{path}", path.encode()), timeout=10,
                             half_close=half_close)
            assert sent.status == 0 or sent.status < 500, f"{name} at {path}:\n" \
                                                          f"{sent.describe()}"
            world.check_content(sent)
    still_serves(world, fake_openai=fake_openai)
    crashes.assert_no_crashes(explained_crash)


@pytest.mark.parametrize("path", ["/api/chat", "/api/messages"])
def test_an_oversized_body_is_refused_without_being_read(open_app: World, path: str) -> None:
    answer = open_app.partial_upload(path, declared=64 * 1024 * 1024, sent=2 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
