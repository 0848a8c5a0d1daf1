"""The one interface the harness drives a platform through; each platform is a small module.

A driver owns its platform's fake (started in this process), tells the target how to reach it
(environment variables), asks questions through it the way the platform would (a signed HTTP
request, a gateway event) and reads back what the bot wrote, as the platform-neutral messages
and writes of `measure`. The harness knows nothing else about platforms.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from types import TracebackType
from typing import ClassVar, Self

import httpx

from benchmarks.load.measure import Question, Shown, Write

PLATFORMS = ("slack", "teams", "discord")


class Driver(ABC):
    platform: ClassVar[str]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    @abstractmethod
    def start(self) -> None:
        """Start the platform's fake(s) and set up the channels and users questions come from."""

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def env(self) -> dict[str, str]:
        """Environment variables that point the target at the fake."""

    @abstractmethod
    async def open(self, url: str) -> None:
        """Get ready to ask the target at `url` (listening there, and healthy)."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    def question(self, number: int, conversation: int | None) -> Question:
        """Question `number`, asked in `conversation` (its first question starts it, the next
        ones are asked in it); None: a conversation of its own (the warm-up's)."""

    @abstractmethod
    async def send(self, question: Question) -> None:
        """Ask it; set `question.sent` just before it leaves and `question.status`."""

    @abstractmethod
    def messages(self) -> list[Shown]:
        """The bot's messages as they are now (after edits)."""

    @abstractmethod
    def writes(self) -> list[Write]:
        """Every write of the bot's so far, with the fake's arrival stamps."""

    @abstractmethod
    def thread_texts(self, question: Question) -> list[str]:
        """What the bot wrote in a question's thread, for the lost questions in the report."""


class HttpDriver(Driver):
    """A platform that delivers events to the target by HTTP POST (Slack, Teams)."""

    client: httpx.AsyncClient | None = None

    async def open(self, url: str) -> None:
        limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
        self.client = httpx.AsyncClient(base_url=url, timeout=30, limits=limits)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def post(self, question: Question, path: str, body: bytes,
                   headers: dict[str, str]) -> None:
        """POST a prepared event; `question.sent` is stamped just before it leaves."""
        assert self.client is not None, "open() first"
        question.sent = time.monotonic()
        try:
            response = await self.client.post(path, content=body, headers=headers)
            question.status = response.status_code
        except httpx.HTTPError:
            question.status = None


def driver_for(platform: str) -> Driver:
    """A new driver for `platform` (one of PLATFORMS)."""
    if platform == "slack":
        from benchmarks.load.slack import SlackDriver
        return SlackDriver()
    if platform == "teams":
        from benchmarks.load.teams import TeamsDriver
        return TeamsDriver()
    if platform == "discord":
        from benchmarks.load.discord import DiscordDriver
        return DiscordDriver()
    raise ValueError(f"unknown platform {platform!r}; one of {', '.join(PLATFORMS)}")
