"""Rate limits through the engine: a flood is stored but not answered, the user is told once,
workers share the limits through Redis, and a Redis outage degrades instead of failing."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path

import httpx
import redis

from bot.app import Hub
from bot.engine import Outcome
from bot.model import Author, Reply
from tests.conftest import make_settings, question, running_server, write_config
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.recording_channel import RecordingChannel, RecordingStream

CONFIG = "limits:\n  rate: {user: {per_minute: 1, burst: 3}}\n"


async def test_a_flood_is_kept_and_the_user_is_told_once(tmp_path: Path,
                                                         fake_openai: FakeOpenAI) -> None:
    hub = await Hub.create(make_settings(tmp_path, fake_openai,
                                         config_file=write_config(tmp_path, CONFIG)))
    try:
        outcomes, shown = [], []
        for n in range(6):
            channel = RecordingChannel()
            result = await hub.engine.handle(question(f"question {n}"), channel)
            outcomes.append(result.outcome)
            shown.append([reply.text for reply in channel.shown])
        assert outcomes == [Outcome.ANSWERED] * 3 + [Outcome.RATE_LIMITED] * 3
        assert "ask again in about" in shown[3][0] and "saved" in shown[3][0]
        assert shown[4] == [] and shown[5] == []  # once, not a flood
        assert len(fake_openai.chat_requests()) == 3
        rows = await hub.store.messages(result.conversation_id or 0)
        assert [r.text for r in rows if r.role == "user"] == [f"question {n}" for n in range(6)]
    finally:
        await hub.close()


async def test_workers_share_one_limit_through_redis(tmp_path: Path,
                                                     fake_openai: FakeOpenAI) -> None:
    url = "redis://127.0.0.1:6379/0"
    settings = make_settings(tmp_path, fake_openai, redis_url=url,
                             config_file=write_config(tmp_path, CONFIG))
    first, second = await Hub.create(settings), await Hub.create(settings)
    user = f"u-{uuid.uuid4().hex}"  # a fresh bucket in the shared Redis
    try:
        outcomes = []
        for n in range(4):
            hub = first if n % 2 == 0 else second
            message = replace(question(f"q{n}", thread=f"t{n}"), author=Author(user, "Ada"))
            outcomes.append((await hub.engine.handle(message, RecordingChannel())).outcome)
        assert outcomes == [Outcome.ANSWERED] * 3 + [Outcome.RATE_LIMITED]
    finally:
        await first.close()
        await second.close()
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(f"*{user}*"):
            client.delete(key)
        client.close()


def test_redis_down_degrades_and_health_says_so(tmp_path: Path,
                                                fake_openai: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, fake_openai, redis_url="redis://127.0.0.1:1/0")
    with running_server(settings) as server:
        answer = httpx.post(f"{server.url}/api/chat", json={"message": "still there?"},
                            timeout=15)
        assert answer.status_code == 200 and "You said: still there?" in answer.text
        limits = httpx.get(f"{server.url}/healthz", timeout=5).json()["components"]["limits"]
        assert limits == {"backend": "redis", "state": "degraded", "error": "ConnectionError"}


class _OpenStreams:
    """Reply channels that count how many answers are being streamed at the same moment."""

    def __init__(self) -> None:
        self.open = self.most = 0

    def channel(self) -> RecordingChannel:
        counter = self

        class Counting(RecordingChannel):
            async def stream(self) -> RecordingStream:
                counter.open += 1
                counter.most = max(counter.most, counter.open)
                stream = await super().stream()
                finish = stream.finish

                async def finished(reply: Reply) -> None:
                    counter.open -= 1
                    await finish(reply)

                stream.finish = finished  # type: ignore[method-assign]
                return stream

        return Counting()


async def test_a_burst_waits_its_turn_for_answer_slots_and_every_question_is_answered(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    config = ("limits:\n  max_concurrent_answers: 2\n"
              "  rate: {user: {per_minute: 1000, burst: 1000}}\n")
    hub = await Hub.create(make_settings(tmp_path, fake_openai,
                                         config_file=write_config(tmp_path, config)))
    fake_openai.default_delay = 0.1
    streams = _OpenStreams()
    channels = [streams.channel() for _ in range(8)]
    try:
        results = await asyncio.gather(*(
            hub.engine.handle(question(f"burst question {n}", thread=f"burst-{n}"), channel)
            for n, channel in enumerate(channels)))
        assert [r.outcome for r in results] == [Outcome.ANSWERED] * 8
        assert streams.most == 2  # the slots were used, and never more than two at once
        for n, channel in enumerate(channels):
            [answer] = channel.shown
            assert answer.text == f"You said: burst question {n}"
        assert len(fake_openai.chat_requests()) == 8
    finally:
        await hub.close()
