"""Escalations in Slack: the post in the human channel with its buttons, kept current, and
writing into users' threads for the escalation desk.

Agents are the members of the escalation channel unless the configuration names them (user
ids, or user groups `S…`); membership is asked of Slack and cached for a minute.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.base import DestinationUnavailable
from adapters.slack import render
from bot.escalation import view
from bot.escalation.store import Ticket
from bot.model import ConversationKey, Reply

log = structlog.get_logger(__name__)

ACTION_PREFIX = "bothub_escalation_"
MEMBERS_TTL = 60.0
GONE = {"message_not_found", "channel_not_found", "is_archived", "cant_update_message"}

ClientFor = Callable[[str | None], Awaitable[AsyncWebClient]]


def _button(action_id: str, text: str, ticket: Ticket, style: str | None = None
            ) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "action_id": action_id, "value": str(ticket.id),
                              "text": {"type": "plain_text", "text": text, "emoji": True}}
    if style:
        button["style"] = style
    return button


def ticket_message(ticket: Ticket, *, link: str, mention: str = ""
                   ) -> tuple[str, list[dict[str, Any]]]:
    """(fallback text, blocks) of an escalation's post; the buttons follow its state."""
    state = render.escape(view.state_line(ticket))
    where = ticket.origin.platform.capitalize()
    if link:
        where = f"<{link}|{where} conversation>"
    headline = view.headline(ticket)
    user = render.escape(ticket.user_name or ticket.user_id)
    fields = [{"type": "mrkdwn", "text": f"*User:*\n{user}"},
              {"type": "mrkdwn", "text": f"*From:*\n{where}"},
              {"type": "mrkdwn", "text": f"*State:*\n{state}"}]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": f"{mention} *{render.escape(headline)}*".strip()}},
        {"type": "section", "fields": fields}]
    if ticket.summary:
        quoted = "\n".join("> " + render.escape(line) for line in ticket.summary.splitlines())
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": quoted[:2900]}})
    actions = [_button(ACTION_PREFIX + a.verb, a.label, ticket, "primary" if a.primary else None)
               for a in view.actions(ticket)]
    if actions:
        blocks.append({"type": "actions", "block_id": f"bothub_escalation_{ticket.id}",
                       "elements": actions})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": (
        f"Reply in this thread or mention me: `claim`, `resolve`, `resolve save`, `release`. "
        f"From anywhere in this channel: `claim {ticket.id}`.")}]})
    return f"{mention} {headline} ({state})".strip(), blocks


class SlackOutlet:
    """The escalation desk's way into Slack."""

    name = "slack"

    def __init__(self, client_for: ClientFor) -> None:
        self._client_for = client_for
        self._members: dict[str, tuple[float, frozenset[str]]] = {}

    async def tell(self, key: ConversationKey, reply: Reply) -> None:
        client = await self._client_for(key.workspace)
        for text, blocks in render.messages(reply):
            await self._post(client, channel=key.channel, thread_ts=key.thread, text=text,
                             blocks=blocks)

    async def post_ticket(self, destination: str, ticket: Ticket, *, link: str,
                          mention: str = "") -> tuple[str, str]:
        client = await self._client_for(None)
        text, blocks = ticket_message(ticket, link=link, mention=mention)
        ts = await self._post(client, channel=destination, text=text, blocks=blocks)
        return ts, ts

    async def update_ticket(self, ticket: Ticket, *, link: str) -> None:
        if ticket.destination_message is None:
            return
        client = await self._client_for(None)
        text, blocks = ticket_message(ticket, link=link)
        try:
            await client.chat_update(channel=ticket.destination, ts=ticket.destination_message,
                                     text=text, blocks=blocks)
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error in GONE:
                raise DestinationUnavailable(f"the escalation's post is gone: {error}") from None
            raise

    async def post_in_ticket(self, ticket: Ticket, text: str, *, mention: str = "") -> None:
        client = await self._client_for(None)
        await self._post(client, channel=ticket.destination, thread_ts=ticket.destination_thread,
                         text=f"{mention} {render.to_mrkdwn(text)}".strip())

    async def is_agent(self, user_id: str, destination: str, agents: Sequence[str]) -> bool:
        client = await self._client_for(None)
        if agents:
            if user_id in agents:
                return True
            for group in (a for a in agents if a.startswith("S")):
                if user_id in await self._cached(f"group:{group}",
                                                 functools.partial(self._group, client, group)):
                    return True
            return False
        return user_id in await self._cached(f"channel:{destination}",
                                             lambda: self._channel_members(client, destination))

    async def link(self, key: ConversationKey) -> str:
        client = await self._client_for(key.workspace)
        try:
            response = await client.chat_getPermalink(channel=key.channel, message_ts=key.thread)
        except SlackApiError:
            return ""
        return str(response.get("permalink") or "")

    async def _post(self, client: AsyncWebClient, **arguments: Any) -> str:
        try:
            response = await client.chat_postMessage(unfurl_links=False, unfurl_media=False,
                                                     **arguments)
        except SlackApiError as exc:
            raise DestinationUnavailable(
                f"Slack refused to post in {arguments.get('channel')}: "
                f"{exc.response.get('error')}") from None
        return str(response["ts"])

    async def _cached(self, key: str, load: Callable[[], Awaitable[frozenset[str]]]
                      ) -> frozenset[str]:
        hit = self._members.get(key)
        if hit is not None and time.monotonic() - hit[0] < MEMBERS_TTL:
            return hit[1]
        members = await load()
        self._members[key] = (time.monotonic(), members)
        return members

    async def _channel_members(self, client: AsyncWebClient, channel: str) -> frozenset[str]:
        members: set[str] = set()
        cursor: str | None = None
        while True:
            response = await client.conversations_members(channel=channel, limit=200,
                                                          cursor=cursor)
            members.update(str(m) for m in response.get("members") or [])
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return frozenset(members)

    async def _group(self, client: AsyncWebClient, group: str) -> frozenset[str]:
        response = await client.usergroups_users_list(usergroup=group)
        return frozenset(str(u) for u in response.get("users") or [])
