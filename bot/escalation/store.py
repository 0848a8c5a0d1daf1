"""Escalations and their transitions in SQL, on SQLite and PostgreSQL alike.

Every state change is one conditional UPDATE (`... WHERE state = 'open'`), so when two agents
claim at once, or two workers re-announce the same escalation, exactly one row changes and
exactly one of them wins; the loser is told what happened instead.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from bot.model import ConversationKey
from bot.store.repository import Repository, StorageUnavailable
from bot.store.tables import Escalation, EscalationEvent, utcnow

ACTIVE = ("open", "claimed")


class State(enum.StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Ticket:
    """One escalation as the rest of bothub sees it."""

    id: int
    conversation_id: int
    state: State
    reason: str
    detail: str
    summary: str
    user_id: str
    user_name: str
    origin: ConversationKey
    destination_platform: str
    destination: str
    destination_message: str | None
    destination_thread: str | None
    claimed_by: str | None
    claimed_by_name: str | None
    created_at: datetime
    claimed_at: datetime | None
    resolved_at: datetime | None
    announced_at: datetime | None
    announcements: int
    post_attempts: int

    @property
    def posted(self) -> bool:
        return self.destination_message is not None

    @property
    def cross_platform(self) -> bool:
        return bool(self.destination_platform) and \
            self.destination_platform != self.origin.platform


@dataclass(frozen=True, slots=True)
class Actor:
    id: str
    name: str = ""
    platform: str = ""


class Change(enum.StrEnum):
    """The answer to an agent's action."""

    DONE = "done"
    UNKNOWN = "unknown"
    ALREADY_CLAIMED = "already_claimed"
    NOT_CLAIMED = "not_claimed"
    ALREADY_RESOLVED = "already_resolved"


def _ticket(row: Escalation) -> Ticket:
    return Ticket(
        id=row.id, conversation_id=row.conversation_id, state=State(row.state),
        reason=row.reason, detail=row.detail, summary=row.summary, user_id=row.user_id,
        user_name=row.user_name,
        origin=ConversationKey(row.origin_platform, row.origin_workspace, row.origin_channel,
                               row.origin_thread),
        destination_platform=row.destination_platform, destination=row.destination,
        destination_message=row.destination_message,
        destination_thread=row.destination_thread, claimed_by=row.claimed_by,
        claimed_by_name=row.claimed_by_name, created_at=row.created_at,
        claimed_at=row.claimed_at, resolved_at=row.resolved_at,
        announced_at=row.announced_at, announcements=row.announcements,
        post_attempts=row.post_attempts)


class EscalationStore(Repository):
    async def open(self, conversation_id: int, origin: ConversationKey, *, reason: str,
                   detail: str, summary: str, user: Actor, destination_platform: str,
                   destination: str) -> tuple[Ticket, bool]:
        """The conversation's active escalation, created if there is none; True when created
        (a second trigger, or a race with another worker, joins the first)."""
        try:
            now = utcnow()  # announced now: a sweep elsewhere leaves the first post to us
            async with self._session() as session:
                row = Escalation(
                    conversation_id=conversation_id, state=State.OPEN.value, reason=reason[:32],
                    detail=detail, summary=summary, user_id=user.id[:128],
                    user_name=user.name[:200], origin_platform=origin.platform,
                    origin_workspace=origin.workspace, origin_channel=origin.channel,
                    origin_thread=origin.thread, destination_platform=destination_platform,
                    destination=destination, post_attempts=0, announcements=0,
                    save_to_knowledge=False, created_at=now, announced_at=now)
                session.add(row)
                await session.flush()
                session.add(EscalationEvent(escalation_id=row.id, action="opened",
                                            actor_id=user.id[:128], actor_name=user.name[:200],
                                            platform=origin.platform,
                                            detail={"reason": reason}, at=utcnow()))
                return _ticket(row), True
        except StorageUnavailable as exc:
            if not isinstance(exc.__cause__, IntegrityError):
                raise
        active = await self.active(conversation_id)
        if active is None:  # resolved in between: vanishingly rare; report as not created
            raise StorageUnavailable("escalation changed while opening")
        return active, False

    async def active(self, conversation_id: int) -> Ticket | None:
        async with self._session() as session:
            row = await session.scalar(select(Escalation).where(
                Escalation.conversation_id == conversation_id,
                Escalation.state.in_(ACTIVE)))
            return _ticket(row) if row is not None else None

    async def get(self, escalation_id: int) -> Ticket | None:
        async with self._session() as session:
            row = await session.get(Escalation, escalation_id)
            return _ticket(row) if row is not None else None

    async def by_post(self, platform: str, message_id: str) -> Ticket | None:
        """The escalation posted as `message_id` (or whose thread that is) on `platform`."""
        async with self._session() as session:
            row = await session.scalar(select(Escalation).where(
                Escalation.destination_platform == platform,
                or_(Escalation.destination_message == message_id,
                    Escalation.destination_thread == message_id))
                .order_by(Escalation.id.desc()).limit(1))
            return _ticket(row) if row is not None else None

    async def tickets(self, *, states: tuple[str, ...] = ACTIVE,
                      limit: int = 100) -> list[Ticket]:
        async with self._session() as session:
            rows = await session.scalars(select(Escalation).where(
                Escalation.state.in_(states)).order_by(Escalation.id).limit(limit))
            return [_ticket(row) for row in rows]

    async def counts(self) -> dict[str, int]:
        async with self._session() as session:
            rows = await session.execute(select(Escalation.state, func.count())
                                         .group_by(Escalation.state))
            return {str(state): int(count) for state, count in rows}

    async def events(self, escalation_id: int) -> list[dict[str, Any]]:
        async with self._session() as session:
            rows = await session.scalars(select(EscalationEvent).where(
                EscalationEvent.escalation_id == escalation_id).order_by(EscalationEvent.id))
            return [{"action": e.action, "actor_id": e.actor_id, "actor_name": e.actor_name,
                     "platform": e.platform, "detail": e.detail, "at": e.at} for e in rows]

    async def mark_posted(self, escalation_id: int, *, message_id: str,
                          thread_id: str | None) -> None:
        async with self._session() as session:
            now = utcnow()
            await session.execute(update(Escalation).where(Escalation.id == escalation_id)
                                  .values(destination_message=message_id,
                                          destination_thread=thread_id or message_id,
                                          announced_at=now,
                                          post_attempts=Escalation.post_attempts + 1))
            session.add(EscalationEvent(escalation_id=escalation_id, action="posted",
                                        detail={"message": message_id}, at=now))

    async def mark_post_failed(self, escalation_id: int, error: str) -> None:
        async with self._session() as session:
            now = utcnow()
            # No post any more (a re-post of a deleted one failed too): the sweep retries.
            await session.execute(update(Escalation).where(Escalation.id == escalation_id)
                                  .values(post_attempts=Escalation.post_attempts + 1,
                                          announced_at=now, destination_message=None,
                                          destination_thread=None))
            session.add(EscalationEvent(escalation_id=escalation_id, action="post_failed",
                                        detail={"error": error[:300]}, at=now))

    async def claim(self, escalation_id: int, agent: Actor) -> tuple[Change, Ticket | None]:
        return await self._transition(
            escalation_id, agent, "claimed", when={State.OPEN},
            values={"state": State.CLAIMED.value, "claimed_by": agent.id[:128],
                    "claimed_by_name": agent.name[:200], "claimed_at": utcnow()})

    async def release(self, escalation_id: int, agent: Actor) -> tuple[Change, Ticket | None]:
        return await self._transition(
            escalation_id, agent, "released", when={State.CLAIMED},
            values={"state": State.OPEN.value, "claimed_by": None, "claimed_by_name": None,
                    "claimed_at": None, "announced_at": utcnow()})

    async def resolve(self, escalation_id: int, agent: Actor, *,
                      save_to_knowledge: bool = False) -> tuple[Change, Ticket | None]:
        return await self._transition(
            escalation_id, agent, "resolved", when={State.OPEN, State.CLAIMED},
            values={"state": State.RESOLVED.value, "resolved_by": agent.id[:128],
                    "resolved_at": utcnow(), "save_to_knowledge": save_to_knowledge},
            detail={"save_to_knowledge": save_to_knowledge})

    async def _transition(self, escalation_id: int, actor: Actor, action: str, *,
                          when: set[State], values: dict[str, Any],
                          detail: dict[str, Any] | None = None
                          ) -> tuple[Change, Ticket | None]:
        async with self._session() as session:
            changed = await session.execute(
                update(Escalation)
                .where(Escalation.id == escalation_id,
                       Escalation.state.in_([state.value for state in when]))
                .values(**values))
            if changed.rowcount == 1:  # type: ignore[attr-defined]
                session.add(EscalationEvent(escalation_id=escalation_id, action=action,
                                            actor_id=actor.id[:128],
                                            actor_name=actor.name[:200],
                                            platform=actor.platform, detail=detail or {},
                                            at=utcnow()))
                await session.flush()
            row = await session.get(Escalation, escalation_id, populate_existing=True)
            if row is None:
                return Change.UNKNOWN, None
            ticket = _ticket(row)
        if changed.rowcount == 1:  # type: ignore[attr-defined]
            return Change.DONE, ticket
        if ticket.state is State.RESOLVED:
            return Change.ALREADY_RESOLVED, ticket
        if ticket.state is State.CLAIMED:
            return Change.ALREADY_CLAIMED, ticket
        return Change.NOT_CLAIMED, ticket

    async def due(self, *, sla: timedelta, retry_after: timedelta,
                  now: datetime | None = None) -> list[Ticket]:
        """Open escalations whose post failed and is due a retry, or which nobody claimed
        within the SLA since they were last announced."""
        now = now or utcnow()
        async with self._session() as session:
            rows = await session.scalars(select(Escalation).where(
                Escalation.state == State.OPEN.value,
                or_((Escalation.destination_message.is_(None)
                     & (Escalation.announced_at <= now - retry_after)),
                    (Escalation.destination_message.is_not(None)
                     & (Escalation.announced_at <= now - sla)))).order_by(Escalation.id))
            return [_ticket(row) for row in rows]

    async def take_turn(self, ticket: Ticket, *, now: datetime | None = None) -> bool:
        """Claim the right to re-announce or re-post `ticket` (one worker wins): moves its
        `announced_at` on from the value this worker read."""
        async with self._session() as session:
            condition = (Escalation.announced_at.is_(None) if ticket.announced_at is None
                         else Escalation.announced_at == ticket.announced_at)
            changed = await session.execute(
                update(Escalation).where(Escalation.id == ticket.id,
                                         Escalation.state == State.OPEN.value, condition)
                .values(announced_at=now or utcnow()))
            return bool(changed.rowcount == 1)  # type: ignore[attr-defined]

    async def mark_reannounced(self, escalation_id: int) -> None:
        async with self._session() as session:
            await session.execute(update(Escalation).where(Escalation.id == escalation_id)
                                  .values(announcements=Escalation.announcements + 1))
            session.add(EscalationEvent(escalation_id=escalation_id, action="reannounced",
                                        at=utcnow()))

    async def record(self, escalation_id: int, action: str, actor: Actor | None = None,
                     **detail: Any) -> None:
        """A transition-less event (relayed messages, a refused action)."""
        async with self._session() as session:
            session.add(EscalationEvent(
                escalation_id=escalation_id, action=action[:32],
                actor_id=(actor.id if actor else "")[:128],
                actor_name=(actor.name if actor else "")[:200],
                platform=actor.platform if actor else "", detail=detail, at=utcnow()))
