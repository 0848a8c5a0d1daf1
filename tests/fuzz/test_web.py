"""The web chat (`GET /`, `GET /static/{name}`, `POST /api/chat`), `/healthz` and `/metrics`,
and every route's reaction to HTTP methods it does not serve."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from adapters.web.routes import STATIC
from tests.fakes.openai_server import FakeOpenAI
from tests.fuzz.known_bugs import explained_crash
from tests.fuzz.routes import endpoints, fill, parameters
from tests.fuzz.sanity import still_serves
from tests.fuzz.strategies import (
    CONTENT_TYPES,
    METHODS,
    TRAVERSALS,
    fuzz_settings,
    hostile_text,
    json_values,
    junk_headers,
    printable,
    query_junk,
    random_bodies,
    short_hostile_text,
)
from tests.fuzz.world import Sent, ServerLog, World, parse_sse

STATIC_FILES = {path.name: path.read_bytes() for path in STATIC.iterdir() if path.is_file()}
CHAT_ERRORS = {400, 404, 413, 422}
OUTCOMES_WITH_ERROR_EVENT = {"model_failed", "storage_failed"}


def check_chat(world: World, sent: Sent) -> list[tuple[str, Any]]:
    """A chat answer is an error in JSON, or an event stream that opens with the conversation
    and closes with `done` (after an `error` event when the answer failed)."""
    if not world.check(sent, statuses={200, 503} | CHAT_ERRORS):
        return []
    if sent.status != 200:
        assert isinstance(sent.json().get("error"), str), sent.describe()
        return []
    assert sent.header("content-type").startswith("text/event-stream"), sent.describe()
    events = parse_sse(sent.text)
    names = [name for name, _ in events]
    assert names[0] == "conversation" and names[-1] == "done", sent.describe()
    outcome = events[-1][1]["outcome"]
    assert ("error" in names) == (outcome in OUTCOMES_WITH_ERROR_EVENT), sent.describe()
    return events


# -- GET /, /healthz, /metrics ----------------------------------------------------------------

def test_page_metrics_and_health_take_junk(any_app: World, crashes: ServerLog,
                                           fake_openai: FakeOpenAI) -> None:
    # The page is a file: ranges and conditional requests apply (400: a malformed Range).
    expected = {"/": {200, 206, 304, 400, 416}, "/healthz": {200}, "/metrics": {200}}

    @fuzz_settings(60)
    @given(path=st.sampled_from(sorted(expected)), query=query_junk, headers=junk_headers,
           body=st.one_of(st.just(b""), random_bodies))
    def fuzz(path: str, query: list[tuple[str, str]], headers: dict[str, Any],
             body: bytes) -> None:
        sent = any_app.send("GET", path, params=query, headers=headers, body=body)
        if not any_app.check(sent, statuses=expected[path]):
            return
        if path == "/healthz":
            assert sent.json()["status"] == "ok", sent.describe()
        if path == "/metrics":
            assert "bothub_" in sent.text and sent.header("content-type").startswith(
                "text/plain"), sent.describe()

    fuzz()
    still_serves(any_app, fake_openai=fake_openai)
    crashes.assert_no_crashes(explained_crash)


def test_methods_not_allowed_anywhere(any_app: World, crashes: ServerLog) -> None:
    """Every route from `app.routes`, with every method it does not take."""
    for endpoint in endpoints(any_app.app):
        allowed = {e.method for e in endpoints(any_app.app) if e.path == endpoint.path}
        path = fill(endpoint.path, {name: "chat.css" for name, _ in parameters(endpoint.path)})
        for method in METHODS:
            if method in allowed or (method == "HEAD" and "GET" in allowed):
                continue
            sent = any_app.send(method, path, body=b'{"message": "hi"}')
            if any_app.check(sent, statuses={404, 405}) and sent.status == 405 \
                    and method != "HEAD":
                assert sent.json() == {"error": "Method Not Allowed"}, sent.describe()
    crashes.assert_no_crashes(explained_crash)


# -- GET /static/{name} -----------------------------------------------------------------------

def _served_only_static_files(world: World, sent: Sent) -> None:
    if world.check(sent, statuses={200, 307, 400, 404, 405}) and sent.status == 200:
        assert sent.content in STATIC_FILES.values(), (
            f"served something that is not one of the page's assets:\n{sent.describe()}")


def test_static_paths_never_leave_the_folder(open_app: World, crashes: ServerLog) -> None:
    """Raw request lines, so that no client normalizes the traversal away."""
    targets = [f"/static/{t}" for t in TRAVERSALS] + [
        "/static/", "/static", "/static//chat.css", "/static/./chat.css",
        "/static/../adapters/web/routes.py", "/static/../../bot/config.py",
        "/static/%2e%2e/routes.py", "/static/%2E%2E%2Froutes.py", "//static/chat.css",
        "/static/chat.css?../../routes.py", "/./static/chat.css", "/static\\..\\routes.py",
        "/static/..;/routes.py", "/static/chat.css/..%2f..%2froutes.py",
        "/%2e%2e/%2e%2e/etc/passwd", "/static/%2fetc%2fpasswd",
        "/static/" + "../" * 40 + "etc/passwd",
        "/static/\u00e9", "/static/%e9", "/static/%c3%a9", "/static/chat.css%3f",
        "/static/chat.css%23", "/static/chat.css#frag", "/static/*", "/static/?",
        "http://127.0.0.1/static/chat.css", "*",
    ]
    for target in targets:
        request = (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                   .encode())
        sent = open_app.raw(request)
        if sent.status == 0:  # uvicorn may drop what it cannot parse
            continue
        _served_only_static_files(open_app, sent)
    crashes.assert_no_crashes(explained_crash)


def test_static_names_from_hypothesis(open_app: World, crashes: ServerLog) -> None:
    @fuzz_settings(100)
    @given(name=st.one_of(printable.filter(bool), st.sampled_from(sorted(STATIC_FILES)),
                          st.builds(lambda a, b: a + b, st.sampled_from(sorted(STATIC_FILES)),
                                    printable)),
           query=query_junk, headers=junk_headers)
    def fuzz(name: str, query: list[tuple[str, str]], headers: dict[str, Any]) -> None:
        sent = open_app.send("GET", "/static/" + quote(name, safe=""), params=query,
                             headers=headers)
        _served_only_static_files(open_app, sent)
        if sent.status == 200:
            assert name in STATIC_FILES, sent.describe()

    fuzz()
    crashes.assert_no_crashes(explained_crash)


# -- POST /api/chat ---------------------------------------------------------------------------

def test_chat_bodies(open_app: World, crashes: ServerLog, fake_openai: FakeOpenAI) -> None:
    @fuzz_settings(120)
    @given(body=random_bodies, content_type=st.sampled_from(CONTENT_TYPES))
    def fuzz(body: bytes, content_type: str) -> None:
        check_chat(open_app, open_app.send("POST", "/api/chat", body=body,
                                           headers={"content-type": content_type}))

    fuzz()
    still_serves(open_app, fake_openai=fake_openai)
    crashes.assert_no_crashes(explained_crash)


IDENTIFIERS = st.one_of(
    st.none(), hostile_text, json_values,
    st.from_regex(r"\A[A-Za-z0-9_-]{8,64}\Z"),  # well-formed, never issued
    st.sampled_from(["aaaaaaaa", "a" * 64, "a" * 65, "a" * 7, "../../../etc/passwd",
                     "00000000000000000000000000000000", "%2e%2e%2f%2e%2e", "a\u00e9aaaaaaa",
                     "aaaaaaaa\n", "aaaaaaaa\x00"]),
)


def test_chat_fields(open_app: World, crashes: ServerLog, fake_openai: FakeOpenAI) -> None:
    """Wrong types, huge and strange text, conversation ids that were never issued or are not
    ids at all, repeated message ids (a retried POST is answered once)."""
    opening = check_chat(open_app, open_app.send(
        "POST", "/api/chat", body=b'{"message": "hello, I will ask a few things"}'))
    issued = opening[0][1]["conversation_id"]

    @fuzz_settings(120)
    @given(message=st.one_of(hostile_text, json_values),
           conversation=st.one_of(IDENTIFIERS, st.just(issued)),
           message_id=st.one_of(IDENTIFIERS, st.sampled_from(["retried-0001", "retried-0002"])),
           extra=st.dictionaries(short_hostile_text, json_values, max_size=3),
           drop=st.sets(st.sampled_from(["message", "conversation_id", "message_id"])))
    def fuzz(message: Any, conversation: Any, message_id: Any, extra: dict[str, Any],
             drop: set[str]) -> None:
        payload = {**extra, "message": message, "conversation_id": conversation,
                   "message_id": message_id}
        for key in drop:
            payload.pop(key, None)
        body = json.dumps(payload).encode()
        events = check_chat(open_app, open_app.send("POST", "/api/chat", body=body))
        if not events:
            return
        assert isinstance(payload.get("message"), str), "a non-string message was accepted"
        if payload.get("conversation_id") is not None:
            assert events[0][1]["conversation_id"] == issued
        again = check_chat(open_app, open_app.send("POST", "/api/chat", body=body))
        # A retry is recognized, a retried first message (no conversation id yet) too.
        if payload.get("message_id") is not None and events[-1][1]["outcome"] == "answered":
            assert again[-1][1] == {"outcome": "duplicate"}, again

    fuzz()
    still_serves(open_app, fake_openai=fake_openai)
    crashes.assert_no_crashes(explained_crash)


def test_chat_transport_junk(open_app: World, crashes: ServerLog,
                             fake_openai: FakeOpenAI) -> None:
    """A valid question with junk around it: content types, headers, query strings."""

    @fuzz_settings(60)
    @given(content_type=st.sampled_from(CONTENT_TYPES), headers=junk_headers, query=query_junk,
           question=printable)
    def fuzz(content_type: str, headers: dict[str, Any], query: list[tuple[str, str]],
             question: str) -> None:
        body = json.dumps({"message": question}).encode()
        sent = open_app.send("POST", "/api/chat", body=body, params=query,
                             headers={"content-type": content_type, **headers})
        check_chat(open_app, sent)

    fuzz()
    still_serves(open_app, fake_openai=fake_openai)
    crashes.assert_no_crashes(explained_crash)
