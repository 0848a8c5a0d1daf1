"""Shared by the knowledge-base tests: the sample KB shipped with the bot, parsed as sync does."""

from __future__ import annotations

from pathlib import Path

from bot.kb.documents import Document, RawDocument
from bot.kb.parsing import parse

SAMPLE = Path(__file__).resolve().parents[2] / "bot" / "kb" / "sample"
CONTENT_TYPES = {
    ".md": "text/markdown",
    ".txt": "text/plain",
    ".html": "text/html",
    ".pdf": "application/pdf",
}


def parse_sample(relative: str) -> Document:
    """One file of the sample KB (a path relative to SAMPLE) parsed into a Document."""
    path = SAMPLE / relative
    return parse(RawDocument(source="sample", doc_id=relative, url="",
                             content_type=CONTENT_TYPES[path.suffix], data=path.read_bytes()))
