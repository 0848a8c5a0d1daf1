"""/admin (BOTHUB_ADMIN_TOKEN is set in both apps): the login form, session cookies, bearer
tokens and CSRF tokens, forged, stale, strange or missing."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz.known_bugs import explained_crash
from tests.fuzz.strategies import (
    CONTENT_TYPES,
    fuzz_settings,
    hostile_text,
    junk_headers,
    printable,
    random_bodies,
)
from tests.fuzz.world import (
    ADMIN_TOKEN,
    ServerLog,
    World,
    relax_admin_throttle,
    restore_admin_throttle,
)

FORM = "application/x-www-form-urlencoded"
SESSION_COOKIE = "bothub_admin"


@pytest.fixture
def admin(any_app: World) -> World:
    if any_app.admin_throttle is None:
        pytest.skip("this build has no /admin area")
    return any_app


def _signer() -> Any:
    from bot.admin.session import SessionSigner  # the admin area's own cookie format

    return SessionSigner(ADMIN_TOKEN)


def _session_cookie() -> tuple[str, str]:
    """A valid session cookie and its CSRF token, as a login would give them."""
    signer = _signer()
    cookie, session = signer.issue()
    return cookie, signer.csrf_token(session)


def _issued_session(headers: list[tuple[str, str]]) -> bool:
    return any(k.lower() == "set-cookie" and v.startswith(f"{SESSION_COOKIE}=")
               and "Max-Age=0" not in v and 'expires=Thu, 01 Jan 1970' not in v
               for k, v in headers)


def _carries_the_token(body: bytes, content_type: str) -> bool:
    """What a login form must carry to sign in: a small url-encoded form (at most 32 fields)
    whose first `token` field is the admin token."""
    if content_type.split(";", 1)[0].strip().lower() != FORM or len(body) > 16 * 1024:
        return False
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=32)
    except (UnicodeDecodeError, ValueError):
        return False
    return fields.get("token", [""])[0] == ADMIN_TOKEN


def test_login_form_takes_junk(admin: World, crashes: ServerLog) -> None:
    near_misses = [ADMIN_TOKEN + " ", " " + ADMIN_TOKEN, ADMIN_TOKEN.upper(), ADMIN_TOKEN[:-1],
                   ADMIN_TOKEN + "\x00", ADMIN_TOKEN + "\u00e9", f"Bearer {ADMIN_TOKEN}"]
    token = st.one_of(hostile_text, st.sampled_from(near_misses), st.just(ADMIN_TOKEN))
    forms = st.one_of(
        st.builds(lambda t, extra: urlencode([("token", t), *extra]).encode("utf-8"),
                  token.map(lambda t: t.encode("utf-8", "replace").decode()),
                  st.lists(st.tuples(printable, printable), max_size=3)),
        st.builds(lambda n: urlencode([(f"f{i}", "x") for i in range(n)]
                                      + [("token", ADMIN_TOKEN)]).encode(),
                  st.sampled_from([31, 32, 33, 200])),
        st.builds(lambda n: b"token=" + b"a" * n, st.sampled_from([16 * 1024, 17 * 1024])),
        random_bodies,
    )

    @fuzz_settings(100)
    @given(body=forms, content_type=st.sampled_from((FORM,) * 4 + CONTENT_TYPES),
           headers=junk_headers)
    @example(body=urlencode({"token": ADMIN_TOKEN}).encode(), content_type=FORM, headers={})
    def fuzz(body: bytes, content_type: str, headers: dict[str, Any]) -> None:
        sent = admin.send("POST", "/admin/login", body=body,
                          headers={**headers, "content-type": content_type})
        if not admin.check(sent, statuses={303, 401, 413, 429}):
            return
        right = _carries_the_token(body, content_type)
        if sent.status == 303:
            assert _issued_session(sent.response_headers) and sent.header("location") == \
                "/admin", sent.describe()
        else:
            assert not _issued_session(sent.response_headers), sent.describe()
        assert (sent.status == 303) == right, sent.describe()

    fuzz()
    crashes.assert_no_crashes(explained_crash)


COOKIE_FORGERIES = (
    "", "v1", "v1...", "v1.1.x.y", "v2.9999999999.abc.def", "v1.9999999999.abc.",
    "v1.9999999999..mac", "v1.-1.abc.mac", "v1.\u00b2.abc.mac", "v1.1.x.\u00e9",
    "v1.9999999999.abc.\u00e9\u00e9", "v1." + "9" * 300 + ".a.b", "v1.0.abc.mac", "%00",
    "v1.9999999999.abc.mac.extra", "a" * 257,
)


@st.composite
def admin_requests(draw: st.DrawFn) -> tuple[str, str, dict[str, Any], bytes, str]:
    """(method, path, headers, body, what credential was sent)."""
    method, path = draw(st.sampled_from([("GET", "/admin"), ("GET", "/admin/api/health"),
                                         ("GET", "/admin/login"), ("POST", "/admin/logout"),
                                         ("GET", "/admin/"), ("GET", "/admin/api/nope")]))
    headers: dict[str, Any] = draw(junk_headers)
    headers.pop("authorization", None)
    headers.pop("cookie", None)
    credential = draw(st.sampled_from(["none", "bearer", "bad bearer", "cookie", "stale cookie",
                                       "forged cookie", "tampered cookie"]))
    valid_cookie, csrf = _session_cookie()
    if credential == "bearer":
        headers["authorization"] = f"Bearer {ADMIN_TOKEN}"
    elif credential == "bad bearer":
        headers["authorization"] = draw(st.one_of(
            st.sampled_from(["Bearer", "Bearer ", f"bearer {ADMIN_TOKEN[:-1]}",
                             f"Basic {ADMIN_TOKEN}", ADMIN_TOKEN, f"Bearer  {ADMIN_TOKEN}x"]),
            printable))
    elif credential == "cookie":
        headers["cookie"] = f"{SESSION_COOKIE}={valid_cookie}"
    elif credential == "stale cookie":
        parts = valid_cookie.split(".")
        headers["cookie"] = f"{SESSION_COOKIE}={'.'.join([parts[0], '1', *parts[2:]])}"
    elif credential == "forged cookie":
        forged = draw(st.one_of(st.sampled_from(COOKIE_FORGERIES), printable))
        headers["cookie"] = (f"{SESSION_COOKIE}={forged}").encode("latin-1", "replace")
    elif credential == "tampered cookie":
        headers["cookie"] = f"{SESSION_COOKIE}={valid_cookie[:-2]}{draw(printable)[:4]}"
    body = b""
    if method == "POST":
        choice = draw(st.sampled_from(["none", "header", "form", "wrong header", "wrong form"]))
        if choice == "header":
            headers["x-csrf-token"] = csrf
        elif choice == "form":
            headers["content-type"] = FORM
            body = urlencode({"csrf_token": csrf}).encode()
        elif choice == "wrong header":
            headers["x-csrf-token"] = draw(printable)
        elif choice == "wrong form":
            headers["content-type"] = FORM
            body = urlencode({"csrf_token": draw(printable)}).encode("utf-8", "replace")
    return method, path, headers, body, credential


def test_sessions_bearers_and_csrf(admin: World, crashes: ServerLog) -> None:
    expected = {"/admin": {200, 303, 401, 429}, "/admin/": {200, 303, 307, 401, 404, 429},
                "/admin/api/health": {200, 401, 429}, "/admin/login": {200, 303},
                "/admin/logout": {303, 401, 403, 429}, "/admin/api/nope": {404}}

    @fuzz_settings(150)
    @given(request=admin_requests())
    @example(request=("GET", "/admin", {"cookie": f"{SESSION_COOKIE}=v1.1.x.\u00e9".encode(
        "latin-1")}, b"", "forged cookie"))
    def fuzz(request: tuple[str, str, dict[str, Any], bytes, str]) -> None:
        method, path, headers, body, credential = request
        sent = admin.send(method, path, headers=headers, body=body)
        if not admin.check(sent, statuses=expected[path]):
            return
        signed_in = credential in {"bearer", "cookie"}
        if path in {"/admin", "/admin/api/health"} and sent.status == 200:
            assert signed_in, f"admin content without a valid credential:\n{sent.describe()}"
        if path == "/admin/logout" and sent.status == 303 and credential == "cookie":
            assert "x-csrf-token" in headers or b"csrf_token=" in body, sent.describe()
        if path == "/admin/api/health" and sent.status == 401:
            assert sent.header("www-authenticate").startswith("Bearer"), sent.describe()
        if sent.status == 200 and path == "/admin/api/health":
            assert sent.json()["status"] in {"ok", "degraded"}, sent.describe()

    fuzz()
    crashes.assert_no_crashes(explained_crash)


def test_the_lockout_holds_under_junk(admin: World, crashes: ServerLog) -> None:
    """With the product's own failure limit (the pause shortened): an address that keeps
    guessing is locked out, the right token included, and other addresses are not."""
    assert admin.admin_throttle is not None
    _, limit = admin.admin_throttle
    restore_admin_throttle(admin.app, (0.0, limit))
    guesser = {"x-forwarded-for": "203.0.113.9"}  # uvicorn trusts it from loopback proxies
    try:
        for attempt in range(limit):
            sent = admin.send("GET", "/admin/api/health", headers={
                **guesser, "authorization": f"Bearer wrong-{attempt}"})
            admin.check(sent, statuses={401}, tolerate=False)
        for authorization in ("Bearer wrong-again", f"Bearer {ADMIN_TOKEN}"):
            sent = admin.send("GET", "/admin/api/health", headers={
                **guesser, "authorization": authorization})
            admin.check(sent, statuses={429}, tolerate=False)
            assert int(sent.header("retry-after")) > 0, sent.describe()
        login = admin.send("POST", "/admin/login", headers={**guesser, "content-type": FORM},
                           body=urlencode({"token": ADMIN_TOKEN}).encode())
        admin.check(login, statuses={429}, tolerate=False)
        other = admin.send("GET", "/admin/api/health", headers={
            "x-forwarded-for": "198.51.100.7", "authorization": f"Bearer {ADMIN_TOKEN}"})
        admin.check(other, statuses={200}, tolerate=False)
    finally:
        relax_admin_throttle(admin.app)
        admin.app.state.admin_auth.throttle.succeeded(guesser["x-forwarded-for"])
    crashes.assert_no_crashes(explained_crash)
