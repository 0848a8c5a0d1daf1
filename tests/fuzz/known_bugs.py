"""Bugs the fuzz found, each reproduced by an xfail(strict) test in `test_known_bugs.py`.

While a bug is open the fuzz tolerates a 500 for exactly the requests that trigger it (each
predicate below mirrors the failing code path) and fails on any other 5xx. When a fix lands,
its xfail test passes, strict xfail turns that into a failure, and the fix removes the marker
and the predicate here together.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from slack_sdk.signature import SignatureVerifier

from adapters.slack.oauth import SignedStateStore
from tests.fuzz.world import Crash, ServerLog, frames, raised_in

# Python's json module recurses once per nesting level and gives up near the interpreter's
# recursion limit (1000); the strategies keep clear of the band around it.
DEEP = 500

BUG_DEEP_JSON_CHAT = "deep JSON nesting crashes POST /api/chat (RecursionError)"
BUG_BIG_INT_CHAT = "a JSON integer over 4300 digits crashes POST /api/chat (ValueError)"
BUG_DEEP_JSON_TEAMS = "deep JSON nesting crashes POST /api/messages before auth (RecursionError)"
BUG_DEEP_JSON_SLACK = "signed deep JSON nesting crashes POST /slack/events (RecursionError)"
BUG_SLACK_TIMESTAMP = "a non-integer X-Slack-Request-Timestamp crashes POST /slack/events"
BUG_SLACK_SIGNATURE = "a non-ASCII X-Slack-Signature crashes POST /slack/events"
BUG_STATIC_NUL = "a NUL byte in GET /static/{name} crashes it (ValueError)"
BUG_STATIC_LONG = "a name over 255 bytes in GET /static/{name} crashes it (OSError ENAMETOOLONG)"
NAME_MAX = 255
BUG_OAUTH_STATE = "a non-ASCII OAuth state crashes GET /slack/oauth_redirect"
BUG_OAUTH_BODY = ("a GET /slack/install or /slack/oauth_redirect carrying a body that is not "
                  "JSON (or a form whose payload= is not) crashes bolt's body parsing")
BUG_SLACK_AUTHORIZE_RESPOND = (
    "OAuth mode: a signed command/action from a workspace with no installation makes bolt "
    "post to the payload's response_url before answering; if that fails, a 500")
BUG_SLACK_ASK_RESPOND = (
    "an /ask the bot cannot serve (another workspace, a channel it cannot post in) is answered "
    "through the command's response_url from a task spawned after the ack; when that URL "
    "fails the task dies with an exception nobody retrieves (no answer, no log line of ours)")
BUG_SLACK_ACTION_SHAPES = (
    "a signed button click whose user or channel is not an object kills the task the Slack "
    "adapter spawned for it (AttributeError, never retrieved): the click does nothing")
BUG_ADMIN_COOKIE = ("an admin session cookie whose signature part is not ASCII crashes every "
                    "/admin route (TypeError in hmac.compare_digest)")
BUG_TEAMS_SCOPE = ("a Teams activity whose conversation.conversationType is an object or array "
                   "crashes its turn (TypeError: unhashable type): a message goes unanswered")
BOLT_AUTHORIZATION = "/slack_bolt/middleware/authorization/"
BOLT_RESPOND = "/slack_bolt/context/respond/"
BUG_SLACK_OAUTH_LOOKUP = (
    "OAuth mode: a signed payload whose team or enterprise id is not a string (or is text "
    "SQLite cannot store, like a lone surrogate) crashes the installation lookup: a 500")
INSTALLATION_LOOKUP = ("/sqlalchemy/", "/aiosqlite/", "/slack_sdk/oauth/installation_store/")
BUG_SLACK_BOLT_SHAPES = ("a signed payload with wrong-typed fields crashes slack_bolt inside "
                         "POST /slack/events (TypeError)")


def nesting_depth(text: bytes | str) -> int:
    """The deepest [ / { nesting outside JSON strings (an over-estimate for invalid JSON)."""
    data = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
    depth = deepest = 0
    in_string = escaped = False
    for char in data:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
    return deepest


def json_value_error(body: bytes | str) -> bool:
    """json.loads raises a ValueError that is not a JSONDecodeError (an integer literal past
    Python's 4300-digit limit)."""
    try:
        json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return False
    except ValueError:
        return True
    return False


def _latin1(headers: Mapping[str, Any]) -> dict[str, str]:
    """Header values as the server sees them (ASGI headers are bytes, read as latin-1)."""
    return {k.lower(): v.decode("latin-1") if isinstance(v, bytes) else str(v)
            for k, v in headers.items()}


def slack_verifier_crash(body: bytes, headers: Mapping[str, Any], secret: str) -> str | None:
    """The Slack signature check raises (the route catches only UnicodeDecodeError)."""
    try:
        SignatureVerifier(secret).is_valid_request(body, _latin1(headers))
    except UnicodeDecodeError:
        return None
    except ValueError:
        return BUG_SLACK_TIMESTAMP
    except TypeError:
        return BUG_SLACK_SIGNATURE
    return None


def slack_signed(body: bytes, headers: Mapping[str, Any], secret: str) -> bool:
    try:
        return SignatureVerifier(secret).is_valid_request(body, _latin1(headers))
    except (UnicodeDecodeError, ValueError, TypeError):
        return False


def slack_body_crash(body: bytes, headers: Mapping[str, Any]) -> str | None:
    """`well_formed` (after the signature) runs json.loads on the body or its `payload=`."""
    content_type = _latin1(headers).get("content-type", "")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if content_type.startswith("application/x-www-form-urlencoded"):
        try:
            fields = parse_qs(text, strict_parsing=bool(text))
        except ValueError:
            return None
        payloads = fields.get("payload") or [""]
        return BUG_DEEP_JSON_SLACK if nesting_depth(payloads[0]) >= DEEP else None
    return BUG_DEEP_JSON_SLACK if nesting_depth(text) >= DEEP else None


def oauth_body_crash(body: bytes, headers: Mapping[str, Any]) -> str | None:
    """slack_bolt parses any request's body, a GET's too, when it builds its request."""
    from slack_bolt.request.async_request import AsyncBoltRequest

    try:
        AsyncBoltRequest(body=body.decode("utf-8"),
                         headers={k: [v] for k, v in _latin1(headers).items()})
    except Exception:
        return BUG_OAUTH_BODY
    return None


def oauth_state_crash(target: str, headers: Mapping[str, Any]) -> str | None:
    """bolt passes a state matching the browser's cookie to SignedStateStore.async_consume,
    which encodes it as ASCII and compares signatures with hmac.compare_digest."""
    query = parse_qs(urlsplit(target).query, keep_blank_values=True)
    if "error" in query or "state" not in query:
        return None
    state = query["state"][0]
    cookie = _latin1(headers).get("cookie", "")
    if not any(part.strip().replace('"', "").replace("'", "") == f"slack-app-oauth-state={state}"
               for part in cookie.split(";")):
        return None
    try:
        asyncio.run(SignedStateStore("x").async_consume(state))
    except (UnicodeError, TypeError, ValueError):
        return BUG_OAUTH_STATE
    return None


def admin_cookie_crash(headers: Mapping[str, Any]) -> str | None:
    """The admin area's SessionSigner.verify, on the cookie as Starlette parses it."""
    from starlette.requests import cookie_parser

    from bot.admin.session import SESSION_COOKIE, SessionSigner

    cookie = cookie_parser(_latin1(headers).get("cookie", "")).get(SESSION_COOKIE)
    try:
        SessionSigner("x").verify(cookie)
    except (TypeError, ValueError):
        return BUG_ADMIN_COOKIE
    return None


def slack_bolt_crash(exc: BaseException | None) -> str | None:
    """A known bug that explains an exception slack_bolt raised or passed on."""
    files = frames(exc)
    if any(BOLT_AUTHORIZATION in f for f in files) and any(
            part in f for f in files for part in INSTALLATION_LOOKUP):
        return BUG_SLACK_OAUTH_LOOKUP
    if any(BOLT_RESPOND in f for f in frames(exc)):
        if any(BOLT_AUTHORIZATION in f for f in frames(exc)):
            return BUG_SLACK_AUTHORIZE_RESPOND
        if any(f.endswith("adapters/slack/app.py") for f in frames(exc)):
            return BUG_SLACK_ASK_RESPOND
    return BUG_SLACK_BOLT_SHAPES if "/slack_bolt/" in raised_in(exc) else None


def make_known_bug(signing_secret: str, log: ServerLog) -> Any:
    """The predicate a `World` asks about a 500: which known bug explains it, if any. `log`
    says where the server raised the exception behind the 500."""

    def known_bug(method: str, target: str, headers: Mapping[str, Any],
                  body: bytes) -> str | None:
        path = urlsplit(target).path
        method = method.upper()
        if path.startswith("/static/") and method == "GET":
            name = unquote(path).removeprefix("/static/")
            if "\x00" in name:
                return BUG_STATIC_NUL
            return BUG_STATIC_LONG if len(name.encode("utf-8", "replace")) > NAME_MAX else None
        if path == "/api/chat" and method == "POST":
            if nesting_depth(body) >= DEEP:
                return BUG_DEEP_JSON_CHAT
            return BUG_BIG_INT_CHAT if json_value_error(body) else None
        if path == "/api/messages" and method == "POST":
            return BUG_DEEP_JSON_TEAMS if nesting_depth(body) >= DEEP else None
        if path == "/slack/events" and method == "POST":
            crash = slack_verifier_crash(body, headers, signing_secret)
            if crash is not None:
                return crash
            if slack_signed(body, headers, signing_secret):
                return slack_bolt_crash(log.unhandled) or slack_body_crash(body, headers)
            return None
        if path == "/admin" or path.startswith("/admin/"):
            return admin_cookie_crash(headers)
        if path in {"/slack/install", "/slack/oauth_redirect"} and method == "GET":
            return oauth_body_crash(body, headers) or (
                oauth_state_crash(target, headers) if path == "/slack/oauth_redirect" else None)
        return None

    return known_bug


def explained_crash(crash: Crash) -> str | None:
    """A crash the server logged that a known bug explains (slack_bolt only ever sees signed
    requests, so these need the signing secret)."""
    if crash.event.startswith("asyncio: Task exception was never retrieved") \
            and isinstance(crash.exc, AttributeError) \
            and raised_in(crash.exc).endswith("adapters/slack/app.py"):
        return BUG_SLACK_ACTION_SHAPES
    if crash.event == "teams.turn_failed" and isinstance(crash.exc, TypeError) \
            and "unhashable" in str(crash.exc) \
            and raised_in(crash.exc).endswith("adapters/teams/inbound.py"):
        return BUG_TEAMS_SCOPE
    return slack_bolt_crash(crash.exc)
