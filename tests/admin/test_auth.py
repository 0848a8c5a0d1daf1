"""/admin protection on the real HTTP app: off without a token, bearer tokens, the browser
sign-in flow with its signed cookie, CSRF, throttled guessing, and the token never echoed."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import APIRouter, Depends
from structlog.testing import capture_logs

from bot.admin import AdminSession, require_admin
from bot.admin.auth import AdminAuth
from bot.admin.session import SESSION_COOKIE, SessionSigner
from bot.admin.throttle import LoginThrottle
from bot.app import Hub
from bot.server import create_app
from tests.conftest import LiveServer, make_settings, running_server
from tests.fakes.openai_server import FakeOpenAI

# Built from pieces so that secret scanners do not flag this repository.
TOKEN = "adm-" + "Zq8vL2xR7nT4pW9kY3mB6cJ1"
OTHER_TOKEN = "adm-" + "Hh5sD3fG8jK1lP0oI9uY7tR2"
ADMIN_PATHS = ["/admin", "/admin/login", "/admin/api/health", "/admin/anything/else"]
FAILURE_DELAY = 0.05


class TokenLeakCheck:
    """Every response a test client received, checked for the admin token in any form."""

    def __init__(self, *tokens: str) -> None:
        self.forms = {form for token in tokens for form in (token, quote(token, safe=""))}
        self.seen = 0

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        self.seen += 1
        places = [response.text, *response.headers.values(),
                  *(cookie.value or "" for cookie in response.cookies.jar)]
        for form in self.forms:
            assert not any(form in place for place in places), (
                f"the admin token leaked in {response.request.method} {response.request.url}")


def _build(hub: Hub) -> Any:
    app = create_app(hub, services=False, adapters=[])
    auth = getattr(app.state, "admin_auth", None)
    if isinstance(auth, AdminAuth):
        auth.throttle = LoginThrottle(max_failures=3, delay=FAILURE_DELAY)
    return app


@pytest.fixture
def admin_server(tmp_path: Path, fake_openai: FakeOpenAI) -> Iterator[LiveServer]:
    with running_server(make_settings(tmp_path, fake_openai, admin_token=TOKEN),
                        _build) as server:
        yield server


@pytest.fixture
def leaks() -> TokenLeakCheck:
    return TokenLeakCheck(TOKEN, OTHER_TOKEN)


@pytest.fixture
def client(admin_server: LiveServer, leaks: TokenLeakCheck) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=admin_server.url, timeout=30,
                      event_hooks={"response": [leaks]}) as http:
        yield http
    assert leaks.seen > 0


def sign_in(client: httpx.Client, token: str = TOKEN, **kwargs: Any) -> httpx.Response:
    return client.post("/admin/login", data={"name": "Ada Admin", "token": token}, **kwargs)


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the page has no CSRF field"
    return match.group(1)


# --- admin off ---------------------------------------------------------------------------------

@pytest.mark.parametrize("token", [None, "", "   "])
async def test_without_a_token_every_admin_path_is_404_and_startup_says_so(
        tmp_path: Path, fake_openai: FakeOpenAI, token: str | None) -> None:
    hub = await Hub.create(make_settings(tmp_path, fake_openai, admin_token=token))
    app = create_app(hub, services=False, adapters=[])
    with capture_logs() as logs:
        async with app.router.lifespan_context(app):  # closes the hub on the way out
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                for path in ADMIN_PATHS:
                    assert (await http.get(path)).status_code == 404, path
                    assert (await http.post(path, data={"token": "x"})).status_code == 404
                bearer = {"Authorization": "Bearer x"}
                assert (await http.get("/admin/api/health", headers=bearer)).status_code == 404
                assert (await http.get("/healthz")).status_code == 200
    assert [entry["event"] for entry in logs].count("admin.off") == 1


# --- bearer ------------------------------------------------------------------------------------

def test_bearer_token_opens_every_admin_route(client: httpx.Client) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    health = client.get("/admin/api/health", headers=bearer)
    assert health.status_code == 200 and health.headers["cache-control"] == "no-store"
    public = client.get("/healthz").json()
    body = health.json()
    assert body["status"] == public["status"] == "ok"
    assert body["components"].keys() == public["components"].keys()
    assert body["components"]["model"] == public["components"]["model"]
    page = client.get("/admin", headers=bearer)
    assert page.status_code == 200 and "bothub admin" in page.text
    assert "/admin/api/health" in page.text and "/healthz" in page.text
    assert client.get("/admin", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize("header", [f"Bearer {OTHER_TOKEN}", f"Bearer {TOKEN}x", "Bearer",
                                    f"Basic {TOKEN}", TOKEN])
def test_a_wrong_bearer_token_is_401_with_a_challenge(client: httpx.Client,
                                                      header: str) -> None:
    for path in ("/admin/api/health", "/admin"):  # a script gets a status, not a login page
        response = client.get(path, headers={"Authorization": header})
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json() == {"error": "invalid admin token"}


def test_without_credentials_api_is_401_and_pages_redirect_to_login(
        client: httpx.Client) -> None:
    api = client.get("/admin/api/health")
    assert api.status_code == 401 and api.headers["www-authenticate"].startswith("Bearer")
    assert "sign in" in api.json()["error"]
    page = client.get("/admin")
    assert page.status_code == 303 and page.headers["location"] == "/admin/login"
    assert client.post("/admin/logout").status_code == 303


# --- browser sign-in ---------------------------------------------------------------------------

def test_login_form_is_self_contained(client: httpx.Client) -> None:
    form = client.get("/admin/login")
    assert form.status_code == 200 and "text/html" in form.headers["content-type"]
    assert '<form method="post" action="/admin/login">' in form.text
    assert "https://" not in form.text and "<script" not in form.text  # nothing from a CDN
    policy = form.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "style-src 'sha256-" in policy
    assert form.headers["x-frame-options"] == "DENY"


def test_sign_in_sets_a_strict_session_cookie_without_the_token(client: httpx.Client) -> None:
    response = sign_in(client)
    assert response.status_code == 303 and response.headers["location"] == "/admin"
    cookie = response.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path", "max-age"} <= attributes and "secure" not in attributes
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    assert "Path=/admin" in cookie
    value = client.cookies[SESSION_COOKIE]
    assert TOKEN not in value and TOKEN[4:12] not in value
    home = client.get("/admin")
    assert home.status_code == 200 and "<h1>Overview</h1>" in home.text
    assert client.get("/admin/api/health").json()["status"] == "ok"
    assert client.get("/admin/login").status_code == 303  # already signed in


def test_the_cookie_is_secure_when_the_request_is_https(client: httpx.Client) -> None:
    # The test server trusts X-Forwarded-Proto from 127.0.0.1, like a TLS-terminating proxy.
    response = sign_in(client, headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 303
    assert "secure" in response.headers["set-cookie"].lower()


def test_a_wrong_token_shows_the_form_again_after_a_delay(client: httpx.Client) -> None:
    started = time.monotonic()
    response = sign_in(client, OTHER_TOKEN)
    assert time.monotonic() - started >= FAILURE_DELAY
    assert response.status_code == 401
    assert "That is not the admin token." in response.text
    assert '<form method="post" action="/admin/login">' in response.text
    assert SESSION_COOKIE not in response.cookies
    assert sign_in(client, "").status_code == 401
    assert client.post("/admin/login", content=b"\xff\xfe",
                       headers={"content-type": "application/x-www-form-urlencoded"}
                       ).status_code == 401


def test_repeated_failures_are_refused_for_a_while_even_with_the_right_token(
        client: httpx.Client) -> None:
    for _ in range(2):
        assert sign_in(client, OTHER_TOKEN).status_code == 401
    wrong_bearer = client.get("/admin/api/health", headers={"Authorization": "Bearer nope"})
    assert wrong_bearer.status_code == 401  # bearer guesses count too: third failure
    refused = sign_in(client)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    api = client.get("/admin/api/health", headers={"Authorization": f"Bearer {TOKEN}"})
    assert api.status_code == 429 and "too many" in api.json()["error"]


async def test_concurrent_guesses_cannot_slip_past_the_limit(admin_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=admin_server.url, timeout=30) as http:
        responses = await asyncio.gather(*(
            http.post("/admin/login", data={"token": f"guess-{n}"}) for n in range(12)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [401] * 3 + [429] * 9  # the fixture's limit is 3 failures
    assert not any(TOKEN in response.text for response in responses)


def test_sign_out_needs_the_csrf_token_and_clears_the_cookie(client: httpx.Client) -> None:
    sign_in(client)
    csrf = csrf_of(client.get("/admin").text)
    assert client.post("/admin/logout").status_code == 403
    assert client.post("/admin/logout", data={"csrf_token": csrf[:-2] + "xx"}).status_code == 403
    other = SessionSigner(TOKEN).csrf_token(SessionSigner(TOKEN).issue()[1])
    assert client.post("/admin/logout", data={"csrf_token": other}).status_code == 403
    assert client.get("/admin").status_code == 200  # still signed in
    out = client.post("/admin/logout", data={"csrf_token": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/admin/login"
    assert 'bothub_admin=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers[
        "set-cookie"]
    assert SESSION_COOKIE not in client.cookies
    assert client.get("/admin").status_code == 303


def test_csrf_token_may_come_in_a_header_and_bearer_requests_need_none(
        client: httpx.Client) -> None:
    sign_in(client)
    csrf = csrf_of(client.get("/admin").text)
    assert client.post("/admin/logout", headers={"X-CSRF-Token": csrf}).status_code == 303
    client.cookies.clear()
    bearer = client.post("/admin/logout", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 303


def test_any_route_can_require_admin_and_its_posts_need_csrf(
        tmp_path: Path, fake_openai: FakeOpenAI, leaks: TokenLeakCheck) -> None:
    """A state-changing API route as issue 9 will add them: one dependency protects it."""

    def build(hub: Hub) -> Any:
        app = _build(hub)
        router = APIRouter()

        @router.post("/admin/api/echo")
        async def echo(admin: Annotated[AdminSession, Depends(require_admin)]) -> dict[str, str]:
            return {"via": admin.via}

        app.include_router(router)
        return app

    cookie, session = SessionSigner(TOKEN).issue()
    csrf = SessionSigner(TOKEN).csrf_token(session)
    with running_server(make_settings(tmp_path, fake_openai, admin_token=TOKEN),
                        build) as server, httpx.Client(
            base_url=server.url, timeout=30, event_hooks={"response": [leaks]}) as http:
        http.cookies.set(SESSION_COOKIE, cookie, domain="127.0.0.1", path="/admin")
        refused = http.post("/admin/api/echo")
        assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
        assert http.post("/admin/api/echo", json={"csrf_token": csrf}).status_code == 403
        allowed = http.post("/admin/api/echo", headers={"X-CSRF-Token": csrf})
        assert allowed.status_code == 200 and allowed.json() == {"via": "cookie"}
        http.cookies.clear()
        bearer = http.post("/admin/api/echo", headers={"Authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 200 and bearer.json() == {"via": "bearer"}
        assert http.post("/admin/api/echo").status_code == 401


# --- forged, expired and rotated sessions ------------------------------------------------------

@pytest.mark.parametrize("forge", [
    lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"),  # signature altered
    lambda c: c.replace(".", ".9", 1),  # expiry pushed out
    lambda c: "v1.9999999999.someone-else." + c.rsplit(".", 1)[1],  # another session id
    lambda c: c.rsplit(".", 1)[0] + ".",  # signature dropped
    lambda c: "x" * 300,
    lambda c: TOKEN,  # the token itself is not a session
])
def test_a_tampered_cookie_is_rejected_and_cleared(client: httpx.Client, forge: Any) -> None:
    cookie, _session = SessionSigner(TOKEN).issue()
    client.cookies.set(SESSION_COOKIE, forge(cookie), path="/admin")
    page = client.get("/admin")
    assert page.status_code == 303 and page.headers["location"] == "/admin/login"
    assert "Max-Age=0" in page.headers["set-cookie"] or 'bothub_admin=""' in page.headers[
        "set-cookie"]
    client.cookies.set(SESSION_COOKIE, forge(cookie), path="/admin")
    assert client.get("/admin/api/health").status_code == 401


def test_an_expired_cookie_is_rejected(client: httpx.Client) -> None:
    past = SessionSigner(TOKEN, clock=lambda: time.time() - 13 * 3600)
    expired, _ = past.issue()
    client.cookies.set(SESSION_COOKIE, expired, path="/admin")
    assert client.get("/admin").status_code == 303
    fresh, _ = SessionSigner(TOKEN).issue()  # the same signing, not expired: accepted
    client.cookies.set(SESSION_COOKIE, fresh, path="/admin")
    assert client.get("/admin").status_code == 200


def test_changing_the_token_ends_every_session(tmp_path: Path, fake_openai: FakeOpenAI,
                                               leaks: TokenLeakCheck) -> None:
    with running_server(make_settings(tmp_path / "one", fake_openai, admin_token=TOKEN),
                        _build) as first, httpx.Client(
            base_url=first.url, timeout=30, event_hooks={"response": [leaks]}) as http:
        assert sign_in(http).status_code == 303
        assert http.get("/admin").status_code == 200
        cookie = http.cookies[SESSION_COOKIE]
    with running_server(make_settings(tmp_path / "two", fake_openai, admin_token=OTHER_TOKEN),
                        _build) as second, httpx.Client(
            base_url=second.url, timeout=30, event_hooks={"response": [leaks]}) as http:
        http.cookies.set(SESSION_COOKIE, cookie, domain="127.0.0.1", path="/admin")
        assert http.get("/admin").status_code == 303
        assert http.get("/admin/api/health").status_code == 401
        assert sign_in(http, OTHER_TOKEN).status_code == 303
        assert http.get("/admin").status_code == 200


# --- the parts on their own --------------------------------------------------------------------

def test_signer_round_trip_and_key_separation() -> None:
    now = [1_000_000.0]
    signer = SessionSigner(TOKEN, lifetime=60, clock=lambda: now[0])
    cookie, session = signer.issue()
    assert signer.verify(cookie) == session
    assert signer.verify("v1.\u00b2\u00b2." + cookie.split(".", 2)[2]) is None  # int() reads ²
    assert signer.verify(cookie.rsplit(".", 1)[0] + ".\u00e9") is None  # not a TypeError
    assert SessionSigner(OTHER_TOKEN, clock=lambda: now[0]).verify(cookie) is None
    assert signer.csrf_ok(session, signer.csrf_token(session))
    assert not signer.csrf_ok(session, None) and not signer.csrf_ok(session, "é" * 43)
    now[0] += 61
    assert signer.verify(cookie) is None


def test_throttle_counts_per_address_and_forgets_after_the_window() -> None:
    now = [0.0]
    throttle = LoginThrottle(max_failures=2, window=60, delay=0, clock=lambda: now[0])
    assert throttle.retry_after("a") is None
    throttle.failed("a")
    throttle.failed("a")
    assert throttle.retry_after("a") == 60 and throttle.retry_after("b") is None
    now[0] += 30
    assert throttle.retry_after("a") == 30
    now[0] += 30
    assert throttle.retry_after("a") is None
    throttle.failed("b")
    throttle.succeeded("b")
    throttle.failed("b")
    assert throttle.retry_after("b") is None


def test_token_comparison() -> None:
    auth = AdminAuth(TOKEN)
    assert auth.token_ok(TOKEN) and auth.token_ok(f" {TOKEN}\n")  # as pasted
    assert not auth.token_ok(TOKEN + "x") and not auth.token_ok("") and not auth.token_ok("é")
    assert not auth.token_ok(TOKEN[:-1])
