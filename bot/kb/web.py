"""A knowledge-base source that reads web pages and sitemaps over HTTP.

The source only finds bytes; parsing HTML or PDF is someone else's job. What it must get right is
what a sync concludes from its output:

* a page it yields is indexed, a `SkippedDocument` keeps what was indexed before, and a page it
  does not yield at all is deleted. So only pages the server says are gone (404/410), pages no
  longer listed, off-site entries of a sitemap and pages past `max_pages` are left out; every
  other failure (timeout, 5xx, 403, too large, a redirect off-site) is a skip.
* if the list of pages itself cannot be known (a sitemap is down, broken or hostile, or no page
  can be reached at all) it raises `SourceUnavailable` before yielding anything, so the sync
  deletes nothing.

It only ever talks to allowed hosts: a sitemap or a redirect cannot send it anywhere else (no
requests to internal services on a sitemap's say-so). Redirects are therefore followed by hand,
one checked hop at a time, because httpx would follow them before we could look.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import zlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Final
from urllib.parse import urljoin, urlsplit
from xml.etree import ElementTree

import httpx
import structlog

from bot.kb.documents import RawDocument, SkippedDocument, SourceUnavailable

log = structlog.get_logger(__name__)

MAX_REDIRECTS: Final = 5
# The sitemap protocol caps a sitemap at 50,000 URLs and 50 MB uncompressed; the same cap bounds
# what a gzip sitemap may inflate to, so a small .gz cannot expand into gigabytes.
SITEMAP_MAX_BYTES: Final = 50 * 1024 * 1024
# How many sitemap files one sync may read (an index of indexes could otherwise go on for a long
# time). Past it the listing is incomplete, and an incomplete listing must not delete anything.
MAX_SITEMAPS: Final = 1000
# Pages are fetched up to this many `concurrency`-widths ahead of the one being yielded: enough to
# keep the connections busy behind one slow page, while bounding the bodies held in memory.
READ_AHEAD: Final = 4

_SUPPORTED_TYPES: Final = frozenset({"text/html", "text/plain", "text/markdown", "application/pdf"})
_TYPE_ALIASES: Final = {"application/xhtml+xml": "text/html", "text/x-markdown": "text/markdown"}
# Used only when the server sends no useful Content-Type (none, or application/octet-stream).
_TYPE_BY_SUFFIX: Final = {
    ".html": "text/html",
    ".htm": "text/html",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".pdf": "application/pdf",
}
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_GONE_STATUSES: Final = frozenset({404, 410})
# Any DTD is refused: sitemaps never need one, and internal entities are how "billion laughs"
# expands a few hundred bytes into gigabytes.
_DTD_MARKUP: Final = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_GZIP_MAGIC: Final = b"\x1f\x8b"


@dataclass(frozen=True)
class WebSourceConfig:
    """One web source. `allowed_hosts` are host names (any port); empty means the hosts of
    `urls` and `sitemaps`. `timeout_seconds` bounds one whole fetch: every redirect and the body."""

    name: str
    urls: tuple[str, ...] = ()  # pages to index
    sitemaps: tuple[str, ...] = ()  # sitemap.xml URLs (urlset or sitemapindex, nested)
    allowed_hosts: tuple[str, ...] = ()  # empty: the hosts of `urls` and `sitemaps`
    max_pages: int = 2000
    max_bytes: int = 5 * 1024 * 1024  # per page
    timeout_seconds: float = 15.0
    concurrency: int = 4
    user_agent: str = "bothub-kb-sync/1.0"


def normalise_url(raw: str, base: str | None = None) -> str | None:
    """The canonical form of a page URL, used as its doc_id: the same page must get the same id in
    every sync however it was written. Drops the #fragment (same page), keeps the query (often a
    different page), lowercases scheme and host, IDNA-encodes the host, percent-encodes the rest.
    None for anything that is not an absolute http(s) URL."""
    text = raw.strip()
    if base is not None:
        text = urljoin(base, text)
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, ValueError):
        return None
    if url.scheme not in ("http", "https") or not url.raw_host:
        return None
    url = url.copy_with(fragment=None)
    if not urlsplit(str(url)).path:  # "https://host" and "https://host/" are one page
        url = url.copy_with(path="/")
    return str(url)


def _host_of(url: str) -> str:
    """The host as compared against `allowed_hosts`: ASCII (IDNA), lowercase, no trailing dot."""
    return httpx.URL(url).raw_host.decode("ascii").lower().rstrip(".")


def _normalise_host(host: str) -> str:
    """An `allowed_hosts` entry in the same form as `_host_of`, so "Bücher.de" matches."""
    try:
        return _host_of(f"http://{host.strip()}/")
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
        raise ValueError(f"invalid allowed host {host!r}") from exc


def _format_size(size: int) -> str:
    """Sizes for skip reasons, as people write them in config: 5 MB, 512 KB, 1000 bytes."""
    for unit, factor in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def _content_type(response: httpx.Response, url: str) -> str:
    """The Content-Type without parameters, mapped onto what the parsers know."""
    media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media in ("", "application/octet-stream"):
        path = httpx.URL(url).path.lower()
        for suffix, guessed in _TYPE_BY_SUFFIX.items():
            if path.endswith(suffix):
                return guessed
    return _TYPE_ALIASES.get(media, media) or "no content type"


class _FetchFailed(Exception):
    """One fetch did not produce a usable response; `reason` goes into a skip or the error.
    `unreachable` marks connection failures, which count towards "the whole site is down"."""

    def __init__(self, reason: str, *, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable


@dataclass(frozen=True, slots=True)
class _Fetched:
    final_url: str
    status: int
    content_type: str
    data: bytes  # only read for 2xx responses


@dataclass(frozen=True, slots=True)
class _Unreachable:
    """A page that failed with a connection error: a skip, unless every page failed like that."""

    skipped: SkippedDocument


_PageResult = RawDocument | SkippedDocument | _Unreachable | None


class WebSource:
    """Yields the pages of one web source in a stable order, each a RawDocument or a skip."""

    def __init__(self, config: WebSourceConfig, *, client: httpx.AsyncClient | None = None) -> None:
        """Raises ValueError only for limits no configuration file can produce (they are
        validated there). Mistakes in the URLs themselves surface from `documents()` as
        SourceUnavailable instead: sources are built at the start of a sync, and one source's
        typo must neither crash the sync of the others nor delete this source's documents."""
        if config.max_pages < 1 or config.max_bytes < 1 or config.concurrency < 1:
            raise ValueError(f"web source {config.name}: max_pages, max_bytes and concurrency "
                             "must be at least 1")
        if config.timeout_seconds <= 0:
            raise ValueError(f"web source {config.name}: timeout_seconds must be positive")
        self.config = config
        self.name = config.name
        self.total: int | None = None  # pages to fetch, once the sitemaps are read
        self._client = client
        self._urls: tuple[str, ...] = ()
        self._sitemaps: tuple[str, ...] = ()
        self._allowed: frozenset[str] = frozenset()
        self._problem = self._read_config()

    def _read_config(self) -> str | None:
        """Normalises the configured URLs and hosts; returns what is wrong with them, if any."""
        config = self.config
        if not config.urls and not config.sitemaps:
            # Yielding nothing would tell the sync to delete everything this source indexed.
            return "no urls or sitemaps configured"
        lists: dict[str, list[str]] = {"url": [], "sitemap": []}
        for what, raw in (("url", config.urls), ("sitemap", config.sitemaps)):
            for item in raw:
                url = normalise_url(item)
                if url is None:
                    return f"invalid {what} {item!r}: not an absolute http(s) URL"
                lists[what].append(url)
        self._urls, self._sitemaps = tuple(lists["url"]), tuple(lists["sitemap"])
        configured = (*self._urls, *self._sitemaps)
        if config.allowed_hosts:
            try:
                self._allowed = frozenset(_normalise_host(h) for h in config.allowed_hosts)
            except ValueError as exc:
                return str(exc)
        else:
            self._allowed = frozenset(_host_of(url) for url in configured)
        for url in configured:
            if not self._is_allowed(url):
                # A configured URL we would never fetch is a mistake to report, not to ignore.
                return f"{url} is not on an allowed host"
        return None

    def _is_allowed(self, url: str) -> bool:
        return url.startswith(("http://", "https://")) and _host_of(url) in self._allowed

    async def documents(self) -> AsyncIterator[RawDocument | SkippedDocument]:
        """Every page, in configuration/sitemap order. Raises SourceUnavailable before yielding
        anything if the page list cannot be known or no page could be reached at all."""
        if self._problem is not None:
            raise SourceUnavailable(self._problem)  # the sync reports it under our name
        client = self._client
        owns_client = client is None
        if client is None:
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.config.timeout_seconds),
                headers={"User-Agent": self.config.user_agent},
                limits=httpx.Limits(max_connections=self.config.concurrency,
                                    max_keepalive_connections=self.config.concurrency),
                follow_redirects=False,
            )
        try:
            pages = await self._collect(client)
            self.total = len(pages)
            # aclosing: if the consumer stops early, in-flight fetches end before the client does.
            async with contextlib.aclosing(self._fetch_all(client, pages)) as items:
                async for item in items:
                    yield item
        finally:
            if owns_client:
                await client.aclose()

    # -- listing -------------------------------------------------------------------------------

    async def _collect(self, client: httpx.AsyncClient) -> list[str]:
        """The page URLs: configured ones first, then each sitemap depth-first in document order,
        de-duplicated and capped at max_pages. Any sitemap that cannot be read makes the whole
        listing unknown, hence SourceUnavailable rather than a shorter list."""
        max_pages = self.config.max_pages
        pages: dict[str, None] = {}  # an ordered set
        dropped: set[str] = set()

        def add(url: str) -> None:
            if url in pages or url in dropped:
                return
            if len(pages) < max_pages:
                pages[url] = None
            else:
                dropped.add(url)

        for url in self._urls:
            add(url)
        visited: set[str] = set()
        stack = list(reversed(self._sitemaps))
        unread = 0
        while stack:
            sitemap = stack.pop()
            if sitemap in visited:
                continue  # an index pointing back at itself, or at a sitemap already read
            visited.add(sitemap)
            if len(pages) >= max_pages:
                unread += 1  # its pages would be dropped anyway; no need to read it
                continue
            if len(visited) > MAX_SITEMAPS:
                raise SourceUnavailable(f"sitemap {sitemap} : more than {MAX_SITEMAPS} sitemaps")
            page_urls, child_sitemaps = await self._read_sitemap(client, sitemap)
            for url in page_urls:
                add(url)
            stack.extend(reversed(child_sitemaps))
        if dropped or unread:
            log.warning("kb.web.max_pages_reached", source=self.name, max_pages=max_pages,
                        dropped=len(dropped), unread_sitemaps=unread)
        return list(pages)

    async def _read_sitemap(self, client: httpx.AsyncClient,
                            url: str) -> tuple[list[str], list[str]]:
        """(page URLs, child sitemap URLs) of one sitemap, keeping only allowed hosts."""
        try:
            fetched = await self._get(client, url, SITEMAP_MAX_BYTES)
        except _FetchFailed as exc:
            raise SourceUnavailable(f"sitemap {url} : {exc.reason}") from None
        if not 200 <= fetched.status < 300:
            raise SourceUnavailable(f"sitemap {url} : HTTP {fetched.status}")
        try:
            kind, locs = _parse_sitemap(fetched.data)
        except ValueError as exc:
            raise SourceUnavailable(f"sitemap {url} : {exc}") from None
        kept: list[str] = []
        off_site: list[str] = []
        for loc in locs:
            # Locations should be absolute; relative ones are resolved against the sitemap.
            normalised = normalise_url(loc, base=fetched.final_url)
            if normalised is not None and self._is_allowed(normalised):
                kept.append(normalised)
            else:
                off_site.append(loc)
        if off_site:
            log.info("kb.web.off_site_skipped", source=self.name, sitemap=url,
                     count=len(off_site), example=off_site[0][:200])
        return (kept, []) if kind == "urlset" else ([], kept)

    # -- fetching ------------------------------------------------------------------------------

    async def _fetch_all(self, client: httpx.AsyncClient,
                         pages: list[str]) -> AsyncGenerator[RawDocument | SkippedDocument, None]:
        """Yields in `pages` order, so a sync's output is deterministic.

        Connection failures at the head are held back until some page gets through: if none
        does, the site is down and SourceUnavailable is raised with nothing yielded yet."""
        held: list[SkippedDocument] = []
        reached = False
        async with contextlib.aclosing(self._in_order(client, pages)) as results:
            async for result in results:
                if isinstance(result, _Unreachable) and not reached:
                    held.append(result.skipped)
                    continue
                reached = True
                for skipped in held:
                    yield skipped
                held.clear()
                if isinstance(result, _Unreachable):
                    yield result.skipped
                elif result is not None:
                    yield result
        if held:
            raise SourceUnavailable(f"all {len(held)} pages unreachable: {held[0].reason}")

    async def _in_order(self, client: httpx.AsyncClient,
                        pages: list[str]) -> AsyncGenerator[_PageResult, None]:
        """Fetches up to `concurrency` pages at once, starting at most READ_AHEAD windows ahead of
        the page being handed out, and hands results out in `pages` order. Unfinished fetches
        are cancelled if the consumer stops early."""
        semaphore = asyncio.Semaphore(self.config.concurrency)
        window = self.config.concurrency * READ_AHEAD
        pending: collections.deque[asyncio.Task[_PageResult]] = collections.deque()
        try:
            for url in pages:
                if len(pending) >= window:
                    yield await pending.popleft()
                pending.append(asyncio.create_task(self._fetch_page(client, semaphore, url)))
            while pending:
                yield await pending.popleft()
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    async def _fetch_page(self, client: httpx.AsyncClient, semaphore: asyncio.Semaphore,
                          url: str) -> _PageResult:
        """One page as a document, a skip, or None when the server says it is gone."""
        async with semaphore:
            try:
                fetched = await self._get(client, url, self.config.max_bytes)
            except _FetchFailed as exc:
                skipped = SkippedDocument(self.name, url, exc.reason)
                return _Unreachable(skipped) if exc.unreachable else skipped
        if fetched.status in _GONE_STATUSES:
            log.info("kb.web.page_gone", source=self.name, url=url, status=fetched.status)
            return None
        if not 200 <= fetched.status < 300:
            return SkippedDocument(self.name, url, f"HTTP {fetched.status}")
        if fetched.content_type not in _SUPPORTED_TYPES:
            return SkippedDocument(self.name, url,
                                   f"unsupported content type {fetched.content_type}")
        return RawDocument(source=self.name, doc_id=url, url=url,
                           content_type=fetched.content_type, data=fetched.data, title_hint="")

    async def _get(self, client: httpx.AsyncClient, url: str, limit: int) -> _Fetched:
        """GET `url`, following at most MAX_REDIRECTS redirects, each checked against the allowed
        hosts before it is requested. The body is read (up to `limit` bytes) only for 2xx; the
        whole exchange is bounded by timeout_seconds, so a server trickling bytes cannot stall a
        sync. Raises _FetchFailed with a short reason."""
        seconds = self.config.timeout_seconds
        try:
            async with asyncio.timeout(seconds):
                return await self._get_following(client, url, limit)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise _FetchFailed(f"timed out after {seconds:g} s",
                               unreachable=isinstance(exc, httpx.ConnectTimeout)) from None
        except httpx.ConnectError as exc:
            raise _FetchFailed(f"connection failed: {exc}"[:200], unreachable=True) from None
        except httpx.HTTPError as exc:
            raise _FetchFailed(f"fetch failed: {type(exc).__name__}: {exc}"[:200]) from None

    async def _get_following(self, client: httpx.AsyncClient, url: str, limit: int) -> _Fetched:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            request = client.build_request("GET", current,
                                           headers={"User-Agent": self.config.user_agent})
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                location = response.headers.get("location")
                if response.status_code in _REDIRECT_STATUSES and location:
                    target = normalise_url(location, base=str(response.url))
                    if target is None or not self._is_allowed(target):
                        host = target and _host_of(target)
                        raise _FetchFailed(f"redirected off-site to {host or location[:100]}")
                    current = target
                    continue
                content_type = _content_type(response, current)
                data = b""
                if 200 <= response.status_code < 300:
                    data = await _read_limited(response, limit)
                return _Fetched(current, response.status_code, content_type, data)
            finally:
                await response.aclose()
        raise _FetchFailed(f"more than {MAX_REDIRECTS} redirects")


async def _read_limited(response: httpx.Response, limit: int) -> bytes:
    """The (decoded) body, refusing anything past `limit` bytes without reading on: the declared
    Content-Length is checked first, then the stream is cut off as soon as it passes the limit."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _FetchFailed(f"larger than {_format_size(limit)}")
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise _FetchFailed(f"larger than {_format_size(limit)}")
    return bytes(body)


def _local_name(tag: str) -> str:
    """`{namespace}url` -> `url`: sitemaps appear with the standard namespace, old ones, none."""
    return tag.rsplit("}", 1)[-1]


def _parse_sitemap(data: bytes) -> tuple[str, list[str]]:
    """("urlset" | "sitemapindex", the <loc> texts). Raises ValueError with a short reason for
    anything that is not a plain UTF-8 sitemap (the protocol requires UTF-8), including any DTD."""
    if data.startswith(_GZIP_MAGIC):
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            data = inflater.decompress(data, SITEMAP_MAX_BYTES + 1)
        except zlib.error:
            raise ValueError("broken gzip") from None
        if len(data) > SITEMAP_MAX_BYTES or inflater.unconsumed_tail:
            raise ValueError(f"larger than {_format_size(SITEMAP_MAX_BYTES)} uncompressed")
    try:
        # Decoding first means the DTD check sees the same characters the parser will: a
        # UTF-16 document could otherwise hide "<!DOCTYPE" from a byte search.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 XML") from None
    if _DTD_MARKUP.search(text):
        raise ValueError("DTD or entity declarations are not allowed")
    try:
        # A str is parsed as UTF-8 whatever the XML declaration claims.
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise ValueError(f"not XML ({exc})") from None
    kind = _local_name(root.tag)
    if kind not in ("urlset", "sitemapindex"):
        raise ValueError(f"not a sitemap (root element <{kind}>)")
    entry = "url" if kind == "urlset" else "sitemap"
    locs: list[str] = []
    for element in root:
        if _local_name(element.tag) != entry:
            continue
        for child in element:
            if _local_name(child.tag) == "loc" and child.text and child.text.strip():
                locs.append(child.text.strip())
                break
    return kind, locs
