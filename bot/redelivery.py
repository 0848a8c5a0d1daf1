"""Answers owed from the inbox: questions a dead worker had accepted, and full answers promised
while the model was down.

Every worker runs `Redelivery.tick` a few times per lease: it renews the leases of the answers
it is working on, then claims what other workers left behind (their leases ran out) and answers
it in the same thread, through the adapter of the platform the question came from. A platform
adapter takes part by offering `resume(route, journal)`: a reply channel to the conversation
described by the `route` it gave when the message was accepted.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import structlog

from adapters.base import InFlight, ReplyChannel
from bot import metrics, replies
from bot.engine import Accepted, Engine
from bot.model import Message, Reply, ReplyMode
from bot.store.inbox import DONE, FAILED, WAITING_MODEL, WORKING, Entry, Inbox, Journal
from bot.store.repository import StorageUnavailable

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 3  # a question that took down three workers is not tried a fourth time
FOLLOW_UP_MAX_AGE = timedelta(hours=6)  # after that a full answer would come too late to help
MAX_CONCURRENT = 32  # answers taken over at once by one worker, so a restart is not a stampede
KEEP_SETTLED = timedelta(days=7)  # settled entries are kept this long, for inspection
PRUNE_EVERY_SECONDS = 3600.0


@runtime_checkable
class Resumer(Protocol):
    """What an adapter offers to answer again in a conversation it accepted a message from."""

    name: str

    async def resume(self, route: Mapping[str, Any], journal: Journal) -> ReplyChannel | None:
        """A reply channel for `route`; None when that conversation can no longer be reached
        (the workspace uninstalled the app, say)."""


class Redelivery:
    def __init__(self, engine: Engine, inbox: Inbox) -> None:
        self._engine = engine
        self._inbox = inbox
        self._resumers: dict[str, Resumer] = {}
        self._in_flight = InFlight()
        self._running = 0
        self._pruned_at: float | None = None

    @property
    def interval(self) -> float:
        """How often `tick` runs: a few times per lease, so a lease never lapses by accident."""
        return max(0.2, min(10.0, self._inbox.lease.total_seconds() / 4))

    def register(self, resumer: Resumer) -> None:
        self._resumers[resumer.name] = resumer

    async def tick(self) -> None:
        try:
            await self._inbox.renew()
            now = time.monotonic()
            if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY_SECONDS:
                self._pruned_at = now
                await self._inbox.prune(KEEP_SETTLED)
            room = MAX_CONCURRENT - self._running
            if room <= 0:
                return
            entries = await self._inbox.claim(WORKING, limit=room)
            if self._engine.model_available() and len(entries) < room:
                entries += await self._inbox.claim(WAITING_MODEL, limit=room - len(entries))
        except StorageUnavailable as exc:
            log.warning("inbox.sweep_failed", reason=exc.reason)
            return
        for entry in entries:
            self._running += 1
            self._in_flight.spawn(self._answer(entry))

    async def drain(self) -> None:
        await self._in_flight.drain()

    async def _answer(self, entry: Entry) -> None:
        bound = log.bind(entry=entry.id, platform=entry.platform, attempt=entry.attempts,
                         claimed_from=entry.state)
        try:
            await self._take_over(entry, bound)
        except StorageUnavailable as exc:
            bound.warning("inbox.take_over_failed", reason=exc.reason)
        except Exception:
            bound.exception("inbox.take_over_failed")
        finally:
            self._running -= 1

    async def _take_over(self, entry: Entry, log: structlog.typing.FilteringBoundLogger) -> None:
        follow_up = entry.state == WAITING_MODEL
        if follow_up and _age(entry) > FOLLOW_UP_MAX_AGE:
            log.info("inbox.follow_up_abandoned")
            await self._inbox.finish(entry.id, DONE)
            return
        journal = Journal(self._inbox, entry.id, dict(entry.posted),
                          slot="follow_up" if follow_up else "answer")
        resumer = self._resumers.get(entry.platform)
        channel = await resumer.resume(entry.route, journal) if resumer is not None else None
        if channel is None:
            log.warning("inbox.unreachable", hint="no adapter can reply there any more")
            await self._inbox.finish(entry.id, FAILED)
            return
        if not follow_up and entry.attempts > MAX_ATTEMPTS:
            log.error("inbox.gave_up", attempts=entry.attempts)
            await channel.post(Reply(replies.UNEXPECTED, ReplyMode.NOTICE))
            await self._inbox.finish(entry.id, FAILED)
            return
        # The conversation as it is now (its running summary may have moved on); the entry
        # is deleted with it, so it is there.
        conversation = await self._engine.conversation_state(entry.conversation_id)
        message = Message.from_envelope(entry.envelope)
        accepted = Accepted(message, message.text, conversation, entry.message_id, journal,
                            resumed=not follow_up, follow_up=follow_up)
        log.info("inbox.taking_over")
        metrics.INBOX_TAKEN_OVER.add(1, {"platform": entry.platform,
                                         "kind": "follow_up" if follow_up else "resumed"})
        await self._engine.respond(accepted, channel)


def _age(entry: Entry) -> timedelta:
    created = entry.created_at
    if created.tzinfo is None:  # SQLite hands back naive UTC
        created = created.replace(tzinfo=UTC)
    return datetime.now(UTC) - created
