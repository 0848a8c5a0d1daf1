"""The bugs the fuzz found, one minimal reproduction each, kept as regression tests. A bug
found later is added here as a strict xfail (`bug(...)`) with a predicate in `known_bugs.py`
that lets the fuzz excuse exactly its requests; the fix removes both."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.conftest import wait_for
from tests.fakes.botframework_server import FakeBotFramework
from tests.fakes.slack_server import FakeSlack
from tests.fuzz.world import ADMIN_TOKEN, ServerLog, World, parse_sse


def bug(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=f"bug: {reason}")


def no_server_error(world: World, method: str, path: str, *, body: bytes = b"",
                    headers: Mapping[str, Any] | None = None,
                    params: list[tuple[str, str]] | None = None) -> int:
    sent = world.send(method, path, body=body, headers=headers, params=params)
    assert sent.status < 500, sent.describe()
    world.check_content(sent)
    return sent.status


# -- web chat and static files ------------------------------------------------------------

def test_chat_deeply_nested_json_is_a_400(open_app: World) -> None:
    assert no_server_error(open_app, "POST", "/api/chat", body=b"[" * 100_000) == 400


def test_chat_integer_past_python_digit_limit_is_a_400(open_app: World) -> None:
    body = b'{"message": ' + b"9" * 5_000 + b"}"
    assert no_server_error(open_app, "POST", "/api/chat", body=body) in {400, 422}


def test_static_name_with_nul_is_a_404(open_app: World) -> None:
    assert no_server_error(open_app, "GET", "/static/chat.css%00.js") == 404


def test_static_name_longer_than_the_filesystem_allows_is_a_404(open_app: World) -> None:
    assert no_server_error(open_app, "GET", "/static/" + "a" * 300) == 404


def test_a_retried_first_chat_message_is_answered_once(open_app: World) -> None:
    body = json.dumps({"message": "first question, sent twice",
                       "message_id": uuid.uuid4().hex}).encode()
    first = parse_sse(open_app.send("POST", "/api/chat", body=body).text)
    again = parse_sse(open_app.send("POST", "/api/chat", body=body).text)
    assert first[-1][1] == {"outcome": "answered"}
    assert again[-1][1] == {"outcome": "duplicate"}


def test_usage_period_int_cannot_read_is_a_400(open_app: World) -> None:
    """`?days=` passed `isdigit()` and went to `int()`, which refuses "²" and 5,000 digits."""
    bearer = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    for days in ("\u00b2", "9" * 5_000, " 30 "):
        expected = 200 if days == " 30 " else 400
        assert no_server_error(open_app, "GET", "/admin/usage", headers=bearer,
                               params=[("days", days)]) == expected, days


# -- Teams ----------------------------------------------------------------------------------

def test_teams_deeply_nested_json_is_a_400_even_unauthenticated(secure_app: World) -> None:
    assert no_server_error(secure_app, "POST", "/api/messages", body=b"[" * 100_000,
                           headers={"content-type": "application/json"}) == 400


def test_teams_conversation_type_of_the_wrong_type_is_still_answered(
        open_app: World, fake_teams: FakeBotFramework, crashes: ServerLog) -> None:
    activity = fake_teams.message("hello with an odd conversation type")
    activity["conversation"]["conversationType"] = {"personal": True}
    assert no_server_error(open_app, "POST", "/api/messages",
                           body=json.dumps(activity).encode(),
                           headers={"content-type": "application/json"}) == 200
    time.sleep(0.5)
    crashes.assert_no_crashes()  # was: teams.turn_failed, TypeError: unhashable type: 'dict'
    wait_for(lambda: fake_teams.messages(activity["conversation"]["id"]))


# -- Slack ----------------------------------------------------------------------------------

ENVELOPE = {"type": "event_callback", "team_id": "T0TEST", "api_app_id": "A0TEST",
            "event_id": "Ev0KNOWN", "event": {"type": "reaction_added", "user": "U0ALICE"}}


def test_slack_events_stops_reading_an_oversized_body(open_app: World) -> None:
    answer = open_app.partial_upload("/slack/events", declared=64 * 1024 * 1024,
                                     sent=2 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]  # it used to read on, not answering


def test_slack_non_integer_timestamp_is_a_401(open_app: World) -> None:
    body = json.dumps(ENVELOPE).encode()
    headers = open_app.slack_headers(body)
    headers["X-Slack-Request-Timestamp"] = "abc"  # or "", "1.5", "9" * 5000
    assert no_server_error(open_app, "POST", "/slack/events", body=body, headers=headers) == 401


def test_slack_non_ascii_signature_is_a_401(open_app: World) -> None:
    body = json.dumps(ENVELOPE).encode()
    headers: dict[str, object] = {**open_app.slack_headers(body),
                                  "X-Slack-Signature": b"v0=\xe9"}
    assert no_server_error(open_app, "POST", "/slack/events", body=body, headers=headers) == 401


def test_slack_signed_deeply_nested_json_is_a_400(open_app: World) -> None:
    body = b'{"a":' * 5_000 + b"1" + b"}" * 5_000
    assert no_server_error(open_app, "POST", "/slack/events", body=body,
                           headers=open_app.slack_headers(body)) == 400


@pytest.mark.parametrize("envelope", [
    {**ENVELOPE, "authorizations": False},                   # extract_is_enterprise_install
    {**ENVELOPE, "event": {"type": ["app_mention"]}},        # the event listeners' matchers
    {**ENVELOPE, "team": 7},                                 # extract_team_id
], ids=["authorizations", "event type", "team"])
def test_slack_signed_payload_with_wrong_typed_fields_is_not_a_500(
        open_app: World, envelope: dict[str, object]) -> None:
    body = json.dumps(envelope).encode()
    assert no_server_error(open_app, "POST", "/slack/events", body=body,
                           headers=open_app.slack_headers(body)) in {200, 400, 404}


@pytest.mark.parametrize("team_id", [["T0SANITY"], {"id": 1}, "T0\ud800"],
                         ids=["list", "object", "lone surrogate"])
def test_slack_oauth_signed_team_id_of_the_wrong_type_is_not_a_500(secure_app: World,
                                                                   team_id: object) -> None:
    body = json.dumps({**ENVELOPE, "team_id": team_id}).encode()
    assert no_server_error(secure_app, "POST", "/slack/events", body=body,
                           headers=secure_app.slack_headers(body)) in {200, 400, 401, 404}


def test_slack_command_from_an_uninstalled_workspace_is_not_a_500(
        secure_app: World, fake_slack: FakeSlack) -> None:
    body = urlencode({"command": "/ask", "text": "hello", "team_id": "T0NOTINSTALLED",
                      "channel_id": "C0GENERAL", "user_id": "U0ALICE", "trigger_id": "1.2.x",
                      "response_url": "http://127.0.0.1:9/unreachable",
                      "api_app_id": "A0TEST", "token": fake_slack.verification_token}).encode()
    headers = secure_app.slack_headers(body, content_type="application/x-www-form-urlencoded")
    assert no_server_error(secure_app, "POST", "/slack/events", body=body,
                           headers=headers) in {200, 401, 404}


def test_slack_ask_refused_through_a_failing_response_url_is_not_lost_silently(
        open_app: World, fake_slack: FakeSlack, crashes: ServerLog) -> None:
    body = urlencode({"command": "/ask", "text": "hello", "team_id": "T0OTHER",
                      "channel_id": "C0GENERAL", "user_id": "U0ALICE", "trigger_id": "1.2.x",
                      "response_url": "", "api_app_id": "A0TEST",
                      "token": fake_slack.verification_token}).encode()
    headers = open_app.slack_headers(body, content_type="application/x-www-form-urlencoded")
    assert no_server_error(open_app, "POST", "/slack/events", body=body, headers=headers) == 200
    time.sleep(0.5)
    # it was: asyncio "Task exception was never retrieved" (InvalidUrlClientError) from _ask
    crashes.assert_no_crashes()


@pytest.mark.parametrize("action_id", ["bothub_escalation_claim", "bothub_handoff"])
def test_slack_button_click_with_a_wrong_typed_channel_is_not_lost_silently(
        open_app: World, fake_slack: FakeSlack, crashes: ServerLog, action_id: str) -> None:
    payload = fake_slack.block_action(action_id, "1")
    payload["channel"] = ["C0GENERAL"]
    body = urlencode({"payload": json.dumps(payload)}).encode()
    headers = open_app.slack_headers(body, content_type="application/x-www-form-urlencoded")
    assert no_server_error(open_app, "POST", "/slack/events", body=body, headers=headers) == 200
    time.sleep(0.5)
    # it was: asyncio "Task exception was never retrieved", AttributeError: 'list' ... 'get'
    crashes.assert_no_crashes()


def test_slack_oauth_non_ascii_state_is_refused_not_a_500(secure_app: World,
                                                          fake_slack: FakeSlack) -> None:
    state = "\u00e9.1.x"  # or "a.1.\u00e9": the signature part compared by compare_digest
    status = no_server_error(
        secure_app, "GET", "/slack/oauth_redirect", params=[("state", state), ("code", "c")],
        headers={"cookie": f"slack-app-oauth-state={state}".encode("latin-1")})
    assert 400 <= status < 500
    assert fake_slack.calls_to("oauth.v2.access") == []


@pytest.mark.parametrize("path", ["/slack/install", "/slack/oauth_redirect"])
def test_slack_oauth_routes_ignore_a_body_they_do_not_need(secure_app: World, path: str) -> None:
    status = no_server_error(secure_app, "GET", path, body=b"x",
                             headers={"content-type": "application/json"})
    assert status in {200, 302, 400, 401}


# -- admin ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/admin", "/admin/api/health", "/admin/login"])
def test_admin_cookie_with_non_ascii_signature_is_refused_not_a_500(open_app: World,
                                                                    path: str) -> None:
    if open_app.admin_throttle is None:
        pytest.skip("this build has no /admin area")
    status = no_server_error(open_app, "GET", path,
                             headers={"cookie": b"bothub_admin=v1.1.x.\xe9"})
    assert status in {200, 303, 401}
