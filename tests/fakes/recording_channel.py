"""A reply channel that records what a user would see, for engine tests without a platform."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.model import Reply


@dataclass
class RecordingStream:
    deltas: list[str] = field(default_factory=list)
    final: Reply | None = None

    async def append(self, text: str) -> None:
        assert self.final is None, "append after finish"
        self.deltas.append(text)

    async def finish(self, reply: Reply) -> None:
        assert self.final is None, "finished twice"
        self.final = reply


@dataclass
class RecordingChannel:
    posts: list[Reply] = field(default_factory=list)
    streams: list[RecordingStream] = field(default_factory=list)

    async def post(self, reply: Reply) -> None:
        self.posts.append(reply)

    async def stream(self) -> RecordingStream:
        stream = RecordingStream()
        self.streams.append(stream)
        return stream

    @property
    def shown(self) -> list[Reply]:
        """Every complete message the user ended up seeing, in order."""
        return self.posts + [s.final for s in self.streams if s.final is not None]
