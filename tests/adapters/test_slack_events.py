"""Slack end to end: signed Events API requests in, Web API calls out, real slack-bolt between."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlencode

import httpx
import pytest
import structlog
import structlog.testing

from adapters.base import InFlight
from bot.model import ConversationKey
from tests.adapters.slack_world import (
    answers,
    send,
    slack_app,
    slack_app_native,
    slack_settings,
    wait_for,
)
from tests.adapters.worker_crash import kill_the_worker, take_over
from tests.conftest import LiveServer, make_settings, running_server
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.fakes.slack_server import FakeSlack

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201c2d2b6a80000000049454e44ae426082")


@pytest.fixture
def server(tmp_path: Path, fake_openai: FakeOpenAI,
           fake_slack: FakeSlack) -> Iterator[LiveServer]:
    with running_server(slack_settings(tmp_path, fake_openai, fake_slack), slack_app) as live:
        yield live


def test_a_mention_is_answered_in_its_thread_streaming_then_final(
        server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="Open **Settings** and then *Security*, step by step.",
                                    chunk_delay=0.03))
    event = fake_slack.message_event("how do I reset my password?", mention=True)
    started = time.monotonic()
    response = send(server, fake_slack, fake_slack.event_envelope(event))
    assert response.status_code == 200 and time.monotonic() - started < 3

    [answer] = wait_for(lambda: answers(fake_slack, "C0GENERAL", event["ts"]))
    assert answer["thread_ts"] == event["ts"]
    assert answer["text"] == "Open *Settings* and then _Security_, step by step."
    posts = fake_slack.calls_to("chat.postMessage")
    assert len(posts) == 1 and posts[0].args["thread_ts"] == event["ts"]
    assert posts[0].args["text"] == "_Looking into it…_"
    updates = fake_slack.calls_to("chat.update")
    assert len(updates) >= 2  # it grew in place before the final version
    assert any(u.args["text"] != answer["text"] for u in updates[:-1])
    prompt = fake_openai.chat_requests()[-1]["messages"]
    assert prompt[-1] == {"role": "user", "content": "how do I reset my password?"}
    assert "answering alice on slack, in #general" in prompt[0]["content"]


@pytest.mark.parametrize("tamper", ["signature", "stale", "missing"])
def test_unsigned_or_stale_requests_get_401_and_no_work(
        server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI, tamper: str) -> None:
    payload = fake_slack.event_envelope(fake_slack.message_event("hello", mention=True))
    body, headers = fake_slack.signed_request(payload)
    if tamper == "signature":
        headers = fake_slack.signed_headers(body, secret="not-the-secret")
    elif tamper == "stale":
        headers = fake_slack.signed_headers(body, timestamp=int(time.time()) - 600)
    else:
        headers = {"Content-Type": "application/json"}
    response = httpx.post(f"{server.url}/slack/events", content=body, headers=headers)
    assert response.status_code == 401
    time.sleep(0.3)
    assert fake_slack.calls_to("chat.postMessage") == [] and fake_openai.chat_requests() == []


def test_retries_and_redeliveries_are_answered_once_even_across_a_restart(
        tmp_path: Path, fake_openai: FakeOpenAI, fake_slack: FakeSlack) -> None:
    settings = slack_settings(tmp_path, fake_openai, fake_slack)
    event = fake_slack.message_event("is there an API rate limit?", mention=True)
    envelope = fake_slack.event_envelope(event)
    with running_server(settings, slack_app) as live:
        assert send(live, fake_slack, envelope).status_code == 200
        assert send(live, fake_slack, envelope, retry_num=1).status_code == 200
        # Slack also delivers the `message` twin of the mention, with its own event id.
        twin = {**event, "type": "message", "channel_type": "channel"}
        assert send(live, fake_slack, fake_slack.event_envelope(twin)).status_code == 200
        wait_for(lambda: answers(fake_slack, "C0GENERAL", event["ts"]))
        time.sleep(0.3)
    with running_server(settings, slack_app) as restarted:
        assert send(restarted, fake_slack, envelope, retry_num=2).status_code == 200
        time.sleep(0.5)
    assert len(answers(fake_slack, "C0GENERAL", event["ts"])) == 1
    assert len(fake_openai.chat_requests()) == 1


def test_dms_and_follow_ups_in_a_known_thread_are_answered_without_a_mention(
        server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    dm = fake_slack.message_event("hi there", channel="D0ALICE", channel_type="im")
    send(server, fake_slack, fake_slack.event_envelope(dm))
    wait_for(lambda: answers(fake_slack, "D0ALICE", dm["ts"]))

    first = fake_slack.message_event("what plans exist?", mention=True)
    send(server, fake_slack, fake_slack.event_envelope(first))
    wait_for(lambda: answers(fake_slack, "C0GENERAL", first["ts"]))
    follow_up = fake_slack.message_event("and which is cheapest?", thread_ts=first["ts"])
    send(server, fake_slack, fake_slack.event_envelope(follow_up))
    wait_for(lambda: len(answers(fake_slack, "C0GENERAL", first["ts"])) == 2)
    contents = [m["content"] for m in fake_openai.chat_requests()[-1]["messages"]]
    assert "what plans exist?" in contents  # the thread's memory

    stranger = fake_slack.message_event("unrelated chatter", thread_ts="1690000000.000001")
    plain = fake_slack.message_event("just talking in the channel")
    for event in (stranger, plain):
        assert send(server, fake_slack, fake_slack.event_envelope(event)).status_code == 200
    time.sleep(0.4)
    assert len(fake_openai.chat_requests()) == 3


@pytest.mark.parametrize("kind", ["own", "other_bot", "edit", "delete"])
def test_bots_edits_and_deletions_are_ignored(server: LiveServer, fake_slack: FakeSlack,
                                              fake_openai: FakeOpenAI, kind: str) -> None:
    if kind == "own":
        event = fake_slack.message_event("I am the bot", user="U0BOT", bot_id=fake_slack.bot_id,
                                         channel="D0ALICE", channel_type="im")
    elif kind == "other_bot":
        event = fake_slack.message_event("beep", bot_id="B0OTHER", channel="D0ALICE",
                                         channel_type="im")
    else:
        event = fake_slack.message_event("x", channel="D0ALICE", channel_type="im",
                                         subtype="message_changed" if kind == "edit"
                                         else "message_deleted")
    assert send(server, fake_slack, fake_slack.event_envelope(event)).status_code == 200
    time.sleep(0.3)
    assert fake_openai.chat_requests() == [] and fake_slack.calls_to("chat.postMessage") == []


def test_an_image_is_downloaded_with_the_bot_token_and_sent_to_the_model(
        server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    image = fake_slack.add_file("F0IMG", "error.png", "image/png", PNG)
    doc = fake_slack.add_file("F0ZIP", "logs.zip", "application/zip", b"PK\x03\x04")
    event = fake_slack.message_event("what does this error mean?", mention=True,
                                     files=[image, doc])
    send(server, fake_slack, fake_slack.event_envelope(event))
    [answer] = wait_for(lambda: answers(fake_slack, "C0GENERAL", event["ts"]))

    [(path, auth)] = fake_slack.downloads
    assert "F0IMG" in path and auth == f"Bearer {fake_slack.bot_token}"
    content = fake_openai.chat_requests()[-1]["messages"][-1]["content"]
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert "logs.zip" in answer["text"] and "not other files" in answer["text"]


def test_a_30_mb_image_is_declined_politely_without_downloading(
        server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    image = fake_slack.add_file("F0BIG", "huge.png", "image/png", PNG)
    image["size"] = 30 * 1024 * 1024
    event = fake_slack.message_event("look", mention=True, files=[image])
    send(server, fake_slack, fake_slack.event_envelope(event))
    [answer] = wait_for(lambda: answers(fake_slack, "C0GENERAL", event["ts"]))
    assert "huge.png" in answer["text"] and fake_slack.downloads == []


def test_file_urls_off_slack_never_get_the_token(server: LiveServer, fake_slack: FakeSlack,
                                                 fake_openai: FakeOpenAI) -> None:
    evil = {"id": "F0EVIL", "name": "x.png", "mimetype": "image/png", "size": 10,
            "url_private_download": "http://attacker.invalid/steal.png"}
    event = fake_slack.message_event("see", mention=True, files=[evil])
    send(server, fake_slack, fake_slack.event_envelope(event))
    [answer] = wait_for(lambda: answers(fake_slack, "C0GENERAL", event["ts"]))
    assert "x.png" in answer["text"]  # declined, and said so


def test_feedback_buttons_are_stored_against_the_answer(
        server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    event = fake_slack.message_event("help", mention=True)
    send(server, fake_slack, fake_slack.event_envelope(event))
    [answer] = wait_for(lambda: answers(fake_slack, "C0GENERAL", event["ts"]))
    buttons = next(b for b in answer["blocks"] if b["type"] == "actions")["elements"]
    down = next(b for b in buttons if b["action_id"] == "bothub_feedback_down")
    action = fake_slack.block_action("bothub_feedback_down", down["value"],
                                     message_ts=answer["ts"], thread_ts=event["ts"])
    assert send(server, fake_slack, action).status_code == 200

    async def votes() -> list[tuple[str, int]]:
        conversation = await server.hub.store.find(
            ConversationKey("slack", fake_slack.team_id, "C0GENERAL", event["ts"]))
        assert conversation is not None
        rows = await server.hub.store.messages(conversation.id)
        return await server.hub.store.feedback(rows[1].id)

    wait_for(lambda: server.run(votes()) == [("U0ALICE", -1)])
    forged = fake_slack.block_action("bothub_feedback_up", "99999", message_ts=answer["ts"])
    assert send(server, fake_slack, forged).status_code == 200


def test_events_from_another_workspace_and_unknown_types_are_acknowledged_and_ignored(
        server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    foreign = fake_slack.event_envelope(fake_slack.message_event("hi", mention=True),
                                        team_id="T0OTHER")
    unknown = fake_slack.event_envelope({"type": "reaction_added", "user": "U0ALICE",
                                         "reaction": "tada", "event_ts": "1.2"})
    for payload in (foreign, unknown):
        assert send(server, fake_slack, payload).status_code == 200
    challenge = send(server, fake_slack, fake_slack.url_verification("abc123"))
    assert challenge.status_code == 200 and "abc123" in challenge.text
    time.sleep(0.3)
    assert fake_openai.chat_requests() == []


@pytest.mark.parametrize(("body", "status"), [
    (b"{not json", 400), (b"", 400), (b"[1, 2]", 400), (b"payload=%7Bbroken", 400),
    (b"\xff\xfe", 401),  # not UTF-8: Slack never sends it, so it cannot be signed by Slack
    (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, 400),  # deeper than json can parse
    # Fields of types Slack never sends, which bolt (or the installation lookup) trips on.
    (json.dumps({"type": "event_callback", "team_id": "T0TEST", "authorizations": False,
                 "event": {"type": "reaction_added"}}).encode(), 400),
    (json.dumps({"type": "event_callback", "team_id": "T0TEST",
                 "event": {"type": ["app_mention"]}}).encode(), 400),
    (json.dumps({"type": "event_callback", "team": 7,
                 "event": {"type": "reaction_added"}}).encode(), 400),
    (json.dumps({"type": "event_callback", "team_id": ["T0TEST"],
                 "event": {"type": "reaction_added"}}).encode(), 400),
    (json.dumps({"type": "event_callback", "team_id": "T0\ud800",
                 "event": {"type": "reaction_added"}}).encode(), 400),
    # An assistant thread's event that does not name its thread (found by the fuzz).
    (json.dumps({"type": "event_callback", "team_id": "T0TEST", "event": {
        "type": "assistant_thread_started", "user": "U0ALICE", "channel": "C0GENERAL"}})
     .encode(), 400),
    (json.dumps({"type": "event_callback", "team_id": "T0TEST", "event": {
        "type": "assistant_thread_context_changed", "assistant_thread": {"channel_id": 7}}})
     .encode(), 400),
    # A button click without its action (found by the fuzz): bolt reads actions[0] first.
    *[(b"payload=" + quote_plus(json.dumps({"type": "block_actions", "team": {"id": "T0TEST"},
                                            "actions": actions})).encode(), 400)
      for actions in ([], None)],
], ids=["not json", "empty", "array", "broken payload", "not utf-8", "deep", "authorizations",
        "event type", "team", "team_id list", "team_id surrogate", "assistant thread unnamed",
        "assistant thread id not text", "no actions", "null actions"])
def test_malformed_bodies_get_a_clear_error_never_a_crash(
        server: LiveServer, fake_slack: FakeSlack, body: bytes, status: int) -> None:
    timestamp = str(int(time.time()))
    digest = hmac.new(fake_slack.signing_secret.encode(), b"v0:" + timestamp.encode() + b":"
                      + body, hashlib.sha256).hexdigest()
    content_type = ("application/x-www-form-urlencoded" if body.startswith(b"payload=")
                    else "application/json")
    response = httpx.post(f"{server.url}/slack/events", content=body, headers={
        "Content-Type": content_type, "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": f"v0={digest}"})
    assert response.status_code == status


@pytest.mark.parametrize(("timestamp", "signature"), [
    ("abc", None), ("", None), ("1.5", None), ("9" * 5000, None),  # int() refuses them
    (None, b"v0=\xe9"),  # compare_digest refuses non-ASCII text
])
def test_unreadable_signature_headers_get_401(server: LiveServer, fake_slack: FakeSlack,
                                              timestamp: str | None,
                                              signature: bytes | None) -> None:
    body, headers = fake_slack.signed_request(fake_slack.event_envelope(
        fake_slack.message_event("hi", mention=True)))
    sent: dict[str, Any] = dict(headers)
    if timestamp is not None:
        sent["X-Slack-Request-Timestamp"] = timestamp
    if signature is not None:
        sent["X-Slack-Signature"] = signature
    response = httpx.post(f"{server.url}/slack/events", content=body, headers=sent)
    assert response.status_code == 401


def test_an_oversized_body_is_refused_before_its_signature_is_checked(
        server: LiveServer) -> None:
    response = httpx.post(f"{server.url}/slack/events", content=b"{" + b" " * (1024 * 1024),
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_a_button_click_with_a_wrong_typed_user_or_channel_is_acknowledged_not_a_crash(
        server: LiveServer, fake_slack: FakeSlack) -> None:
    payload = fake_slack.block_action("bothub_handoff", "1")
    payload["channel"] = ["C0GENERAL"]
    payload["user"] = ["U0ALICE"]
    body = urlencode({"payload": json.dumps(payload)}).encode()
    timestamp = str(int(time.time()))
    digest = hmac.new(fake_slack.signing_secret.encode(), b"v0:" + timestamp.encode() + b":"
                      + body, hashlib.sha256).hexdigest()
    response = httpx.post(f"{server.url}/slack/events", content=body, headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": f"v0={digest}"})
    assert response.status_code == 200
    time.sleep(0.3)
    assert fake_slack.calls_to("chat.postEphemeral") == []  # no user to whisper to


async def test_a_failing_background_task_is_logged() -> None:
    in_flight = InFlight()

    async def broken() -> None:
        raise RuntimeError("boom")

    with structlog.testing.capture_logs() as logs:
        task = in_flight.spawn(broken())
        await in_flight.drain()
        await asyncio.sleep(0)
    assert task.done()
    [failed] = [e for e in logs if e["event"] == "adapter.task_failed"]
    assert failed["log_level"] == "error" and "broken" in failed["task"]


def test_a_message_deleted_mid_stream_gets_its_answer_posted_anew(
        server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="A long and careful answer " * 5, chunk_delay=0.02))
    fake_slack.fail("chat.update", "message_not_found", times=50)
    event = fake_slack.message_event("explain", mention=True)
    send(server, fake_slack, fake_slack.event_envelope(event))
    [answer] = wait_for(lambda: answers(fake_slack, "C0GENERAL", event["ts"]))
    assert answer["text"].startswith("A long and careful answer")
    assert len(fake_slack.calls_to("chat.update")) == 1  # gave up editing after the first


def test_a_rate_limited_update_is_retried_after_retry_after(
        server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    fake_slack.rate_limit("chat.update", times=1, retry_after=0)
    event = fake_slack.message_event("quick one", mention=True)
    send(server, fake_slack, fake_slack.event_envelope(event))
    [answer] = wait_for(lambda: answers(fake_slack, "C0GENERAL", event["ts"]))
    assert answer["text"] == "You said: quick one"
    assert len(answers(fake_slack, "C0GENERAL", event["ts"])) == 1


def test_fifty_concurrent_threads_are_each_answered_in_their_own_thread(
        server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    events = [fake_slack.message_event(f"question number {n}", mention=True,
                                       channel=f"C0CHAN{n % 5}", user=f"U0USER{n:02d}")
              for n in range(50)]
    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(
            lambda e: send(server, fake_slack, fake_slack.event_envelope(e)).status_code,
            events))
    assert statuses == [200] * 50
    for event in events:
        [answer] = wait_for(lambda e=event: answers(fake_slack, e["channel"], e["ts"]),
                            timeout=30)
        number = event["text"].rsplit(" ", 1)[1]
        assert answer["text"] == f"You said: question number {number}"
        assert answer["thread_ts"] == event["ts"]
    assert len(fake_openai.chat_requests()) == 50
    assert json.dumps(fake_slack.calls_to("chat.postMessage")[0].args)  # recorded as sent


def ask_command(fake: FakeSlack, text: str, *, channel: str = "C0GENERAL") -> tuple[bytes, dict]:
    from urllib.parse import urlencode

    fields = {"token": "legacy", "team_id": fake.team_id, "team_domain": "test",
              "channel_id": channel, "channel_name": "general", "user_id": "U0ALICE",
              "user_name": "alice", "command": "/ask", "text": text, "api_app_id": "A0TEST",
              "is_enterprise_install": "false",
              "response_url": f"{fake.base_url}/commands/response", "trigger_id": "13345.98"}
    body = urlencode(fields).encode()
    return body, fake.signed_headers(body, content_type="application/x-www-form-urlencoded")


def test_the_ask_command_posts_the_question_and_answers_in_its_thread(
        server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    body, headers = ask_command(fake_slack, "how do exports work?")
    response = httpx.post(f"{server.url}/slack/events", content=body, headers=headers)
    assert response.status_code == 200
    root = wait_for(lambda: next((m for m in fake_slack.messages("C0GENERAL")
                                  if "asked:" in m.get("text", "")), None))
    assert root["text"] == "*<@U0ALICE> asked:* how do exports work?"
    [answer] = wait_for(lambda: answers(fake_slack, "C0GENERAL", root["ts"]))
    assert answer["text"] == "You said: how do exports work?"

    empty_body, empty_headers = ask_command(fake_slack, "   ")
    hint = httpx.post(f"{server.url}/slack/events", content=empty_body, headers=empty_headers)
    assert hint.status_code == 200 and "/ask how do I reset my password?" in hint.text


def test_one_users_dm_never_reaches_another_users_conversation(
        server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    alice = fake_slack.message_event("my invoice number is INV-7731", channel="D0ALICE",
                                     channel_type="im")
    send(server, fake_slack, fake_slack.event_envelope(alice))
    wait_for(lambda: answers(fake_slack, "D0ALICE", alice["ts"]))
    bob = fake_slack.message_event("what is my invoice number?", user="U0BOB",
                                   channel="D0BOB", channel_type="im")
    send(server, fake_slack, fake_slack.event_envelope(bob))
    wait_for(lambda: answers(fake_slack, "D0BOB", bob["ts"]))
    assert "INV-7731" not in json.dumps(fake_openai.chat_requests()[-1]["messages"])


@pytest.fixture
def native_server(tmp_path: Path, fake_openai: FakeOpenAI,
                  fake_slack: FakeSlack) -> Iterator[LiveServer]:
    with running_server(slack_settings(tmp_path, fake_openai, fake_slack),
                        slack_app_native) as live:
        yield live


def test_native_chat_streaming_is_used_where_available(
        native_server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="Open **Settings**, then *Security* [1].",
                                    chunk_delay=0.03))
    event = fake_slack.message_event("reset password?", mention=True)
    send(native_server, fake_slack, fake_slack.event_envelope(event))
    [answer] = wait_for(lambda: answers(fake_slack, "C0GENERAL", event["ts"]))

    [start] = fake_slack.calls_to("chat.startStream")
    assert start.args["thread_ts"] == event["ts"]
    assert (start.args["recipient_team_id"], start.args["recipient_user_id"]) == (
        fake_slack.team_id, "U0ALICE")
    assert fake_slack.calls_to("chat.appendStream")  # it grew before it stopped
    assert fake_slack.calls_to("chat.postMessage") == []  # no placeholder needed
    assert answer["text"] == "Open **Settings**, then *Security* [1]."  # Markdown, natively


def test_without_native_streaming_the_answer_streams_by_edits_and_it_is_remembered(
        native_server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    fake_slack.fail("chat.startStream", "unknown_method", times=10)
    for n in range(2):
        event = fake_slack.message_event(f"question {n}", mention=True)
        send(native_server, fake_slack, fake_slack.event_envelope(event))
        [answer] = wait_for(lambda e=event: answers(fake_slack, "C0GENERAL", e["ts"]))
        assert answer["text"] == f"You said: question {n}"
    assert len(fake_slack.calls_to("chat.startStream")) == 1  # not tried again
    assert len(fake_slack.calls_to("chat.postMessage")) == 2  # the placeholders


def test_a_native_stream_that_expires_mid_answer_is_posted_anew(
        native_server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="A long answer " * 10, chunk_delay=0.02))
    fake_slack.fail("chat.appendStream", "message_not_in_streaming_state", times=20)
    event = fake_slack.message_event("long one", mention=True)
    send(native_server, fake_slack, fake_slack.event_envelope(event))
    [answer] = wait_for(lambda: answers(fake_slack, "C0GENERAL", event["ts"]))
    assert answer["text"].startswith("A long answer")
    assert fake_slack.calls_to("chat.stopStream") == []


@pytest.fixture
def socket_server(tmp_path: Path, fake_openai: FakeOpenAI,
                  fake_slack: FakeSlack) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path, fake_openai, slack_bot_token=fake_slack.bot_token,
                             slack_app_token=fake_slack.app_token,
                             slack_api_url=fake_slack.api_url)
    with running_server(settings, slack_app) as live:
        yield live


def test_socket_mode_takes_events_without_a_public_url_and_survives_a_dropped_socket(
        socket_server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    wait_for(lambda: fake_slack.connected_sockets == 1)
    assert httpx.post(f"{socket_server.url}/slack/events", content=b"{}").status_code == 404

    first = fake_slack.message_event("over the socket?", mention=True)
    envelope_id = fake_slack.push_event(fake_slack.event_envelope(first))
    fake_slack.wait_for_ack(envelope_id)
    [answer] = wait_for(lambda: answers(fake_slack, "C0GENERAL", first["ts"]))
    assert answer["text"] == "You said: over the socket?"

    fake_slack.drop_connections()
    again = fake_slack.push_event(fake_slack.event_envelope(first), retry_attempt=1,
                                  retry_reason="timeout")
    fake_slack.wait_for_ack(again, timeout=15)  # reconnected, and the redelivery acked
    second = fake_slack.message_event("still there?", mention=True)
    fake_slack.push_event(fake_slack.event_envelope(second))
    wait_for(lambda: answers(fake_slack, "C0GENERAL", second["ts"]), timeout=15)
    assert fake_slack.socket_connections >= 2
    assert len(answers(fake_slack, "C0GENERAL", first["ts"])) == 1  # the retry: no new answer
    assert len(fake_openai.chat_requests()) == 2


def test_a_bad_app_token_is_reported_and_the_rest_of_the_hub_still_serves(
        tmp_path: Path, fake_openai: FakeOpenAI, fake_slack: FakeSlack) -> None:
    settings = make_settings(tmp_path, fake_openai, slack_bot_token=fake_slack.bot_token,
                             slack_app_token="xapp-wrong", slack_api_url=fake_slack.api_url)
    with running_server(settings, slack_app) as live:
        assert httpx.get(f"{live.url}/healthz").json()["status"] == "ok"
        assert fake_slack.socket_connections == 0


def test_a_deleted_thread_loses_the_delivery_but_not_the_answer(
        server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    fake_slack.fail("chat.postMessage", "thread_not_found", times=5)
    event = fake_slack.message_event("still there?", mention=True)
    assert send(server, fake_slack, fake_slack.event_envelope(event)).status_code == 200
    wait_for(lambda: len(fake_slack.calls_to("chat.postMessage")) >= 2)

    async def stored() -> list[tuple[str, str]]:
        conversation = await server.hub.store.find(
            ConversationKey("slack", fake_slack.team_id, "C0GENERAL", event["ts"]))
        if conversation is None:
            return []
        return [(m.role, m.text) for m in await server.hub.store.messages(conversation.id)]

    rows = wait_for(lambda: (r := server.run(stored())) and r[-1][0] == "assistant" and r)
    assert rows == [("user", "still there?"), ("assistant", "You said: still there?")]
    assert answers(fake_slack, "C0GENERAL", event["ts"]) == []


# -- a worker that dies mid-answer -----------------------------------------------------------

async def _inbox_rows(server: LiveServer) -> list[Any]:
    from sqlalchemy import select

    from bot.store.tables import InboxEntry

    async with server.hub.database.connect() as connection:
        return list((await connection.execute(
            select(InboxEntry.id, InboxEntry.state, InboxEntry.attempts, InboxEntry.route,
                   InboxEntry.posted).order_by(InboxEntry.id))).all())


async def _forget_what_was_posted(server: LiveServer, *, keep_intent: bool = False) -> None:
    """As if the first attempt died between posting its message and noting it in the inbox
    (`keep_intent`: after noting that a native stream was about to start)."""
    from sqlalchemy import update

    from bot.store.tables import InboxEntry

    posted = {"answer.starting": "1"} if keep_intent else {}
    async with server.hub.database.begin() as connection:
        await connection.execute(update(InboxEntry).values(posted=posted))


def bot_messages(fake: FakeSlack, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    return [m for m in fake.messages(channel, thread_ts) if m.get("bot_id")]


def test_an_answer_cut_short_by_a_dead_worker_is_finished_in_its_placeholder(
        server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="partly written " * 60, chunk_delay=0.05))
    event = fake_slack.message_event("where are my invoices?", mention=True)
    assert send(server, fake_slack, fake_slack.event_envelope(event)).status_code == 200
    # The answer is growing in place: what was written so far shows in the placeholder.
    [placeholder] = wait_for(lambda: [m for m in bot_messages(fake_slack, "C0GENERAL",
                                                              event["ts"])
                                      if m["text"].startswith("partly")])
    server.run(kill_the_worker(server, "slack"))
    assert fake_openai.chat_requests()

    fake_openai.queue(ScriptedReply(text="Invoices are under Billing."))
    server.run(take_over(server))

    [answer] = bot_messages(fake_slack, "C0GENERAL", event["ts"])
    assert answer["ts"] == placeholder["ts"] and answer["text"] == "Invoices are under Billing."
    assert answers(fake_slack, "C0GENERAL", event["ts"]) == [answer]  # with its buttons
    assert len(fake_slack.calls_to("chat.postMessage")) == 1  # only the first placeholder
    assert fake_slack.calls_to("chat.update")[-1].args["ts"] == placeholder["ts"]
    assert len(fake_openai.chat_requests()) == 2
    [(_id, state, attempts, _route, noted)] = server.run(_inbox_rows(server))
    assert (state, attempts, noted) == ("done", 2, {"answer": placeholder["ts"]})


def test_a_placeholder_the_inbox_never_noted_is_found_by_its_metadata_and_edited(
        server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="never finished", delay=30))
    event = fake_slack.message_event("where are my invoices?", mention=True)
    assert send(server, fake_slack, fake_slack.event_envelope(event)).status_code == 200
    [placeholder] = wait_for(lambda: bot_messages(fake_slack, "C0GENERAL", event["ts"]))
    wait_for(lambda: fake_openai.chat_requests())  # and the model is writing
    server.run(kill_the_worker(server, "slack"))
    [(entry, _state, _attempts, _route, noted)] = server.run(_inbox_rows(server))
    assert noted == {"answer": placeholder["ts"]}
    assert placeholder["metadata"] == {"event_type": "bothub_answer",
                                       "event_payload": {"entry": str(entry), "slot": "answer"}}
    server.run(_forget_what_was_posted(server))

    fake_openai.queue(ScriptedReply(text="Invoices are under Billing."))
    server.run(take_over(server))

    [lookup] = fake_slack.calls_to("conversations.replies")
    assert lookup.args["ts"] == event["ts"] and lookup.args["include_all_metadata"] in (
        True, "true", "1", 1)
    [answer] = bot_messages(fake_slack, "C0GENERAL", event["ts"])
    assert answer["ts"] == placeholder["ts"] and answer["text"] == "Invoices are under Billing."
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert len(fake_openai.chat_requests()) == 2
    [(_id, state, attempts, _route, noted)] = server.run(_inbox_rows(server))
    assert (state, attempts, noted) == ("done", 2, {"answer": placeholder["ts"]})


def test_a_native_stream_cut_short_by_a_dead_worker_ends_as_one_message(
        native_server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="partly written " * 60, chunk_delay=0.05))
    event = fake_slack.message_event("where are my invoices?", mention=True)
    assert send(native_server, fake_slack, fake_slack.event_envelope(event)).status_code == 200
    wait_for(lambda: fake_slack.calls_to("chat.appendStream"))  # mid-stream
    [streamed] = bot_messages(fake_slack, "C0GENERAL", event["ts"])
    native_server.run(kill_the_worker(native_server, "slack"))

    fake_openai.queue(ScriptedReply(text="Invoices are under Billing."))
    native_server.run(take_over(native_server))

    [answer] = bot_messages(fake_slack, "C0GENERAL", event["ts"])
    assert answer["ts"] == streamed["ts"] and answer["text"] == "Invoices are under Billing."
    assert answers(fake_slack, "C0GENERAL", event["ts"]) == [answer]
    assert len(fake_slack.calls_to("chat.startStream")) == 1
    assert fake_slack.calls_to("chat.postMessage") == []
    assert len(fake_openai.chat_requests()) == 2
    [(_id, state, attempts, _route, noted)] = native_server.run(_inbox_rows(native_server))
    assert (state, attempts, noted) == ("done", 2, {"answer.starting": "1",
                                                    "answer": streamed["ts"]})


def test_an_event_is_acknowledged_only_once_its_question_is_in_the_inbox(
        server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="Slowly but surely.", delay=1.5))
    event = fake_slack.message_event("is this kept if you crash?", mention=True)
    assert send(server, fake_slack, fake_slack.event_envelope(event)).status_code == 200
    [(_id, state, attempts, route, _posted)] = server.run(_inbox_rows(server))  # after the 200
    assert (state, attempts) == ("working", 1)
    assert route == {"channel": "C0GENERAL", "thread_ts": event["ts"],
                     "team": fake_slack.team_id, "user": "U0ALICE", "after": event["ts"]}
    assert answers(fake_slack, "C0GENERAL", event["ts"]) == []  # still being written
    [answer] = wait_for(lambda: answers(fake_slack, "C0GENERAL", event["ts"]))
    assert answer["text"] == "Slowly but surely."
    wait_for(lambda: server.run(_inbox_rows(server))[0][1] == "done")


def test_a_native_stream_the_inbox_never_noted_is_still_the_only_message(
        native_server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="never finished", delay=30))
    event = fake_slack.message_event("where are my invoices?", mention=True)
    assert send(native_server, fake_slack, fake_slack.event_envelope(event)).status_code == 200
    [streamed] = wait_for(lambda: bot_messages(fake_slack, "C0GENERAL", event["ts"]))
    wait_for(lambda: fake_openai.chat_requests())
    native_server.run(kill_the_worker(native_server, "slack"))
    # As if it died between chat.startStream and noting the stream: only its intent is kept.
    native_server.run(_forget_what_was_posted(native_server, keep_intent=True))

    fake_openai.queue(ScriptedReply(text="Invoices are under Billing."))
    native_server.run(take_over(native_server))

    shown = [(m["ts"], m["text"]) for m in bot_messages(fake_slack, "C0GENERAL", event["ts"])]
    assert shown == [(streamed["ts"], "Invoices are under Billing.")]


def test_a_side_note_before_an_unnoted_stream_is_never_taken_for_the_answer(
        native_server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="never finished", delay=30))
    event = fake_slack.message_event(
        "my key sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD fails, why?", mention=True)
    assert send(native_server, fake_slack, fake_slack.event_envelope(event)).status_code == 200
    [notice, streamed] = wait_for(lambda: [m for m in bot_messages(
        fake_slack, "C0GENERAL", event["ts"])] if len(bot_messages(
            fake_slack, "C0GENERAL", event["ts"])) == 2 else None)
    wait_for(lambda: fake_openai.chat_requests())
    native_server.run(kill_the_worker(native_server, "slack"))
    native_server.run(_forget_what_was_posted(native_server, keep_intent=True))

    fake_openai.queue(ScriptedReply(text="Create a new key under API keys."))
    native_server.run(take_over(native_server))

    shown = {m["ts"]: m["text"] for m in bot_messages(fake_slack, "C0GENERAL", event["ts"])}
    assert shown[streamed["ts"]] == "Create a new key under API keys."
    assert shown[notice["ts"]] == notice["text"]  # the note about the redacted key stays
    assert len(shown) == 2
