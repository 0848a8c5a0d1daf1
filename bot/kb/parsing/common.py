"""What every format needs: bytes decoded to text (or rejected as binary data), whitespace
normalised, the title to fall back to, the shape a format parser returns, and exception messages
short enough for the sync report."""

from __future__ import annotations

import codecs
import re
from urllib.parse import unquote, urlsplit

from bot.kb.documents import Block, DocumentError

NOT_TEXT = "not text: looks like binary data"

Parsed = tuple[str, list[Block]]  # (title, or "" to fall back to the hint / file name; blocks)


def describe(exc: BaseException) -> str:
    """An exception as one short line for the sync report."""
    message = " ".join(str(exc).split())[:120]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def title_from_name(doc_id: str) -> str:
    """'guides/reset-password.md' -> 'Reset password': better than no title in a citation."""
    path = urlsplit(doc_id).path if "://" in doc_id else doc_id
    parts = [part for part in re.split(r"[\\/]", unquote(path)) if part]
    if not parts:
        return urlsplit(doc_id).netloc or doc_id or "Untitled"
    name = parts[-1]
    stem = name.rsplit(".", 1)[0] if "." in name[1:] else name
    if stem.lower() in {"index", "readme"} and len(parts) > 1:
        stem = parts[-2]
    words = " ".join(re.sub(r"[-_+]+", " ", stem).split())
    return words[:1].upper() + words[1:] if words else "Untitled"


# decoding and whitespace

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_C1_OR_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_NON_ASCII_DECODED = re.compile(r"[^\x00-\x7f\ufffd]")


def decode_text(data: bytes, hint: str | None = None) -> str:
    """Bytes -> str, or DocumentError when the bytes are not text (an image renamed .md).

    UTF-8 first (a stray bad byte or two is tolerated: one corrupt character should not cost a
    whole document); then a declared charset; then cp1252/latin-1 for legacy files, but only
    when the result still looks like prose, so random bytes are rejected rather than indexed as
    mojibake."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return _require_text(data.decode("utf-16"))
        except UnicodeDecodeError:
            raise DocumentError(NOT_TEXT) from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    if b"\x00" in data:
        raise DocumentError(NOT_TEXT)
    try:
        return _require_text(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    lenient = data.decode("utf-8", errors="replace")
    errors = lenient.count("\ufffd")
    tiny = errors <= max(2, len(data) // 1000)
    if tiny and _NON_ASCII_DECODED.search(lenient):
        return _require_text(lenient)  # real UTF-8 with a damaged byte or two
    declared = hint and hint.replace("_", "-") not in {"utf-8", "utf8"}
    if declared:  # a charset the server or the page declared: trust it unless it fails
        try:
            return _require_text(data.decode(str(hint)))
        except (UnicodeDecodeError, LookupError, DocumentError):
            pass
    for codec in ("cp1252", "latin-1"):  # cp1252 leaves five bytes undefined; latin-1 none
        try:
            legacy = data.decode(codec)
        except UnicodeDecodeError:
            continue
        if _looks_like_legacy_text(data, legacy):
            return legacy
        break  # the best legacy reading looks like noise; latin-1 would not do better
    if tiny:
        return _require_text(lenient)
    raise DocumentError(NOT_TEXT)


def _require_text(text: str) -> str:
    if len(_CONTROL.findall(text)) * 100 > len(text) + 100:  # > ~1 % control characters
        raise DocumentError(NOT_TEXT)
    return text


def _looks_like_legacy_text(data: bytes, text: str) -> bool:
    high = sum(1 for byte in data if byte >= 0x80)
    return high * 10 <= len(data) * 3 and len(_C1_OR_CONTROL.findall(text)) * 100 <= len(text)


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def collapse(text: str) -> str:
    return " ".join(text.split())
