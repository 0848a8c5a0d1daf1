"""A reply channel that turns the engine's answer into server-sent events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from adapters.base import ReplyStream
from bot.model import Reply

_CLOSE = object()


def sse(event: str, data: dict[str, Any]) -> str:
    """One event in the `text/event-stream` format; JSON keeps newlines out of the data line."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def reply_events(reply: Reply) -> list[str]:
    return [
        sse("message", {"text": reply.text, "mode": reply.mode.value}),
        sse("sources", {"sources": [{"index": c.index, "title": c.title, "url": c.url}
                                    for c in reply.citations]}),
    ]


class SseReplyChannel:
    """Collects events in a queue that the HTTP response drains.

    The engine never waits for the browser: if the tab closes mid-answer the answer is still
    completed and stored, and the events simply go unread.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[object] = asyncio.Queue()

    def emit(self, event: str, data: dict[str, Any]) -> None:
        self._queue.put_nowait(sse(event, data))

    def close(self) -> None:
        self._queue.put_nowait(_CLOSE)

    async def events(self) -> AsyncIterator[str]:
        while (item := await self._queue.get()) is not _CLOSE:
            assert isinstance(item, str)
            yield item

    async def post(self, reply: Reply) -> None:
        for event in reply_events(reply):
            self._queue.put_nowait(event)

    async def stream(self) -> ReplyStream:
        return _SseStream(self)


class _SseStream:
    def __init__(self, channel: SseReplyChannel) -> None:
        self._channel = channel

    async def append(self, text: str) -> None:
        self._channel.emit("delta", {"text": text})

    async def finish(self, reply: Reply) -> None:
        await self._channel.post(reply)
