"""WebSource against a small site served from 127.0.0.1 inside the test's event loop.

What matters is what a sync concludes from the output: a yielded page is indexed, a skip keeps
the old copy, a missing page is deleted, SourceUnavailable deletes nothing. So the tests check
exactly which of the three each kind of page becomes, and that nothing off-site is ever contacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import cast

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.kb.documents import RawDocument, SkippedDocument, SourceUnavailable
from bot.kb.web import WebSource, WebSourceConfig, normalise_url

PDF = b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n"
BROKEN_HTML = b"<html><body><p>unclosed <div><<b>>\xff\xfe</i></html"
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
]>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>&lol2;</loc></url></urlset>
"""
NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def urlset(*locs: str) -> str:
    entries = "".join(f"<url><loc>{loc}</loc><lastmod>2024-01-01</lastmod></url>" for loc in locs)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset {NS}>{entries}</urlset>'


def sitemapindex(*locs: str) -> str:
    entries = "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locs)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex {NS}>{entries}</sitemapindex>'


@dataclass
class Site:
    """The served site: its base URL, the paths requested, and the trap server's hits."""

    base: str
    trap_base: str
    requests: list[str] = field(default_factory=list)
    trap_hits: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def url(self, path: str) -> str:
        return self.base + path


def _xml(text: str) -> web.Response:
    return web.Response(text=text, content_type="application/xml")


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    release = asyncio.Event()  # lets the "slow" handler end at teardown instead of hanging
    trap_app = web.Application()
    trap = TestServer(trap_app, host="127.0.0.1", port=0)
    app = web.Application()
    server = TestServer(app, host="127.0.0.1", port=0)
    # The handlers need the ports; they read them from `state` once the servers have started.
    state = Site(base="", trap_base="")

    async def trap_handler(request: web.Request) -> web.Response:
        state.trap_hits.append(request.path)
        return web.Response(text="you should not be here", content_type="text/html")

    trap_app.router.add_get("/{tail:.*}", trap_handler)

    @web.middleware
    async def record(request: web.Request, handler):  # type: ignore[no-untyped-def]
        state.requests.append(request.path_qs)
        return await handler(request)

    app.middlewares.append(record)

    def page(body: bytes | str, content_type: str) -> web.Response:
        data = body.encode() if isinstance(body, str) else body
        return web.Response(body=data, headers={"Content-Type": content_type})

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return page("late", "text/html")

    async def delayed(request: web.Request) -> web.Response:
        # Later pages answer sooner, so completion order is the reverse of URL order.
        n = int(request.match_info["n"])
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        await asyncio.sleep((10 - n) * 0.005)
        state.in_flight -= 1
        return page(f"page {n}", "text/plain")

    async def streamed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(16):
                await response.write(b"x" * 1024)
            await response.write_eof()
        return response

    routes = {
        "/a.html": lambda r: page("<h1>A</h1>", "text/html; charset=utf-8"),
        "/b.txt": lambda r: page("plain b", "text/plain"),
        "/c.md": lambda r: page("# C", "text/markdown; charset=utf-8"),
        "/d.pdf": lambda r: page(PDF, "application/pdf"),
        "/e.xhtml": lambda r: page("<html/>", "application/xhtml+xml"),
        "/q": lambda r: page(f"query {r.query_string}", "text/plain"),
        "/broken.html": lambda r: page(BROKEN_HTML, "text/html"),
        "/logo.png": lambda r: page(b"\x89PNG\r\n\x1a\n", "image/png"),
        "/gone": lambda r: web.Response(status=404, text="not found"),
        "/removed": lambda r: web.Response(status=410, text="gone"),
        "/down": lambda r: web.Response(status=503, text="busy"),
        "/forbidden": lambda r: web.Response(status=403, text="no"),
        "/huge": lambda r: page(b"x" * (6 * 1024 * 1024), "text/html"),
        "/redirect-inside": lambda r: web.HTTPFound("/a.html"),
        "/redirect-chain": lambda r: web.HTTPMovedPermanently("/redirect-inside"),
        "/redirect-off": lambda r: web.HTTPFound(f"{state.trap_base}/trap"),
        "/redirect-loop": lambda r: web.HTTPFound("/redirect-loop"),
        "/sitemap.xml": lambda r: _xml(urlset(
            state.url("/a.html"), state.url("/b.txt"), "http://example.invalid/secret",
            state.url("/a.html#section"), "/c.md", state.url("/q?x=1&amp;y=2"))),
        "/sm1.xml": lambda r: _xml(urlset(state.url("/a.html"), state.url("/b.txt"))),
        "/sm2.xml": lambda r: _xml(urlset(state.url("/c.md"), state.url("/d.pdf"))),
        "/index.xml": lambda r: _xml(sitemapindex(
            state.url("/sm1.xml"), "http://example.invalid/sitemap.xml", state.url("/sm2.xml"))),
        "/loop-a.xml": lambda r: _xml(sitemapindex(state.url("/loop-b.xml"),
                                                   state.url("/sm1.xml"))),
        "/loop-b.xml": lambda r: _xml(sitemapindex(state.url("/loop-a.xml"),
                                                   state.url("/sm2.xml"))),
        "/many.xml": lambda r: _xml(urlset(*(state.url(f"/delay/{n}") for n in range(10)))),
        "/sitemap.xml.gz": lambda r: web.Response(
            body=gzip.compress(urlset(state.url("/a.html"), state.url("/d.pdf")).encode()),
            headers={"Content-Type": "application/x-gzip"}),
        "/sitemap-down.xml": lambda r: web.Response(status=503),
        "/sitemap-dtd.xml": lambda r: web.Response(body=BILLION_LAUGHS,
                                                   content_type="application/xml"),
        "/sitemap-html.xml": lambda r: page("<html><body>Welcome</body>", "text/html"),
        "/index-bad-child.xml": lambda r: _xml(sitemapindex(state.url("/sm1.xml"),
                                                            state.url("/sitemap-down.xml"))),
        "/sitemap-redirect-off.xml": lambda r: web.HTTPFound(f"{state.trap_base}/sitemap.xml"),
    }

    def sync_handler(make):  # type: ignore[no-untyped-def]
        async def handler(request: web.Request) -> web.StreamResponse:
            response = make(request)
            if isinstance(response, web.HTTPException):
                raise response
            return response  # type: ignore[no-any-return]
        return handler

    for path, make in routes.items():
        app.router.add_get(path, sync_handler(make))
    app.router.add_get("/slow", slow)
    app.router.add_get("/delay/{n}", delayed)
    app.router.add_get("/streamed", streamed)

    await trap.start_server()
    await server.start_server()
    state.base = str(server.make_url("")).rstrip("/")
    state.trap_base = f"http://localhost:{trap.port}"
    try:
        yield state
    finally:
        release.set()
        await server.close()
        await trap.close()


async def collect(source: WebSource) -> list[RawDocument | SkippedDocument]:
    return [item async for item in source.documents()]


def config(**kwargs: object) -> WebSourceConfig:
    return WebSourceConfig(name="docs", **kwargs)  # type: ignore[arg-type]


def by_id(items: list[RawDocument | SkippedDocument]) -> dict[str, RawDocument | SkippedDocument]:
    return {item.doc_id: item for item in items}


def dead_port() -> int:
    """A port on 127.0.0.1 nobody listens on: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Recorder:
    """An httpx client that notes every request it is about to send, whatever its host."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.client = httpx.AsyncClient(event_hooks={"request": [self._record]})

    async def _record(self, request: httpx.Request) -> None:
        self.urls.append(str(request.url))

    def hosts(self) -> set[str]:
        return {httpx.URL(url).host for url in self.urls}


# -- listing --------------------------------------------------------------------------------


async def test_pages_from_urls_in_order_with_content_types(site: Site) -> None:
    paths = ["/a.html", "/b.txt", "/c.md", "/d.pdf", "/e.xhtml"]
    items = await collect(WebSource(config(urls=tuple(site.url(p) for p in paths))))

    assert [item.doc_id for item in items] == [site.url(p) for p in paths]
    assert all(isinstance(item, RawDocument) for item in items)
    docs = [item for item in items if isinstance(item, RawDocument)]
    assert [d.content_type for d in docs] == [
        "text/html", "text/plain", "text/markdown", "application/pdf", "text/html"]
    assert docs[0].data == b"<h1>A</h1>"
    assert docs[3].data == PDF
    assert all(d.source == "docs" and d.url == d.doc_id and d.title_hint == "" for d in docs)


async def test_urlset_sitemap_dedupes_drops_fragments_keeps_queries_and_skips_off_site(
        site: Site) -> None:
    recorder = Recorder()
    async with recorder.client:
        source = WebSource(config(urls=(site.url("/a.html"),),
                                  sitemaps=(site.url("/sitemap.xml"),)),
                           client=recorder.client)
        items = await collect(source)
        assert not recorder.client.is_closed  # a client we were given is not ours to close

    assert [item.doc_id for item in items] == [
        site.url("/a.html"), site.url("/b.txt"), site.url("/c.md"), site.url("/q?x=1&y=2")]
    assert isinstance(items[3], RawDocument) and items[3].data == b"query x=1&y=2"
    assert recorder.hosts() == {"127.0.0.1"}  # example.invalid was never even attempted
    assert site.requests.count("/a.html") == 1


async def test_sitemap_index_pointing_to_two_sitemaps(site: Site) -> None:
    items = await collect(WebSource(config(sitemaps=(site.url("/index.xml"),))))

    assert [item.doc_id for item in items] == [
        site.url(p) for p in ("/a.html", "/b.txt", "/c.md", "/d.pdf")]
    assert all(isinstance(item, RawDocument) for item in items)
    assert "example.invalid" not in "".join(site.requests)


async def test_sitemap_index_loop_terminates(site: Site) -> None:
    items = await collect(WebSource(config(sitemaps=(site.url("/loop-a.xml"),))))

    # Depth first, in document order: loop-a -> loop-b -> (loop-a again: skipped) sm2, then sm1.
    assert [item.doc_id for item in items] == [
        site.url(p) for p in ("/c.md", "/d.pdf", "/a.html", "/b.txt")]
    assert site.requests.count("/loop-a.xml") == 1
    assert site.requests.count("/loop-b.xml") == 1


async def test_gzip_sitemap(site: Site) -> None:
    items = await collect(WebSource(config(sitemaps=(site.url("/sitemap.xml.gz"),))))

    assert [(item.doc_id, getattr(item, "content_type", None)) for item in items] == [
        (site.url("/a.html"), "text/html"), (site.url("/d.pdf"), "application/pdf")]


async def test_max_pages_caps_the_count_keeping_the_first(site: Site) -> None:
    source = WebSource(config(urls=(site.url("/a.html"),), sitemaps=(site.url("/many.xml"),),
                              max_pages=3))
    items = await collect(source)

    assert [item.doc_id for item in items] == [
        site.url("/a.html"), site.url("/delay/0"), site.url("/delay/1")]
    assert not any(path.startswith(("/delay/2", "/delay/9")) for path in site.requests)


# -- fetching -------------------------------------------------------------------------------


async def test_results_keep_url_order_and_respect_concurrency(site: Site) -> None:
    source = WebSource(config(sitemaps=(site.url("/many.xml"),), concurrency=3))
    items = await collect(source)

    assert [item.doc_id for item in items] == [site.url(f"/delay/{n}") for n in range(10)]
    assert [item.data for item in items if isinstance(item, RawDocument)] == [
        f"page {n}".encode() for n in range(10)]
    assert 1 <= site.max_in_flight <= 3


async def test_failures_become_skips_and_404_410_vanish(site: Site) -> None:
    paths = ["/a.html", "/down", "/gone", "/forbidden", "/removed", "/logo.png", "/b.txt"]
    items = await collect(WebSource(config(urls=tuple(site.url(p) for p in paths))))

    assert [item.doc_id for item in items] == [
        site.url(p) for p in ("/a.html", "/down", "/forbidden", "/logo.png", "/b.txt")]
    found = by_id(items)
    assert found[site.url("/down")] == SkippedDocument("docs", site.url("/down"), "HTTP 503")
    assert found[site.url("/forbidden")] == SkippedDocument("docs", site.url("/forbidden"),
                                                            "HTTP 403")
    assert found[site.url("/logo.png")] == SkippedDocument(
        "docs", site.url("/logo.png"), "unsupported content type image/png")


async def test_slow_page_times_out_as_a_skip(site: Site) -> None:
    source = WebSource(config(urls=(site.url("/slow"), site.url("/a.html")),
                              timeout_seconds=0.3))
    items = await collect(source)

    assert items[0] == SkippedDocument("docs", site.url("/slow"), "timed out after 0.3 s")
    assert isinstance(items[1], RawDocument) and items[1].doc_id == site.url("/a.html")


async def test_page_over_max_bytes_by_content_length(site: Site) -> None:
    items = await collect(WebSource(config(urls=(site.url("/huge"), site.url("/a.html")))))

    assert items[0] == SkippedDocument("docs", site.url("/huge"), "larger than 5 MB")
    assert isinstance(items[1], RawDocument)


async def test_streamed_page_over_max_bytes_without_content_length(site: Site) -> None:
    items = await collect(WebSource(config(urls=(site.url("/streamed"),
                                                 site.url("/a.html")), max_bytes=4096)))

    assert items[0] == SkippedDocument("docs", site.url("/streamed"), "larger than 4 KB")
    assert isinstance(items[1], RawDocument)


async def test_broken_html_bytes_come_through_as_is(site: Site) -> None:
    items = await collect(WebSource(config(urls=(site.url("/broken.html"),))))

    assert items == [RawDocument("docs", site.url("/broken.html"), site.url("/broken.html"),
                                 "text/html", BROKEN_HTML)]


async def test_redirects_on_site_are_followed_under_the_original_id(site: Site) -> None:
    items = await collect(WebSource(config(urls=(site.url("/redirect-chain"),))))

    assert len(items) == 1
    doc = items[0]
    assert isinstance(doc, RawDocument)
    assert doc.doc_id == doc.url == site.url("/redirect-chain")
    assert doc.data == b"<h1>A</h1>"


async def test_redirect_off_site_is_skipped_and_not_followed(site: Site) -> None:
    recorder = Recorder()
    async with recorder.client:
        source = WebSource(config(urls=(site.url("/redirect-off"), site.url("/a.html"))),
                           client=recorder.client)
        items = await collect(source)

    assert items[0] == SkippedDocument("docs", site.url("/redirect-off"),
                                       "redirected off-site to localhost")
    assert isinstance(items[1], RawDocument)
    assert site.trap_hits == []
    assert recorder.hosts() == {"127.0.0.1"}


async def test_redirect_loop_ends(site: Site) -> None:
    items = await collect(WebSource(config(urls=(site.url("/redirect-loop"),))))

    assert items == [SkippedDocument("docs", site.url("/redirect-loop"),
                                     "more than 5 redirects")]
    assert site.requests.count("/redirect-loop") == 6


async def test_one_unreachable_page_is_just_a_skip(site: Site) -> None:
    dead = f"http://127.0.0.1:{dead_port()}/x"
    items = await collect(WebSource(config(urls=(dead, site.url("/a.html")))))

    assert [item.doc_id for item in items] == [dead, site.url("/a.html")]
    assert isinstance(items[0], SkippedDocument)
    assert items[0].reason.startswith("connection failed")
    assert isinstance(items[1], RawDocument)


async def test_every_page_unreachable_is_source_unavailable() -> None:
    port = dead_port()
    source = WebSource(config(urls=(f"http://127.0.0.1:{port}/a", f"http://127.0.0.1:{port}/b")))
    seen: list[object] = []
    with pytest.raises(SourceUnavailable, match="all 2 pages unreachable"):
        async for item in source.documents():
            seen.append(item)
    assert seen == []


# -- sitemaps that cannot be trusted ---------------------------------------------------------


@pytest.mark.parametrize(("path", "reason"), [
    ("/sitemap-down.xml", "HTTP 503"),
    ("/sitemap-dtd.xml", "DTD"),
    ("/sitemap-html.xml", "not XML"),
    ("/index-bad-child.xml", "HTTP 503"),
    ("/sitemap-redirect-off.xml", "redirected off-site"),
])
async def test_unusable_sitemap_is_source_unavailable_before_any_document(
        site: Site, path: str, reason: str) -> None:
    source = WebSource(config(urls=(site.url("/a.html"),),
                              sitemaps=(site.url(path),)))
    seen: list[object] = []
    with pytest.raises(SourceUnavailable, match=reason) as raised:
        async for item in source.documents():
            seen.append(item)
    assert seen == []
    assert str(raised.value).startswith("sitemap http://127.0.0.1:")
    assert "/a.html" not in site.requests  # no page is fetched before the listing is known
    assert site.trap_hits == []


async def test_sitemap_timeout_is_source_unavailable(site: Site) -> None:
    source = WebSource(config(sitemaps=(site.url("/slow"),), timeout_seconds=0.3))
    with pytest.raises(SourceUnavailable, match=r"sitemap .*/slow : timed out after 0.3 s"):
        await collect(source)


# -- the rest ---------------------------------------------------------------------------------


async def test_stopping_early_closes_cleanly(site: Site) -> None:
    source = WebSource(config(sitemaps=(site.url("/many.xml"),), concurrency=2))
    documents = cast(AsyncGenerator[RawDocument | SkippedDocument, None], source.documents())
    async with contextlib.aclosing(documents) as items:
        async for item in items:
            assert item.doc_id == site.url("/delay/0")
            break


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({}, "no urls or sitemaps"),
    ({"urls": ("https://other.example/a",), "allowed_hosts": ("docs.example",)},
     "not on an allowed host"),
    ({"urls": ("ftp://docs.example/a",)}, "invalid url"),
    ({"sitemaps": ("/sitemap.xml",)}, "invalid sitemap"),
])
async def test_configuration_mistakes_make_the_source_unavailable(
        kwargs: dict[str, object], reason: str) -> None:
    # Raised from documents(), not the constructor: one bad source must not crash a whole sync.
    source = WebSource(config(**kwargs))
    with pytest.raises(SourceUnavailable, match=reason):
        await collect(source)


def test_impossible_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        WebSource(config(urls=("https://docs.example/",), concurrency=0))


async def test_allowed_hosts_widen_what_a_sitemap_may_list(site: Site) -> None:
    # localhost is the trap server: allowed explicitly, so its page is fetched.
    source = WebSource(config(urls=(site.url("/a.html"), f"{site.trap_base}/page"),
                              allowed_hosts=("127.0.0.1", "LOCALHOST")))
    items = await collect(source)

    assert [item.doc_id for item in items] == [site.url("/a.html"), f"{site.trap_base}/page"]
    assert site.trap_hits == ["/page"]


@pytest.mark.parametrize(("raw", "expected"), [
    ("HTTPS://Docs.Example.COM", "https://docs.example.com/"),
    ("https://docs.example.com/a b?x=1#top", "https://docs.example.com/a%20b?x=1"),
    ("  https://docs.example.com/a?b=2&c=3  ", "https://docs.example.com/a?b=2&c=3"),
    ("mailto:help@docs.example.com", None),
    ("not a url", None),
])
def test_normalise_url(raw: str, expected: str | None) -> None:
    assert normalise_url(raw) == expected
