"""Escalations in Discord: the post in the human channel (an embed with buttons that follow
its state), a thread on it where agents talk and the desk writes, and writing into users'
threads and DMs for the escalation desk.

Agents are the members who can see the escalation channel unless the configuration names them
(user ids or role ids). The members intent is off, so a member is fetched over REST when the
bot has not just seen them (a click or a message brings the member along) and kept a minute.
Nothing the bot posts pings anyone, except the on-call mention the desk sends with a post or a
re-announcement: exactly that role or user, for that message only.
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Sequence
from typing import Any, Literal

import discord
import structlog

from adapters.base import DestinationUnavailable
from adapters.discord import render
from adapters.discord.channel import NO_PINGS
from bot.escalation import view
from bot.escalation.store import State, Ticket
from bot.model import ConversationKey, Reply

log = structlog.get_logger(__name__)

ESCALATION_PREFIX = "bothub:esc:"
VERBS = ("claim", "release", "resolve", "resolve_save")
MEMBERS_TTL = 60.0
THREAD_NAME_LIMIT = 100
# A week: an escalation's thread outlives a slow queue.
THREAD_ARCHIVE_MINUTES: Literal[10080] = 10080
LEADING_MENTION = re.compile(r"^(<@&(\d+)>|<@!?(\d+)>|@here|@everyone)(?=\s|$)")
COLOURS = {State.OPEN: 0xE67E22, State.CLAIMED: 0x2ECC71, State.RESOLVED: 0x95A5A6}
DISCORD_WEB = "https://discord.com/channels"


def custom_id(verb: str, ticket: Ticket) -> str:
    return f"{ESCALATION_PREFIX}{verb}:{ticket.id}"


def parse_custom_id(value: str) -> tuple[str, int] | None:
    """(verb, escalation id) of an escalation button, None for anything else."""
    if not value.startswith(ESCALATION_PREFIX):
        return None
    verb, _, number = value.removeprefix(ESCALATION_PREFIX).partition(":")
    if verb not in VERBS or not number.isdigit() or len(number) > 18:
        return None
    return verb, int(number)


def pings(mention: str) -> discord.AllowedMentions:
    """Allowed mentions that let exactly `mention` (a role, a user, @here or @everyone) ping;
    none for anything else."""
    match = LEADING_MENTION.match(mention.strip())
    if match is None:
        return NO_PINGS
    role, user = match.group(2), match.group(3)
    return discord.AllowedMentions(
        everyone=role is None and user is None,
        roles=[discord.Object(int(role))] if role else False,
        users=[discord.Object(int(user))] if user else False,
        replied_user=False)


def ticket_view(ticket: Ticket) -> discord.ui.View | None:
    """The buttons that apply in the escalation's state; handled statelessly by the adapter's
    `on_interaction` (the view is stopped at once, so discord.py keeps no copy of it)."""
    actions = view.actions(ticket)
    if not actions:
        return None
    buttons = discord.ui.View(timeout=None)
    for action in actions:
        style = discord.ButtonStyle.success if action.primary else discord.ButtonStyle.secondary
        buttons.add_item(discord.ui.Button(label=action.label, style=style,
                                           custom_id=custom_id(action.verb, ticket)))
    buttons.stop()
    return buttons


def ticket_message(ticket: Ticket, *, link: str, mention: str = ""
                   ) -> tuple[str, discord.Embed]:
    """(content, embed) of an escalation's post. The content is what notifications show (and
    the only part whose mention can ping); the embed carries the details."""
    headline = view.headline(ticket)
    content = f"{mention} **{headline}** · {view.state_line(ticket)}".strip()
    embed = discord.Embed(title=headline[:256], url=link or None,
                          colour=COLOURS[ticket.state])
    if ticket.summary:
        quoted = "\n".join("> " + line for line in ticket.summary.splitlines())
        embed.description = quoted[:4000]
    user = ticket.user_name or ticket.user_id
    if ticket.origin.platform == "discord" and ticket.user_id.isdigit():
        user = f"{user} (<@{ticket.user_id}>)"  # shown as a mention; embeds never ping
    where = ticket.origin.platform.capitalize()
    embed.add_field(name="User", value=user[:1024] or "-", inline=True)
    embed.add_field(name="From", value=f"[{where} conversation]({link})" if link else where,
                    inline=True)
    embed.add_field(name="State", value=view.state_line(ticket)[:1024], inline=True)
    embed.set_footer(text=(
        "Reply in this thread or mention me: claim, resolve, resolve save, release. "
        f"From anywhere in this channel: claim {ticket.id}."))
    return content[:2000], embed


def thread_name(ticket: Ticket) -> str:
    name = view.headline(ticket)
    return name if len(name) <= THREAD_NAME_LIMIT else name[: THREAD_NAME_LIMIT - 1] + "…"


class DiscordOutlet:
    """The escalation desk's way into Discord."""

    name = "discord"

    def __init__(self, client: discord.Client) -> None:
        self._client = client
        self._members: collections.OrderedDict[tuple[int, int], tuple[float, discord.Member]] \
            = collections.OrderedDict()

    # -- the user's conversation ----------------------------------------------------------------

    async def tell(self, key: ConversationKey, reply: Reply) -> None:
        """Into the user's thread (or DM). A conversation whose thread is gone (or could never
        be created) is written to in its channel, replying to the question."""
        fallback = None if key.thread == key.channel else (key.channel, key.thread)
        await self._deliver(key.thread, render.messages(reply), fallback=fallback)

    async def link(self, key: ConversationKey) -> str:
        if key.workspace == "dm" or not key.workspace.isdigit():
            return f"{DISCORD_WEB}/@me/{key.channel}"
        return f"{DISCORD_WEB}/{key.workspace}/{key.thread or key.channel}"

    # -- the human channel ----------------------------------------------------------------------

    async def post_ticket(self, destination: str, ticket: Ticket, *, link: str,
                          mention: str = "") -> tuple[str, str]:
        channel = await self._text_channel(destination)
        content, embed = ticket_message(ticket, link=link, mention=mention)
        options: dict[str, Any] = {"embed": embed, "allowed_mentions": pings(mention)}
        view = ticket_view(ticket)
        if view is not None:
            options["view"] = view
        try:
            message = await channel.send(content, **options)
        except discord.HTTPException as exc:
            raise DestinationUnavailable(
                f"Discord refused to post in {destination}: {exc.status} {exc.text[:100]}"
            ) from None
        try:
            thread = await message.create_thread(name=thread_name(ticket),
                                                 auto_archive_duration=THREAD_ARCHIVE_MINUTES)
        except discord.HTTPException as exc:
            # No permission to create threads: the post stands; the desk's notes go to the
            # channel as replies to it, and agents act with buttons or `claim <n>`.
            log.warning("discord.escalation_thread_not_created", id=ticket.id,
                        status=exc.status, code=exc.code)
            return str(message.id), str(message.id)
        return str(message.id), str(thread.id)

    async def update_ticket(self, ticket: Ticket, *, link: str) -> None:
        if ticket.destination_message is None:
            return
        content, embed = ticket_message(ticket, link=link)
        channel = self._client.get_partial_messageable(_snowflake(ticket.destination))
        post = channel.get_partial_message(_snowflake(ticket.destination_message))
        try:
            await post.edit(content=content, embed=embed, view=ticket_view(ticket),
                            allowed_mentions=NO_PINGS)
        except discord.NotFound:
            raise DestinationUnavailable(
                f"the escalation's post {ticket.destination_message} is gone") from None

    async def post_in_ticket(self, ticket: Ticket, text: str, *, mention: str = "") -> None:
        """Into the escalation's thread; where there is none (it could not be created, or was
        deleted), into the channel as a reply to the post. `mention` (the on-call role) pings;
        nothing in `text` does."""
        post = ticket.destination_message
        thread = ticket.destination_thread or post
        limit = render.MESSAGE_LIMIT - len(mention) - 1
        parts = render.split_text(text, limit)
        if mention:
            parts[0] = f"{mention} {parts[0]}"
        await self._deliver(thread or ticket.destination, parts,
                            fallback=(ticket.destination, post) if thread and post else None,
                            allowed=pings(mention))

    # -- agents ---------------------------------------------------------------------------------

    async def is_agent(self, user_id: str, destination: str, agents: Sequence[str]) -> bool:
        if not user_id.isdigit():
            return False
        if agents and user_id in agents:
            return True
        channel = await self._text_channel(destination)
        member = await self._member(channel.guild, int(user_id))
        if member is None:
            return False
        if agents:
            return any(str(role.id) in agents for role in member.roles)
        return channel.permissions_for(member).view_channel

    def remember(self, member: discord.Member) -> None:
        """A member the bot has just seen (a click, a message): no REST call for them soon."""
        key = (member.guild.id, member.id)
        self._members.pop(key, None)
        self._members[key] = (time.monotonic(), member)
        if len(self._members) > 5000:
            self._members.popitem(last=False)

    async def _member(self, guild: discord.Guild, user_id: int) -> discord.Member | None:
        hit = self._members.get((guild.id, user_id))
        if hit is not None and time.monotonic() - hit[0] < MEMBERS_TTL:
            return hit[1]
        member = guild.get_member(user_id)
        if member is None:
            try:
                member = await guild.fetch_member(user_id)
            except discord.NotFound:
                return None
        self.remember(member)
        return member

    # -- helpers --------------------------------------------------------------------------------

    async def _text_channel(self, destination: str) -> discord.TextChannel:
        """The escalation channel, from the cache or the API; `DestinationUnavailable` when it
        does not exist, is out of reach or is not a text channel."""
        channel: Any = self._client.get_channel(_snowflake(destination))
        if channel is None:
            try:
                channel = await self._client.fetch_channel(_snowflake(destination))
            except discord.HTTPException as exc:
                raise DestinationUnavailable(
                    f"Discord channel {destination} is unknown or out of reach: "
                    f"{exc.status} {exc.text[:100]}") from None
        if not isinstance(channel, discord.TextChannel):
            raise DestinationUnavailable(
                f"Discord channel {destination} is not a text channel "
                f"({type(channel).__name__}); escalations need one")
        return channel

    async def _deliver(self, where: str, parts: list[str], *,
                       fallback: tuple[str, str] | None,
                       allowed: discord.AllowedMentions = NO_PINGS) -> None:
        """Send `parts` to the channel or thread `where`; when it does not exist, to
        `fallback` (a channel, and the message there to reply to). Only the first part may
        ping (with `allowed`)."""
        target = self._client.get_partial_messageable(_snowflake(where))
        reference: discord.MessageReference | None = None
        for number, part in enumerate(parts):
            options: dict[str, Any] = {"allowed_mentions": allowed if number == 0 else NO_PINGS}
            if reference is not None:
                options["reference"] = reference
            try:
                await target.send(part, **options)
                continue
            except discord.NotFound:
                if number or fallback is None or not fallback[1].isdigit():
                    raise DestinationUnavailable(f"Discord channel {where} is gone") from None
            except discord.HTTPException as exc:
                raise DestinationUnavailable(
                    f"Discord refused to post in {where}: {exc.status} {exc.text[:100]}"
                ) from None
            channel, message = fallback
            target = self._client.get_partial_messageable(_snowflake(channel))
            reference = discord.MessageReference(message_id=int(message), channel_id=int(channel),
                                                 fail_if_not_exists=False)
            options["reference"] = reference
            try:
                await target.send(part, **options)
            except discord.HTTPException as exc:
                raise DestinationUnavailable(
                    f"Discord refused to post in {channel}: {exc.status} {exc.text[:100]}"
                ) from None


def _snowflake(value: str | None) -> int:
    if not value or not value.isdigit():
        raise DestinationUnavailable(f"{value!r} is not a Discord id")
    return int(value)
