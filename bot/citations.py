"""Numbered knowledge passages in, numbered citations out."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.kb.documents import Hit
from bot.model import Citation

_MARKER = re.compile(r"\[(\d{1,2})\]")
QUOTE_CHARS = 400


def label(hit: Hit) -> str:
    return hit.chunk.heading


def citation(number: int, hit: Hit) -> Citation:
    return Citation(index=number, title=label(hit) or hit.chunk.doc_id, url=hit.chunk.url,
                    snippet=hit.chunk.text[:200])


def cited(answer: str, passages: Sequence[Hit]) -> tuple[Citation, ...]:
    """The passages the answer refers to with [n], in the order it first cites them."""
    numbers: list[int] = []
    for match in _MARKER.finditer(answer):
        number = int(match.group(1))
        if 1 <= number <= len(passages) and number not in numbers:
            numbers.append(number)
    return tuple(citation(number, passages[number - 1]) for number in numbers)


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """A passage as a Markdown quote, cut at a word boundary."""
    text = " ".join(text.split())
    if len(text) > limit:
        cut = text[:limit].rsplit(" ", 1)[0]
        text = cut + " …"
    return "> " + text
