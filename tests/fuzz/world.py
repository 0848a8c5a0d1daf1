"""The apps under fuzz, how requests reach them, and what every answer must satisfy.

Two apps are built from the real `create_app`, each on a real uvicorn socket (the pattern of
`tests.conftest.running_server`), against the wire-level fakes:

* "open": Slack with one bot token and a signing secret, Teams with authentication off (the
  local-emulator mode: replies to loopback connectors only), the web chat.
* "secure": Slack in multi-workspace OAuth mode (so /slack/install and /slack/oauth_redirect
  exist), Teams with authentication on (JWTs from the fake token issuer), the web chat.

Both set BOTHUB_ADMIN_TOKEN, so an /admin area is switched on as soon as it exists, and both use
rate limits far above what the fuzz sends, so that a fuzz run never turns into a rate-limit test.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import hmac
import json
import re
import socket
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI

from bot.server import create_app, platform_adapters
from tests.conftest import LiveServer, make_settings, running_server
from tests.fakes.botframework_server import FakeBotFramework
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack

ADMIN_TOKEN = "fuzz-admin-token-6c1f0e2a9b"
SLACK_CLIENT_ID = "111.222"
SLACK_CLIENT_SECRET = "fuzz-slack-client-secret-41d7"
SLACK_STATE_SECRET = "fuzz-slack-state-secret-93ab"

# Far above anything a fuzz run sends: the limiter stays in the path but never refuses.
BEHAVIOUR_YAML = """\
limits:
  rate:
    user: {per_minute: 100000, burst: 100000}
    channel: {per_minute: 100000, burst: 100000}
    workspace: {per_minute: 100000, burst: 100000}
"""

# Slack must be acknowledged within 3 s (bolt acks before working); everything else gets a
# generous bound that still catches a hang.
SLACK_ACK_SECONDS = 3.0
RESPONSE_SECONDS = 10.0
CLIENT_TIMEOUT = 20.0

TRACEBACK_MARKERS = ("Traceback (most recent call last)", "Traceback", 'File "')
# Sent by the strategies inside hostile strings; must never come back unescaped in HTML.
XSS_MARKER = '<script>alert("fz")</script>'

# 503 is a documented answer only with these bodies (storage down, Teams' signing keys down).
DOCUMENTED_503 = ("storage is unavailable", "cannot verify the request right now")

# How often each known bug excused a 500 in this process (the terminal summary shows it).
TOLERATED: collections.Counter[str] = collections.Counter()


@dataclass
class Sent:
    """One request and its answer, as the fuzz saw them."""

    method: str
    target: str  # path + query as sent
    headers: Mapping[str, bytes]
    body: bytes
    status: int
    content: bytes
    response_headers: list[tuple[str, str]]
    elapsed: float

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def header(self, name: str) -> str:
        return next((v for k, v in self.response_headers if k.lower() == name.lower()), "")

    def json(self) -> Any:
        return json.loads(self.content)

    def describe(self) -> str:
        body = self.body if len(self.body) <= 300 else self.body[:300] + b"...(%d bytes)" % len(
            self.body)
        headers = {k: v if len(v) <= 300 else v[:300] + b"...(%d bytes)" % len(v)
                   for k, v in self.headers.items()}
        target = self.target if len(self.target) <= 500 else self.target[:500] + "..."
        return (f"{self.method} {target}\n  headers: {headers!r}\n"
                f"  body: {body!r}\n  -> {self.status} in {self.elapsed:.2f}s: "
                f"{self.content[:300]!r}")


MAX_HEADER_VALUE = 8 * 1024  # uvicorn drops requests with headers past 64 KiB in all


def _sendable(value: str | bytes) -> bytes:
    """A header value as HTTP can carry it: bytes without control characters (obs-text
    allowed), trimmed, at most 8 KiB. Text goes as UTF-8, which the server reads as latin-1."""
    raw = value.encode("utf-8", "replace") if isinstance(value, str) else value
    raw = raw[:MAX_HEADER_VALUE]
    return bytes(b for b in raw if b == 9 or 32 <= b <= 126 or b >= 128).strip()


@dataclass
class World:
    name: str
    url: str
    app: FastAPI
    live: LiveServer
    secrets: dict[str, str]
    signing_secret: str
    teams_auth: bool
    slack_oauth: bool
    known_bug: Callable[[str, str, Mapping[str, Any], bytes], str | None]
    admin_throttle: tuple[float, int] | None = None  # the product's values, see relax_...
    log: ServerLog | None = None
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    # -- sending -----------------------------------------------------------------------------

    def send(self, method: str, path: str, *, body: bytes = b"",
             headers: Mapping[str, Any] | None = None,
             params: list[tuple[str, str]] | None = None) -> Sent:
        """One request through httpx (which keeps the request well-formed HTTP). A connection
        per request: on a kept-alive connection to the test server every answer arrives some
        40 ms late (TCP delayed acknowledgement), which would spend the fuzz's time budget."""
        headers = {"connection": "close", **{k: _sendable(v) for k, v in (headers or {}).items()}}
        if self.log is not None:
            self.log.unhandled = None
        self.client.cookies.clear()  # a request carries the cookies its caller gives, no others
        query: list[tuple[str, Any]] = list(params or [])
        request = self.client.build_request(method, path, content=body, headers=headers,
                                            params=query)
        target = request.url.raw_path.decode("ascii")
        started = time.monotonic()
        try:
            response = self.client.send(request)
        except httpx.TimeoutException:
            raise AssertionError(f"no answer within {CLIENT_TIMEOUT}s (a hang): "
                                 f"{method} {target} {headers!r} {body[:300]!r}") from None
        elapsed = time.monotonic() - started
        return Sent(method, target, headers, body, response.status_code, response.content,
                    list(response.headers.multi_items()), elapsed)

    def raw(self, request: bytes, *, timeout: float = CLIENT_TIMEOUT,
            half_close: bool = False) -> Sent:
        """Bytes straight onto a socket (paths httpx would normalize, broken HTTP). The request
        should say `Connection: close`; the answer is read to EOF. `half_close`: the client
        says it has sent everything (for requests that promise more than they carry)."""
        started = time.monotonic()
        chunks = []
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(request)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
            try:
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except TimeoutError:
                raise AssertionError(f"no answer within {timeout}s (a hang): "
                                     f"{request[:300]!r}") from None
            except ConnectionResetError:
                pass  # the server may drop a connection it cannot parse
        elapsed = time.monotonic() - started
        data = b"".join(chunks)
        head, _, content = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1]) if lines[0].startswith("HTTP/") else 0
        response_headers = [tuple(line.split(": ", 1)) for line in lines[1:] if ": " in line]
        line = request.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = line.partition(" ")
        return Sent(method, rest.rsplit(" ", 1)[0], {}, request, status, content,
                    [(k, v) for k, v in response_headers], elapsed)

    def partial_upload(self, path: str, *, declared: int, sent: int,
                       timeout: float = 3.0) -> bytes:
        """Promise `declared` bytes of body, send `sent` of them, and return what the server
        answers before the rest would arrive (b"" while it keeps waiting for more)."""
        head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {declared}\r\nConnection: close\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(head)
            # If the server stops reading, what it answered is waiting below.
            with contextlib.suppress(TimeoutError, BrokenPipeError, ConnectionResetError):
                sock.sendall(b"a" * sent)
            try:
                return sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                return b""

    # -- properties --------------------------------------------------------------------------

    def check(self, sent: Sent, *, statuses: Collection[int] | None = None,
              bound: float = RESPONSE_SECONDS, tolerate: bool = True) -> bool:
        """What every answer to anything must satisfy; `statuses` narrows what is expected.
        False when the answer is a 500 that a known bug explains (the caller then checks no
        further), True when it passed. `tolerate=False`: no known bug excuses anything (for
        ordinary requests)."""
        if sent.status >= 500:
            if sent.status == 503 and any(m in sent.text for m in DOCUMENTED_503):
                pass
            elif tolerate and sent.status == 500 and (bug := self.known_bug(
                    sent.method, sent.target, sent.headers, sent.body)) is not None:
                TOLERATED[bug] += 1
                return False
            else:
                raise AssertionError(f"[{self.name}] server error:\n{sent.describe()}")
        if statuses is not None:
            assert sent.status in statuses, (
                f"[{self.name}] expected one of {sorted(statuses)}:\n{sent.describe()}")
        assert sent.elapsed < bound, (
            f"[{self.name}] answered after {sent.elapsed:.2f}s (bound {bound}s):\n"
            f"{sent.describe()}")
        self.check_content(sent)
        return True

    def check_content(self, sent: Sent) -> None:
        """No trace, no secret (or a known prefix of one), no redirect off the site, no input
        reflected raw into HTML."""
        everything = sent.text + "\n" + "\n".join(f"{k}: {v}" for k, v in sent.response_headers)
        for marker in TRACEBACK_MARKERS:
            assert marker not in everything, (
                f"[{self.name}] a stack trace in the answer:\n{sent.describe()}")
        for name, secret in self.secrets.items():
            assert secret not in everything, (
                f"[{self.name}] the {name} is in the answer:\n{sent.describe()}")
        location = sent.header("location")
        if location:
            target = urlsplit(location)
            assert (target.netloc in {"", f"127.0.0.1:{self.port}", "127.0.0.1"}
                    and not location.startswith("//")), (
                f"[{self.name}] a redirect off the site (open redirect):\n{sent.describe()}")
        if "text/html" in sent.header("content-type"):
            assert XSS_MARKER not in sent.text, (
                f"[{self.name}] input reflected unescaped into HTML:\n{sent.describe()}")

    # -- Slack signing ---------------------------------------------------------------------------

    def slack_headers(self, body: bytes, *, timestamp: int | str | None = None,
                      content_type: str = "application/json",
                      extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Headers Slack would send with `body`: the v0 signature over `v0:{ts}:{body}`."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        digest = hmac.new(self.signing_secret.encode(), b"v0:" + ts.encode() + b":" + body,
                          hashlib.sha256).hexdigest()
        headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
                   "X-Slack-Signature": f"v0={digest}"}
        headers.update(extra or {})
        return headers


def _behaviour_file(tmp_path: Path) -> Path:
    path = tmp_path / "fuzz-behaviour.yaml"
    path.write_text(BEHAVIOUR_YAML, encoding="utf-8")
    return path


def relax_admin_throttle(app: FastAPI) -> tuple[float, int] | None:
    """The admin area makes every failed sign-in wait 0.5 s and locks an address out after 10
    failures: a fuzz run would spend its time waiting, then see only 429s. Returns the
    previous (delay, max_failures) for `restore_admin_throttle`; None without an admin area."""
    throttle = getattr(getattr(app.state, "admin_auth", None), "throttle", None)
    if throttle is None:
        return None
    previous = (throttle.delay, throttle.max_failures)
    throttle.delay, throttle.max_failures = 0.0, 10**9
    return previous


def restore_admin_throttle(app: FastAPI, values: tuple[float, int]) -> None:
    throttle = app.state.admin_auth.throttle
    throttle.delay, throttle.max_failures = values


def _app_maker(built: dict[str, Any]) -> Callable[[Any], Any]:
    def make_app(hub: Any) -> Any:
        adapters = platform_adapters(hub, slack_update_interval=0.05,
                                     slack_native_streaming=False, teams_update_interval=0.05)
        app = create_app(hub, services=False, adapters=adapters)
        built["app"] = app
        built["admin_throttle"] = relax_admin_throttle(app)
        return app

    return make_app


@contextmanager
def open_world(tmp_path: Path, openai: FakeOpenAI, slack: FakeSlack,
               known_bug: Callable[..., str | None], log: ServerLog) -> Iterator[World]:
    settings = make_settings(
        tmp_path, openai, config_file=_behaviour_file(tmp_path), admin_token=ADMIN_TOKEN,
        slack_bot_token=slack.bot_token, slack_signing_secret=slack.signing_secret,
        slack_api_url=slack.api_url)
    built: dict[str, Any] = {}
    with running_server(settings, _app_maker(built)) as live:
        world = World(
            name="open", url=live.url, app=built["app"], live=live,
            secrets={"OpenAI key": openai.api_key, "Slack bot token": slack.bot_token,
                     "Slack signing secret": slack.signing_secret, "admin token": ADMIN_TOKEN},
            signing_secret=slack.signing_secret, teams_auth=False, slack_oauth=False,
            known_bug=known_bug, admin_throttle=built["admin_throttle"], log=log)
        try:
            yield world
        finally:
            world.client.close()


@contextmanager
def secure_world(tmp_path: Path, openai: FakeOpenAI, slack: FakeSlack, teams: FakeBotFramework,
                 known_bug: Callable[..., str | None], log: ServerLog) -> Iterator[World]:
    settings = make_settings(
        tmp_path, openai, config_file=_behaviour_file(tmp_path), admin_token=ADMIN_TOKEN,
        slack_client_id=SLACK_CLIENT_ID, slack_client_secret=SLACK_CLIENT_SECRET,
        slack_state_secret=SLACK_STATE_SECRET, slack_signing_secret=slack.signing_secret,
        slack_api_url=slack.api_url,
        microsoft_app_id=teams.app_id, microsoft_app_password=teams.app_password,
        teams_openid_metadata_url=teams.issuer.openid_metadata_url,
        teams_login_url=teams.issuer.login_url_prefix,
        teams_allowed_service_urls=teams.service_url)
    built: dict[str, Any] = {}
    with running_server(settings, _app_maker(built)) as live:
        world = World(
            name="secure", url=live.url, app=built["app"], live=live,
            secrets={"OpenAI key": openai.api_key, "Slack signing secret": slack.signing_secret,
                     "Slack client secret": SLACK_CLIENT_SECRET,
                     "Slack state secret": SLACK_STATE_SECRET,
                     "Microsoft app password": teams.app_password,
                     "admin token": ADMIN_TOKEN,
                     # tokens minted at run time: an installation's, the bot's own for Teams
                     "installed Slack bot token": "xoxb-installed-",
                     "Bot Framework access token": "fake-bf-token-"},
            signing_secret=slack.signing_secret, teams_auth=True, slack_oauth=True,
            known_bug=known_bug, admin_throttle=built["admin_throttle"], log=log)
        try:
            yield world
        finally:
            world.client.close()


# -- SSE --------------------------------------------------------------------------------------

_FRAME = re.compile(r"event: (?P<event>[^\n]*)\ndata: (?P<data>[^\n]*)\n\n")


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """The web chat's events; raises if the stream is not exactly a sequence of frames."""
    events = []
    position = 0
    for match in _FRAME.finditer(text):
        assert match.start() == position, f"junk in the event stream at {position}: {text!r}"
        events.append((match["event"], json.loads(match["data"])))
        position = match.end()
    assert position == len(text), f"a truncated event stream: {text[position:]!r}"
    return events


# -- the server's own log: crashes behind a 2xx ------------------------------------------------

@dataclass
class Crash:
    event: str
    exc: BaseException | None

    @property
    def error(self) -> str:
        return f"{type(self.exc).__name__}: {self.exc}"[:300] if self.exc is not None else "?"


def frames(exc: BaseException | None) -> list[str]:
    """The files along `exc`'s traceback, outermost first."""
    files = []
    traceback = exc.__traceback__ if exc is not None else None
    while traceback is not None:
        files.append(traceback.tb_frame.f_code.co_filename)
        traceback = traceback.tb_next
    return files


def raised_in(exc: BaseException | None) -> str:
    """The file where `exc` was raised ("" if unknown)."""
    return (frames(exc) or [""])[-1]


# slack_bolt turns an exception in its own request handling into an empty 500 and logs it.
BOLT_LOGGER = "slack_bolt"


class ServerLog:
    """Errors with a traceback that the server logs (structlog or the standard library): a
    listener that crashed after Slack was acknowledged answers nobody, yet its request got 200.
    The exception behind the latest 500 is kept in `unhandled`, so that a known bug can be
    recognized by where it was raised."""

    UNHANDLED = "http.unhandled"  # logged by the app's middleware for every 500

    def __init__(self) -> None:
        self.crashes: list[Crash] = []
        self.unhandled: BaseException | None = None

    def record(self, event: str, exc: BaseException | None) -> None:
        if event == self.UNHANDLED:  # judged by the 500 it became
            self.unhandled = exc
            return
        if event.startswith(BOLT_LOGGER):
            self.unhandled = exc
        self.crashes.append(Crash(event, exc))

    def clear(self) -> None:
        self.crashes.clear()

    def assert_no_crashes(self, explained: Callable[[Crash], str | None] | None = None) -> None:
        """No crash but those `explained` attributes to a known bug."""
        distinct = sorted({(c.event, c.error) for c in self.crashes
                           if explained is None or explained(c) is None})
        assert not distinct, "the server logged crashes:\n" + "\n".join(
            f"  {event}: {error}" for event, error in distinct)
