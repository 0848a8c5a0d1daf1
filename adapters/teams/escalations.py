"""Escalations in Teams: the Adaptive Card posted to the human channel (a team's channel, or a
group chat) with Claim/Resolve/Release as Universal Actions (`Action.Execute`), kept current by
editing the post, and writing into users' chats for the escalation desk.

In a channel each escalation is a new post, so it starts its own reply chain
(`<channel>;messageid=<post id>`): agents talk about it there, and `@bot claim` there needs no
number. Agents are the members of the escalation conversation (asked of Teams and cached for a
minute) unless the configuration names them, by Teams user id (`29:…`) or Entra object id.

The on-call `mention` (`escalation.on_call.teams`) is text, in which `<at id="29:…">Name</at>`
mentions a user and `<at id="<tag id>" type="tag">On call</at>` a team's tag, so that they are
notified (Teams needs a mention entity beside the `<at>` text).
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import structlog

from adapters.base import DestinationUnavailable
from adapters.teams import render
from adapters.teams.proactive import Proactive, chain_id
from adapters.teams.wiring import ConnectorError
from bot.escalation import view
from bot.escalation.store import Ticket
from bot.model import ConversationKey, Reply

log = structlog.get_logger(__name__)

VERB_PREFIX = "bothub.escalation."
CLAIM, RELEASE, RESOLVE, RESOLVE_SAVE = (VERB_PREFIX + a for a in
                                         ("claim", "release", "resolve", "resolve_save"))
# verb -> (the desk's action, save to the knowledge base)
VERBS = {CLAIM: ("claim", False), RELEASE: ("release", False), RESOLVE: ("resolve", False),
         RESOLVE_SAVE: ("resolve", True)}
MEMBERS_TTL = 60.0
GONE = {404}  # the post (or the whole conversation) no longer exists: post it anew
SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
MAX_REMEMBERED = 5000
AT = re.compile(r'<at\s+id="([^"<>]{1,200})"(\s+type="tag")?\s*>([^<>]{1,200})</at>')


class TeamsUnreachable(Exception):
    """The escalation's post could not be edited for now (not gone: it stays where it is)."""


def mentions(text: str) -> tuple[str, list[dict[str, Any]]]:
    """`<at id="…">Name</at>` (or with `type="tag"`) -> Teams' `<at>Name</at>` text and the
    mention entities that make it notify."""
    entities: list[dict[str, Any]] = []

    def swap(match: re.Match[str]) -> str:
        target, tag, name = match.group(1), match.group(2), match.group(3).strip()
        mentioned = {"id": target, "name": name, **({"type": "tag"} if tag else {})}
        entities.append({"type": "mention", "text": f"<at>{name}</at>", "mentioned": mentioned})
        return f"<at>{name}</at>"

    return AT.sub(swap, text), entities


def _action(verb: str, title: str, ticket: Ticket, style: str = "default") -> dict[str, Any]:
    return {"type": "Action.Execute", "title": title, "verb": verb, "data": {"id": ticket.id},
            "style": style}


def _text(text: str, **options: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **options}


def _summary(summary: str) -> dict[str, Any]:
    """The conversation so far, as text runs: what users wrote is shown, never interpreted
    as Markdown (a TextBlock would turn it into links and formatting)."""
    lines = []
    for line in summary.splitlines()[:12]:
        who, colon, said = line.partition(": ")
        inlines: list[dict[str, Any]] = [{"type": "TextRun", "text": line[:600]}]
        if colon:
            inlines = [{"type": "TextRun", "text": f"{who}: ", "weight": "Bolder"},
                       {"type": "TextRun", "text": said[:600]}]
        lines.append({"type": "RichTextBlock", "inlines": inlines, "spacing": "Small"})
    return {"type": "Container", "style": "emphasis", "items": lines, "spacing": "Medium"}


def ticket_card(ticket: Ticket, *, link: str = "", mention: str = "",
                notice: str = "") -> dict[str, Any]:
    """The Adaptive Card of an escalation; its actions follow the state. `notice`: a line for
    the agent who clicked (the card they get back in the invoke's answer)."""
    state = view.state_line(ticket)
    body: list[dict[str, Any]] = []
    if notice:
        body.append(_text(notice, weight="Bolder", color="Accent"))
    mentioned: list[dict[str, Any]] = []
    if mention:
        text, mentioned = mentions(mention)
        body.append(_text(text))
    body.append(_text(view.headline(ticket), size="Medium", weight="Bolder"))
    body.append({"type": "FactSet", "facts": [
        {"title": "User", "value": ticket.user_name or ticket.user_id or "?"},
        {"title": "From", "value": ticket.origin.platform.capitalize()},
        {"title": "State", "value": state}]})
    if ticket.summary:
        body.append(_summary(ticket.summary))
    body.append(_text(f"Mention me in this thread: claim, resolve, resolve save, release. "
                      f"Anywhere here: claim {ticket.id}.", size="Small", isSubtle=True))
    actions = [_action(VERB_PREFIX + a.verb, a.label, ticket,
                       "positive" if a.primary else "default") for a in view.actions(ticket)]
    if link:
        actions.append({"type": "Action.OpenUrl", "title": "Open the conversation",
                        "url": link})
    card: dict[str, Any] = {"type": "AdaptiveCard", "$schema": SCHEMA, "version": "1.4",
                            "body": body}
    if actions:
        card["actions"] = actions
    if mentioned:
        card["msteams"] = {"entities": mentioned}
    return card


def ticket_activity(ticket: Ticket, *, link: str, mention: str = "") -> dict[str, Any]:
    """The message carrying the card; `summary` is what Teams shows in notifications."""
    return {"type": "message", "summary": view.headline(ticket),
            "attachments": [{"contentType": render.ADAPTIVE_CARD,
                             "content": ticket_card(ticket, link=link, mention=mention)}]}


class TeamsOutlet:
    """The escalation desk's way into Teams."""

    name = "teams"

    def __init__(self, proactive: Proactive) -> None:
        self._proactive = proactive
        self._members: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._aliases: OrderedDict[str, frozenset[str]] = OrderedDict()

    # -- what the adapter tells it ------------------------------------------------------------

    def saw(self, account: dict[str, Any]) -> None:
        """A user's two ids (`29:…` and the Entra object id) from an activity, so that agents
        configured under either are recognised."""
        ids = frozenset(str(account.get(k) or "") for k in ("id", "aadObjectId")) - {""}
        for one in ids:
            self._aliases[one] = ids
            self._aliases.move_to_end(one)
        while len(self._aliases) > MAX_REMEMBERED:
            self._aliases.popitem(last=False)

    # -- EscalationOutlet ---------------------------------------------------------------------

    async def tell(self, key: ConversationKey, reply: Reply) -> None:
        conversation = key.channel if key.channel == key.thread else \
            chain_id(key.channel, key.thread)
        await self._send(conversation, render.messages(reply))

    async def post_ticket(self, destination: str, ticket: Ticket, *, link: str,
                          mention: str = "") -> tuple[str, str]:
        [message] = await self._send(destination, [ticket_activity(ticket, link=link,
                                                                   mention=mention)])
        return message, message  # in a channel the post is the root of its reply chain

    async def update_ticket(self, ticket: Ticket, *, link: str) -> None:
        if ticket.destination_message is None:
            return
        conversation = await self._thread_of(ticket)
        try:
            await self._proactive.update(conversation, ticket.destination_message,
                                         ticket_activity(ticket, link=link))
        except DestinationUnavailable as exc:  # no way to reach it now; the post is still there
            raise TeamsUnreachable(str(exc)) from None
        except ConnectorError as exc:
            if exc.status in GONE:
                raise DestinationUnavailable(f"the escalation's post is gone: {exc}") from None
            raise

    async def post_in_ticket(self, ticket: Ticket, text: str, *, mention: str = "") -> None:
        mention, entities = mentions(mention)
        activity = render.plain(f"{mention} {text}".strip())
        if entities:
            activity["entities"] = entities
        await self._send(await self._thread_of(ticket), [activity])

    async def is_agent(self, user_id: str, destination: str, agents: Sequence[str]) -> bool:
        ids = self._aliases.get(user_id, frozenset()) | {user_id}
        if agents:
            wanted = set(agents)
            if ids & wanted:
                return True
            member = await self._member(destination, ids)  # configured under its other id?
            return member is not None and bool(_ids(member) & wanted)
        return await self._member(destination, ids) is not None

    async def link(self, key: ConversationKey) -> str:
        # A deep link to a channel message needs the team's group id, which activities do not
        # reliably carry, and a user's 1:1 chat with the bot cannot be opened by anyone else.
        return ""

    # -- helpers ------------------------------------------------------------------------------

    async def _thread_of(self, ticket: Ticket) -> str:
        """Where the escalation is discussed: its post's reply chain in a channel, the chat
        itself otherwise."""
        root = ticket.destination_thread or ticket.destination_message
        if root and await self._proactive.is_channel(ticket.destination):
            return chain_id(ticket.destination, root)
        return ticket.destination

    async def _send(self, conversation: str, activities: list[dict[str, Any]]) -> list[str]:
        try:
            return await self._proactive.send(conversation, activities)
        except ConnectorError as exc:
            raise DestinationUnavailable(
                f"Teams refused to post in {conversation}: {exc}") from None

    async def _member(self, conversation: str, ids: frozenset[str]) -> dict[str, Any] | None:
        hit = self._members.get(conversation)
        if hit is None or time.monotonic() - hit[0] >= MEMBERS_TTL:
            hit = (time.monotonic(), await self._proactive.members(conversation))
            self._members[conversation] = hit
        return next((member for member in hit[1] if _ids(member) & ids), None)


def _ids(member: dict[str, Any]) -> set[str]:
    return {str(member.get(k) or "") for k in ("id", "aadObjectId")} - {""}
