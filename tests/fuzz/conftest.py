"""The fakes (one per test worker, reset for every test) and the two apps under fuzz, built once
per worker for the whole package: starting an app costs a migration and a second or so."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests.conftest import shared_fake
from tests.fakes.botframework_server import FakeBotFramework
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack
from tests.fuzz.known_bugs import make_known_bug
from tests.fuzz.world import TOLERATED, ServerLog, World, open_world, secure_world

_slack_server, fake_slack = shared_fake(FakeSlack, "fake_slack")
_teams_server, fake_teams = shared_fake(FakeBotFramework, "fake_teams")


class _StdlibCrashes(logging.Handler):
    def __init__(self, log: ServerLog) -> None:
        super().__init__(logging.ERROR)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self._log.record(f"{record.name}: {record.getMessage()}"[:200], record.exc_info[1])


@pytest.fixture(scope="package")
def server_log() -> Iterator[ServerLog]:
    """Collects the tracebacks the servers log while the fuzz runs. Also renders structlog's
    tracebacks as plain text, as `bothub serve` does (`bot.logging`): the development default
    draws each with its frame locals, which costs seconds per 500 and would eat the time budget.
    The processor list is changed in place and restored (cached loggers hold the list)."""
    log = ServerLog()

    def collect(_logger: Any, method: str, event_dict: Any) -> Any:
        exc = event_dict.get("exc_info")
        if exc and (method in {"error", "critical", "exception"}
                    or event_dict.get("level") in {"error", "critical"}):
            if exc is True:
                exc = sys.exc_info()[1]
            elif isinstance(exc, tuple):
                exc = exc[1]
            log.record(str(event_dict.get("event")), exc if isinstance(exc, BaseException)
                       else None)
        return event_dict

    processors = structlog.get_config()["processors"]
    saved = list(processors)
    last = saved[-1] if saved else None
    tail: list[Any] = [last] if last is not None else []
    if isinstance(last, structlog.dev.ConsoleRenderer):
        tail = [structlog.processors.format_exc_info, structlog.dev.ConsoleRenderer(colors=False)]
    processors[:] = [*saved[:-1], collect, *tail]
    handler = _StdlibCrashes(log)
    logging.getLogger().addHandler(handler)
    try:
        yield log
    finally:
        logging.getLogger().removeHandler(handler)
        processors[:] = saved


@pytest.fixture(scope="package")
def open_app(tmp_path_factory: pytest.TempPathFactory, _fake_openai_server: FakeOpenAI,
             _fake_slack_server: FakeSlack, server_log: ServerLog) -> Iterator[World]:
    """Slack (bot token, signing secret), Teams without authentication, the web chat."""
    _fake_openai_server.reset()
    _fake_slack_server.reset()
    tmp: Path = tmp_path_factory.mktemp("fuzz-open")
    known = make_known_bug(_fake_slack_server.signing_secret, server_log)
    with open_world(tmp, _fake_openai_server, _fake_slack_server, known, server_log) as world:
        yield world


@pytest.fixture(scope="package")
def secure_app(tmp_path_factory: pytest.TempPathFactory, _fake_openai_server: FakeOpenAI,
               _fake_slack_server: FakeSlack, _fake_teams_server: FakeBotFramework,
               server_log: ServerLog) -> Iterator[World]:
    """Slack in OAuth mode, Teams with authentication (JWTs from the fake issuer), web chat."""
    _fake_openai_server.reset()
    _fake_slack_server.reset()
    _fake_teams_server.reset()
    tmp: Path = tmp_path_factory.mktemp("fuzz-secure")
    known = make_known_bug(_fake_slack_server.signing_secret, server_log)
    with secure_world(tmp, _fake_openai_server, _fake_slack_server, _fake_teams_server,
                      known, server_log) as world:
        yield world


@pytest.fixture
def trusts_fake_issuer(monkeypatch: pytest.MonkeyPatch, fake_teams: FakeBotFramework) -> None:
    """botbuilder fetches the issuer's OpenID metadata (and msal its tokens) over HTTPS with
    `requests`: trust the fake issuer's certificate while a test runs."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake_teams.issuer.ca_path)


@pytest.fixture(params=["open", "secure"])
def any_app(request: pytest.FixtureRequest) -> World:
    """Each fuzz against both apps; with the secure one, the fake issuer is trusted."""
    world: World = request.getfixturevalue(f"{request.param}_app")
    if request.param == "secure":
        request.getfixturevalue("trusts_fake_issuer")
    return world


@pytest.fixture
def crashes(server_log: ServerLog) -> Iterator[ServerLog]:
    """The test ends by asserting the servers logged no crash while it ran."""
    server_log.clear()
    yield server_log


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Which known bugs the fuzz ran into (shown when the fuzz runs in this process, i.e.
    without xdist; see tests/fuzz/known_bugs.py)."""
    if TOLERATED:
        terminalreporter.section("fuzz: 500s excused by known bugs")
        for bug, count in TOLERATED.most_common():
            terminalreporter.write_line(f"{count:5d}  {bug}")
