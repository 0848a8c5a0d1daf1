"""Raw bytes -> a Document of structured blocks (headings, paragraphs, lists, code, tables).

Chunking cuts at the seams this module finds, and citations name the headings it keeps, so
structure matters more than pretty text. Every failure is a `DocumentError` with a short reason
for the sync report: one unreadable file must never stop a sync, and "encrypted PDF" tells an
admin what to fix where a traceback would not.

Documents are data, never instructions: text that reads like a command to the model is parsed
like any other paragraph (the prompt, not the parser, is where that is handled).

The package has one module per format (`markdown`, `html`, `text`, `pdf`) because each is a
self-contained reading of one syntax, changed and tested on its own; what they share (decoding
bytes and rejecting binary data, whitespace clean-up, the fallback title) lives in `common`.
This module only picks a parser by content type and enforces what holds for every format: empty
documents are rejected and any unexpected exception becomes a DocumentError. Markdown borrows
`html`'s reader for raw HTML blocks.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from bot.kb.documents import Document, DocumentError, RawDocument
from bot.kb.parsing.common import NOT_TEXT as NOT_TEXT  # re-exported: tests compare reasons to it
from bot.kb.parsing.common import Parsed, describe, title_from_name
from bot.kb.parsing.html import parse_html
from bot.kb.parsing.markdown import parse_markdown
from bot.kb.parsing.pdf import parse_pdf
from bot.kb.parsing.text import parse_text

__all__ = ["parse"]

EMPTY = "empty"


def parse(raw: RawDocument) -> Document:
    """Parse one raw document; raise DocumentError (and nothing else) when it cannot be indexed."""
    content_type, charset = _split_content_type(raw.content_type)
    kind = _KINDS.get(content_type)
    if kind is None:
        raise DocumentError(f"unsupported type {content_type or '(none)'}")
    if not raw.data.strip():
        raise DocumentError(EMPTY)
    try:
        title, blocks = _PARSERS[kind](raw, charset)
    except DocumentError:
        raise
    except Exception as exc:  # a parser bug or a pathological file must not abort the sync
        raise DocumentError(f"could not parse {kind}: {describe(exc)}") from exc
    kept = tuple(block for block in blocks if block.text.strip())
    if not kept:
        raise DocumentError(EMPTY)
    return Document(
        source=raw.source,
        doc_id=raw.doc_id,
        url=raw.url,
        title=title or raw.title_hint.strip() or title_from_name(raw.doc_id),
        content_hash=raw.content_hash,
        blocks=kept,
    )


_KINDS = {
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/plain": "text",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
}

_PARSERS: dict[str, Callable[[RawDocument, str | None], Parsed]] = {
    "markdown": parse_markdown,
    "text": parse_text,
    "html": parse_html,
    "pdf": parse_pdf,
}


def _split_content_type(value: str) -> tuple[str, str | None]:
    """'text/html; charset=ISO-8859-1' -> ('text/html', 'iso-8859-1'); a charset is only a hint."""
    media, _, params = value.partition(";")
    charset = None
    match = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", params, re.IGNORECASE)
    if match:
        charset = match.group(1).lower()
    return media.strip().lower(), charset
