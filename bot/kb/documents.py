"""What flows through a sync: raw bytes from a source, a parsed document, its chunks.

Sources only find bytes; parsing turns them into structured blocks; chunking cuts blocks into
passages that remember their document and section, which is what a citation needs.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from functools import cached_property


class BlockKind(enum.StrEnum):
    HEADING = "heading"
    TEXT = "text"  # a paragraph
    LIST = "list"  # a whole list, items on their own lines
    CODE = "code"  # kept whole where possible, never re-flowed
    TABLE = "table"


@dataclass(frozen=True, slots=True)
class Block:
    kind: BlockKind
    text: str
    level: int = 0  # 1-6 for headings


@dataclass(frozen=True)
class RawDocument:
    """A file or page as a source found it, before parsing."""

    source: str
    doc_id: str  # stable within its source: a relative path or a URL
    url: str  # what a citation links to; "" when there is nothing to link
    content_type: str  # text/markdown, text/plain, text/html, application/pdf
    data: bytes
    title_hint: str = ""

    @cached_property
    def content_hash(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True, slots=True)
class SkippedDocument:
    """A document the source knows exists but could not read this time (too large, timed out).

    It still counts as seen, so a sync does not delete what it indexed before."""

    source: str
    doc_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Document:
    source: str
    doc_id: str
    url: str
    title: str
    content_hash: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True, slots=True)
class Chunk:
    """One passage: what is embedded, searched, shown to the model and cited."""

    source: str
    doc_id: str
    index: int
    title: str
    url: str
    section: str  # the heading path, e.g. "Billing › Refunds"; "" before the first heading
    text: str

    @property
    def key(self) -> str:
        return f"{self.source}:{self.doc_id}#{self.index}"

    @property
    def heading(self) -> str:
        """Title and section as one path, the title said once even when the document's first
        heading repeats it: "Billing › Refunds", not "Billing › Billing › Refunds"."""
        parts = [self.title] if self.title else []
        for part in self.section.split(" › ") if self.section else []:
            if not parts or part.casefold() != parts[-1].casefold():
                parts.append(part)
        return " › ".join(parts)


@dataclass(frozen=True, slots=True)
class Hit:
    """A chunk found for a question, with the scores that ranked it."""

    chunk: Chunk
    score: float  # the ranking score: fused rank (hybrid) or BM25 (full-text only)
    similarity: float | None  # cosine similarity to the question, when vectors were compared
    bm25: float | None  # full-text score, when the words matched


class DocumentError(Exception):
    """This document cannot be indexed; `reason` is short and goes into the sync report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SourceUnavailable(Exception):
    """The source as a whole could not be listed (folder missing, sitemap unreachable): the sync
    must not take the absence of its documents as their deletion."""
