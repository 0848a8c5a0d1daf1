"""`POST /api/messages`: bodies that are no activities, hostile activities (wrong types, no
conversation, serviceUrl tricks) with authentication off and with valid tokens, bad tokens."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from adapters.teams import escalations, render
from tests.fakes.botframework_server import FakeBotFramework
from tests.fakes.openai_server import FakeOpenAI
from tests.fuzz.known_bugs import explained_crash
from tests.fuzz.sanity import SETTLE_SECONDS, still_serves
from tests.fuzz.strategies import (
    CONTENT_TYPES,
    fuzz_settings,
    hostile_text,
    json_values,
    junk_headers,
    random_bodies,
)
from tests.fuzz.world import Sent, ServerLog, World

MESSAGES = "/api/messages"
# 400 not an activity, 401 not authenticated, 403 serviceUrl refused, 413 too large.
STATUSES = {200, 400, 401, 403, 413}
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"

SERVICE_URL_TRICKS = (
    "https://attacker.example/", "http://169.254.169.254/latest/meta-data/", "file:///etc/passwd",
    "http://127.0.0.1@attacker.example/", "http://attacker.example#@127.0.0.1/",
    "http://localhost.attacker.example/", "http://0x7f000001/", "http://2130706433/",
    "http://127.1/", "HTTP://LOCALHOST:9/", "http://[::1]:9/", "http://localhost:9/",
    "javascript:alert(1)", "//127.0.0.1:9/", "", " ", "https://smba.trafficmanager.net/emea/",
    "https://smba.trafficmanager.net.attacker.example/", "https://evilsmba.trafficmanager.net/",
    "https://smba.trafficmanager.net@attacker.example/", "https://x.botframework.com.evil/",
    "http://smba.trafficmanager.net/amer/", "gopher://127.0.0.1:9/_x", "http://127.0.0.1:9\\@a/",
)
ACTIVITY_IDS = ("1800000000001", "1800000000002", "f:redelivered")
CONVERSATION_IDS = ("a:personal-fuzz", "19:fuzz-group@thread.v2",
                    "19:general@thread.tacv2;messageid=1800000000001")
VERBS = (render.FEEDBACK_VERB, render.HANDOFF_VERB, *escalations.VERBS,
         escalations.VERB_PREFIX + "nope", "", "feedback")
TOP_LEVEL = ("type", "id", "text", "serviceUrl", "conversation", "from", "recipient", "entities",
             "attachments", "channelData", "value", "name", "replyToId", "channelId",
             "timestamp", "textFormat", "membersAdded", "action", "locale")


def maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(values, values, values, json_values)


@st.composite
def activities(draw: st.DrawFn, fake: FakeBotFramework) -> dict[str, Any]:
    """An activity as Teams sends it, then tampered with: a field or two replaced by anything,
    some removed, the serviceUrl pointed elsewhere."""
    scope = draw(st.sampled_from(["personal", "groupChat", "channel"]))
    context: dict[str, Any] = {"scope": scope,
                               "user_id": draw(st.sampled_from(["29:user-1", "29:fuzz", ""]))}
    kind = draw(st.sampled_from(["message", "message", "message", "invoke", "update",
                                 "install", "reaction", "typing"]))
    if kind == "message":
        activity = fake.message(draw(hostile_text), mention_bot=draw(st.booleans()),
                                activity_id=draw(st.sampled_from(ACTIVITY_IDS)), **context)
    elif kind == "invoke":
        data = draw(st.fixed_dictionaries({}, optional={
            "ref": maybe(st.sampled_from(["1", "0", "abc", "9" * 30])),
            "vote": maybe(st.sampled_from(["up", "down"])),
            "id": maybe(st.sampled_from(["1", "12", "-1", "9" * 19, "9" * 18, "x"])),
        }))
        activity = fake.invoke_action(draw(st.sampled_from(VERBS)), data, **context)
        if draw(st.integers(0, 4)) == 0:
            activity["name"] = draw(st.sampled_from(["composeExtension/query", "", "task/fetch",
                                                     "adaptiveCard/action "]))
    elif kind == "update":
        activity = fake.conversation_update(**context)
    elif kind == "install":
        activity = fake.installation_update(draw(st.sampled_from(["add", "remove"])), **context)
    elif kind == "reaction":
        activity = fake.message_reaction(**context)
    else:
        activity = fake.typing(**context)
    if draw(st.integers(0, 2)) == 0:
        activity["conversation"]["id"] = draw(st.sampled_from(CONVERSATION_IDS))
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from(TOP_LEVEL))
        activity[field] = draw(st.one_of(json_values, hostile_text))
    if draw(st.integers(0, 3)) == 0:
        conversation = activity.get("conversation")
        if isinstance(conversation, dict):
            conversation[draw(st.sampled_from(["id", "conversationType", "tenantId",
                                               "isGroup"]))] = draw(json_values)
    if draw(st.integers(0, 4)) == 0:
        activity["serviceUrl"] = draw(st.sampled_from(SERVICE_URL_TRICKS))
    for field in draw(st.sets(st.sampled_from(TOP_LEVEL), max_size=2)):
        activity.pop(field, None)
    return activity


def _signed(fake: FakeBotFramework, activity: Any) -> dict[str, str]:
    service_url = activity.get("serviceUrl") if isinstance(activity, dict) else None
    return fake.auth_headers({"serviceUrl": service_url if isinstance(service_url, str)
                              else fake.service_url})


def _answers(fake: FakeBotFramework) -> list[dict[str, Any]]:
    return [m for m in fake.messages()
            if any(a.get("contentType") == ADAPTIVE_CARD for a in m.get("attachments") or [])]


def check_teams(world: World, sent: Sent) -> None:
    if world.check(sent, statuses=STATUSES) and sent.status != 200:
        assert isinstance(sent.json().get("error"), str), sent.describe()


def test_bodies_that_are_not_activities(any_app: World, crashes: ServerLog,
                                        fake_teams: FakeBotFramework,
                                        fake_openai: FakeOpenAI) -> None:
    @fuzz_settings(120)
    @given(body=random_bodies, content_type=st.sampled_from(CONTENT_TYPES),
           headers=junk_headers, sign=st.booleans())
    def fuzz(body: bytes, content_type: str, headers: dict[str, Any], sign: bool) -> None:
        merged: dict[str, Any] = {"content-type": content_type, **headers}
        if sign and any_app.teams_auth:
            merged.update(_signed(fake_teams, {}))
        check_teams(any_app, any_app.send("POST", MESSAGES, body=body, headers=merged))

    fuzz()
    still_serves(any_app, fake_openai=fake_openai, fake_teams=fake_teams)
    crashes.assert_no_crashes(explained_crash)


def _fuzz_activities(world: World, fake: FakeBotFramework, *, signed: bool) -> None:
    sent_messages: set[tuple[str, str]] = set()

    @fuzz_settings(150)
    @given(activity=activities(fake))
    def fuzz(activity: dict[str, Any]) -> None:
        headers = _signed(fake, activity) if signed else {"content-type": "application/json"}
        sent = world.send("POST", MESSAGES, body=json.dumps(activity).encode(), headers=headers)
        check_teams(world, sent)
        if not signed and world.teams_auth:
            assert sent.status in {400, 401, 413}, f"an unauthenticated activity got in:\n" \
                                              f"{sent.describe()}"
        conversation = activity.get("conversation")
        if sent.status == 200 and isinstance(conversation, dict):
            sent_messages.add((str(conversation.get("id")), str(activity.get("id"))))

    fuzz()
    time.sleep(SETTLE_SECONDS * 3)
    answers = _answers(fake)
    assert len(answers) <= len(sent_messages), (
        f"{len(answers)} answers for {len(sent_messages)} distinct activities: "
        f"{[(a['conversation']['id'], a.get('text', '')[:60]) for a in answers]}")


def test_hostile_activities_without_auth(any_app: World, crashes: ServerLog,
                                         fake_teams: FakeBotFramework,
                                         fake_openai: FakeOpenAI) -> None:
    """Authentication off (the open app) they are processed; on (the secure app) refused."""
    _fuzz_activities(any_app, fake_teams, signed=False)
    still_serves(any_app, fake_openai=fake_openai, fake_teams=fake_teams)
    crashes.assert_no_crashes(explained_crash)


def test_hostile_activities_with_valid_tokens(secure_app: World, trusts_fake_issuer: None,
                                              crashes: ServerLog, fake_teams: FakeBotFramework,
                                              fake_openai: FakeOpenAI) -> None:
    _fuzz_activities(secure_app, fake_teams, signed=True)
    still_serves(secure_app, fake_openai=fake_openai, fake_teams=fake_teams)
    crashes.assert_no_crashes(explained_crash)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@st.composite
def bad_authorizations(draw: st.DrawFn, fake: FakeBotFramework, service_url: str) -> Any:
    token: dict[str, Any] = {"app_id": fake.app_id, "service_url": service_url}
    bad_token: dict[str, Any] = draw(st.sampled_from([
        {"signed_with": "forged"}, {"signed_with": "none"}, {"expires_in": -3600},
        {"not_before_offset": 3600}, {"audience": "someone-elses-app"},
        {"issuer": "https://sts.example.com/"}, {"service_url": "https://attacker.example/"},
        {"kid": "unknown-key"}, {"kid": ""}, {"extra_claims": {"ver": "1.0", "appid": "x"}},
        {"extra_claims": {"ver": "2.0", "azp": "x", "aud": ["a", "b"]}},
        {"extra_claims": {"aud": None}},
        {"extra_claims": {"serviceurl": {"a": 1}}}, {"extra_claims": {"exp": "tomorrow"}},
    ]))
    real_shape = "Bearer " + fake.issuer.channel_token(**{**token, **bad_token})
    header, _, rest = real_shape.partition(".")
    return draw(st.one_of(
        st.just(real_shape),
        st.sampled_from(["", "Bearer", "Bearer ", "bearer x", "Basic dXNlcjpwYXNz", "Bearer a.b.c",
                         "Bearer ..", "Bearer " + "A" * 10_000, "Bearer \u00e9.\u00e9.\u00e9",
                         "Negotiate abc", header + "." + rest[::-1]]),
        st.builds(lambda parts: "Bearer " + ".".join(_b64(p) for p in parts),
                  st.lists(st.binary(max_size=64), min_size=1, max_size=4)),
        st.builds(lambda claims: "Bearer " + _b64(b'{"alg":"RS256","kid":"fake-signing-key"}')
                  + "." + _b64(json.dumps(claims).encode()) + ".sig", json_values),
        hostile_text,
    ))


def test_bad_tokens(secure_app: World, trusts_fake_issuer: None, crashes: ServerLog,
                    fake_teams: FakeBotFramework, fake_openai: FakeOpenAI) -> None:
    activity = fake_teams.message("let me in")

    @fuzz_settings(80)
    @given(authorization=bad_authorizations(fake_teams, activity["serviceUrl"]))
    def fuzz(authorization: str) -> None:
        sent = secure_app.send("POST", MESSAGES, body=json.dumps(activity).encode(),
                               headers={"content-type": "application/json",
                                        "authorization": authorization})
        # (400: a header too large for uvicorn to read at all.)
        if secure_app.check(sent, statuses={400, 401}) and sent.status == 401:
            assert sent.json() == {"error": "unauthorized"}, sent.describe()

    fuzz()
    time.sleep(SETTLE_SECONDS)
    assert not fake_openai.chat_requests() and not fake_teams.calls()
    still_serves(secure_app, fake_openai=fake_openai, fake_teams=fake_teams)
    crashes.assert_no_crashes(explained_crash)
