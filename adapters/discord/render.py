"""`Reply` -> Discord messages: Markdown as is, sources as masked links, 2000 characters each."""

from __future__ import annotations

from adapters.text import split_text

__all__ = ["MESSAGE_LIMIT", "messages", "sources_line", "split_text"]
from bot.model import Reply, ReplyMode

MESSAGE_LIMIT = 2000


def sources_line(reply: Reply) -> str:
    """`<url>` in angle brackets keeps Discord from unfurling a preview of every source."""
    parts = []
    for citation in reply.citations:
        title = citation.title.replace("[", "(").replace("]", ")")
        parts.append(f"[{citation.index}] [{title}](<{citation.url}>)" if citation.url
                     else f"[{citation.index}] {title}")
    return "**Sources:** " + " · ".join(parts) if parts else ""


def messages(reply: Reply) -> list[str]:
    text = reply.text
    if reply.mode is ReplyMode.RETRIEVAL_ONLY:
        text = "*From the knowledge base (no language model answered):*\n" + text
    sources = sources_line(reply)
    if sources:
        text = f"{text}\n\n{sources}"
    return split_text(text, MESSAGE_LIMIT)
