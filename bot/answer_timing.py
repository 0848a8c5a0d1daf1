"""When the user first sees an answer, and how long the whole answer took.

The engine hands the adapter's reply channel through `TimedChannel`, which notes the first piece
of the answer the platform is given: a streamed piece, a finished stream, or a whole message
posted. Notices posted beside the answer (`Reply.aside`, such as "secrets were removed") and a
stream's placeholder are not the answer, so they do not count. Measuring here, at the one
boundary every platform passes, keeps the adapters free of timing code.
"""

from __future__ import annotations

import time

from adapters.base import ReplyChannel, ReplyStream
from bot import metrics
from bot.model import Reply


class TimedChannel:
    """A `ReplyChannel` that records `bothub_time_to_first_token_seconds` once."""

    def __init__(self, channel: ReplyChannel, *, platform: str, since: float) -> None:
        self._channel = channel
        self._platform = platform
        self._since = since
        self.first_piece_at: float | None = None

    def seen(self) -> None:
        if self.first_piece_at is None:
            self.first_piece_at = time.monotonic()
            metrics.FIRST_PIECE.record(self.first_piece_at - self._since,
                                       {"platform": self._platform})

    async def post(self, reply: Reply) -> None:
        await self._channel.post(reply)
        if not reply.aside:
            self.seen()

    async def stream(self) -> ReplyStream:
        return _TimedStream(await self._channel.stream(), self)


class _TimedStream:
    def __init__(self, stream: ReplyStream, channel: TimedChannel) -> None:
        self._stream = stream
        self._channel = channel

    async def append(self, text: str) -> None:
        await self._stream.append(text)
        self._channel.seen()

    async def finish(self, reply: Reply) -> None:
        await self._stream.finish(reply)
        self._channel.seen()


def answer_finished(platform: str, outcome: str, since: float) -> None:
    """`bothub_answer_seconds` and `bothub_messages_total` for one handled message."""
    metrics.ANSWER_LATENCY.record(time.monotonic() - since,
                                  {"platform": platform, "outcome": outcome})
    metrics.MESSAGES.add(1, {"platform": platform, "outcome": outcome})
