"""The terminal as a platform: `bothub ask` and `bothub chat`."""

from __future__ import annotations

from rich.console import Console
from rich.markdown import Markdown

from adapters.base import ReplyStream
from bot.model import Reply, ReplyMode


class ConsoleReplyChannel:
    """Prints the answer as it streams, then its sources.

    A terminal cannot rewrite what it printed, so when the final text differs from the streamed
    one (an answer cut off by a failure) only the difference is printed.
    """

    def __init__(self, console: Console) -> None:
        self._console = console

    async def post(self, reply: Reply) -> None:
        style = "yellow" if reply.mode is ReplyMode.NOTICE else None
        self._console.print(Markdown(reply.text), style=style)
        self._sources(reply)

    async def stream(self) -> ReplyStream:
        return _ConsoleStream(self)

    def _sources(self, reply: Reply) -> None:
        if reply.citations:
            self._console.print("\n[bold]Sources[/bold]")
            for citation in reply.citations:
                where = f" — {citation.url}" if citation.url else ""
                self._console.print(f"  [{citation.index}] {citation.title}{where}",
                                    highlight=False, markup=False)


class _ConsoleStream:
    def __init__(self, channel: ConsoleReplyChannel) -> None:
        self._channel = channel
        self._shown = ""

    async def append(self, text: str) -> None:
        self._shown += text
        self._channel._console.out(text, end="", highlight=False)

    async def finish(self, reply: Reply) -> None:
        console = self._channel._console
        if not self._shown:
            await self._channel.post(reply)
            return
        if reply.text.startswith(self._shown.strip()):
            rest = reply.text[len(self._shown.strip()):]
            console.out(rest, highlight=False)
        else:
            console.out("")
            console.print(Markdown(reply.text), style="yellow")
        self._channel._sources(reply)
