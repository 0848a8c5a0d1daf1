"""Answers into a Discord thread or DM: a first message at once, then edits as tokens arrive.

Edits are throttled on top of discord.py's own rate limiter (Discord allows about five writes
per five seconds per channel). Every message goes out with no mentions allowed, so an answer
that quotes `@everyone` or a role never pings anyone. If the message can no longer be edited,
the final answer is sent anew; if the channel is gone, the failure is logged (the answer is
stored either way).
"""

from __future__ import annotations

from typing import Any

import discord
import structlog

from adapters.base import ReplyStream
from adapters.discord import render
from adapters.throttle import EditThrottle
from bot.model import Reply
from bot.store.inbox import Journal, unjournaled

log = structlog.get_logger(__name__)

NO_PINGS = discord.AllowedMentions.none()
PLACEHOLDER = "*Looking into it…*"
FEEDBACK_PREFIX = "bothub:fb:"
HANDOFF_PREFIX = "bothub:handoff:"


def feedback_view(reply: Reply) -> discord.ui.View | None:
    """👍/👎 buttons whose custom ids carry the answer's ref, and "🙋 Talk to a person" where
    the conversation has a human channel. They are handled statelessly by the adapter's
    `on_interaction`, so they keep working after a restart."""
    if not reply.ref:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(label="Helpful", emoji="👍",
                                    custom_id=f"{FEEDBACK_PREFIX}up:{reply.ref}"))
    view.add_item(discord.ui.Button(label="Not helpful", emoji="👎",
                                    custom_id=f"{FEEDBACK_PREFIX}down:{reply.ref}"))
    if reply.handoff:
        view.add_item(discord.ui.Button(label="Talk to a person", emoji="🙋",
                                        custom_id=f"{HANDOFF_PREFIX}{reply.ref}"))
    return view


def _release(view: discord.ui.View | None) -> None:
    """discord.py keeps every sent view in memory to route its clicks; ours are routed by
    `on_interaction`, so let it forget them."""
    if view is not None:
        view.stop()


class DiscordReplyChannel:
    def __init__(self, target: Any, *, client: discord.Client,
                 update_interval: float = 1.0, journal: Journal | None = None) -> None:
        self.target = target  # a Thread, a DMChannel or a TextChannel: anything Messageable
        self.client = client
        self.update_interval = update_interval
        # The answer's message, noted so that a retry after a crash edits it (no second answer)
        self.journal = journal or unjournaled()

    def _earlier(self) -> Any:
        """The answer message an earlier attempt posted, as something that can be edited."""
        earlier = self.journal.existing()
        if earlier is None or not earlier.isdigit():
            return None
        return self.target.get_partial_message(int(earlier))

    async def send(self, text: str, target: Any = None,
                   view: discord.ui.View | None = None) -> discord.Message | None:
        options: dict[str, Any] = {"allowed_mentions": NO_PINGS}
        if view is not None:
            options["view"] = view
        try:
            message: discord.Message = await (target or self.target).send(text, **options)
        except discord.HTTPException as exc:
            log.error("discord.send_failed", status=exc.status, code=exc.code,
                      error=exc.text[:200])
            return None
        finally:
            _release(view)
        return message

    async def post(self, reply: Reply) -> None:
        if reply.aside:
            parts = render.messages(reply)
            for number, part in enumerate(parts, start=1):
                await self.send(part, view=feedback_view(reply) if number == len(parts) else None)
            return
        await DiscordStream(self, self._earlier()).finish(reply)

    async def stream(self) -> ReplyStream:
        earlier = self._earlier()
        if earlier is not None:  # a retry: the answer grows in the message already there
            return DiscordStream(self, earlier)
        message = await self.send(PLACEHOLDER)
        if message is not None:
            await self.journal.note(str(message.id))
        return DiscordStream(self, message)


class DiscordStream:
    def __init__(self, channel: DiscordReplyChannel,
                 message: discord.Message | discord.PartialMessage | None) -> None:
        self._channel = channel
        self._message = message
        self._text = ""
        self._shown = ""
        self._throttle = EditThrottle(channel.update_interval)

    async def append(self, text: str) -> None:
        self._text += text
        if self._message is not None and self._throttle.due():
            pieces = render.split_text(self._text, render.MESSAGE_LIMIT - 2)
            await self._edit(pieces[0] + (" …" if len(pieces) > 1 else ""))

    async def _edit(self, text: str, view: discord.ui.View | None = None) -> bool:
        if self._message is None:
            return False
        if text == self._shown and view is None:
            return True
        self._throttle.wrote()
        options: dict[str, Any] = {"content": text, "allowed_mentions": NO_PINGS}
        if view is not None:
            options["view"] = view
        try:
            await self._message.edit(**options)
        except discord.HTTPException as exc:
            log.warning("discord.edit_failed", status=exc.status, code=exc.code)
            self._message = None  # deleted, archived or locked: post the final answer anew
            return False
        finally:
            _release(view)
        self._shown = text
        return True

    async def finish(self, reply: Reply) -> None:
        parts = render.messages(reply)
        for number, part in enumerate(parts, start=1):
            last = number == len(parts)
            if number == 1 and await self._edit(part, feedback_view(reply) if last else None):
                continue
            sent = await self._channel.send(part, view=feedback_view(reply) if last else None)
            if number == 1 and sent is not None:
                await self._channel.journal.note(str(sent.id))
