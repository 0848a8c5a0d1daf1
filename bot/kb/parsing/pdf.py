"""PDF -> paragraphs of extracted text (no OCR: a scanned PDF is reported, not indexed); the
title comes from the document's metadata."""

from __future__ import annotations

import io
import re

from pypdf import PdfReader

from bot.kb.documents import Block, BlockKind, DocumentError, RawDocument
from bot.kb.parsing.common import Parsed, collapse, describe, normalise_newlines


def parse_pdf(raw: RawDocument, charset: str | None) -> Parsed:
    try:
        reader = PdfReader(io.BytesIO(raw.data))
        encrypted = reader.is_encrypted
    except Exception as exc:
        raise DocumentError(f"corrupt PDF: {describe(exc)}") from exc
    if encrypted:
        try:  # some PDFs are "encrypted" with an empty user password just to set permissions
            decrypted = bool(reader.decrypt(""))
        except Exception:  # wrong password, or AES without the optional crypto dependency
            decrypted = False
        if not decrypted:
            raise DocumentError("encrypted PDF")
    try:
        pages = list(reader.pages)
    except Exception as exc:
        raise DocumentError(f"corrupt PDF: {describe(exc)}") from exc
    if not pages:
        raise DocumentError("corrupt PDF: no pages")
    blocks: list[Block] = []
    unreadable = 0
    for page in pages:
        try:
            text = page.extract_text() or ""
        except Exception:  # one broken page should not cost the others
            unreadable += 1
            continue
        blocks += [Block(BlockKind.TEXT, p) for p in _pdf_paragraphs(text)]
    if not blocks:
        if unreadable == len(pages):
            raise DocumentError("corrupt PDF: no page could be read")
        raise DocumentError("PDF has no text (scanned?)")
    return _pdf_title(reader), blocks


def _pdf_paragraphs(text: str) -> list[str]:
    """Page text -> paragraphs: PDFs break lines for layout, so a paragraph's lines are joined
    (and a word hyphenated across a line end is mended).

    pypdf rarely yields blank lines between paragraphs, so a line clearly shorter than the
    page's full lines also ends one: that is how a paragraph's last line or a heading looks."""
    text = normalise_newlines(text)
    widths = sorted(len(line.strip()) for line in text.split("\n") if line.strip())
    full = widths[int(len(widths) * 0.9)] if len(widths) >= 3 else 0
    paragraphs = []
    for chunk in re.split(r"\n[ \t]*\n", text):
        current: list[str] = []
        for line in (line.strip() for line in chunk.split("\n")):
            if line:
                current.append(line)
            if current and (not line or len(line) < full * 0.75):
                paragraphs.append(_join_pdf_lines(current))
                current = []
        if current:
            paragraphs.append(_join_pdf_lines(current))
    return [p for p in paragraphs if p]


def _join_pdf_lines(lines: list[str]) -> str:
    joined = lines[0]
    for line in lines[1:]:
        if re.search(r"[a-zäöüß]-$", joined) and line[:1].islower():
            joined = joined[:-1] + line
        else:
            joined = f"{joined} {line}"
    return collapse(joined)


def _pdf_title(reader: PdfReader) -> str:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:  # a damaged info dictionary only costs the title
        return ""
    title = collapse(str(title)) if title else ""
    title = re.sub(r"^Microsoft (?:Word|PowerPoint) - ", "", title)
    return "" if title.lower() in {"untitled", "title"} else title
