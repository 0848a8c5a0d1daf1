"""Answers into a Teams conversation.

In a 1:1 chat the answer streams: Teams shows an informative line at once, then the growing text
(typing activities carrying `streaminfo`, at most about one a second), then the final message.
Teams streams only in 1:1 chats, one stream per message and for about two minutes; in channels
and group chats the typing indicator is kept alive while the answer is worked out, and the answer
is sent complete. A connector that fails mid-stream ends the stream; the final answer is then
sent as an ordinary message, so it is never lost to a failed update.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from adapters.base import DestinationUnavailable, ReplyStream
from adapters.teams import render
from adapters.teams.proactive import Proactive
from adapters.teams.wiring import ConnectorError, Turn
from bot.model import Reply
from bot.store.inbox import Journal, unjournaled

log = structlog.get_logger(__name__)

INFORMATIVE = "Looking into it…"
MAX_STREAM_SECONDS = 100.0  # Teams ends a stream after about two minutes
TYPING_EVERY = 3.0  # Teams shows a typing indicator for a few seconds


class TeamsReplyChannel:
    def __init__(self, turn: Turn, *, personal: bool, update_interval: float = 1.0,
                 journal: Journal | None = None) -> None:
        self.turn = turn
        self.personal = personal
        self.update_interval = update_interval
        # The answer's message, noted so that a retry after a crash edits it (no second answer)
        self.journal = journal or unjournaled()

    async def send(self, activity: dict[str, Any]) -> str | None:
        """Post one activity; its id, or None when the connector refused (logged, not raised:
        the answer is stored whatever happens to its delivery)."""
        try:
            return await self.turn.send(activity)
        except ConnectorError as exc:
            log.error("teams.send_failed", status=exc.status, error=str(exc)[:200],
                      activity_type=activity.get("type"))
            return None

    async def typing(self) -> None:
        await self.send({"type": "typing"})

    async def post(self, reply: Reply) -> None:
        for number, activity in enumerate(render.messages(reply)):
            posted = await self.send(activity)
            if number == 0 and posted and not reply.aside:
                await self.journal.note(posted)

    async def stream(self) -> ReplyStream:
        if not self.personal:
            return WholeAnswer(self)
        stream = TeamsStream(self)
        await stream.begin()
        return stream


class WholeAnswer:
    """Channels and group chats: typing while the answer grows, then the answer."""

    def __init__(self, channel: TeamsReplyChannel) -> None:
        self._channel = channel
        self._last_typing = time.monotonic()

    async def append(self, text: str) -> None:
        if time.monotonic() - self._last_typing >= TYPING_EVERY:
            self._last_typing = time.monotonic()
            await self._channel.typing()

    async def finish(self, reply: Reply) -> None:
        await self._channel.post(reply)


class TeamsStream:
    def __init__(self, channel: TeamsReplyChannel) -> None:
        self._channel = channel
        self._stream_id: str | None = None
        self._sequence = 0
        self._text = ""
        self._shown = ""
        self._started = time.monotonic()
        self._last_update = 0.0

    def _info(self, kind: str) -> dict[str, Any]:
        info: dict[str, Any] = {"type": "streaminfo", "streamType": kind}
        if kind != "final":
            self._sequence += 1
            info["streamSequence"] = self._sequence
        if self._stream_id:
            info["streamId"] = self._stream_id
        return info

    async def begin(self) -> None:
        self._stream_id = await self._channel.send(
            {"type": "typing", "text": INFORMATIVE, "entities": [self._info("informative")]})
        if self._stream_id:
            await self._channel.journal.note(self._stream_id)
        self._last_update = time.monotonic()

    @property
    def _open(self) -> bool:
        return self._stream_id is not None and \
            time.monotonic() - self._started < MAX_STREAM_SECONDS

    async def append(self, text: str) -> None:
        self._text += text
        if not self._open or time.monotonic() - self._last_update < \
                self._channel.update_interval:
            return
        shown = render.split_text(self._text, render.MESSAGE_LIMIT)[0]
        if shown == self._shown:
            return
        self._last_update = time.monotonic()
        if await self._channel.send({"type": "typing", "text": shown,
                                     "entities": [self._info("streaming")]}) is None:
            self._stream_id = None  # the stream is broken: the answer comes as a message
            return
        self._shown = shown

    async def finish(self, reply: Reply) -> None:
        activities = render.messages(reply)
        first = activities[0]
        if self._open:
            final = {**first, "entities": [*first.get("entities", []), self._info("final")]}
            if await self._channel.send(final) is not None:
                activities = activities[1:]
            else:
                await self._channel.post(reply)
                return
        for activity in activities:
            await self._channel.send(activity)


class ResumedTeamsChannel:
    """A retried answer (its first worker died), delivered through the stored conversation
    reference: whole, editing what the first attempt had posted."""

    def __init__(self, proactive: Proactive, conversation_id: str, journal: Journal) -> None:
        self._proactive = proactive
        self._conversation = conversation_id
        self.journal = journal

    async def post(self, reply: Reply) -> None:
        activities = render.messages(reply)
        earlier = None if reply.aside else self.journal.existing()
        try:
            if earlier is not None:
                try:
                    await self._proactive.update(self._conversation, earlier, activities[0])
                    activities = activities[1:]
                except ConnectorError as exc:  # gone: the answer is posted anew
                    log.info("teams.resumed_update_failed", status=exc.status)
            posted = await self._proactive.send(self._conversation, activities)
        except (DestinationUnavailable, ConnectorError) as exc:
            log.error("teams.resumed_answer_not_delivered", error=str(exc)[:200])
            return
        if posted and posted[0] and earlier is None and not reply.aside:
            await self.journal.note(posted[0])

    async def stream(self) -> ReplyStream:
        return _Whole(self)


class _Whole:
    def __init__(self, channel: ResumedTeamsChannel) -> None:
        self._channel = channel

    async def append(self, text: str) -> None:
        pass

    async def finish(self, reply: Reply) -> None:
        await self._channel.post(reply)
