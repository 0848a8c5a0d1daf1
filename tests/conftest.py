"""Shared fixtures: the fake model server, databases on SQLite and PostgreSQL, a hub, a server."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import Hub
from bot.config import Settings
from bot.model import Author, ConversationKey, Message
from bot.server import create_app
from bot.store import migrate
from bot.store.database import create_engine
from tests.fakes.botframework_server import FakeBotFramework
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack
from tests.postgres import throwaway_database

POSTGRES_ADMIN_URL = os.environ.get("BOTHUB_TEST_POSTGRES_URL",
                                    "postgresql://postgres@127.0.0.1:5432/test")


class ResettableServer(Protocol):
    def start(self) -> Any: ...
    def stop(self) -> None: ...
    def reset(self) -> None: ...


def shared_fake(kind: Callable[[], ResettableServer], name: str) -> tuple[Any, Any]:
    """Fixtures for a fake server started once per test worker (starting one costs a thread
    and a socket) and reset around every test, so no test sees another's state. Bind both
    results at module level: pytest finds fixtures by module attribute."""

    @pytest.fixture(scope="session", name=f"_{name}_server")
    def server() -> Iterator[ResettableServer]:
        fake = kind()
        fake.start()
        try:
            yield fake
        finally:
            fake.stop()

    @pytest.fixture(name=name)
    def per_test(request: pytest.FixtureRequest) -> Iterator[ResettableServer]:
        fake: ResettableServer = request.getfixturevalue(f"_{name}_server")
        fake.reset()
        yield fake
        fake.reset()

    return server, per_test


_openai_server, fake_openai = shared_fake(FakeOpenAI, "fake_openai")
# The platform fakes, for the adapters' tests and for anything else that reaches a platform.
_slack_server, fake_slack = shared_fake(FakeSlack, "fake_slack")
_discord_server, fake_discord = shared_fake(FakeDiscord, "fake_discord")
_teams_server, fake_teams = shared_fake(FakeBotFramework, "fake_teams")


def _postgres_database() -> Iterator[str]:
    """A fresh, empty database per test, dropped afterwards: tests never see each other's rows."""
    with throwaway_database(POSTGRES_ADMIN_URL, "bothub_test", pytest.fail) as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_database()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bothub.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A database engine on each backend, migrated to head."""
    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    yield engine
    await engine.dispose()


def make_settings(tmp_path: Path, fake: FakeOpenAI | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "openai_api_key": fake.api_key if fake else None,
        "openai_base_url": fake.base_url if fake else None,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bothub.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
async def hub(tmp_path: Path, fake_openai: FakeOpenAI) -> AsyncIterator[Hub]:
    hub = await Hub.create(make_settings(tmp_path, fake_openai))
    yield hub
    await hub.close()


def question(text: str, *, thread: str = "t1", message_id: str | None = None,
             **fields: Any) -> Message:
    return Message(key=ConversationKey("test", "w1", "c1", thread),
                   id=message_id or uuid.uuid4().hex, author=Author(id="u1", display_name="Ada"),
                   text=text, **fields)


@dataclass
class LiveServer:
    url: str
    hub: Hub
    loop: asyncio.AbstractEventLoop

    def run(self, coroutine: Any) -> Any:
        """Await `coroutine` on the server's own loop (where its database engine lives)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def running_server(settings: Settings, make_app: Callable[[Hub], Any] | None = None, *,
                   proxy_headers: bool = True) -> Iterator[LiveServer]:
    """The real HTTP app on a real socket, in a thread with its own event loop; `make_app`
    builds it from the hub (default: the web chat only, no background services).
    `proxy_headers=False` is how `bothub serve` runs uvicorn (see `bot.peer`)."""
    sock = _free_socket()
    port = sock.getsockname()[1]
    ready = threading.Event()
    state: dict[str, Any] = {}
    build = make_app or (lambda hub: create_app(hub, services=False, adapters=[]))

    async def main() -> None:
        hub = await Hub.create(settings)
        server = uvicorn.Server(uvicorn.Config(build(hub), log_config=None, lifespan="on",
                                               proxy_headers=proxy_headers))
        state.update(hub=hub, server=server, loop=asyncio.get_running_loop())
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not serving.done():  # noqa: ASYNC110 (no startup event)
            await asyncio.sleep(0.01)
        ready.set()
        await serving

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    if not ready.wait(20) or "server" not in state:
        pytest.fail("the bothub test server did not start")
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", hub=state["hub"], loop=state["loop"])
    finally:
        state["server"].should_exit = True
        thread.join(15)
        sock.close()


@pytest.fixture
def live_server(tmp_path: Path, fake_openai: FakeOpenAI) -> Iterator[LiveServer]:
    with running_server(make_settings(tmp_path, fake_openai)) as server:
        yield server


def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting")
