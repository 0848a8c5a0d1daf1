"""After a fuzz run: the app still answers ordinary requests, correctly and exactly once."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from tests.conftest import wait_for
from tests.fakes.botframework_server import FakeBotFramework
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack
from tests.fuzz.world import World, parse_sse

SETTLE_SECONDS = 0.4  # how long a duplicate answer would take to show up


def _asked(fake_openai: FakeOpenAI, text: str) -> int:
    """How many chat requests to the model ended with `text` as the user's question."""
    count = 0
    for request in fake_openai.chat_requests():
        last = (request.get("messages") or [{}])[-1]
        if last.get("role") == "user" and last.get("content") == text:
            count += 1
    return count


def web_chat_answers(world: World, fake_openai: FakeOpenAI) -> None:
    question = f"sanity check {uuid.uuid4().hex[:8]}: how do I reset my password?"
    first = world.send("POST", "/api/chat", body=json.dumps({"message": question}).encode(),
                       headers={"content-type": "application/json"})
    world.check(first, statuses={200}, tolerate=False)
    events = parse_sse(first.text)
    names = [name for name, _ in events]
    assert names[0] == "conversation" and names[-3:] == ["message", "sources", "done"], names
    assert events[-1][1] == {"outcome": "answered"}, events
    assert events[-3][1]["text"] == f"You said: {question}", events
    conversation_id = events[0][1]["conversation_id"]

    retried = {"message": "and again?", "conversation_id": conversation_id,
               "message_id": uuid.uuid4().hex}
    body = json.dumps(retried).encode()
    answered = parse_sse(world.send("POST", "/api/chat", body=body).text)
    again = parse_sse(world.send("POST", "/api/chat", body=body).text)
    assert answered[-1][1] == {"outcome": "answered"}, answered
    assert [name for name, _ in again] == ["conversation", "done"], again
    assert again[-1][1] == {"outcome": "duplicate"}
    assert _asked(fake_openai, question) == 1


def _slack_answers(fake: FakeSlack, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    return [m for m in fake.messages(channel, thread_ts)
            if any(b.get("type") == "actions" for b in m.get("blocks") or [])]


def install(world: World, fake: FakeSlack, team: str) -> None:
    """The OAuth flow as a browser runs it; the fake issues a token for `team`."""
    page = world.send("GET", "/slack/install")
    world.check(page, statuses={200}, tolerate=False)
    state = re.search(r"state=([^&\"']+)", page.text)
    assert state is not None, page.text
    cookie = page.header("set-cookie").split(";", 1)[0]
    fake.oauth_codes["code-" + team] = team
    done = world.send("GET", "/slack/oauth_redirect", headers={"Cookie": cookie},
                      params=[("code", "code-" + team), ("state", state.group(1))])
    world.check(done, statuses={200}, tolerate=False)


def slack_answers_once(world: World, fake: FakeSlack, fake_openai: FakeOpenAI) -> None:
    team = fake.team_id
    if world.slack_oauth:
        team = "T0SANITY"
        install(world, fake, team)
    question = f"sanity {uuid.uuid4().hex[:8]}: is there an API rate limit?"
    event = fake.message_event(question, mention=True)
    event["team"] = team
    envelope = fake.event_envelope(event, team_id=team)
    body = json.dumps(envelope).encode()
    world.check(world.send("POST", "/slack/events", body=body, headers=world.slack_headers(body)),
                statuses={200}, tolerate=False)
    # A retry of the same delivery, and the `message` twin Slack sends with its own event id.
    world.check(world.send("POST", "/slack/events", body=body, headers=world.slack_headers(
        body, extra={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})),
        statuses={200}, tolerate=False)
    twin = fake.event_envelope({**event, "type": "message", "channel_type": "channel"},
                               team_id=team)
    twin_body = json.dumps(twin).encode()
    world.check(world.send("POST", "/slack/events", body=twin_body,
                           headers=world.slack_headers(twin_body)), statuses={200}, tolerate=False)
    [answer] = wait_for(lambda: _slack_answers(fake, event["channel"], event["ts"]))
    assert answer["text"] == f"You said: {question}"
    time.sleep(SETTLE_SECONDS)
    assert len(_slack_answers(fake, event["channel"], event["ts"])) == 1
    assert _asked(fake_openai, question) == 1


def _teams_answers(fake: FakeBotFramework, conversation: str) -> list[dict[str, Any]]:
    return [m for m in fake.messages(conversation)
            if any(a.get("contentType") == "application/vnd.microsoft.card.adaptive"
                   for a in m.get("attachments") or [])]


def teams_answers_once(world: World, fake: FakeBotFramework, fake_openai: FakeOpenAI) -> None:
    question = f"sanity {uuid.uuid4().hex[:8]}: where are my invoices?"
    activity = fake.message(question, user_id=f"29:sanity-{uuid.uuid4().hex[:8]}")
    body = json.dumps(activity).encode()
    headers = fake.auth_headers(activity) if world.teams_auth else {
        "Content-Type": "application/json"}
    for _ in range(2):  # Bot Framework redelivers with the same activity id
        world.check(world.send("POST", "/api/messages", body=body, headers=headers),
                    statuses={200}, tolerate=False)
    conversation = activity["conversation"]["id"]
    [answer] = wait_for(lambda: _teams_answers(fake, conversation))
    assert answer["text"] == f"You said: {question}"
    time.sleep(SETTLE_SECONDS)
    assert len(_teams_answers(fake, conversation)) == 1
    assert _asked(fake_openai, question) == 1


def still_serves(world: World, *, fake_openai: FakeOpenAI, fake_slack: FakeSlack | None = None,
                 fake_teams: FakeBotFramework | None = None) -> None:
    """Health, the web chat, and whichever platforms the caller hands fakes for."""
    health = world.send("GET", "/healthz")
    world.check(health, statuses={200}, tolerate=False)
    assert health.json()["status"] == "ok", health.text
    web_chat_answers(world, fake_openai)
    if fake_slack is not None:
        slack_answers_once(world, fake_slack, fake_openai)
    if fake_teams is not None:
        teams_answers_once(world, fake_teams, fake_openai)
