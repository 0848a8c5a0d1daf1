"""The inbox end to end through the engine: questions a dead worker had accepted are answered
once by another, and full answers owed after a model outage follow in the same thread."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from bot import replies
from bot.app import Hub
from bot.engine import Outcome
from bot.model import Reply
from bot.redelivery import MAX_ATTEMPTS
from bot.store.inbox import DONE, FAILED, WAITING_MODEL, Inbox, Journal
from bot.store.tables import InboxEntry, utcnow
from tests.conftest import make_settings, question
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

_ids = itertools.count(1)


@dataclass
class Thread:
    """A platform thread as a user sees it: message ids and their current text."""

    messages: dict[str, str] = field(default_factory=dict)
    edits: int = 0

    def write(self, journal: Journal, text: str) -> None:
        earlier = journal.existing()
        if earlier is not None:
            self.messages[earlier] = text
            self.edits += 1
        else:
            self.messages[f"m{next(_ids)}"] = text


@dataclass
class ThreadStream:
    channel: ThreadChannel
    message: str
    text: str = ""

    async def append(self, text: str) -> None:
        self.text += text
        self.channel.thread.messages[self.message] = self.text

    async def finish(self, reply: Reply) -> None:
        self.channel.thread.messages[self.message] = reply.text


@dataclass
class ThreadChannel:
    """Posts and edits like a platform adapter does, noting its answer in the journal."""

    thread: Thread
    journal: Journal

    async def post(self, reply: Reply) -> None:
        if reply.aside:
            self.thread.messages[f"m{next(_ids)}"] = reply.text
            return
        earlier = self.journal.existing()
        if earlier is None:
            earlier = f"m{next(_ids)}"
            await self.journal.note(earlier)
        else:
            self.thread.edits += 1
        self.thread.messages[earlier] = reply.text

    async def stream(self) -> ThreadStream:
        earlier = self.journal.existing()
        if earlier is None:
            earlier = f"m{next(_ids)}"
            self.thread.messages[earlier] = "…"
            await self.journal.note(earlier)
        return ThreadStream(self, earlier)


@dataclass
class FakePlatform:
    name: str = "test"
    threads: dict[str, Thread] = field(default_factory=dict)

    async def resume(self, route: Mapping[str, Any], journal: Journal) -> ThreadChannel | None:
        if route.get("gone"):
            return None
        return ThreadChannel(self.threads.setdefault(str(route["thread"]), Thread()), journal)


@pytest.fixture
async def hub(tmp_path: Path, fake_openai: FakeOpenAI, database_url: str) -> AsyncIterator[Hub]:
    hub = await Hub.create(make_settings(tmp_path, fake_openai, database_url=database_url,
                                         inbox_lease_seconds=1))
    yield hub
    await hub.close()


async def _expire_leases(hub: Hub) -> None:
    """What time does to a dead worker's leases, without waiting for it."""
    async with hub.database.begin() as connection:
        await connection.execute(update(InboxEntry).values(
            lease_until=utcnow() - timedelta(seconds=1)))


async def _states(hub: Hub) -> list[str]:
    async with hub.database.connect() as connection:
        return list((await connection.execute(
            select(InboxEntry.state).order_by(InboxEntry.id))).scalars())


async def _settle(hub: Hub) -> None:
    await hub.redelivery.tick()
    await hub.redelivery.drain()


async def test_a_question_accepted_by_a_dead_worker_is_answered_once_by_another(
        hub: Hub, fake_openai: FakeOpenAI) -> None:
    platform = FakePlatform()
    hub.redelivery.register(platform)
    accepted = await hub.engine.accept(question("How do I export invoices?", thread="t1"),
                                       route={"thread": "t1"})
    assert accepted.journal.entry_id is not None
    # The worker dies here: acknowledged, stored, never answered.
    fake_openai.queue(ScriptedReply(text="Use the export button."))
    await _settle(hub)
    assert platform.threads == {}  # its lease has not run out: nobody takes it yet
    await _expire_leases(hub)
    await _settle(hub)
    assert list(platform.threads["t1"].messages.values()) == ["Use the export button."]
    assert await _states(hub) == [DONE]
    await _expire_leases(hub)
    await _settle(hub)  # done stays done: no second answer
    assert len(platform.threads["t1"].messages) == 1
    assert len(fake_openai.chat_requests()) == 1


async def test_an_answer_cut_off_by_a_crash_is_finished_in_the_same_message(
        hub: Hub, fake_openai: FakeOpenAI) -> None:
    platform = FakePlatform()
    hub.redelivery.register(platform)
    thread = platform.threads.setdefault("t2", Thread())
    accepted = await hub.engine.accept(question("Where are my invoices?", thread="t2"),
                                       route={"thread": "t2"})
    # The first worker had posted its placeholder (and noted it) when it died.
    first = ThreadChannel(thread, accepted.journal)
    await first.stream()
    assert list(thread.messages.values()) == ["…"]
    fake_openai.queue(ScriptedReply(text="Under Billing, Invoices."))
    await _expire_leases(hub)
    await _settle(hub)
    assert list(thread.messages.values()) == ["Under Billing, Invoices."]


async def test_an_answer_stored_but_not_delivered_is_delivered_without_asking_again(
        hub: Hub, fake_openai: FakeOpenAI) -> None:
    platform = FakePlatform()
    hub.redelivery.register(platform)
    fake_openai.queue(ScriptedReply(text="Press Reset."))
    accepted = await hub.engine.accept(question("How do I reset?", thread="t3"),
                                       route={"thread": "t3"})
    channel = ThreadChannel(platform.threads.setdefault("t3", Thread()), accepted.journal)
    result = await hub.engine.respond(accepted, channel)
    assert result.outcome is Outcome.ANSWERED
    # As if the worker died after storing the answer, before settling its entry.
    async with hub.database.begin() as connection:
        await connection.execute(update(InboxEntry).values(state="working"))
    await _expire_leases(hub)
    await _settle(hub)
    assert list(platform.threads["t3"].messages.values()) == ["Press Reset."]
    assert platform.threads["t3"].edits == 1  # shown again in place, not posted twice
    assert len(fake_openai.chat_requests()) == 1  # the model was not asked again


async def test_two_workers_sweeping_at_once_take_each_question_once(
        hub: Hub, fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    platform = FakePlatform()
    hub.redelivery.register(platform)
    other = await Hub.create(hub.settings, apply_migrations=False)
    try:
        other.engine.inbox = Inbox(other.database, lease_seconds=1, worker="other")
        other_platform = FakePlatform(threads=platform.threads)
        other.redelivery.register(other_platform)
        for n in range(12):
            await hub.engine.accept(question(f"question {n}", thread=f"w{n}"),
                                    route={"thread": f"w{n}"})
        await _expire_leases(hub)
        await asyncio.gather(_settle(hub), _settle(other))
    finally:
        await other.close()
    assert sorted(platform.threads) == sorted(f"w{n}" for n in range(12))
    assert all(len(thread.messages) == 1 for thread in platform.threads.values())
    assert len(fake_openai.chat_requests()) == 12
    assert await _states(hub) == [DONE] * 12


async def test_during_an_outage_the_documentation_answers_and_the_full_answer_follows(
        hub: Hub, fake_openai: FakeOpenAI) -> None:
    platform = FakePlatform()
    hub.redelivery.register(platform)
    await hub.knowledge.sync(trigger="manual")
    thread = platform.threads.setdefault("t4", Thread())
    fake_openai.fail_next(3, status=503)
    accepted = await hub.engine.accept(
        question("How do I turn on two-factor authentication?", thread="t4"),
        route={"thread": "t4"})
    result = await hub.engine.respond(accepted, ThreadChannel(thread, accepted.journal))
    assert result.outcome is Outcome.MODEL_FAILED and result.model_down
    [first] = thread.messages.values()
    assert replies.MODEL_DOWN_KNOWLEDGE in first and replies.WILL_FOLLOW_UP in first
    assert await _states(hub) == [WAITING_MODEL]

    fake_openai.queue(ScriptedReply(text="Open Settings, then Security, then 2FA."))
    await _expire_leases(hub)
    await _settle(hub)
    assert list(thread.messages.values()) == [
        first, f"{replies.FOLLOW_UP}\n\nOpen Settings, then Security, then 2FA."]
    assert await _states(hub) == [DONE]


async def test_a_follow_up_that_fails_again_stays_quiet_and_waits(
        hub: Hub, fake_openai: FakeOpenAI) -> None:
    platform = FakePlatform()
    hub.redelivery.register(platform)
    thread = platform.threads.setdefault("t5", Thread())
    fake_openai.fail_next(20, status=503)
    accepted = await hub.engine.accept(question("Anything?", thread="t5"),
                                       route={"thread": "t5"})
    await hub.engine.respond(accepted, ThreadChannel(thread, accepted.journal))
    assert len(thread.messages) == 1
    await _expire_leases(hub)
    await _settle(hub)
    assert len(thread.messages) == 1  # no second apology
    assert await _states(hub) == [WAITING_MODEL]


async def test_a_question_that_keeps_killing_workers_is_given_up_politely(
        hub: Hub, fake_openai: FakeOpenAI) -> None:
    platform = FakePlatform()
    hub.redelivery.register(platform)
    await hub.engine.accept(question("poison", thread="t6"), route={"thread": "t6"})
    async with hub.database.begin() as connection:
        await connection.execute(update(InboxEntry).values(attempts=MAX_ATTEMPTS))
    await _expire_leases(hub)
    await _settle(hub)
    assert list(platform.threads["t6"].messages.values()) == [replies.UNEXPECTED]
    assert await _states(hub) == [FAILED]
    assert fake_openai.chat_requests() == []


async def test_a_conversation_no_adapter_can_reach_is_marked_failed(
        hub: Hub, fake_openai: FakeOpenAI) -> None:
    hub.redelivery.register(FakePlatform())
    await hub.engine.accept(question("hello", thread="t7"), route={"thread": "t7", "gone": 1})
    await hub.engine.accept(question("hello", thread="t8").__class__(
        key=question("x").key.__class__("elsewhere", "w", "c", "t8"), id="m8",
        author=question("x").author, text="hello"), route={"thread": "t8"})
    await _expire_leases(hub)
    await _settle(hub)
    assert await _states(hub) == [FAILED, FAILED]


async def test_a_duplicate_delivery_writes_no_second_entry(hub: Hub) -> None:
    message = question("once", thread="t9", message_id="same")
    first = await hub.engine.accept(message, route={"thread": "t9"})
    again = await hub.engine.accept(message, route={"thread": "t9"})
    assert first.early is None and again.early is not None
    assert again.early.outcome is Outcome.DUPLICATE
    assert await _states(hub) == ["working"]


async def test_web_chat_and_console_questions_need_no_inbox(hub: Hub,
                                                           fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="Hi."))
    from tests.fakes.recording_channel import RecordingChannel
    result = await hub.engine.handle(question("hi", thread="t10"), RecordingChannel())
    assert result.outcome is Outcome.ANSWERED
    assert await _states(hub) == []


async def test_settled_entries_are_forgotten_after_a_week(hub: Hub,
                                                          fake_openai: FakeOpenAI) -> None:
    from tests.fakes.recording_channel import RecordingChannel

    fake_openai.queue(ScriptedReply(text="One."), ScriptedReply(text="Two."))
    for thread in ("old", "new"):
        accepted = await hub.engine.accept(question("q", thread=thread),
                                           route={"thread": thread})
        await hub.engine.respond(accepted, RecordingChannel())
    async with hub.database.begin() as connection:
        await connection.execute(update(InboxEntry).where(InboxEntry.id == 1).values(
            done_at=utcnow() - timedelta(days=8)))
    assert await hub.engine.inbox.prune(timedelta(days=7)) == 1  # type: ignore[union-attr]
    assert await _states(hub) == [DONE]
    assert len(await hub.store.messages(1)) == 2  # the conversation itself is kept
