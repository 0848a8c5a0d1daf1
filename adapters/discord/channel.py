"""Answers into a Discord thread or DM: a first message at once, then edits as tokens arrive.

Edits are throttled on top of discord.py's own rate limiter (Discord allows about five writes
per five seconds per channel). Every message goes out with no mentions allowed, so an answer
that quotes `@everyone` or a role never pings anyone. If the message can no longer be edited,
the final answer is sent anew; if the channel is gone, the failure is logged (the answer is
stored either way).
"""

from __future__ import annotations

import time
from typing import Any

import discord
import structlog

from adapters.base import DestinationUnavailable, ReplyStream
from adapters.discord import render
from bot.model import Reply

log = structlog.get_logger(__name__)

NO_PINGS = discord.AllowedMentions.none()
PLACEHOLDER = "*Looking into it…*"


class DiscordReplyChannel:
    def __init__(self, target: Any, *, client: discord.Client,
                 update_interval: float = 1.0) -> None:
        self.target = target  # a Thread, a DMChannel or a TextChannel: anything Messageable
        self.client = client
        self.update_interval = update_interval

    async def send(self, text: str, target: Any = None) -> discord.Message | None:
        try:
            message: discord.Message = await (target or self.target).send(
                text, allowed_mentions=NO_PINGS)
        except discord.HTTPException as exc:
            log.error("discord.send_failed", status=exc.status, code=exc.code,
                      error=exc.text[:200])
            return None
        return message

    async def post(self, reply: Reply) -> None:
        for part in render.messages(reply):
            await self.send(part)

    async def stream(self) -> ReplyStream:
        return DiscordStream(self, await self.send(PLACEHOLDER))

    async def post_elsewhere(self, destination: str, reply: Reply) -> str:
        channel = self.client.get_channel(int(destination)) if destination.isdigit() else None
        if channel is None:
            raise DestinationUnavailable(f"no Discord channel {destination}")
        first: discord.Message | None = None
        for part in render.messages(reply):
            sent = await self.send(part, channel)
            if sent is None:
                raise DestinationUnavailable(f"Discord refused to post in {destination}")
            first = first or sent
        assert first is not None
        return str(first.id)


class DiscordStream:
    def __init__(self, channel: DiscordReplyChannel, message: discord.Message | None) -> None:
        self._channel = channel
        self._message = message
        self._text = ""
        self._shown = ""
        self._last_edit = time.monotonic()

    async def append(self, text: str) -> None:
        self._text += text
        if self._message is not None and \
                time.monotonic() - self._last_edit >= self._channel.update_interval:
            pieces = render.split_text(self._text, render.MESSAGE_LIMIT - 2)
            await self._edit(pieces[0] + (" …" if len(pieces) > 1 else ""))

    async def _edit(self, text: str) -> bool:
        if self._message is None:
            return False
        if text == self._shown:
            return True
        self._last_edit = time.monotonic()
        try:
            await self._message.edit(content=text, allowed_mentions=NO_PINGS)
        except discord.HTTPException as exc:
            log.warning("discord.edit_failed", status=exc.status, code=exc.code)
            self._message = None  # deleted, archived or locked: post the final answer anew
            return False
        self._shown = text
        return True

    async def finish(self, reply: Reply) -> None:
        parts = render.messages(reply)
        if not await self._edit(parts[0]):
            await self._channel.send(parts[0])
        for part in parts[1:]:
            await self._channel.send(part)
