"""Every route of both apps, enumerated from `app.routes`: each has a fuzz made for it, and a
generic fuzz reaches each (so a route added later is fuzzed before anyone writes a strategy)."""

from __future__ import annotations

import importlib
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes.botframework_server import FakeBotFramework
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack
from tests.fuzz.known_bugs import explained_crash
from tests.fuzz.routes import (
    ALLOWED_WITHOUT_DEDICATED,
    DEDICATED,
    Endpoint,
    endpoints,
    fill,
    parameters,
)
from tests.fuzz.sanity import still_serves
from tests.fuzz.strategies import (
    CONTENT_TYPES,
    METHODS,
    TRAVERSALS,
    fuzz_settings,
    junk_headers,
    printable,
    query_junk,
    random_bodies,
)
from tests.fuzz.world import ADMIN_TOKEN, ServerLog, World

GENERIC_EXAMPLES_PER_ROUTE = 60


def test_every_route_has_a_dedicated_fuzz(open_app: World, secure_app: World) -> None:
    served = {(e.method, e.path): e for world in (open_app, secure_app)
              for e in endpoints(world.app)}
    unknown_kinds = [e for e in served.values() if e.kind not in {"route", "mount"}
                     and (e.method, e.path) not in ALLOWED_WITHOUT_DEDICATED]
    assert not unknown_kinds, f"routes of a kind the fuzz cannot drive: {unknown_kinds}"
    missing = sorted(served.keys() - DEDICATED.keys() - ALLOWED_WITHOUT_DEDICATED.keys())
    assert not missing, (
        f"routes without a fuzz of their own: {missing}. Add strategies for them under "
        "tests/fuzz/ and list the tests in tests/fuzz/routes.py DEDICATED (or allow-list the "
        "route in ALLOWED_WITHOUT_DEDICATED with the reason).")
    stale = sorted((DEDICATED.keys() | ALLOWED_WITHOUT_DEDICATED.keys()) - served.keys())
    assert not stale, f"listed routes that neither app serves any more: {stale}"
    for tests in DEDICATED.values():
        for name in tests:
            module, function = name.split("::")
            assert callable(getattr(importlib.import_module(f"tests.fuzz.{module}"), function,
                                    None)), f"{name} is listed in DEDICATED but does not exist"


def _segment(converter: str) -> st.SearchStrategy[str]:
    """A value for a path parameter, already percent-encoded for the URL."""
    text = st.one_of(printable.filter(bool).map(lambda s: quote(s, safe="")),
                     st.sampled_from(TRAVERSALS))
    if converter == "path":
        return st.lists(text, min_size=1, max_size=4).map("/".join)
    if converter in {"int", "float"}:
        return st.one_of(st.integers().map(str), st.sampled_from(["-1", "1e999", "9" * 5000,
                                                                   "nan", "0x10"]), text)
    return text


AUTH_STYLES = ("none", "bearer", "wrong bearer", "admin header", "cookie", "basic")


def _with_auth(headers: dict[str, object], style: str) -> dict[str, object]:
    """The admin token where an /admin area might look for it (and near misses)."""
    if style == "bearer":
        headers["authorization"] = f"Bearer {ADMIN_TOKEN}"
    elif style == "wrong bearer":
        headers["authorization"] = f"Bearer {ADMIN_TOKEN[:-1]}"
    elif style == "admin header":
        headers["x-admin-token"] = ADMIN_TOKEN
    elif style == "cookie":
        headers["cookie"] = f"admin_token={ADMIN_TOKEN}; session=x"
    elif style == "basic":
        headers["authorization"] = "Basic YWRtaW46YWRtaW4="
    return headers


def fuzz_endpoint(world: World, endpoint: Endpoint, examples: int) -> None:
    params = parameters(endpoint.path)

    @fuzz_settings(examples)
    @given(method=st.one_of(st.just(endpoint.method), st.sampled_from(METHODS)),
           values=st.fixed_dictionaries({name: _segment(conv) for name, conv in params}),
           query=query_junk, headers=junk_headers, auth=st.sampled_from(AUTH_STYLES),
           content_type=st.sampled_from(CONTENT_TYPES), body=random_bodies)
    def fuzz(method: str, values: dict[str, str], query: list[tuple[str, str]],
             headers: dict[str, object], auth: str, content_type: str, body: bytes) -> None:
        path = fill(endpoint.path, values)
        merged = _with_auth({"content-type": content_type, **headers}, auth)
        sent = world.send(method, path, body=body, headers=merged, params=query)
        world.check(sent)

    fuzz()


@pytest.mark.parametrize("world_name", ["open", "secure"])
def test_generic_fuzz_reaches_every_route(
        world_name: str, request: pytest.FixtureRequest, crashes: ServerLog,
        fake_openai: FakeOpenAI, fake_slack: FakeSlack, fake_teams: FakeBotFramework) -> None:
    """Whatever `app.routes` holds when the test runs, with any method, junk path parameters,
    query strings, headers (the admin token among them) and bodies."""
    world: World = request.getfixturevalue(f"{world_name}_app")
    if world.teams_auth:
        request.getfixturevalue("trusts_fake_issuer")
    for endpoint in endpoints(world.app):
        fuzz_endpoint(world, endpoint, GENERIC_EXAMPLES_PER_ROUTE)
    still_serves(world, fake_openai=fake_openai, fake_slack=fake_slack, fake_teams=fake_teams)
    crashes.assert_no_crashes(explained_crash)
