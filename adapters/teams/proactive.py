"""Speaking in Teams unprompted: posts, edits and member lists through stored conversation
references (see `references`), or through `TEAMS_SERVICE_URL` for a conversation id given by
hand. Escalations use it to post into the human channel and to write into users' chats.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.base import DestinationUnavailable
from adapters.teams.references import TeamsConversations, channel_root
from adapters.teams.wiring import BotFrameworkConnection, Turn
from bot.store.repository import StorageUnavailable

CHAIN = ";messageid="
# Teams' channel ids ("19:…@thread.tacv2", older "19:…@thread.skype"); a group chat's is
# "19:…@thread.v2", a 1:1 chat's "a:…" or "8:…".
CHANNEL_SUFFIXES = ("@thread.tacv2", "@thread.skype")


def chain_id(channel: str, root: str) -> str:
    """The conversation id of a channel reply chain (the thread under post `root`)."""
    return f"{channel_root(channel)}{CHAIN}{root}"


class Proactive:
    def __init__(self, connection: BotFrameworkConnection, conversations: TeamsConversations,
                 *, allows: Callable[[str], bool], default_service_url: str | None) -> None:
        self._connection = connection
        self._conversations = conversations
        self._allows = allows
        self._default_service_url = default_service_url

    async def reference(self, conversation_id: str) -> dict[str, Any]:
        """The conversation reference to reach `conversation_id` with: the one stored for it,
        for a reply chain the channel's own (re-addressed to the chain), or one built from
        `TEAMS_SERVICE_URL`. Raises `DestinationUnavailable`."""
        try:
            reference = await self._conversations.find(conversation_id)
            root = channel_root(conversation_id)
            if reference is None and root != conversation_id:
                channel = await self._conversations.find(root)
                if channel is not None:
                    reference = {**channel, "activityId": None, "conversation": {
                        **(channel.get("conversation") or {}), "id": conversation_id}}
        except StorageUnavailable as exc:
            raise DestinationUnavailable(f"Teams conversations unreadable: {exc.reason}") from None
        if reference is None and self._default_service_url:
            reference = {"serviceUrl": self._default_service_url, "channelId": "msteams",
                         "conversation": {"id": conversation_id}}
        if reference is None:
            raise DestinationUnavailable(f"bothub has not been added to Teams conversation "
                                         f"{conversation_id} (or TEAMS_SERVICE_URL is unset)")
        if not self._allows(str(reference.get("serviceUrl") or "")):
            raise DestinationUnavailable("the stored serviceUrl is not an allowed connector")
        return reference

    async def is_channel(self, conversation_id: str) -> bool:
        """A team's channel (posts start reply chains), not a group or 1:1 chat."""
        try:
            reference = await self._conversations.find(channel_root(conversation_id))
        except StorageUnavailable:
            reference = None
        kind = ((reference or {}).get("conversation") or {}).get("conversationType")
        if isinstance(kind, str) and kind:
            return kind == "channel"
        return channel_root(conversation_id).endswith(CHANNEL_SUFFIXES)

    async def send(self, conversation_id: str, activities: list[dict[str, Any]]) -> list[str]:
        """Post the activities in order; their ids. Raises `DestinationUnavailable` before
        anything is sent, `ConnectorError` when Teams refuses one."""
        reference = await self.reference(conversation_id)
        posted: list[str] = []

        async def send_all(turn: Turn) -> None:
            for activity in activities:
                posted.append(await turn.send(activity))

        await self._connection.continue_conversation(reference, send_all)
        return posted

    async def update(self, conversation_id: str, activity_id: str,
                     activity: dict[str, Any]) -> None:
        """Replace a posted activity. Raises `DestinationUnavailable` or `ConnectorError`."""
        reference = await self.reference(conversation_id)

        async def edit(turn: Turn) -> None:
            await turn.update(activity_id, activity)

        await self._connection.continue_conversation(reference, edit)

    async def members(self, conversation_id: str) -> list[dict[str, Any]]:
        reference = await self.reference(conversation_id)
        return await self._connection.members(reference)
