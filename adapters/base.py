"""The contract between the engine and a platform.

The engine is handed a `ReplyChannel` for each message it handles; it never learns what platform
it talks to. An adapter decides how to stream (edits, native streaming, SSE, a terminal), how to
split long text and how to respect its platform's rate limits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import structlog

from bot.model import ConversationKey, Reply

if TYPE_CHECKING:
    from bot.escalation.store import Ticket

T = TypeVar("T")

log = structlog.get_logger(__name__)


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


@runtime_checkable
class EscalationOutlet(Protocol):
    """What an adapter does for escalations: post them to its human channel with Claim/Resolve
    actions, keep that post current, and write into a user's conversation unprompted (notices
    and an agent's relayed replies). `name` is the platform."""

    name: str

    async def tell(self, key: ConversationKey, reply: Reply) -> None:
        """Post into the user's conversation; raises `DestinationUnavailable`."""

    async def post_ticket(self, destination: str, ticket: Ticket, *, link: str,
                          mention: str = "") -> tuple[str, str]:
        """Post a new escalation into `destination`; its (message id, thread id). Raises
        `DestinationUnavailable`."""

    async def update_ticket(self, ticket: Ticket, *, link: str) -> None:
        """Show the escalation's new state (and the actions that now apply) in its post.
        Raises `DestinationUnavailable` when the post no longer exists (it is posted anew)."""

    async def post_in_ticket(self, ticket: Ticket, text: str, *, mention: str = "") -> None:
        """Write `text` (Markdown, from users or the desk: escape it) into the escalation's
        thread in the human channel, after `mention` (the platform's own syntax, e.g. an
        on-call group: sent as is, so that it notifies)."""

    async def is_agent(self, user_id: str, destination: str, agents: Sequence[str]) -> bool:
        """May this user claim and resolve escalations posted to `destination`? `agents` names
        the agents (users, or the platform's groups or roles); empty: the members of
        `destination`."""

    async def link(self, key: ConversationKey) -> str:
        """A URL that opens the user's conversation, or "" where the platform has none."""


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

    def spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `work` in the background, held (asyncio keeps only weak references to tasks)
        and waited for by `drain`. An exception it ends with is logged here: nobody else
        awaits the task, so it would otherwise surface only as asyncio's "never retrieved"."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)
        return task

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


def _log_failure(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()  # retrieved: asyncio will not report it again
    if exc is not None:
        log.error("adapter.task_failed",
                  task=getattr(task.get_coro(), "__qualname__", task.get_name()), exc_info=exc)
