"""The admin layout's pieces: escaping by type, the CSP that admits exactly the page's style,
signed flash notices, and the helpers other page modules build on."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response

from bot.admin.auth import AdminAuth, AdminSession
from bot.admin.layout import (
    NAV,
    Html,
    age,
    badge,
    esc,
    html,
    join,
    notice_query,
    page,
    post_button,
    redirect_with_notice,
    render,
    table,
    when,
)
from tests.admin.world import admin_world, signed_in
from tests.fakes.openai_server import FakeOpenAI

ADA = AdminSession(via="cookie", csrf="csrf-123", name="Ada <Admin>")


def test_text_is_escaped_and_markup_is_not() -> None:
    assert esc("<b>&\"'") == "&lt;b&gt;&amp;&quot;&#x27;"
    assert esc(html("<b>ok</b>")) == "<b>ok</b>" and isinstance(esc("x"), Html)
    assert esc(None) == "" and esc(3) == "3"
    assert join(["<i>", html("<br>"), 1]) == "&lt;i&gt;<br>1"
    assert html("<p>") + "<script>" == "<p>&lt;script&gt;"  # adding text escapes it


def test_a_table_escapes_cells_and_says_when_it_is_empty() -> None:
    out = table(["Name", "Cost"], [["<script>x</script>", html("<em>$1</em>")]], numeric=(1,))
    assert "&lt;script&gt;" in out and "<em>$1</em>" in out
    assert '<td class="num"><em>$1</em></td>' in out and '<th scope="col" class="num">' in out
    empty = table(["A", "B"], [], empty="Nothing <here>.")
    assert '<td class="empty" colspan="2">Nothing &lt;here&gt;.</td>' in empty


def test_badges_guess_their_tone_from_the_state() -> None:
    assert badge("open") == '<span class="badge warn">open</span>'
    assert 'class="badge info"' in badge("claimed")
    assert 'class="badge ok"' in badge("Resolved")
    assert 'class="badge bad"' in badge("failed")
    assert 'class="badge muted"' in badge("<new>") and "&lt;new&gt;" in badge("<new>")
    assert 'class="badge bad"' in badge("fine", "bad")


def test_a_post_button_carries_the_csrf_token_and_its_fields() -> None:
    out = post_button("/admin/x/1/claim", "Claim <now>", csrf='a"b',
                      fields={"next": "/admin/x?a=1&b=2"}, tone="danger", small=True)
    assert out.startswith('<form method="post" action="/admin/x/1/claim" class="inline">')
    assert '<input type="hidden" name="csrf_token" value="a&quot;b">' in out
    assert '<input type="hidden" name="next" value="/admin/x?a=1&amp;b=2">' in out
    assert '<button type="submit" class="danger small">Claim &lt;now&gt;</button>' in out


def test_times_and_ages_read_naturally() -> None:
    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    assert age(now - timedelta(seconds=5), now=now) == "5 s"
    assert age(now - timedelta(minutes=3), now=now) == "3 min"
    assert age(now - timedelta(hours=5), now=now) == "5 h"
    assert age(now - timedelta(days=2), now=now) == "2 d"
    assert age(now + timedelta(minutes=1), now=now) == "0 s"  # a clock a little ahead
    assert age(None) == "–"
    assert ">2026-01-02 12:00</time>" in when(datetime(2026, 1, 2, 12, 0))  # naive is UTC
    assert "–" in when(None)


def test_the_page_frame_names_who_is_signed_in_and_marks_the_current_page() -> None:
    out = page("Escalations <1>", "<p>body</p>", session=ADA, active="escalations")
    assert "<title>Escalations &lt;1&gt; · bothub admin</title>" in out
    assert "Signed in as <strong>Ada &lt;Admin&gt;</strong>" in out
    assert out.count('aria-current="page"') == 1
    assert '<a href="/admin/escalations" class="active" aria-current="page">' in out
    assert {key for key, _label, _href in NAV} >= {"escalations", "conversations", "feedback",
                                                   "knowledge", "usage", "health"}
    assert 'name="csrf_token" value="csrf-123"' in out  # the sign-out form
    bearer = page("X", "", session=AdminSession(via="bearer", csrf=""))
    assert "Sign out" not in bearer and "admin (API token)" in bearer
    assert bearer.count("API token") == 1  # said once, not "admin (API token) (API token)"
    assert "<script" not in out


@pytest.fixture
async def app_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.admin_auth = AdminAuth("t" * 32)

    @app.get("/admin/demo")
    async def demo(request: Request) -> Response:
        return render(request, "Demo", "<p>hi</p>", session=ADA, active="usage",
                      extra_css=".chart{fill:#123}")

    @app.post("/admin/act")
    async def act(request: Request) -> Response:
        return redirect_with_notice(request, "/admin/demo?page=2", "Claimed #12 <ok>")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def style_hash(text: str) -> str:
    style = re.search(r"<style>(.*?)</style>", text, re.S)
    assert style
    return base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()


async def test_the_csp_admits_exactly_the_page_style_and_no_script(
        app_client: httpx.AsyncClient) -> None:
    response = await app_client.get("/admin/demo")
    csp = response.headers["content-security-policy"]
    assert f"style-src 'sha256-{style_hash(response.text)}'" in csp
    assert ".chart{fill:#123}" in response.text  # the page's own extra style is admitted
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


async def test_a_flash_notice_is_shown_once_signed_and_never_when_forged(
        app_client: httpx.AsyncClient) -> None:
    redirect = await app_client.post("/admin/act")
    assert redirect.status_code == 303
    location = redirect.headers["location"]
    assert location.startswith("/admin/demo?page=2&notice=")
    shown = await app_client.get(location)
    assert '<div class="notice ok" role="status">Claimed #12 &lt;ok&gt;</div>' in shown.text
    for forged in (location.replace("Claimed", "Deleted"), location.replace("tone=ok",
                                                                            "tone=bad"),
                   location.split("&sig=")[0], location + "x", "/admin/demo?notice=hi&sig=",
                   "/admin/demo?notice=hi&tone=nope&sig=x"):
        assert 'class="notice' not in (await app_client.get(forged)).text, forged


def test_notice_query_is_bounded() -> None:
    class App:
        class state:  # mimics app.state
            admin_auth = AdminAuth("t" * 32)

    class Req:
        app = App

    query = notice_query(Req, "x" * 5000)  # type: ignore[arg-type]
    assert len(query) < 500


def test_admin_pages_answer_503_when_the_database_is_gone(tmp_path: Path,
                                                          fake_openai: FakeOpenAI) -> None:
    with admin_world(tmp_path, fake_openai) as world, signed_in(world, "Ada") as ada:
        async def drop() -> None:
            async with world.server.hub.database.begin() as connection:
                await connection.exec_driver_sql("DROP TABLE feedback")

        world.server.run(drop())
        page_response = ada.get("/admin/feedback")
        assert page_response.status_code == 503 and "Database unavailable" in page_response.text
        assert "Traceback" not in page_response.text and page_response.headers["retry-after"]
        api = ada.get("/admin/api/feedback")
        assert api.status_code == 503 and "not answering" in api.json()["error"]
        assert ada.get("/admin/escalations").status_code == 200  # the rest still works
