"""The admin dashboard's pages (escalations, conversations, feedback, knowledge, usage,
health) and their JSON twins under hostile input: junk query strings, path ids and action
names, junk form bodies and `next` targets, and every way to be signed in or almost signed in.

The world here has what the pages show: an escalation desk (posting to a recording outlet, as
in tests/admin), escalations in each state, conversations and a vote, so that detail pages and
actions are reached with real ids as well as junk ones. Every answer must keep the World's
properties (no 5xx, no trace, no secret, no open redirect); on top of that a redirect goes to
one of our own /admin pages, and a state-changing POST that is not properly authorized (no
bearer token, or a session without its CSRF token) changes nothing at all.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urljoin, urlsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bot.admin.session import SESSION_COOKIE, SessionSigner
from bot.app import Hub
from bot.engine import Outcome
from bot.escalation.store import Actor, Ticket
from bot.model import Author, ConversationKey, Message
from bot.server import create_app
from tests.admin.world import AGENTS_CHANNEL, RecordingOutlet
from tests.admin.world import CONFIG as ESCALATION_YAML
from tests.conftest import _postgres_database, make_settings, running_server
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.recording_channel import RecordingChannel
from tests.fuzz.known_bugs import explained_crash, make_known_bug
from tests.fuzz.strategies import CONTENT_TYPES, fuzz_settings, printable
from tests.fuzz.world import (
    ADMIN_TOKEN,
    BEHAVIOUR_YAML,
    Sent,
    ServerLog,
    World,
    relax_admin_throttle,
)

FORM = "application/x-www-form-urlencoded"
ACTIONS = ("claim", "release", "resolve", "resolve-save")
SOURCES = ("docs", "escalations")
EXCEPTION_NAME = re.compile(r"\b(?:[A-Z]\w*(?:Error|Exception)|Traceback)\b")

# -- the world --------------------------------------------------------------------------------


@dataclass(repr=False)
class Pages:
    """The live app under fuzz and the records it holds."""

    world: World
    hub: Hub
    outlet: RecordingOutlet
    conversation_ids: list[int] = field(default_factory=list)
    escalation_ids: list[int] = field(default_factory=list)

    def __repr__(self) -> str:  # hypothesis prints it with every falsifying example
        return f"Pages({self.world.url})"

    def run(self, coroutine: Any) -> Any:
        return self.world.live.run(coroutine)

    def ask(self, text: str, *, user: str = "Alice") -> Any:
        """One question through the engine, as from Slack (where escalations are routed)."""
        key = ConversationKey("slack", "T1", "C0GENERAL", f"1700{uuid.uuid4().int % 10**9}.1")
        message = Message(key=key, id=uuid.uuid4().hex, author=Author(f"U{user.upper()}", user),
                          text=text, mentioned=True)
        return self.run(self.hub.engine.handle(message, RecordingChannel()))

    def escalate(self) -> int:
        result = self.ask("I want to talk to a human")
        assert result.outcome is Outcome.ESCALATED, result
        number = self.outlet.posted[-1][1]
        self.escalation_ids.append(number)
        if result.conversation_id is not None:
            self.conversation_ids.append(result.conversation_id)
        return number

    def ticket(self, number: int) -> Ticket | None:
        desk = self.hub.engine.desk
        assert desk is not None
        found: Ticket | None = self.run(desk.store.get(number))
        return found

    def active(self) -> int:
        """An open or claimed escalation (a new one when every one is resolved)."""
        for number in reversed(self.escalation_ids):
            ticket = self.ticket(number)
            if ticket is not None and ticket.state.value in {"open", "claimed"}:
                return number
        return self.escalate()

    def escalations_state(self) -> list[tuple[int, str, int]]:
        """Every escalation's id, state and number of events: what an action would change."""
        desk = self.hub.engine.desk
        assert desk is not None
        tickets = self.run(desk.store.tickets(states=("open", "claimed", "resolved"),
                                              limit=1000))
        return sorted((t.id, t.state.value, len(self.run(desk.store.events(t.id))))
                      for t in tickets)

    def sync_runs(self) -> int:
        return len(self.run(self.hub.knowledge.catalog.runs(limit=1000)))


def _build(built: dict[str, Any]) -> Any:
    def make_app(hub: Hub) -> Any:
        app = create_app(hub, services=False, adapters=[])
        built["app"] = app
        built["admin_throttle"] = relax_admin_throttle(app)
        return app

    return make_app


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def pages(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          _fake_openai_server: FakeOpenAI, server_log: ServerLog) -> Iterator[Pages]:
    """An app with escalations on (agents' channel in a recording "Slack"), two escalations
    (one claimed), a plain answered conversation with a vote; on SQLite and on PostgreSQL
    (whose types and text rules differ: ids past int64, NUL in search text)."""
    if request.param == "postgresql":
        databases = _postgres_database()
        with contextlib.closing(databases):
            yield from _pages(tmp_path_factory, _fake_openai_server, server_log,
                              database_url=next(databases))
    else:
        yield from _pages(tmp_path_factory, _fake_openai_server, server_log)


def _pages(tmp_path_factory: pytest.TempPathFactory, openai: FakeOpenAI, server_log: ServerLog,
           **database: str) -> Iterator[Pages]:
    tmp: Path = tmp_path_factory.mktemp("fuzz-admin-pages")
    config = tmp / "bothub.yaml"
    config.write_text(ESCALATION_YAML + BEHAVIOUR_YAML, encoding="utf-8")
    settings = make_settings(tmp, openai, config_file=config, admin_token=ADMIN_TOKEN,
                             slack_escalation_channel=AGENTS_CHANNEL, **database)
    built: dict[str, Any] = {}
    name = "admin pages on " + ("PostgreSQL" if database else "SQLite")
    with running_server(settings, _build(built)) as live:
        world = World(name=name, url=live.url, app=built["app"], live=live,
                      secrets={"OpenAI key": openai.api_key,
                               "admin token": ADMIN_TOKEN},
                      signing_secret="", teams_auth=False, slack_oauth=False,
                      known_bug=make_known_bug("", server_log),
                      admin_throttle=built["admin_throttle"], log=server_log)
        outlet = RecordingOutlet()
        assert live.hub.engine.desk is not None
        live.hub.engine.desk.register(outlet)  # as `create_app` does for a platform adapter
        seeded = Pages(world=world, hub=live.hub, outlet=outlet)
        try:
            answered = seeded.ask("How do I reset my password?", user="Bob")
            assert answered.outcome is Outcome.ANSWERED, answered
            seeded.conversation_ids.append(answered.conversation_id)
            assert answered.reply is not None and answered.reply.ref
            assert seeded.run(live.hub.engine.record_feedback(answered.reply.ref, "UBOB",
                                                              helpful=True))
            seeded.escalate()
            claimed = seeded.escalate()
            assert "claimed" in seeded.run(live.hub.engine.desk.act(
                claimed, "claim", _agent())).lower()
            yield seeded
        finally:
            world.client.close()


def _agent() -> Actor:
    return Actor(id="seed-agent", name="Seed Agent", platform="admin")


# -- credentials ----------------------------------------------------------------------------

SIGNER = SessionSigner(ADMIN_TOKEN)  # the app signs with the admin token (no admin secret)
# Issued 13 hours ago: a genuine cookie whose 12 hours have run out.
YESTERDAY = SessionSigner(ADMIN_TOKEN, clock=lambda: time.time() - 13 * 3600)

# How a request may be signed in, and whether a state-changing POST carrying it is authorized.
CREDENTIALS = (
    "bearer", "bearer and a cookie without csrf", "cookie, csrf header", "cookie, csrf field",
    "none", "bad bearer", "basic", "forged cookie", "stale cookie", "tampered cookie",
    "cookie without csrf",
    "cookie, wrong csrf header", "cookie, wrong csrf field", "cookie, another session's csrf",
    "cookie, csrf in the query", "cookie, csrf field but not a form",
    "cookie, csrf field past 32 fields", "cookie, csrf field in non-UTF-8",
    "cookie, empty csrf header",
)
AUTHORIZED = {"bearer", "bearer and a cookie without csrf", "cookie, csrf header",
              "cookie, csrf field"}
# No valid session: pages send the browser to the login form, the JSON API answers 401.
NO_SESSION = {"none", "forged cookie", "stale cookie", "tampered cookie"}
BAD_TOKEN = {"bad bearer", "basic"}  # a client that sends a token gets a 401, never a page


@dataclass
class Signed:
    """Headers, extra query and the form fields a credential puts on a request."""

    headers: dict[str, Any]
    query: list[tuple[str, str]]
    fields: list[tuple[str, str]]
    raw_body: bytes | None  # replaces the form when the credential is in the body's shape


def sign(credential: str, junk: str) -> Signed:
    """`credential` as a request carries it; `junk` goes where a wrong value is wanted."""
    cookie, session = SIGNER.issue("fuzz")
    csrf = SIGNER.csrf_token(session)
    headers: dict[str, Any] = {}
    query: list[tuple[str, str]] = []
    fields: list[tuple[str, str]] = []
    raw: bytes | None = None
    if credential.startswith("bearer"):
        headers["authorization"] = f"Bearer {ADMIN_TOKEN}"
    if credential == "bad bearer":
        headers["authorization"] = f"Bearer {ADMIN_TOKEN[:-1]}{junk[:8]}"
    elif credential == "basic":
        headers["authorization"] = f"Basic {ADMIN_TOKEN}"
    elif credential == "forged cookie":
        headers["cookie"] = f"{SESSION_COOKIE}={quote(junk[:300], safe='')}"
    elif credential == "stale cookie":
        headers["cookie"] = f"{SESSION_COOKIE}={YESTERDAY.issue('fuzz')[0]}"
    elif credential == "tampered cookie":  # its expiry moved, its MAC kept
        parts = cookie.split(".")
        headers["cookie"] = f"{SESSION_COOKIE}={'.'.join([parts[0], '1', *parts[2:]])}"
    elif credential.startswith("cookie") or credential.endswith("cookie without csrf"):
        headers["cookie"] = f"{SESSION_COOKIE}={cookie}"
    if credential == "cookie, csrf header":
        headers["x-csrf-token"] = csrf
    elif credential == "cookie, csrf field":
        fields.append(("csrf_token", csrf))
    elif credential == "cookie, wrong csrf header":
        headers["x-csrf-token"] = junk or "x"
    elif credential == "cookie, empty csrf header":
        headers["x-csrf-token"] = ""
    elif credential == "cookie, wrong csrf field":
        fields.append(("csrf_token", junk))
    elif credential == "cookie, another session's csrf":
        headers["x-csrf-token"] = SIGNER.csrf_token(SIGNER.issue("other")[1])
    elif credential == "cookie, csrf in the query":
        query.append(("csrf_token", csrf))
    elif credential == "cookie, csrf field but not a form":
        headers["content-type"] = "text/plain"
        raw = urlencode({"csrf_token": csrf}).encode()
    elif credential == "cookie, csrf field past 32 fields":
        raw = urlencode([(f"f{i}", "x") for i in range(40)] + [("csrf_token", csrf)]).encode()
    elif credential == "cookie, csrf field in non-UTF-8":
        raw = b"next=%2Fadmin\xff\xfe&csrf_token=" + csrf.encode()
    return Signed(headers, query, fields, raw)


# -- checks -------------------------------------------------------------------------------------

def check_admin_answer(world: World, sent: Sent, statuses: set[int]) -> None:
    """The World's properties, the expected statuses, no exception's name in the answer (that
    the request did not carry itself), and redirects only to our own /admin pages."""
    world.check(sent, statuses=statuses, tolerate=False)
    sent_text = sent.target + sent.body.decode("utf-8", "replace")
    for name in set(EXCEPTION_NAME.findall(sent.text)):
        assert name in unquote(sent_text), f"an exception's name in the answer:\n" \
                                           f"{sent.describe()}"
    location = sent.header("location")
    if sent.status in {301, 302, 303, 307, 308}:
        assert location, sent.describe()
    if location:
        resolved = urlsplit(urljoin(world.url + "/admin/escalations/1", location))
        path = unquote(resolved.path)
        assert resolved.netloc == urlsplit(world.url).netloc, sent.describe()
        assert location.startswith(("/admin", f"{world.url}/admin")) \
            and "\\" not in location, sent.describe()
        assert path == "/admin" or posixpath.normpath(path).startswith("/admin/"), (
            f"a redirect that leaves /admin:\n{sent.describe()}")


def refused_as(credential: str, api: bool) -> set[int]:
    """What a request with `credential` that is not authorized gets."""
    if credential in BAD_TOKEN:
        return {401}
    if credential in NO_SESSION:
        return {401} if api else {303}
    return {403}


# -- list pages -----------------------------------------------------------------------------

LIST_PAGES = ("/admin/escalations", "/admin/api/escalations", "/admin/conversations",
              "/admin/api/conversations", "/admin/feedback", "/admin/api/feedback",
              "/admin/knowledge", "/admin/usage", "/admin/health")

NUMBERS = ("", "0", "-1", "1", "2", "7", "30", "90", "10000", "10001", "999999", "1000000",
           "9" * 19, "9" * 5000, "-9" * 30, "1e3", "0x10", "1.5", "+2", " 2", "2 ", "030",
           "\u00b2", "\u0663\u0660", "\uff13\uff10", "NaN", "Infinity", "\x00", "2\x00")
FILTER_WORDS = ("active", "open", "claimed", "resolved", "all", "up", "down", "1", "0",
                "slack", "web", "teams", "discord", "ACTIVE", "open ", "resolved\x00",
                "open,claimed", "*", "%", "'; --")
BIG = ("x" * 6000, "\x00" * 500, "\u00e9" * 1200, "%" * 2000, "<b>" * 1000)

numbers = st.one_of(st.sampled_from(NUMBERS), st.integers(-(2**70), 2**70).map(str), printable)
words = st.one_of(st.sampled_from(FILTER_WORDS), st.sampled_from(NUMBERS), printable)
search_text = st.one_of(printable, st.sampled_from(BIG))
QUERY_VALUES: dict[str, st.SearchStrategy[str]] = {
    "q": search_text, "page": numbers, "days": numbers, "state": words, "platform": words,
    "value": words, "escalated": words, "source": words, "notice": search_text,
    "tone": words, "sig": printable,
}
query_pair = st.one_of(
    st.sampled_from(sorted(QUERY_VALUES)).flatmap(
        lambda name: st.tuples(st.just(name), QUERY_VALUES[name])),
    st.tuples(printable, printable),
)
list_queries = st.lists(query_pair, max_size=6)


def last(query: list[tuple[str, str]], name: str) -> str | None:
    """What Starlette's `query_params.get` sees: the last value given for `name`."""
    values = [v for k, v in query if k == name]
    return values[-1] if values else None


def valid_days(value: str | None) -> bool:
    """Whether /admin/usage shows `?days=value`: absent, empty or one of 7, 30, 90 (digits
    int() reads, surrounding blanks ignored)."""
    if value in (None, ""):
        return True
    text = value.strip()
    try:
        return text.isdigit() and len(text) <= 3 and int(text) in {7, 30, 90}
    except ValueError:  # "²" is a digit to isdigit(), not to int()
        return False


@fuzz_settings(150)
@given(path=st.sampled_from(LIST_PAGES), query=list_queries,
       credential=st.sampled_from(("bearer", "bearer", "cookie, csrf header",
                                   "cookie without csrf", "none", "bad bearer", "forged cookie")),
       junk=printable)
@example(path="/admin/usage", query=[("days", "\u00b2")], credential="bearer", junk="")
@example(path="/admin/usage", query=[("days", "9" * 5000)], credential="bearer", junk="")
@example(path="/admin/api/conversations", query=[("page", "9" * 19), ("q", "\x00")],
         credential="bearer", junk="")
def _fuzz_list_pages(pages: Pages, path: str, query: list[tuple[str, str]], credential: str,
                     junk: str) -> None:
    world = pages.world
    signed = sign(credential, junk)
    api = path.startswith("/admin/api/")
    sent = world.send("GET", path, headers=signed.headers, params=query)
    if credential in NO_SESSION | BAD_TOKEN:
        check_admin_answer(world, sent, refused_as(credential, api))
        if not api and sent.status == 303:
            assert sent.header("location") == "/admin/login", sent.describe()
        return
    expected = {200, 400} if path == "/admin/usage" else {200}
    check_admin_answer(world, sent, expected)
    if path == "/admin/usage":
        days = last(query, "days")
        assert (sent.status == 200) == valid_days(days), sent.describe()
    if api:
        data = sent.json()
        if "page" in data:
            assert 1 <= data["page"] <= 10_000, sent.describe()
        if path == "/admin/api/escalations":
            state = last(query, "state")
            expected_state = state if state in {"active", "open", "claimed", "resolved"} \
                else "active"
            assert data["state"] == expected_state, sent.describe()
    else:
        assert "text/html" in sent.header("content-type"), sent.describe()
        notice = last(query, "notice")
        if notice and notice.strip() and "role=\"status\"" in sent.text:
            raise AssertionError(f"an unsigned notice shown on the page:\n{sent.describe()}")


def test_list_pages_take_junk_queries(pages: Pages, crashes: ServerLog) -> None:
    """Search text, page numbers, filters and repeated parameters, signed in or not."""
    _fuzz_list_pages(pages)
    crashes.assert_no_crashes(explained_crash)


# -- detail pages: path ids ----------------------------------------------------------------

JUNK_IDS = (
    "0", "-1", "-0", "+1", " 1", "1 ", "01", "1.0", "1e3", "0x1", "\u00b2", "\u0661", "\uff11",
    "999999999999999999", "9223372036854775807", "9223372036854775808", "9" * 30, "9" * 5000,
    "1%2F2", "%2F", "1%2Fclaim", "1%5C2", "%2e%2e", "..%2F..%2Fhealthz", "1%00", "%00",
    "null", "NaN", "abc", "1;2", "1,2", "%E2%80%AE1", "%F0%9F%98%80", "%ff%fe", "%", "%zz",
    "a" * 300,
)
ids = st.one_of(st.sampled_from(("real", "real", "real conversation", "real escalation")),
                st.sampled_from(JUNK_IDS),
                printable.filter(bool).map(lambda s: quote(s, safe="")))

DETAIL_PAGES = ("/admin/escalations/{id}", "/admin/api/escalations/{id}",
                "/admin/conversations/{id}", "/admin/api/conversations/{id}")


def real_id(pages: Pages, template: str, choice: str) -> str:
    """`choice` made concrete: a real id of the page's kind, or one of the other kind."""
    escalation = "escalations" in template
    if choice == "real":
        pool = pages.escalation_ids if escalation else pages.conversation_ids
    elif choice == "real conversation":
        pool = pages.conversation_ids
    elif choice == "real escalation":
        pool = pages.escalation_ids
    else:
        return choice
    return str(pool[len(pool) // 2])


@fuzz_settings(120)
@given(template=st.sampled_from(DETAIL_PAGES), choice=ids, query=list_queries,
       credential=st.sampled_from(("bearer", "cookie without csrf", "none", "bad bearer")))
@example(template="/admin/api/escalations/{id}", choice="9" * 5000, query=[],
         credential="bearer")
def _fuzz_detail_pages(pages: Pages, template: str, choice: str,
                       query: list[tuple[str, str]], credential: str) -> None:
    world = pages.world
    value = real_id(pages, template, choice)
    signed = sign(credential, "")
    api = "/api/" in template
    sent = world.send("GET", template.replace("{id}", value), headers=signed.headers,
                      params=query)
    if credential in NO_SESSION | BAD_TOKEN:
        # A path that matches no route is a 404 (or a 405 where a POST route matches).
        check_admin_answer(world, sent, refused_as(credential, api) | {307, 404, 405})
        return
    # "1/claim" (an encoded slash) reaches the POST-only action route: 405.
    check_admin_answer(world, sent, {200, 307, 404, 405})
    if choice == "real":
        assert sent.status == 200, sent.describe()
        if api:
            assert sent.json()["id"] == int(value), sent.describe()
    if sent.status == 200 and not choice.startswith("real"):
        # Only a plain positive decimal id finds a record.
        assert value.isascii() and value.isdigit() and int(value) > 0, sent.describe()


def test_detail_pages_take_junk_ids(pages: Pages, crashes: ServerLog) -> None:
    """Real ids, ids of the other kind, and junk: non-numeric, negative, past int64, Unicode
    digits, encoded slashes and traversal."""
    _fuzz_detail_pages(pages)
    crashes.assert_no_crashes(explained_crash)


# -- POST bodies ----------------------------------------------------------------------------

NEXT_TARGETS = (
    "/admin/escalations", "/admin/escalations?state=resolved", "/admin/escalations/1",
    "//evil.example", "//evil.example/admin/escalations", "https://evil.example/",
    "http://evil.example/admin/escalations", "/admin/escalations//evil.example",
    "/admin/escalations/../../evil", "/admin/escalations/%2e%2e/%2e%2e/evil",
    "/admin/escalations/..%2f..%2fevil", "/\\evil.example", "\\\\evil.example",
    "/admin/escalations\\..\\..\\evil", "/admin/escalations@evil.example",
    "javascript:alert(1)", "/admin/escalations\r\nLocation: https://evil.example",
    "/admin/escalations\t/\t/evil.example", " //evil.example", "/admin/escalations\x00",
    "/admin/escalations/" + "a" * 300, "/\u2025/evil.example", "/admin/escalations\u3002evil",
    "", "/admin", "/", "/healthz",
)
next_targets = st.one_of(st.sampled_from(NEXT_TARGETS), printable)


@st.composite
def post_bodies(draw: st.DrawFn, field_name: str, values: st.SearchStrategy[str]
                ) -> tuple[list[tuple[str, str]], bytes | None, str | None]:
    """(form fields, or a raw body instead, and the content type to send it with)."""
    shape = draw(st.sampled_from(["form", "form", "form", "many fields", "huge", "non-UTF-8",
                                  "wrong type", "empty", "repeated"]))
    value = draw(values)
    if shape == "form":
        return [(field_name, value)], None, FORM
    if shape == "repeated":
        return [(field_name, value), (field_name, draw(values))], None, FORM
    if shape == "many fields":
        count = draw(st.sampled_from([31, 33, 500]))
        return [(f"f{i}", "x") for i in range(count)] + [(field_name, value)], None, FORM
    if shape == "huge":
        size = draw(st.sampled_from([16 * 1024, 16 * 1024 + 1, 200_000]))
        return [], urlencode({field_name: value}).encode() + b"&pad=" + b"a" * size, FORM
    if shape == "non-UTF-8":
        return [], urlencode({field_name: value}).encode() + b"&x=\xff\xfe\xc0\xaf", FORM
    if shape == "wrong type":
        return [(field_name, value)], None, draw(st.sampled_from(CONTENT_TYPES))
    return [], None, draw(st.sampled_from([FORM, None]))  # no fields at all


def encode_form(fields: list[tuple[str, str]]) -> bytes:
    return urlencode([(k, v.encode("utf-8", "replace")) for k, v in fields]).encode()


def make_body(signed: Signed, fields: list[tuple[str, str]], raw: bytes | None,
              content_type: str | None) -> tuple[bytes, dict[str, Any]]:
    headers = dict(signed.headers)
    if signed.raw_body is not None:  # the credential's own body shape wins
        headers.setdefault("content-type", FORM)
        return signed.raw_body, headers
    if content_type is not None:
        headers["content-type"] = content_type
    if raw is not None:
        return raw + (b"&" + encode_form(signed.fields) if signed.fields else b""), headers
    return encode_form([*signed.fields, *fields]), headers


def csrf_arrives(credential: str, raw: bytes | None, content_type: str | None,
                 fields: list[tuple[str, str]]) -> bool:
    """Whether a "csrf field" credential's token is readable in the body sent."""
    if credential != "cookie, csrf field":
        return True
    if (content_type or "").split(";", 1)[0].strip().lower() != FORM:
        return False
    if raw is not None:
        return False  # huge or not UTF-8: the form cannot be read
    return len(fields) + 1 <= 32


# -- escalation actions ---------------------------------------------------------------------

ACTION_PATHS = ("/admin/escalations/{id}/{action}", "/admin/api/escalations/{id}/{action}")
JUNK_ACTIONS = ("Claim", "CLAIM", "claim ", "claim%00", "resolve_save", "resolve-save-",
                "delete", "reopen", "%2e%2e", "claim%2Frelease", "", "\u0441laim", "a" * 300)
actions = st.one_of(st.sampled_from(ACTIONS), st.sampled_from(ACTIONS),
                    st.sampled_from(JUNK_ACTIONS),
                    printable.filter(bool).map(lambda s: quote(s, safe="")))
action_ids = st.one_of(st.sampled_from(("active", "active", "active", "resolved")),
                       st.sampled_from(JUNK_IDS))


@fuzz_settings(150)
@given(template=st.sampled_from(ACTION_PATHS), choice=action_ids, action=actions,
       credential=st.sampled_from(CREDENTIALS), junk=printable,
       body=post_bodies("next", next_targets))
@example(template=ACTION_PATHS[0], choice="active", action="claim",
         credential="cookie, csrf header", junk="",
         body=([], b"next=%2Fadmin&pad=" + b"a" * 20_000, FORM))
@example(template=ACTION_PATHS[0], choice="active", action="release",
         credential="cookie, csrf field", junk="",
         body=([("next", "/admin/escalations/%2e%2e/%2e%2e/evil")], None, FORM))
@example(template=ACTION_PATHS[0], choice="active", action="claim", credential="none",
         junk="", body=([("next", "//evil.example")], None, FORM))
def _fuzz_actions(pages: Pages, template: str, choice: str, action: str, credential: str,
                  junk: str, body: tuple[list[tuple[str, str]], bytes | None, str | None]
                  ) -> None:
    world = pages.world
    if choice == "active":
        value = str(pages.active())
    elif choice == "resolved":
        value = str(pages.escalation_ids[0])
    else:
        value = choice
    fields, raw, content_type = body
    signed = sign(credential, junk)
    content, headers = make_body(signed, fields, raw, content_type)
    api = "/api/" in template
    path = template.replace("{id}", value).replace("{action}", action)
    before = pages.escalations_state()
    sent = world.send("POST", path, body=content, headers=headers, params=signed.query)
    after = pages.escalations_state()
    authorized = credential in AUTHORIZED and csrf_arrives(credential, raw, content_type,
                                                           fields)
    routed = {404, 405, 307}  # no route for a path with an encoded slash, or an empty action
    if not authorized:
        check_admin_answer(world, sent, refused_as(credential, api) | routed | {413})
        assert before == after, f"an action without authorization changed escalations " \
                                f"{before} -> {after}:\n{sent.describe()}"
        return
    check_admin_answer(world, sent, ({200, 404, 409} if api else {303}) | routed | {413})
    if before != after:
        assert action in ACTIONS and value in map(str, pages.escalation_ids), sent.describe()
        assert sent.status in {200, 303}, (
            f"the action was done, yet the answer says it failed ({sent.status}):\n"
            f"{sent.describe()}")
    if sent.status == 303:
        location = sent.header("location")
        assert location.startswith("/admin/escalations"), sent.describe()
        tone = parse_qs(urlsplit(location).query).get("tone", [""])[-1]
        assert (tone == "ok") == (before != after), sent.describe()


def test_escalation_actions_take_junk(pages: Pages, crashes: ServerLog) -> None:
    """Real and junk ids and actions, every credential, junk bodies and `next` targets: no
    action without a bearer token or the session's CSRF token, redirects stay in /admin."""
    _fuzz_actions(pages)
    crashes.assert_no_crashes(explained_crash)


# -- knowledge sync ---------------------------------------------------------------------------

sources = st.one_of(st.sampled_from((*SOURCES, "", " docs ", "DOCS", "docs\x00",
                                     "docs,escalations", "all", "*", "../docs", "x" * 5000)),
                    printable)


@fuzz_settings(60)
@given(credential=st.sampled_from(CREDENTIALS), junk=printable,
       body=post_bodies("source", sources))
@example(credential="none", junk="", body=([("source", "docs")], None, FORM))
@example(credential="cookie, csrf header", junk="", body=([("source", "docs\x00")], None, FORM))
def _fuzz_sync(pages: Pages, credential: str, junk: str,
               body: tuple[list[tuple[str, str]], bytes | None, str | None]) -> None:
    world = pages.world
    fields, raw, content_type = body
    signed = sign(credential, junk)
    content, headers = make_body(signed, fields, raw, content_type)
    before = pages.sync_runs()
    sent = world.send("POST", "/admin/knowledge/sync", body=content, headers=headers,
                      params=signed.query)
    authorized = credential in AUTHORIZED and csrf_arrives(credential, raw, content_type,
                                                           fields)
    if not authorized:
        check_admin_answer(world, sent, refused_as(credential, api=False) | {413})
        assert pages.sync_runs() == before, f"a sync started without authorization:\n" \
                                            f"{sent.describe()}"
        return
    check_admin_answer(world, sent, {303, 400, 413})
    if sent.status == 303:
        assert urlsplit(sent.header("location")).path == "/admin/knowledge", sent.describe()
    if sent.status == 400:
        assert "Unknown source" in sent.text, sent.describe()


def test_knowledge_sync_takes_junk(pages: Pages, crashes: ServerLog) -> None:
    """Junk `source` fields and bodies, every credential: a sync starts only when authorized."""
    _fuzz_sync(pages)
    crashes.assert_no_crashes(explained_crash)


# -- what this fuzz found (fixed; kept as regression tests) -------------------------------

def test_an_action_whose_form_is_refused_does_nothing(pages: Pages) -> None:
    """The form was read after the action: a form past 16 KiB got a 413 although the
    escalation had been claimed (the admin is told it failed, yet it happened)."""
    number = pages.escalate()
    body = b"next=%2Fadmin%2Fescalations&pad=" + b"a" * 20_000
    sent = pages.world.send("POST", f"/admin/escalations/{number}/claim", body=body,
                            headers={"authorization": f"Bearer {ADMIN_TOKEN}",
                                     "content-type": FORM})
    check_admin_answer(pages.world, sent, {413})
    ticket = pages.ticket(number)
    assert ticket is not None and ticket.state.value == "open", sent.describe()


@pytest.mark.parametrize("target", ["/admin/escalations/%2e%2e/%2e%2e/evil",
                                    "/admin/escalations/..%2f..%2fevil",
                                    "/admin/escalations/1/../../../evil"])
def test_next_cannot_climb_out_of_the_escalation_pages(pages: Pages, target: str) -> None:
    """`next` was accepted by prefix: `/admin/escalations/%2e%2e/%2e%2e/evil` sent the
    browser to `/evil` (a browser resolves encoded dot segments)."""
    number = pages.escalate()
    sent = pages.world.send("POST", f"/admin/escalations/{number}/claim",
                            body=urlencode({"next": target}).encode(),
                            headers={"authorization": f"Bearer {ADMIN_TOKEN}",
                                     "content-type": FORM})
    check_admin_answer(pages.world, sent, {303})
    assert urlsplit(sent.header("location")).path == f"/admin/escalations/{number}"


@pytest.mark.parametrize("target", ["/admin/escalations", "/admin/escalations?state=resolved",
                                    "/admin/escalations/7"])
def test_next_still_returns_to_the_page_the_button_was_on(pages: Pages, target: str) -> None:
    number = pages.escalate()
    sent = pages.world.send("POST", f"/admin/escalations/{number}/resolve",
                            body=urlencode({"next": target}).encode(),
                            headers={"authorization": f"Bearer {ADMIN_TOKEN}",
                                     "content-type": FORM})
    check_admin_answer(pages.world, sent, {303})
    assert sent.header("location").startswith(target + ("&" if "?" in target else "?"))
