"""`Reply` -> Discord messages: Markdown as is, sources as masked links, 2000 characters each."""

from __future__ import annotations

from adapters.text import sources_line as markdown_sources
from adapters.text import split_text

__all__ = ["MESSAGE_LIMIT", "messages", "sources_line", "split_text"]
from bot.model import Reply, ReplyMode

MESSAGE_LIMIT = 2000


def sources_line(reply: Reply) -> str:
    """`<url>` in angle brackets keeps Discord from unfurling a preview of every source."""
    return markdown_sources(reply, lambda url: f"<{url}>")


def messages(reply: Reply) -> list[str]:
    text = reply.text
    if reply.mode is ReplyMode.RETRIEVAL_ONLY:
        text = "*From the knowledge base (no language model answered):*\n" + text
    sources = sources_line(reply)
    if sources:
        text = f"{text}\n\n{sources}"
    return split_text(text, MESSAGE_LIMIT)
