"""The Discord adapter: a discord.py client started with `bothub serve`.

A mention in a channel opens a thread on the question and the thread is the conversation;
inside its threads and in forum posts the bot answers without a mention; DMs are answered
directly. The gateway URL comes from `GET /gateway/bot`, which bothub asks for itself so that
`DISCORD_API_URL` can point everything at a Discord-compatible server. discord.py resumes a
dropped gateway session, and Discord replays what was missed; each message id is stored once by
the engine, so a replay never produces a second answer.

Escalations: the desk posts to the human channel through `DiscordOutlet`; agents act with the
post's buttons or by mentioning the bot (`@bot claim`, in the escalation's thread or with its
number anywhere), and what they write in an escalation's thread is offered to the desk first
(relayed to the user when the user is on another platform). Buttons are routed statelessly by
their custom ids, so they work after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Coroutine, Mapping
from typing import Any

import discord
import httpx
import structlog
import yarl

from adapters.base import InFlight
from adapters.discord.channel import (
    FEEDBACK_PREFIX,
    HANDOFF_PREFIX,
    NO_PINGS,
    DiscordReplyChannel,
)
from adapters.discord.escalations import DiscordOutlet, parse_custom_id
from adapters.health import LinkHealth
from bot.engine import Engine
from bot.escalation.store import Actor
from bot.model import Attachment, Author, ConversationKey, Message
from bot.store.inbox import Journal
from bot.store.repository import StorageUnavailable

log = structlog.get_logger(__name__)

DEFAULT_API = "https://discord.com/api/v10"
THREAD_NAME_LIMIT = 90
ANSWERABLE = {discord.MessageType.default, discord.MessageType.reply}
DEFER_AFTER = 1.5  # seconds: a click not answered by then is deferred (Discord allows 3)
QUEUE_DOWN = "Sorry, I can't reach the escalation queue right now. Please try again."


def intents() -> discord.Intents:
    """Guild messages, DMs and their content: nothing else is needed (no member lists)."""
    wanted = discord.Intents.default()
    wanted.message_content = True
    wanted.members = False
    wanted.presences = False
    return wanted


def thread_name(text: str) -> str:
    words = " ".join(text.split()) or "Question"
    return words if len(words) <= THREAD_NAME_LIMIT else words[: THREAD_NAME_LIMIT - 1] + "…"


class DiscordAdapter:
    name = "discord"

    def __init__(self, engine: Engine, *, token: str, api_url: str = DEFAULT_API,
                 listen_channels: list[str] | None = None, update_interval: float = 1.0,
                 sharded: bool = False) -> None:
        self._engine = engine
        self._token = token
        self._api_url = api_url.rstrip("/")
        self._listen = {int(c) for c in listen_channels or [] if c.isdigit()}
        self._update_interval = update_interval
        client_class = discord.AutoShardedClient if sharded else discord.Client
        self.client: discord.Client = client_class(intents=intents(),
                                                   allowed_mentions=NO_PINGS)
        self.client.event(self.on_message)
        self.client.event(self.on_interaction)
        self.outlet = DiscordOutlet(self.client)
        self._runner: asyncio.Task[None] | None = None
        self._in_flight = InFlight()
        self._link = LinkHealth(self.name)
        # discord.py keeps its REST base and gateway URL as class attributes: set them while
        # this adapter runs and put them back when it stops.
        self._saved_urls = (discord.http.Route.BASE,
                            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)

    async def start(self) -> None:
        """Connect in the background; the HTTP server does not wait on Discord."""
        if self._api_url != DEFAULT_API:
            discord.http.Route.BASE = self._api_url
        try:
            gateway = await self._gateway_url()
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            log.error("discord.gateway_unavailable", error=str(exc)[:200],
                      hint="check DISCORD_BOT_TOKEN and DISCORD_API_URL")
            self._link.error(f"gateway URL unavailable ({type(exc).__name__})")
            return
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
        self._runner = asyncio.create_task(self._run())

    async def _gateway_url(self) -> str:
        async with httpx.AsyncClient(timeout=15) as http:
            response = await http.get(f"{self._api_url}/gateway/bot",
                                      headers={"Authorization": f"Bot {self._token}"})
            response.raise_for_status()
            return str(response.json()["url"])

    async def _run(self) -> None:
        try:
            await self.client.start(self._token, reconnect=True)
        except discord.LoginFailure:
            log.error("discord.login_failed", hint="DISCORD_BOT_TOKEN was rejected")
            self._link.error("login failed: DISCORD_BOT_TOKEN was rejected")
        except Exception as exc:
            log.exception("discord.client_stopped")
            self._link.error(f"client stopped ({type(exc).__name__})")

    async def health(self) -> dict[str, object]:
        """The gateway connection: ready (with its heartbeat latency), still connecting, or
        down with the reason."""
        client = self.client
        if self._runner is not None and client.is_ready() and not client.is_closed():
            latency = client.latency
            return self._link.report("ok", "connected to the gateway", mode="gateway",
                                     latency_ms=round(latency * 1000, 1)
                                     if math.isfinite(latency) else None)
        if self._runner is None or self._runner.done() or client.is_closed():
            return self._link.report("down", "not connected to the gateway", mode="gateway")
        return self._link.report("connecting", "connecting to the gateway", mode="gateway")

    async def wait_ready(self) -> None:
        await self.client.wait_until_ready()

    async def stop(self) -> None:
        await self._in_flight.drain()
        await self.client.close()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = \
            self._saved_urls

    def router(self) -> Any:
        from fastapi import APIRouter

        return APIRouter()  # Discord comes over the gateway, not HTTP

    # -- events --------------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        self._link.event("message")
        me = self.client.user
        if me is None or message.author.bot or message.author.id == me.id:
            return
        if message.type not in ANSWERABLE:
            return
        channel: Any = message.channel
        if isinstance(channel, discord.PartialMessageable):
            # Not in discord.py's cache (an archived thread, a channel it never saw): ask.
            try:
                channel = await self.client.fetch_channel(channel.id)
            except discord.HTTPException as exc:
                log.warning("discord.channel_unknown", channel_id=channel.id, status=exc.status)
                return
        if isinstance(message.author, discord.Member):
            self.outlet.remember(message.author)
        mentioned = me in message.mentions
        if isinstance(channel, discord.DMChannel):
            await self._answer(message, channel, ConversationKey(
                "discord", "dm", str(channel.id), str(channel.id)), direct=True)
        elif isinstance(channel, discord.Thread):
            if mentioned and await self._agent_command(message, channel, thread=channel.id):
                return
            if channel.owner_id == me.id and await self._agent_reply(message, channel):
                return  # an escalation's thread: for people, not for the bot
            if (mentioned and self._listening(channel.parent_id)) or await self._follows(channel):
                await self._answer(message, channel, self._thread_key(channel))
        elif mentioned:
            if await self._agent_command(message, channel, thread=None):
                return
            if self._listening(channel.id):
                await self._open_thread_and_answer(message)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Buttons: 👍/👎 and "talk to a person" on answers, Claim/Resolve/Release on
        escalations. Answered within Discord's 3 seconds, visible to the clicker only."""
        self._link.event("interaction")
        if interaction.type is not discord.InteractionType.component:
            return
        data: dict[str, Any] = dict(interaction.data or {})
        custom_id = str(data.get("custom_id") or "")
        if isinstance(interaction.user, discord.Member):
            self.outlet.remember(interaction.user)
        if custom_id.startswith(FEEDBACK_PREFIX):
            await self._on_feedback(interaction, custom_id)
        elif custom_id.startswith(HANDOFF_PREFIX):
            await self._answer_privately(interaction, self._handoff(
                interaction, custom_id.removeprefix(HANDOFF_PREFIX)))
        elif (action := parse_custom_id(custom_id)) is not None:
            await self._answer_privately(interaction, self._escalation_action(
                interaction, *action))

    async def _on_feedback(self, interaction: discord.Interaction, custom_id: str) -> None:
        vote, _, ref = custom_id.removeprefix(FEEDBACK_PREFIX).partition(":")
        try:
            recorded = await self._engine.record_feedback(ref, str(interaction.user.id),
                                                          helpful=vote == "up")
        except StorageUnavailable as exc:
            log.error("discord.feedback_not_saved", reason=exc.reason)
            recorded = False
        text = ("Thanks for the feedback!" if recorded
                else "Sorry, I couldn't record that feedback.")
        try:
            await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException as exc:
            log.warning("discord.interaction_not_answered", status=exc.status)

    # -- escalations ----------------------------------------------------------------------------

    async def _answer_privately(self, interaction: discord.Interaction,
                                work: Coroutine[Any, Any, str]) -> None:
        """Answer a click with `work`'s text, visible to the clicker only: at once when it is
        quick, else after deferring ("thinking…"), so Discord's 3 seconds are always met."""
        with self._in_flight.track():
            task = asyncio.ensure_future(work)
            done, _ = await asyncio.wait({task}, timeout=DEFER_AFTER)
            deferred = False
            if not done:
                try:
                    await interaction.response.defer(ephemeral=True, thinking=True)
                    deferred = True
                except discord.HTTPException as exc:
                    log.warning("discord.interaction_not_deferred", status=exc.status)
            try:
                text = await task
            except Exception:
                log.exception("discord.interaction_failed")
                text = "Sorry, something went wrong. Please try again."
            try:
                if deferred:
                    await interaction.edit_original_response(content=text,
                                                             allowed_mentions=NO_PINGS)
                else:
                    await interaction.response.send_message(text, ephemeral=True,
                                                            allowed_mentions=NO_PINGS)
            except discord.HTTPException as exc:
                log.warning("discord.interaction_not_answered", status=exc.status)

    async def _handoff(self, interaction: discord.Interaction, ref: str) -> str:
        """"🙋 Talk to a person" on an answer."""
        author = Author(str(interaction.user.id), interaction.user.display_name)
        try:
            return await self._engine.request_human(ref, author)
        except StorageUnavailable as exc:
            log.error("discord.handoff_failed", reason=exc.reason)
            return "Sorry, I can't reach our support team's queue right now."

    async def _escalation_action(self, interaction: discord.Interaction, verb: str,
                                 number: int) -> str:
        desk = self._engine.desk
        if desk is None:
            return "Escalations are not set up here."
        agent = Actor(str(interaction.user.id), interaction.user.display_name, "discord")
        try:
            return await desk.act(number, "resolve" if verb.startswith("resolve") else verb,
                                  agent, save=verb == "resolve_save")
        except StorageUnavailable as exc:
            log.error("discord.escalation_action_failed", reason=exc.reason)
            return QUEUE_DOWN

    async def _agent_command(self, message: discord.Message, channel: Any, *,
                             thread: int | None) -> bool:
        """`@bot claim|release|resolve [n] [save]`: answered in place; True when it was one."""
        desk = self._engine.desk
        if desk is None:
            return False
        agent = Actor(str(message.author.id), message.author.display_name, "discord")
        try:
            where = channel.parent_id if isinstance(channel, discord.Thread) else channel.id
            answer = await desk.command(self._text(message), agent, channel=str(where),
                                        thread=str(thread) if thread else None)
        except StorageUnavailable as exc:
            log.error("discord.escalation_command_failed", reason=exc.reason)
            answer = QUEUE_DOWN
        if answer is None:
            return False
        try:
            await channel.send(answer, allowed_mentions=NO_PINGS,
                               reference=message.to_reference(fail_if_not_exists=False))
        except discord.HTTPException as exc:
            log.warning("discord.send_failed", status=exc.status, code=exc.code)
        return True

    async def _agent_reply(self, message: discord.Message, thread: discord.Thread) -> bool:
        """A message in one of the bot's threads: True when that thread is an escalation's
        (the desk relays the message where the user is on another platform)."""
        desk = self._engine.desk
        if desk is None:
            return False
        agent = Actor(str(message.author.id), message.author.display_name, "discord")
        try:
            return await desk.agent_message(agent, self._text(message), thread=str(thread.id))
        except StorageUnavailable as exc:
            log.error("discord.agent_reply_not_relayed", reason=exc.reason)
            return False

    def _listening(self, channel_id: int | None) -> bool:
        return not self._listen or channel_id in self._listen

    def _thread_key(self, thread: discord.Thread) -> ConversationKey:
        guild = str(thread.guild.id) if thread.guild else "dm"
        return ConversationKey("discord", guild, str(thread.parent_id), str(thread.id))

    async def _follows(self, thread: discord.Thread) -> bool:
        """The bot's own threads, and forum posts in the channels it listens in."""
        me = self.client.user
        if me is not None and thread.owner_id == me.id:
            return True
        parent = thread.parent
        if isinstance(parent, discord.ForumChannel) and self._listening(parent.id):
            return True
        try:
            return await self._engine.conversation_exists(self._thread_key(thread))
        except StorageUnavailable:
            return False

    async def _open_thread_and_answer(self, message: discord.Message) -> None:
        channel = message.channel
        guild = str(message.guild.id) if message.guild else "dm"
        # A thread started from a message has the message's id: the key is known up front.
        key = ConversationKey("discord", guild, str(channel.id), str(message.id))
        try:
            thread = await message.create_thread(name=thread_name(self._text(message)),
                                                 auto_archive_duration=1440)
        except discord.HTTPException as exc:
            # No permission to create threads (403) or a thread already exists: answer in
            # the channel instead, still one conversation per question.
            log.warning("discord.thread_not_created", status=exc.status, code=exc.code)
            await self._answer(message, channel, key)
            return
        await self._answer(message, thread, key)

    def _text(self, message: discord.Message) -> str:
        me = self.client.user
        text = message.content
        if me is not None:
            text = text.replace(f"<@{me.id}>", "").replace(f"<@!{me.id}>", "")
        return text.strip()

    async def _answer(self, message: discord.Message, target: Any, key: ConversationKey, *,
                      direct: bool = False) -> None:
        with self._in_flight.track():
            channel_name = getattr(message.channel, "name", "") or ""
            normalized = Message(
                key=key, id=str(message.id),
                author=Author(id=str(message.author.id),
                              display_name=message.author.display_name),
                text=self._text(message),
                attachments=tuple(_attachment(a) for a in message.attachments),
                mentioned=True, direct=direct,
                channel_name="a direct message" if direct else f"#{channel_name}",
                raw={"id": message.id, "channel_id": message.channel.id})
            accepted = await self._engine.accept(normalized, route={"channel": str(target.id)})
            reply_channel = DiscordReplyChannel(target, client=self.client,
                                                update_interval=self._update_interval,
                                                journal=accepted.journal)
            async with _typing(target):
                await self._engine.respond(accepted, reply_channel)

    async def resume(self, route: Mapping[str, Any],
                     journal: Journal) -> DiscordReplyChannel | None:
        """A reply channel into the thread or DM a question came from, for the inbox's
        retries; None when Discord no longer lets the bot see it."""
        channel_id = str(route.get("channel") or "")
        if not channel_id.isdigit():
            return None
        target = self.client.get_channel(int(channel_id))
        if target is None:
            try:
                target = await self.client.fetch_channel(int(channel_id))
            except discord.HTTPException as exc:
                log.warning("discord.resume_unreachable", status=exc.status, code=exc.code)
                return None
        return DiscordReplyChannel(target, client=self.client,
                                   update_interval=self._update_interval, journal=journal)


def _attachment(attachment: discord.Attachment) -> Attachment:
    return Attachment(name=attachment.filename,
                      content_type=attachment.content_type or "application/octet-stream",
                      size=attachment.size, url=attachment.url, fetch=attachment.read)


@contextlib.asynccontextmanager
async def _typing(target: Any) -> Any:
    """The typing indicator while the answer is worked out; best effort."""
    with contextlib.suppress(discord.HTTPException, AttributeError):
        await target.typing()
    yield
