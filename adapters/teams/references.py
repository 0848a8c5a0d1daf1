"""Where bothub may speak in Teams unprompted: the conversation references Teams handed us.

Bot Framework only lets a bot post into a conversation it has seen (it needs the conversation's
service URL and ids), so the reference from the latest activity in each conversation is kept.
Escalations use them to post into a human channel and to relay an agent's reply back.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.repository import Repository
from bot.store.tables import TeamsConversation, utcnow


def channel_root(conversation_id: str) -> str:
    """A channel reply chain's id is the channel's id plus `;messageid=<root post>`."""
    return conversation_id.split(";", 1)[0]


class TeamsConversations(Repository):
    SEEN_LIMIT = 10_000

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        # What this process stored last per conversation: every message carries the reference,
        # but it rarely changes, so most messages need no write.
        self._seen: OrderedDict[str, tuple[str, str, str]] = OrderedDict()

    async def remember(self, reference: dict[str, Any], *, kind: str, tenant_id: str) -> None:
        """Keep the reference under the conversation's id and, for a channel reply chain,
        under the channel's own id too (posting there starts a new thread)."""
        conversation_id = str(reference.get("conversation", {}).get("id") or "")
        service_url = str(reference.get("serviceUrl") or reference.get("service_url") or "")
        if not conversation_id or not service_url or len(conversation_id) > 400:
            return
        stable = (service_url, kind, tenant_id)
        if self._seen.get(conversation_id) == stable:
            self._seen.move_to_end(conversation_id)
            return
        rows = [(conversation_id, reference)]
        root = channel_root(conversation_id)
        if kind == "channel" and root != conversation_id:
            channel_reference = {**reference, "activityId": None,
                                 "conversation": {**reference["conversation"], "id": root}}
            rows.append((root, channel_reference))
        async with self._session() as session:
            for key, value in rows:
                values = {"tenant_id": tenant_id[:64], "kind": kind[:16],
                          "service_url": service_url[:400], "reference": value,
                          "updated_at": utcnow()}
                await session.execute(
                    self._insert(TeamsConversation).values(conversation_id=key, **values)
                    .on_conflict_do_update(index_elements=["conversation_id"], set_=values))
        self._seen[conversation_id] = stable
        if len(self._seen) > self.SEEN_LIMIT:
            self._seen.popitem(last=False)

    async def find(self, conversation_id: str) -> dict[str, Any] | None:
        async with self._session() as session:
            row = await session.scalar(select(TeamsConversation.reference).where(
                TeamsConversation.conversation_id == conversation_id))
        return dict(row) if row is not None else None
