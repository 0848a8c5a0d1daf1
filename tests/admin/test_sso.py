"""Single sign-on through an authenticating proxy's identity header, and the name an admin
signs in with: who the dashboard says is acting, and whom it believes.

The test client connects from 127.0.0.1, so "a trusted proxy" is 127.0.0.1/32 and "an
untrusted peer" is the same client with only 10.0.0.0/8 trusted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from bot.admin.session import SESSION_COOKIE, SessionSigner, clean_name
from bot.admin.sso import SsoConfig, SsoCsrf
from bot.app import Hub
from bot.config import ConfigError
from bot.escalation.store import State
from bot.peer import behind_proxies
from bot.server import create_app
from tests.admin.world import (
    TOKEN,
    AdminWorld,
    _build,
    admin_world,
    csrf_of,
    notice_of,
    text_of,
)
from tests.conftest import make_settings, running_server
from tests.fakes.openai_server import FakeOpenAI

HEADER = "X-Forwarded-Email"
SSO = {"admin_sso_header": HEADER, "admin_sso_trusted_proxies": "127.0.0.1/32",
       "admin_sso_allowed": "@example.com, bob@partner.org"}


@pytest.fixture
def sso_world(tmp_path: Path, fake_openai: FakeOpenAI) -> Iterator[AdminWorld]:
    """SSO only: no admin token at all."""
    with admin_world(tmp_path, fake_openai, admin_token=None, **SSO) as built:
        yield built


def as_user(world: AdminWorld, identity: str) -> httpx.Client:
    return httpx.Client(base_url=world.url, headers={HEADER: identity}, timeout=30)


def test_a_trusted_proxy_signs_people_in_by_their_identity(sso_world: AdminWorld) -> None:
    with as_user(sso_world, "ada@example.com") as ada:
        page = ada.get("/admin/escalations")
        assert page.status_code == 200
        assert "Signed in as ada@example.com (single sign-on)" in text_of(page.text)
        assert "Sign out" not in page.text  # the session is the proxy's, not ours to end
        assert ada.get("/admin/login", follow_redirects=False).headers["location"] == "/admin"
        assert ada.get("/admin/api/health").status_code == 200


def test_an_sso_admin_claims_with_a_csrf_token_bound_to_their_identity(
        sso_world: AdminWorld) -> None:
    number = sso_world.escalate()
    with as_user(sso_world, "ada@example.com") as ada, \
            as_user(sso_world, "bob@partner.org") as bob:
        ada_csrf = csrf_of(ada.get("/admin/escalations").text)
        bob_csrf = csrf_of(bob.get("/admin/escalations").text)
        assert ada_csrf != bob_csrf
        assert bob.post(f"/admin/escalations/{number}/claim").status_code == 403
        stolen = bob.post(f"/admin/escalations/{number}/claim", data={"csrf_token": ada_csrf})
        assert stolen.status_code == 403 and "CSRF" in stolen.text
        assert sso_world.ticket(number).state is State.OPEN
        done = ada.post(f"/admin/escalations/{number}/claim", data={"csrf_token": ada_csrf},
                        follow_redirects=True)
        assert notice_of(done.text) == (f"ok: You've claimed escalation #{number}. I'll stay "
                                        "quiet in that thread.")
    assert sso_world.ticket(number).claimed_by_name == "ada@example.com"
    assert sso_world.outlet.told[-1][1].startswith("ada@example.com from our support team")


@pytest.mark.parametrize(("identity", "allowed"), [
    ("ada@example.com", True), ("ADA@Example.COM", True), ("bob@partner.org", True),
    ("eve@partner.org", False), ("mallory@example.com.evil.org", False), ("example.com", False),
])
def test_only_the_allowed_people_and_domains_get_in(sso_world: AdminWorld, identity: str,
                                                    allowed: bool) -> None:
    with as_user(sso_world, identity) as client:
        page = client.get("/admin")
        api = client.get("/admin/api/escalations")
    if allowed:
        assert page.status_code == 200 and api.status_code == 200
    else:
        assert page.status_code == 403 and api.status_code == 403
        assert f"{identity} is not allowed into the bothub admin area" in text_of(page.text)
        assert api.json()["error"].startswith(identity)


def test_without_a_token_there_is_no_token_sign_in(sso_world: AdminWorld) -> None:
    with httpx.Client(base_url=sso_world.url, timeout=30) as anonymous:
        assert anonymous.get("/admin", follow_redirects=False).headers["location"] == \
            "/admin/login"
        form = anonymous.get("/admin/login")
        assert form.status_code == 403 and "single sign-on" in form.text
        for guess in ("", " ", "anything"):
            assert anonymous.post("/admin/login", data={"token": guess}).status_code == 401
            assert anonymous.get("/admin/api/escalations",
                                 headers={"Authorization": f"Bearer {guess}x"}
                                 ).status_code == 401
        assert SESSION_COOKIE not in anonymous.cookies


@pytest.mark.parametrize("value", [b"", b"\x85\xa0"])  # nothing printable in latin-1
def test_an_empty_identity_is_no_identity(sso_world: AdminWorld, value: bytes) -> None:
    with httpx.Client(base_url=sso_world.url, timeout=30) as client:
        response = client.get("/admin/api/health", headers={HEADER.encode(): value})
    assert response.status_code == 401


def test_a_long_or_odd_identity_is_cleaned_before_it_is_shown(sso_world: AdminWorld) -> None:
    identity = "<b>ada</b>\t@example.com" + "x" * 400
    with as_user(sso_world, identity) as client:
        page = client.get("/admin")
    # Not allowed (not an @example.com address once cleaned), and shown as text, not markup.
    assert page.status_code == 403 and "<b>ada</b>" not in page.text
    assert "&lt;b&gt;ada&lt;/b&gt;" in page.text


def test_an_untrusted_peer_cannot_claim_an_identity(tmp_path: Path,
                                                    fake_openai: FakeOpenAI) -> None:
    settings: dict[str, Any] = {**SSO, "admin_sso_trusted_proxies": "10.0.0.0/8"}
    with admin_world(tmp_path, fake_openai, **settings) as world, \
            as_user(world, "ada@example.com") as forger, capture_logs() as logs:
        page = forger.get("/admin", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/admin/login"
        assert forger.get("/admin/api/health").status_code == 401
        # The token still works beside it, and the header does not change who that is.
        with_token = forger.get("/admin/api/escalations",
                                headers={"Authorization": f"Bearer {TOKEN}"})
        assert with_token.status_code == 200
    warned = [entry for entry in logs if entry["event"] == "admin.sso_header_untrusted"]
    assert warned and warned[0]["client"] == "127.0.0.1"


def test_behind_a_load_balancer_sso_trusts_the_proxy_that_connected(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """As `bothub serve` runs: X-Forwarded-For from a trusted proxy makes the client the user
    (what the sign-in throttle counts), yet the SSO header is judged by the proxy's own
    address, which connected. Applied by uvicorn, the header would give 203.0.113.5."""
    settings = make_settings(tmp_path, fake_openai, admin_token=TOKEN, **SSO)
    with running_server(settings, lambda hub: behind_proxies(_build(hub), "127.0.0.1"),
                        proxy_headers=False) as server, capture_logs() as logs:
        via_proxy = httpx.get(f"{server.url}/admin/api/health", timeout=30, headers={
            HEADER: "ada@example.com", "X-Forwarded-For": "203.0.113.5"})
        assert via_proxy.status_code == 200
        guess = httpx.get(f"{server.url}/admin/api/health", timeout=30, headers={
            "Authorization": "Bearer wrong", "X-Forwarded-For": "198.51.100.7"})
        assert guess.status_code == 401
    [failed] = [entry for entry in logs if entry["event"] == "admin.auth_failed"]
    assert failed["client"] == "198.51.100.7"
    assert not [entry for entry in logs if entry["event"] == "admin.sso_header_untrusted"]


async def test_an_sso_header_without_trusted_proxies_is_a_configuration_error(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    hub = await Hub.create(make_settings(tmp_path, fake_openai, admin_sso_header=HEADER))
    try:
        with pytest.raises(ConfigError, match="BOTHUB_ADMIN_SSO_TRUSTED_PROXIES is empty"):
            create_app(hub, services=False, adapters=[])
        with pytest.raises(ConfigError, match=r"'10\.0\.0\.300' is not an IP address"):
            SsoConfig.from_settings(HEADER, "10.0.0.300", "")
    finally:
        await hub.close()


def test_sso_config_trusts_listed_networks_only() -> None:
    config = SsoConfig.from_settings("X-Email", "10.0.0.0/8, ::1", "@example.com")
    assert config is not None and config.header == "x-email"
    assert config.trusts("10.1.2.3") and config.trusts("::1")
    assert config.trusts("::ffff:10.1.2.3")  # an IPv4 peer on a dual-stack socket
    assert not config.trusts("11.0.0.1") and not config.trusts("not an address")
    assert SsoConfig.from_settings(None, "", "") is None
    assert SsoConfig.from_settings("  ", "", "") is None


def test_sso_csrf_tokens_last_one_window_more_and_no_longer() -> None:
    now = [1_000_000.0]
    csrf = SsoCsrf(b"k" * 32, clock=lambda: now[0])
    token = csrf.token("ada@example.com")
    assert csrf.ok("ada@example.com", token)
    assert not csrf.ok("bob@example.com", token) and not csrf.ok("ada@example.com", None)
    now[0] += 12 * 3600
    assert csrf.ok("ada@example.com", token)
    now[0] += 12 * 3600
    assert not csrf.ok("ada@example.com", token)
    assert not SsoCsrf(b"j" * 32, clock=lambda: now[0]).ok("ada@example.com",
                                                             csrf.token("ada@example.com"))


# --- the name given at sign-in ------------------------------------------------------------------

def test_the_name_typed_at_sign_in_is_who_acts(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    with admin_world(tmp_path, fake_openai) as world, \
            httpx.Client(base_url=world.url, timeout=30) as browser:
        number = world.escalate()
        signed = browser.post("/admin/login", data={"name": "  Grace\x00 <i>Hopper</i>\n ",
                                                    "token": TOKEN}, follow_redirects=True)
        assert signed.status_code == 200
        assert "Signed in as Grace <i>Hopper</i>" in text_of(signed.text)
        assert "<i>Hopper</i>" not in signed.text  # shown as text
        browser.post(f"/admin/escalations/{number}/claim",
                     data={"csrf_token": csrf_of(signed.text)})
        assert world.ticket(number).claimed_by_name == "Grace <i>Hopper</i>"


def test_a_wrong_token_keeps_the_name_but_not_the_token(tmp_path: Path,
                                                        fake_openai: FakeOpenAI) -> None:
    with admin_world(tmp_path, fake_openai) as world, \
            httpx.Client(base_url=world.url, timeout=30) as browser:
        refused = browser.post("/admin/login", data={"name": "Ada", "token": TOKEN + "x"})
    assert refused.status_code == 401 and 'value="Ada"' in refused.text
    assert TOKEN not in refused.text


def test_names_are_one_printable_line_of_at_most_64_characters() -> None:
    assert clean_name("  Ada \t\n Lovelace\x1b[31m ") == "Ada Lovelace[31m"
    assert clean_name("é" * 100) == "é" * 64
    assert clean_name("\u202eevil") == "evil"  # no bidi override to reverse what follows


def test_the_cookie_carries_the_name_signed_and_rejects_the_old_format() -> None:
    signer = SessionSigner("k" * 32)
    cookie, session = signer.issue("Ada Lovelace ✓")
    verified = signer.verify(cookie)
    assert verified is not None and verified.name == "Ada Lovelace ✓" == session.name
    assert cookie.startswith("v2.") and "Ada" not in cookie  # encoded, not readable as is
    parts = cookie.split(".")
    forged_name = SessionSigner("k" * 32).issue("Mallory")[0].split(".")[3]
    assert signer.verify(".".join([*parts[:3], forged_name, parts[4]])) is None
    old = f"v1.{int(time.time()) + 3600}.abc.{parts[4]}"
    assert signer.verify(old) is None
    assert signer.verify(cookie + "x" * 400) is None
