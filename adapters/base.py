"""The contract between the engine and a platform.

The engine is handed a `ReplyChannel` for each message it handles; it never learns what platform
it talks to. An adapter decides how to stream (edits, native streaming, SSE, a terminal), how to
split long text and how to respect its platform's rate limits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from bot.model import Reply


class DestinationUnavailable(Exception):
    """The adapter cannot post to the named destination (unknown, forbidden, or no such concept)."""


@runtime_checkable
class ReplyStream(Protocol):
    """One answer growing in place as tokens arrive."""

    async def append(self, text: str) -> None:
        """Add a piece of the answer; the adapter may buffer and throttle what it shows."""

    async def finish(self, reply: Reply) -> None:
        """Show the final answer. `reply.text` is the whole text and may differ from what was
        streamed (an answer cut off by a failure ends with a notice); citations come only here."""


@runtime_checkable
class ReplyChannel(Protocol):
    """Where the answer to one message goes: the thread or chat the message came from."""

    async def post(self, reply: Reply) -> None:
        """Post one complete message (a notice, or an answer that was not streamed)."""

    async def stream(self) -> ReplyStream:
        """Start an answer that will be streamed; the platform shows progress at once."""

    async def post_elsewhere(self, destination: str, reply: Reply) -> str:
        """Post into another channel of the same platform (escalations); returns the posted
        message's id. Raises `DestinationUnavailable` where the platform has no such channel."""


@runtime_checkable
class Adapter(Protocol):
    """A platform connection owned by `bothub serve`: started with the server, stopped with it."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class InFlight:
    """Answers being worked out after the platform was already acknowledged. A shutdown waits
    for them: their questions will not be delivered again."""

    DRAIN_SECONDS = 30.0  # after this a shutdown goes on; the questions are stored anyway

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.DRAIN_SECONDS)
