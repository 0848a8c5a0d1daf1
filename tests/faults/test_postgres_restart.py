"""PostgreSQL restarted under a running hub: the hub itself is never restarted.

While the database is down every question gets the polite storage reply and /healthz says so;
once it is back the same hub (the same connection pool) answers again and still remembers the
conversation. Both a clean restart (`-m fast`) and a crash-like one (`-m immediate`) are covered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app import Hub
from bot.engine import Outcome, Result
from bot.model import ReplyMode
from bot.replies import STORAGE_DOWN
from bot.server import create_app
from tests.conftest import make_settings, question
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.recording_channel import RecordingChannel, RecordingStream
from tests.faults.conftest import PrivateCluster

MODES = ["fast", "immediate"]
FIRST = "My order number is 4417."
FIRST_ANSWER = f"You said: {FIRST}"  # the fake model's default answer echoes the question


@dataclass
class GatedStream(RecordingStream):
    """Holds the answer after its first piece until released: the question is mid-answer
    (the model is streaming, nothing about the answer is stored yet) for as long as we like."""

    reached: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def append(self, text: str) -> None:
        if not self.deltas:
            self.reached.set()
            await asyncio.wait_for(self.release.wait(), 30)
        await super().append(text)


@dataclass
class GatedChannel(RecordingChannel):
    gate: GatedStream = field(default_factory=GatedStream)

    async def stream(self) -> RecordingStream:
        self.streams.append(self.gate)
        return self.gate


@pytest.fixture
async def hub(tmp_path: Path, fake_openai: FakeOpenAI,
              restartable_postgres_url: str) -> AsyncIterator[Hub]:
    hub = await Hub.create(make_settings(tmp_path, fake_openai,
                                         database_url=restartable_postgres_url))
    yield hub
    await hub.close()


async def ask(hub: Hub, text: str) -> tuple[Result, RecordingChannel]:
    channel = RecordingChannel()
    return await hub.engine.handle(question(text), channel), channel


async def ask_while_held(hub: Hub, text: str) -> tuple[asyncio.Task[Result], GatedChannel]:
    """A question whose answer is streaming and held (see GatedStream)."""
    channel = GatedChannel()
    task = asyncio.create_task(hub.engine.handle(question(text), channel))
    await asyncio.wait_for(channel.gate.reached.wait(), 10)
    return task, channel


async def health(hub: Hub) -> dict[str, Any]:
    app = create_app(hub, services=False, adapters=[])
    transport = httpx.ASGITransport(app=app)  # no lifespan: the app must not close our hub
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def history_of(request: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in request["messages"] if m["role"] != "system"]


async def expect_answered(hub: Hub, text: str) -> Result:
    result, channel = await ask(hub, text)
    assert result.outcome is Outcome.ANSWERED, channel.shown
    [reply] = channel.shown
    assert reply.mode is ReplyMode.MODEL and reply.text == f"You said: {text}"
    return result


@pytest.mark.parametrize("mode", MODES)
async def test_restart_while_an_answer_is_streaming(hub: Hub, fake_openai: FakeOpenAI,
                                                    private_postgres: PrivateCluster,
                                                    mode: str) -> None:
    first = await expect_answered(hub, FIRST)

    # The question is stored and its answer is streaming when the database restarts under it.
    task, channel = await ask_while_held(hub, "Where is it now?")
    await asyncio.to_thread(private_postgres.restart, mode)
    channel.gate.release.set()
    result = await asyncio.wait_for(task, 30)

    assert result.outcome is Outcome.ANSWERED
    [reply] = channel.shown
    assert reply.text == "You said: Where is it now?"
    # The pool threw away its dead connections: the answer was stored on the new server.
    rows = await hub.store.messages(first.conversation_id or 0)
    assert [(r.role, r.status) for r in rows] == [("user", "ok"), ("assistant", "ok")] * 2
    assert (await health(hub))["components"]["database"]["state"] == "ok"

    await expect_answered(hub, "What was my order number?")
    assert history_of(fake_openai.chat_requests()[-1]) == [
        ("user", FIRST), ("assistant", FIRST_ANSWER),
        ("user", "Where is it now?"), ("assistant", "You said: Where is it now?"),
        ("user", "What was my order number?")]


@pytest.mark.parametrize("mode", MODES)
async def test_down_then_back(hub: Hub, fake_openai: FakeOpenAI,
                              private_postgres: PrivateCluster, mode: str) -> None:
    await expect_answered(hub, FIRST)
    before = await health(hub)
    assert before["status"] == "ok" and before["components"]["database"]["state"] == "ok"

    # Stopped while an answer streams: the user still gets it; only our record of it is lost.
    task, held = await ask_while_held(hub, "Are you still there?")
    await asyncio.to_thread(private_postgres.stop, mode)
    held.gate.release.set()
    in_flight = await asyncio.wait_for(task, 30)
    assert in_flight.outcome is Outcome.ANSWERED
    assert [r.text for r in held.shown] == ["You said: Are you still there?"]

    # While it is down: the polite reply, every time, and no model call that could not be stored.
    requests_before = len(fake_openai.chat_requests())
    for text in ("Hello?", "Anyone?"):
        result, channel = await ask(hub, text)
        assert result.outcome is Outcome.STORAGE_FAILED
        assert [(r.text, r.mode) for r in channel.shown] == [(STORAGE_DOWN, ReplyMode.NOTICE)]
    assert len(fake_openai.chat_requests()) == requests_before
    down = await health(hub)
    assert down["status"] == "degraded"
    assert down["components"]["database"]["state"] == "down"
    assert "error" in down["components"]["database"]

    await asyncio.to_thread(private_postgres.start)

    # Back: the same hub answers at once, with the conversation's earlier turns.
    up = await health(hub)
    assert up["status"] == "ok" and up["components"]["database"]["state"] == "ok"
    await expect_answered(hub, "What was my order number?")
    turns = history_of(fake_openai.chat_requests()[-1])
    assert turns[:2] == [("user", FIRST), ("assistant", FIRST_ANSWER)]
    assert turns[-1] == ("user", "What was my order number?")
    # The questions asked while it was down were never stored, so they are not in the history.
    assert all(text not in ("Hello?", "Anyone?") for _, text in turns)
