"""`bothub check` against the real fakes: the platforms' servers, a server that never answers,
a port where nothing listens, and helpers to run the checks and read their findings."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.check import Finding, run_checks
from bot.config import Behaviour, Settings
from tests.conftest import make_settings, shared_fake
from tests.fakes.botframework_server import FakeBotFramework
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack

_slack_server, fake_slack = shared_fake(FakeSlack, "fake_slack")
_discord_server, fake_discord = shared_fake(FakeDiscord, "fake_discord")
_teams_server, fake_teams = shared_fake(FakeBotFramework, "fake_teams")


def check_settings(tmp_path: Path, fake: FakeOpenAI | None = None, **overrides: Any) -> Settings:
    return make_settings(tmp_path, fake, **overrides)


async def findings_for(settings: Settings, behaviour: Behaviour | None = None, *,
                       seconds: float = 30.0) -> list[Finding]:
    return await run_checks(settings, behaviour or Behaviour(), seconds=seconds)


def the(findings: list[Finding], part: str) -> Finding:
    """The one finding of `part`."""
    matching = [f for f in findings if f.part == part]
    assert len(matching) == 1, f"{part}: {matching} in {findings}"
    return matching[0]


class SilentServer:
    """Accepts TCP connections and never answers: a part that hangs."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # so that the accepting thread notices close()
        self.port = self._listener.getsockname()[1]
        self._connections: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._connections.append(connection)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for connection in self._connections:
            connection.close()
        self._thread.join(5)


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
