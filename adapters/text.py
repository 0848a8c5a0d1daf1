"""Text shaping every chat platform needs: message sizes and the sources line."""

from __future__ import annotations

from collections.abc import Callable

from bot.model import Reply


def sources_line(reply: Reply, link: Callable[[str], str] = lambda url: url) -> str:
    """`**Sources:** [1] [Title](url) · …` in Markdown; `link` wraps each URL (Discord puts it
    in angle brackets so that no preview unfurls)."""
    parts = []
    for citation in reply.citations:
        title = citation.title.replace("[", "(").replace("]", ")")
        parts.append(f"[{citation.index}] [{title}]({link(citation.url)})" if citation.url
                     else f"[{citation.index}] {title}")
    return "**Sources:** " + " · ".join(parts) if parts else ""


def split_text(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters, cut at paragraph, then line, then word breaks,
    never inside a code block unless the block alone is too long."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind("\n\n"), -1)
        if cut < limit // 3:
            cut = window.rfind("\n")
        if cut < limit // 3:
            cut = window.rfind(" ")
        if cut < limit // 3:
            cut = limit
        if window[:cut].count("```") % 2:  # inside a code block: close and reopen it
            pieces.append(window[:cut].rstrip() + "\n```")
            rest = "```\n" + rest[cut:].lstrip("\n")
            continue
        pieces.append(window[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces or [""]
