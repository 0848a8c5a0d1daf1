"""Escalations in SQL on SQLite and PostgreSQL: one active per conversation, one winner per
claim, every transition recorded, and SLA turns taken by one worker."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.escalation.store import Actor, Change, EscalationStore, State
from bot.model import ConversationKey
from bot.store.conversations import ConversationStore
from bot.store.database import create_engine
from bot.store.tables import utcnow

KEY = ConversationKey("slack", "T1", "C1", "1700000000.000100")
ADA = Actor("U0ADA", "Ada", "slack")


@pytest.fixture
async def conversation(database: AsyncEngine) -> int:
    return (await ConversationStore(database).open(KEY)).id


async def _open(store: EscalationStore, conversation: int, reason: str = "user_request"):
    return await store.open(conversation, KEY, reason=reason, detail="help", summary="User: help",
                            user=Actor("U0BOB", "Bob", "slack"), destination_platform="slack",
                            destination="C0AGENTS")


async def test_one_active_escalation_per_conversation(database: AsyncEngine,
                                                      conversation: int) -> None:
    store = EscalationStore(database)
    first, created = await _open(store, conversation)
    again, created_again = await _open(store, conversation, "nothing_found")
    assert created and not created_again and again.id == first.id
    assert again.reason == "user_request"
    await store.resolve(first.id, ADA)
    later, created_later = await _open(store, conversation)
    assert created_later and later.id != first.id  # a resolved one does not block a new one


async def test_two_triggers_at_once_open_one_escalation(database: AsyncEngine,
                                                        conversation: int) -> None:
    stores = [EscalationStore(database) for _ in range(5)]
    results = await asyncio.gather(*(_open(s, conversation) for s in stores))
    assert len({ticket.id for ticket, _ in results}) == 1
    assert sum(created for _, created in results) == 1


async def test_transitions_and_their_answers(database: AsyncEngine, conversation: int) -> None:
    store = EscalationStore(database)
    ticket, _ = await _open(store, conversation)
    assert (await store.release(ticket.id, ADA))[0] is Change.NOT_CLAIMED
    change, claimed = await store.claim(ticket.id, ADA)
    assert change is Change.DONE and claimed is not None
    assert claimed.state is State.CLAIMED and claimed.claimed_by_name == "Ada"
    assert (await store.claim(ticket.id, Actor("U0EVE", "Eve", "slack")))[0] is \
        Change.ALREADY_CLAIMED
    assert (await store.release(ticket.id, ADA))[0] is Change.DONE
    assert (await store.claim(ticket.id, ADA))[0] is Change.DONE
    assert (await store.resolve(ticket.id, ADA, save_to_knowledge=True))[0] is Change.DONE
    assert (await store.resolve(ticket.id, ADA))[0] is Change.ALREADY_RESOLVED
    assert (await store.claim(ticket.id, ADA))[0] is Change.ALREADY_RESOLVED
    assert (await store.claim(999_999, ADA))[0] is Change.UNKNOWN
    actions = [(e["action"], e["actor_id"]) for e in await store.events(ticket.id)]
    assert actions == [("opened", "U0BOB"), ("claimed", "U0ADA"), ("released", "U0ADA"),
                       ("claimed", "U0ADA"), ("resolved", "U0ADA")]


async def test_two_agents_claiming_at_once_exactly_one_wins(database_url: str,
                                                            conversation: int) -> None:
    engines = [create_engine(database_url) for _ in range(8)]
    try:
        ticket, _ = await _open(EscalationStore(engines[0]), conversation)
        results = await asyncio.gather(*(
            EscalationStore(engine).claim(ticket.id, Actor(f"U0AGENT{n}", f"Agent {n}", "slack"))
            for n, engine in enumerate(engines)))
    finally:
        for engine in engines:
            await engine.dispose()
    changes = [change for change, _ in results]
    assert changes.count(Change.DONE) == 1
    assert changes.count(Change.ALREADY_CLAIMED) == 7
    winner = next(t for c, t in results if c is Change.DONE)
    assert all(t is not None and t.claimed_by == winner.claimed_by for _, t in results)


async def test_sla_turns_are_taken_once(database: AsyncEngine, conversation: int) -> None:
    store = EscalationStore(database)
    ticket, _ = await _open(store, conversation)
    await store.mark_posted(ticket.id, message_id="1700000001.000200", thread_id=None)
    assert await store.due(sla=timedelta(minutes=30), retry_after=timedelta(minutes=1)) == []
    later = utcnow() + timedelta(minutes=31)
    [due] = await store.due(sla=timedelta(minutes=30), retry_after=timedelta(minutes=1),
                            now=later)
    takes = await asyncio.gather(*(EscalationStore(database).take_turn(due, now=later)
                                   for _ in range(4)))
    assert takes.count(True) == 1
    assert (await store.by_post("slack", "1700000001.000200")).id == ticket.id  # type: ignore[union-attr]


async def test_a_failed_post_is_due_for_a_retry(database: AsyncEngine, conversation: int) -> None:
    store = EscalationStore(database)
    ticket, _ = await _open(store, conversation)
    await store.mark_post_failed(ticket.id, "channel_not_found")
    soon = utcnow() + timedelta(seconds=61)
    [due] = await store.due(sla=timedelta(minutes=30), retry_after=timedelta(minutes=1), now=soon)
    assert due.id == ticket.id and not due.posted and due.post_attempts == 1
