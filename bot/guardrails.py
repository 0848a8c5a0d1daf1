"""Checks on what users send before anything is stored or shown to a model: refusals
(empty, binary, too long) and secrets, which are redacted before the message is stored."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from bot import redaction, replies

_KEEP = {"\n", "\t"}


@dataclass(frozen=True, slots=True)
class InputCheck:
    text: str  # cleaned and with secrets redacted: what is stored and shown to a model
    refusal: str | None = None  # a polite reply instead of an answer
    notice: str | None = None  # told to the user before the answer (what was redacted, why)
    redacted: tuple[str, ...] = ()  # the kinds of secret removed, for logs and metrics


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
    found = redaction.redact_secrets(text)
    if not found.changed:
        return InputCheck(text=text)
    return InputCheck(text=found.text, notice=redaction.user_notice(found.findings),
                      redacted=tuple(f.kind for f in found.findings))
