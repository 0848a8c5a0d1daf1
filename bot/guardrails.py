"""Checks on what users send before anything is stored or shown to a model."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from bot import replies

_KEEP = {"\n", "\t"}


@dataclass(frozen=True, slots=True)
class InputCheck:
    text: str  # cleaned: control characters removed, whitespace trimmed
    refusal: str | None = None  # a polite reply instead of an answer


def clean(text: str) -> str:
    """Drop control characters (NULs break PostgreSQL text) and surrounding whitespace."""
    return "".join(ch for ch in text
                   if ch in _KEEP or unicodedata.category(ch)[0] != "C"
                   or unicodedata.category(ch) == "Cf").strip()


def _looks_binary(raw: str) -> bool:
    if not raw:
        return False
    suspicious = sum(1 for ch in raw if ch == "\ufffd"
                     or (unicodedata.category(ch) == "Cc" and ch not in _KEEP and ch != "\r"))
    # A few stray control characters are cleaned, not refused: binary data has many.
    return suspicious >= 8 and suspicious / len(raw) > 0.1


def check_input(raw: str, *, has_attachments: bool, max_chars: int) -> InputCheck:
    if _looks_binary(raw):
        return InputCheck(text="", refusal=replies.BINARY)
    text = clean(raw)
    if not text and not has_attachments:
        return InputCheck(text="", refusal=replies.EMPTY)
    if len(text) > max_chars:
        return InputCheck(text=text, refusal=replies.too_long(max_chars, len(text)))
    return InputCheck(text=text)
