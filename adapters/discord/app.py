"""The Discord adapter: a discord.py client started with `bothub serve`.

A mention in a channel opens a thread on the question and the thread is the conversation;
inside its threads and in forum posts the bot answers without a mention; DMs are answered
directly. The gateway URL comes from `GET /gateway/bot`, which bothub asks for itself so that
`DISCORD_API_URL` can point everything at a Discord-compatible server. discord.py resumes a
dropped gateway session, and Discord replays what was missed; each message id is stored once by
the engine, so a replay never produces a second answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import discord
import httpx
import structlog
import yarl

from adapters.base import InFlight
from adapters.discord.channel import FEEDBACK_PREFIX, NO_PINGS, DiscordReplyChannel
from bot.engine import Engine
from bot.model import Attachment, Author, ConversationKey, Message
from bot.store.repository import StorageUnavailable

log = structlog.get_logger(__name__)

DEFAULT_API = "https://discord.com/api/v10"
THREAD_NAME_LIMIT = 90
ANSWERABLE = {discord.MessageType.default, discord.MessageType.reply}


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
        self._runner: asyncio.Task[None] | None = None
        self._in_flight = InFlight()
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
        except Exception:
            log.exception("discord.client_stopped")

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
        if isinstance(channel, discord.DMChannel):
            await self._answer(message, channel, ConversationKey(
                "discord", "dm", str(channel.id), str(channel.id)), direct=True)
        elif isinstance(channel, discord.Thread):
            mentioned = me in message.mentions and self._listening(channel.parent_id)
            if mentioned or await self._follows(channel):
                await self._answer(message, channel, self._thread_key(channel))
        elif me in message.mentions and self._listening(channel.id):
            await self._open_thread_and_answer(message)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """👍/👎 on an answer: answered within Discord's 3 seconds, visible to the clicker only."""
        if interaction.type is not discord.InteractionType.component:
            return
        data: dict[str, Any] = dict(interaction.data or {})
        custom_id = str(data.get("custom_id") or "")
        if not custom_id.startswith(FEEDBACK_PREFIX):
            return
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
            reply_channel = DiscordReplyChannel(target, client=self.client,
                                                update_interval=self._update_interval)
            async with _typing(target):
                await self._engine.handle(normalized, reply_channel)


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
