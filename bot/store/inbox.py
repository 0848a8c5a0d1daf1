"""The durable inbox: questions accepted from a platform until their answer is delivered.

An entry is written in the same transaction as the user's turn, before the platform is
acknowledged, and a worker holds it by a lease it keeps renewing while it answers. When a worker
dies (a crash, `kill -9`, a lost machine) its leases run out and any other worker claims the
entries: `FOR UPDATE SKIP LOCKED` on PostgreSQL, so two workers sweeping at once never take the
same entry; SQLite serialises writers anyway. What an attempt already posted is kept on the entry
(`posted`), so the next attempt edits that message instead of posting a second answer.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, select, update

from bot.store.repository import Repository
from bot.store.tables import InboxEntry, StoredMessage, utcnow

WORKING = "working"
WAITING_MODEL = "waiting_model"  # answered from the documentation; a full answer is owed
DONE = "done"
FAILED = "failed"

# Names this process on every row it holds: host and pid for people reading the table, a random
# suffix so that a restarted process with a recycled pid is never mistaken for the old one.
WORKER = f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"

# The statements every answer runs, built once with bound parameters (see
# `bot.store.conversations`): a Core UPDATE gets its SET clause from the parameters' names.
_INBOX = cast(Table, InboxEntry.__table__)
_BY_ID = _INBOX.c.id == bindparam("entry_id")
_SET_ON_ENTRY = update(_INBOX).where(_BY_ID)
_SET_ON_HELD_ENTRY = update(_INBOX).where(_BY_ID, _INBOX.c.worker == bindparam("holder"))
_HOLDER = select(_INBOX.c.worker).where(_BY_ID)


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    message_id: int
    conversation_id: int
    platform: str
    state: str
    envelope: Mapping[str, Any]
    route: Mapping[str, Any]
    posted: Mapping[str, str]
    attempts: int
    created_at: datetime


@dataclass(slots=True)
class Journal:
    """What one answer has already put on the platform. A reply channel notes the message it
    creates for the answer and, on a retry of the same answer, edits that message instead of
    posting another. `slot` separates the answer from a later full answer owed after an
    outage, which is a message of its own."""

    inbox: Inbox | None
    entry_id: int | None
    posted: dict[str, str] = field(default_factory=dict)
    slot: str = "answer"

    def existing(self) -> str | None:
        """The platform id of the message an earlier attempt posted, if any."""
        return self.posted.get(self.slot)

    def starting(self) -> bool:
        """An earlier attempt was about to create the answer's message (see `intend`)."""
        return self.posted.get(f"{self.slot}.starting") == "1"

    async def intend(self) -> None:
        """Note that the answer's message is about to be created, for platforms that cannot
        tag it (Slack's chat streaming): a retry then knows to look for an untagged one."""
        if self.entry_id is None or self.starting():
            return
        self.posted[f"{self.slot}.starting"] = "1"
        if self.inbox is not None:
            await self.inbox.record_posted(self.entry_id, dict(self.posted))

    async def others(self) -> set[str]:
        """Messages the conversation's other answers have noted: never this answer's."""
        if self.inbox is None or self.entry_id is None:
            return set()
        return await self.inbox.posted_elsewhere(self.entry_id)

    async def note(self, platform_id: str) -> None:
        if self.posted.get(self.slot) == platform_id:
            return
        self.posted[self.slot] = platform_id
        if self.inbox is not None and self.entry_id is not None:
            await self.inbox.record_posted(self.entry_id, dict(self.posted))


def unjournaled() -> Journal:
    """For answers no platform will ask for again (web chat, console, CLI)."""
    return Journal(None, None)


class Inbox(Repository):
    def __init__(self, engine: Any, *, lease_seconds: float = 60.0,
                 worker: str = WORKER) -> None:
        super().__init__(engine)
        self.lease = timedelta(seconds=lease_seconds)
        self.worker = worker
        # Entries an answer in this process is working on: only these are renewed, so an
        # entry whose answer was lost (a task that died) is retried like a dead worker's.
        self.active: set[int] = set()

    async def renew(self) -> int:
        """Extend the lease of every entry this worker is answering (one statement a beat,
        however many answers are in flight)."""
        if not self.active:
            return 0
        async with self._session() as session:
            result = await session.execute(
                update(InboxEntry)
                .where(InboxEntry.id.in_(sorted(self.active)),
                       InboxEntry.worker == self.worker, InboxEntry.state == WORKING)
                .values(lease_until=utcnow() + self.lease))
            return int(getattr(result, "rowcount", 0) or 0)

    async def record_posted(self, entry_id: int, posted: Mapping[str, str]) -> None:
        async with self._transaction() as connection:
            await connection.execute(_SET_ON_ENTRY, {"entry_id": entry_id,
                                                     "posted": dict(posted)})

    async def posted_elsewhere(self, entry_id: int) -> set[str]:
        """What the other entries of this entry's conversation have posted."""
        async with self._session() as session:
            conversation = select(InboxEntry.conversation_id) \
                .where(InboxEntry.id == entry_id).scalar_subquery()
            rows = await session.scalars(
                select(InboxEntry.posted).where(InboxEntry.conversation_id == conversation,
                                                InboxEntry.id != entry_id))
            return {str(value) for posted in rows for key, value in (posted or {}).items()
                    if not key.endswith(".starting")}

    async def holds(self, entry_id: int) -> bool:
        """Whether this worker still holds the entry: a worker too slow to renew its lease
        (a stalled machine) may have lost it to another, which then answers instead."""
        async with self._transaction() as connection:
            worker = (await connection.execute(_HOLDER, {"entry_id": entry_id})).scalar()
        return worker == self.worker

    async def finish(self, entry_id: int, state: str = DONE, *,
                     retry_in: timedelta | None = None) -> None:
        """`WAITING_MODEL` with `retry_in`: try a full answer again after that long. Only the
        worker holding the entry settles it."""
        values: dict[str, Any] = {"entry_id": entry_id, "holder": self.worker, "state": state}
        if state in (DONE, FAILED):
            values["done_at"] = utcnow()
        if retry_in is not None:
            values["lease_until"] = utcnow() + retry_in
        async with self._transaction() as connection:
            await connection.execute(_SET_ON_HELD_ENTRY, values)

    async def claim(self, state: str = WORKING, *, limit: int = 20) -> list[Entry]:
        """Entries in `state` whose lease (or wait) ran out, now held by this worker, with
        attempts counted; `Entry.state` says which state they were claimed from."""
        now = utcnow()
        due = (select(InboxEntry.id)
               .where(InboxEntry.state == state, InboxEntry.lease_until < now)
               .order_by(InboxEntry.id).limit(limit)
               .with_for_update(skip_locked=True))
        async with self._session() as session:
            result = await session.execute(
                update(InboxEntry)
                .where(InboxEntry.id.in_(due), InboxEntry.lease_until < now)
                .values(state=WORKING, worker=self.worker, lease_until=now + self.lease,
                        attempts=InboxEntry.attempts + 1)
                .returning(InboxEntry))
            rows = result.scalars().all()
        return sorted((_entry(row, state) for row in rows), key=lambda entry: entry.id)

    async def prune(self, older_than: timedelta) -> int:
        """Forget settled entries after a while (the turns and answers stay in `messages`)."""
        async with self._session() as session:
            result = await session.execute(
                delete(InboxEntry).where(InboxEntry.state.in_([DONE, FAILED]),
                                         InboxEntry.done_at < utcnow() - older_than))
            return int(getattr(result, "rowcount", 0) or 0)

    async def answer_to(self, message_id: int) -> StoredMessage | None:
        """The answer already stored for a user turn (an attempt that died after storing it
        but before marking its entry done)."""
        async with self._session() as session:
            return (await session.execute(
                select(StoredMessage)
                .where(StoredMessage.reply_to_id == message_id,
                       StoredMessage.role == "assistant")
                .order_by(StoredMessage.id.desc()).limit(1))).scalar_one_or_none()

    async def counts(self) -> dict[str, int]:
        """Entries by state, for /healthz and the figures of the crash test."""
        async with self._session() as session:
            rows = await session.execute(
                select(InboxEntry.state, func.count()).group_by(InboxEntry.state))
            return {state: int(count) for state, count in rows.all()}


def _entry(row: InboxEntry, state: str) -> Entry:
    return Entry(id=row.id, message_id=row.message_id, conversation_id=row.conversation_id,
                 platform=row.platform, state=state, envelope=dict(row.envelope or {}),
                 route=dict(row.route or {}),
                 posted={str(k): str(v) for k, v in (row.posted or {}).items()},
                 attempts=row.attempts, created_at=row.created_at)
