"""Where documents come from: a folder, the web (`bot.kb.web`), bothub's own entries.

A source only finds bytes and says what it could not read; parsing happens in the sync, so a
source never decides what is a good document.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Protocol

from bot.config import SourceConfig
from bot.kb.catalog import KbCatalog
from bot.kb.documents import RawDocument, SkippedDocument, SourceUnavailable
from bot.kb.web import WebSource, WebSourceConfig

CONTENT_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".txt": "text/plain",
                 ".text": "text/plain", ".html": "text/html", ".htm": "text/html",
                 ".pdf": "application/pdf"}
MB = 1024 * 1024


class Source(Protocol):
    name: str
    total: int | None  # how many documents, once known: for progress bars

    def documents(self) -> AsyncIterator[RawDocument | SkippedDocument]: ...


class FolderSource:
    """Markdown, text, HTML and PDF files below a folder; hidden files and folders are ignored,
    and symbolic links are not followed out of it."""

    def __init__(self, name: str, root: Path, *, base_url: str = "",
                 max_bytes: int = 20 * MB) -> None:
        self.name = name
        self.root = root
        self.base_url = base_url
        self.max_bytes = max_bytes
        self.total: int | None = None

    def files(self) -> list[Path]:
        if not self.root.is_dir():
            raise SourceUnavailable(f"folder {self.root} does not exist or is not a folder")
        found = []
        for folder, subfolders, names in os.walk(self.root):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            for filename in names:
                path = Path(folder) / filename
                if filename.startswith(".") or path.suffix.lower() not in CONTENT_TYPES:
                    continue
                if path.is_symlink() and not path.resolve().is_relative_to(self.root.resolve()):
                    continue
                found.append(path)
        return sorted(found)

    async def documents(self) -> AsyncIterator[RawDocument | SkippedDocument]:
        files = await asyncio.to_thread(self.files)
        self.total = len(files)
        for path in files:
            doc_id = path.relative_to(self.root).as_posix()
            try:
                size = path.stat().st_size
                if size > self.max_bytes:
                    yield SkippedDocument(self.name, doc_id,
                                          f"larger than {self.max_bytes // MB} MB ({size:,} bytes)")
                    continue
                data = await asyncio.to_thread(path.read_bytes)
            except OSError as exc:
                yield SkippedDocument(self.name, doc_id, f"cannot be read: {exc.strerror}")
                continue
            url = self.base_url.rstrip("/") + "/" + doc_id if self.base_url else ""
            yield RawDocument(source=self.name, doc_id=doc_id, url=url,
                              content_type=CONTENT_TYPES[path.suffix.lower()], data=data)


class EntrySource:
    """Answers that agents marked for the knowledge base when resolving an escalation."""

    def __init__(self, name: str, catalog: KbCatalog) -> None:
        self.name = name
        self._catalog = catalog
        self.total: int | None = None

    async def documents(self) -> AsyncIterator[RawDocument | SkippedDocument]:
        entries = await self._catalog.entries(self.name)
        self.total = len(entries)
        for entry in entries:
            text = f"# {entry.title}\n\n{entry.body}\n"
            yield RawDocument(source=self.name, doc_id=f"entry-{entry.id}", url=entry.url,
                              content_type="text/markdown", data=text.encode("utf-8"),
                              title_hint=entry.title)


def build_sources(configs: Sequence[SourceConfig], catalog: KbCatalog) -> list[Source]:
    sources: list[Source] = []
    for config in configs:
        if config.kind == "folder":
            assert config.path is not None  # filled in by KnowledgeConfig.resolved_sources
            sources.append(FolderSource(config.name, config.path, base_url=config.url,
                                        max_bytes=config.max_file_bytes))
        elif config.kind == "web":
            sources.append(WebSource(WebSourceConfig(
                name=config.name, urls=tuple(config.urls), sitemaps=tuple(config.sitemaps),
                allowed_hosts=tuple(config.allowed_hosts), max_pages=config.max_pages,
                max_bytes=config.max_file_bytes, timeout_seconds=config.timeout_seconds)))
        else:
            sources.append(EntrySource(config.name, catalog))
    return sources
