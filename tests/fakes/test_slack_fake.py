"""The fake Slack server, driven by the real `slack_sdk` AsyncWebClient and `slack_bolt`.

These pin down the wire behaviour the Slack adapter's tests rely on: how the SDK encodes each
method, how it reacts to rate limits, and that the signed requests we send are what Slack's own
verifier (and Bolt) accept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import httpx
import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_server import FakeSlack, form_body

CHANNEL = "C0GENERAL"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeSlack]:
    """One server per module: starting a thread and a socket per test would be wasted time."""
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeSlack) -> FakeSlack:
    """The shared server, reset so no message, script or recorded call leaks between tests."""
    server.reset()
    return server


def client(fake: FakeSlack, token: str | None = None, **kwargs: Any) -> AsyncWebClient:
    return AsyncWebClient(token=token or fake.bot_token, base_url=fake.api_url, **kwargs)


async def eventually(condition: Callable[[], Any]) -> Any:
    """Poll `condition` for up to 2 s (the client runs on this loop, so never block)."""
    deadline = time.monotonic() + 2.0
    while not (result := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)
    return result


def bolt_request(body: bytes, headers: dict[str, str]) -> AsyncBoltRequest:
    """What Bolt's HTTP adapters build from an incoming request."""
    bolt_headers: dict[str, str | Sequence[str]] = dict(headers)
    return AsyncBoltRequest(body=body.decode("utf-8"), headers=bolt_headers)


async def test_auth_test_answers_as_the_bot(fake: FakeSlack) -> None:
    response = await client(fake).auth_test()

    assert response.status_code == 200
    assert response["ok"] is True
    assert response["user_id"] == fake.bot_user_id
    assert response["bot_id"] == fake.bot_id
    assert response["team_id"] == fake.team_id
    assert response["is_enterprise_install"] is False
    [call] = fake.calls_to("auth.test")
    assert call.token == fake.bot_token
    assert call.http_method == "POST"


async def test_tokens_are_checked(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as missing:
        await AsyncWebClient(base_url=fake.api_url).auth_test()
    assert missing.value.response["error"] == "not_authed"
    with pytest.raises(SlackApiError) as wrong:
        await client(fake, token="xoxp-not-a-bot-token").auth_test()
    assert wrong.value.response["error"] == "invalid_auth"

    other = await client(fake, token="xoxb-another-workspace").auth_test()
    assert other["ok"] is True
    assert fake.calls[-1].token == "xoxb-another-workspace"
    with pytest.raises(SlackApiError) as unknown:
        await client(fake).api_call("nope.nothing")
    assert unknown.value.response["error"] == "unknown_method"
    assert [c.method for c in fake.calls][-1] == "nope.nothing"


async def test_post_in_thread_then_update_shows_in_messages(fake: FakeSlack) -> None:
    question = fake.message_event("how do I reset my password?", mention=True)
    web = client(fake)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "Thinking…"}}]

    posted = await web.chat_postMessage(
        channel=CHANNEL, thread_ts=question["ts"], text="Thinking…", blocks=blocks
    )
    assert posted["channel"] == CHANNEL
    assert posted["message"]["thread_ts"] == question["ts"]
    assert posted["message"]["parent_user_id"] == "U0ALICE"
    assert posted["message"]["bot_id"] == fake.bot_id
    assert float(posted["ts"]) > float(question["ts"])
    [post_call] = fake.calls_to("chat.postMessage")
    assert post_call.content_type == "application/json"  # blocks travel as a JSON body
    assert post_call.args["blocks"] == blocks

    updated = await web.chat_update(channel=CHANNEL, ts=posted["ts"], text="Use the reset link.")
    assert updated["text"] == "Use the reset link."

    [reply] = fake.messages(CHANNEL, thread_ts=question["ts"])
    assert reply["ts"] == posted["ts"]
    assert reply["text"] == "Use the reset link."
    assert reply["blocks"] == blocks  # not sent with the update: kept
    assert "edited" in reply
    assert [m["ts"] for m in fake.messages(CHANNEL, include_events=True)] == [
        question["ts"],
        posted["ts"],
    ]

    thread = await web.conversations_replies(channel=CHANNEL, ts=question["ts"])
    assert [m["ts"] for m in thread["messages"]] == [question["ts"], posted["ts"]]
    assert thread["messages"][0]["reply_count"] == 1

    with pytest.raises(SlackApiError) as not_ours:
        await web.chat_update(channel=CHANNEL, ts=question["ts"], text="edited")
    assert not_ours.value.response["error"] == "cant_update_message"
    with pytest.raises(SlackApiError) as missing:
        await web.chat_update(channel=CHANNEL, ts="1.000001", text="edited")
    assert missing.value.response["error"] == "message_not_found"

    await web.chat_delete(channel=CHANNEL, ts=posted["ts"])
    assert fake.messages(CHANNEL) == []


async def test_form_encoded_json_strings_are_decoded(fake: FakeSlack) -> None:
    blocks = [{"type": "divider"}]
    await client(fake).api_call(
        "chat.postMessage", data={"channel": CHANNEL, "text": "hi", "blocks": json.dumps(blocks)}
    )
    [call] = fake.calls_to("chat.postMessage")
    assert call.content_type == "application/x-www-form-urlencoded"
    assert call.args["blocks"] == blocks
    assert fake.messages(CHANNEL)[0]["blocks"] == blocks


async def test_post_message_validation(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as no_text:
        await client(fake).api_call("chat.postMessage", json={"channel": CHANNEL})
    assert no_text.value.response["error"] == "no_text"
    dm = await client(fake).chat_postMessage(channel="U0ALICE", text="hello")
    assert dm["channel"] == "D0ALICE"


async def test_rate_limit_raises_with_retry_after(fake: FakeSlack) -> None:
    fake.rate_limit("chat.postMessage", retry_after=7)

    with pytest.raises(SlackApiError) as raised:
        await client(fake).chat_postMessage(channel=CHANNEL, text="hi")

    response = raised.value.response
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response["error"] == "ratelimited"
    assert fake.messages(CHANNEL) == []
    await client(fake).chat_postMessage(channel=CHANNEL, text="hi")  # only the next call
    assert len(fake.calls_to("chat.postMessage")) == 2


async def test_rate_limit_retry_handler_retries_once(fake: FakeSlack) -> None:
    fake.rate_limit("chat.postMessage", retry_after=0)
    web = client(fake)
    web.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))

    started = time.monotonic()
    response = await web.chat_postMessage(channel=CHANNEL, text="hi")

    assert response["ok"] is True
    assert time.monotonic() - started < 1.5  # Retry-After 0 plus the handler's < 1 s jitter
    assert len(fake.calls_to("chat.postMessage")) == 2
    assert len(fake.messages(CHANNEL)) == 1


async def test_fail_answers_the_error_the_given_number_of_times(fake: FakeSlack) -> None:
    fake.fail("chat.postMessage", "channel_not_found", times=2)
    web = client(fake)
    for _ in range(2):
        with pytest.raises(SlackApiError) as raised:
            await web.chat_postMessage(channel=CHANNEL, text="hi")
        assert raised.value.response.status_code == 200
        assert raised.value.response["error"] == "channel_not_found"
    assert (await web.chat_postMessage(channel=CHANNEL, text="hi"))["ok"] is True


async def test_file_download_needs_the_bot_token(fake: FakeSlack) -> None:
    content = b"%PDF-1.7 fake pdf"
    file = fake.add_file("F0MANUAL", "manual.pdf", "application/pdf", content)
    assert file["size"] == len(content)
    assert file["filetype"] == "pdf"
    auth = {"Authorization": f"Bearer {fake.bot_token}"}

    async with httpx.AsyncClient() as http:
        ok = await http.get(file["url_private"], headers=auth)
        assert ok.status_code == 200
        assert ok.content == content
        assert ok.headers["content-type"].startswith("application/pdf")
        download = await http.get(file["url_private_download"], headers=auth)
        assert download.content == content

        anonymous = await http.get(file["url_private"])
        assert anonymous.status_code == 302
        followed = await http.get(file["url_private"], follow_redirects=True)
        assert followed.status_code == 200
        assert followed.content != content
        assert followed.headers["content-type"].startswith("text/html")
        wrong = await http.get(file["url_private"], headers={"Authorization": "Bearer xoxb-x"})
        assert wrong.status_code == 403

    assert [auth_header for _, auth_header in fake.downloads] == [
        auth["Authorization"],
        auth["Authorization"],
        None,
        None,
        "Bearer xoxb-x",
    ]
    info = await client(fake).files_info(file="F0MANUAL")
    assert info["file"]["url_private"] == file["url_private"]


def test_signed_headers_verify_with_slack_sdk(fake: FakeSlack) -> None:
    body, headers = fake.signed_request(fake.event_envelope(fake.message_event("hi")))
    timestamp = headers["X-Slack-Request-Timestamp"]
    signature = headers["X-Slack-Signature"]

    assert signature.startswith("v0=")
    assert headers["Content-Type"] == "application/json"
    assert SignatureVerifier(fake.signing_secret).is_valid(body, timestamp, signature)
    assert SignatureVerifier(fake.signing_secret).is_valid_request(body, headers)
    assert not SignatureVerifier("another-secret").is_valid(body, timestamp, signature)
    assert not SignatureVerifier(fake.signing_secret).is_valid(body + b" ", timestamp, signature)

    forged = fake.signed_headers(body, secret="another-secret")
    assert not SignatureVerifier(fake.signing_secret).is_valid_request(body, forged)
    stale = fake.signed_headers(body, timestamp=int(time.time()) - 600)
    assert not SignatureVerifier(fake.signing_secret).is_valid_request(body, stale)
    retried = fake.signed_headers(body, retry_num=1, retry_reason="http_timeout")
    assert retried["X-Slack-Retry-Num"] == "1"
    assert retried["X-Slack-Retry-Reason"] == "http_timeout"


def test_event_builders(fake: FakeSlack) -> None:
    first = fake.message_event("hi", channel="D0ALICE", channel_type="im")
    reply = fake.message_event("more", thread_ts=first["ts"], channel="D0ALICE", channel_type="im")
    mention = fake.message_event("help", mention=True)
    file = {"id": "F1", "name": "a.png"}
    shared = fake.message_event("see file", files=[file])

    assert float(first["ts"]) < float(reply["ts"]) < float(mention["ts"]) < float(shared["ts"])
    assert first["type"] == "message" and first["channel_type"] == "im"
    assert reply["thread_ts"] == first["ts"] and reply["parent_user_id"] == "U0ALICE"
    assert mention["type"] == "app_mention"
    assert mention["text"] == "<@U0BOT> help"
    assert "channel_type" not in mention
    assert shared["subtype"] == "file_share" and shared["files"] == [file]
    assert "subtype" not in first
    bot_echo = fake.message_event("hello", user=fake.bot_user_id, bot_id=fake.bot_id)
    assert bot_echo["bot_id"] == fake.bot_id and "client_msg_id" not in bot_echo

    envelope = fake.event_envelope(mention)
    assert envelope["type"] == "event_callback"
    assert envelope["event"] is mention
    assert envelope["event_id"].startswith("Ev")
    assert envelope["authorizations"][0]["user_id"] == fake.bot_user_id
    assert fake.event_envelope(mention)["event_id"] != envelope["event_id"]
    assert fake.event_envelope(mention, team_id="T0OTHER")["team_id"] == "T0OTHER"


async def test_streaming_methods_append_text(fake: FakeSlack) -> None:
    question = fake.message_event("explain", mention=True)
    web = client(fake)

    started = await web.chat_startStream(
        channel=CHANNEL,
        thread_ts=question["ts"],
        markdown_text="Hello",
        recipient_team_id=fake.team_id,
        recipient_user_id="U0ALICE",
    )
    ts = started["ts"]
    await web.chat_appendStream(channel=CHANNEL, ts=ts, markdown_text=", wor")
    assert fake.messages(CHANNEL, thread_ts=question["ts"])[0]["text"] == "Hello, wor"
    blocks = [{"type": "context", "elements": [{"type": "mrkdwn", "text": "sources"}]}]
    stopped = await web.chat_stopStream(channel=CHANNEL, ts=ts, markdown_text="ld!", blocks=blocks)
    assert stopped["message"]["text"] == "Hello, world!"

    [message] = fake.messages(CHANNEL, thread_ts=question["ts"])
    assert message["text"] == "Hello, world!"
    assert message["blocks"] == blocks
    assert fake.calls_to("chat.startStream")[0].args["recipient_user_id"] == "U0ALICE"
    with pytest.raises(SlackApiError) as stopped_already:
        await web.chat_appendStream(channel=CHANNEL, ts=ts, markdown_text="more")
    assert stopped_already.value.response["error"] == "message_not_in_streaming_state"

    # The SDK's chat_stream() helper sends markdown_text chunks instead of markdown_text.
    stream = await web.chat_stream(channel=CHANNEL, thread_ts=question["ts"], buffer_size=4)
    await stream.append(markdown_text="chunked ")
    await stream.append(markdown_text="answer")
    await stream.stop()
    assert fake.messages(CHANNEL, thread_ts=question["ts"])[-1]["text"] == "chunked answer"


async def test_users_info(fake: FakeSlack) -> None:
    fake.add_user("U0CAROL", "Carol Danvers", "carol")
    web = client(fake)

    carol = (await web.users_info(user="U0CAROL"))["user"]
    assert carol["real_name"] == "Carol Danvers"
    assert carol["profile"]["display_name"] == "carol"
    assert carol["is_bot"] is False
    assert (await web.users_info(user=fake.bot_user_id))["user"]["is_bot"] is True
    with pytest.raises(SlackApiError) as missing:
        await web.users_info(user="U0NOBODY")
    assert missing.value.response["error"] == "user_not_found"
    assert fake.calls_to("users.info")[0].http_method == "GET"


async def test_reactions_and_conversations_info(fake: FakeSlack) -> None:
    question = fake.message_event("hi")
    web = client(fake)

    await web.reactions_add(channel=CHANNEL, timestamp=question["ts"], name="eyes")
    with pytest.raises(SlackApiError) as twice:
        await web.reactions_add(channel=CHANNEL, timestamp=question["ts"], name="eyes")
    assert twice.value.response["error"] == "already_reacted"
    [stored] = fake.messages(CHANNEL, include_events=True)
    assert stored["reactions"] == [{"name": "eyes", "users": [fake.bot_user_id], "count": 1}]
    await web.reactions_remove(channel=CHANNEL, timestamp=question["ts"], name="eyes")
    assert "reactions" not in fake.messages(CHANNEL, include_events=True)[0]
    with pytest.raises(SlackApiError) as gone:
        await web.reactions_remove(channel=CHANNEL, timestamp=question["ts"], name="eyes")
    assert gone.value.response["error"] == "no_reaction"

    general = (await web.conversations_info(channel=CHANNEL))["channel"]
    assert general["name"] == "general" and general["is_im"] is False
    im = (await web.conversations_info(channel="D0ALICE"))["channel"]
    assert im["is_im"] is True and im["user"] == "U0ALICE"
    fake.add_channel("C0HELP", "help-desk", is_private=True)
    private = (await web.conversations_info(channel="C0HELP"))["channel"]
    assert private["name"] == "help-desk" and private["is_private"] is True

    await web.assistant_threads_setStatus(
        channel_id="D0ALICE", thread_ts=question["ts"], status="is thinking…"
    )
    assert fake.calls_to("assistant.threads.setStatus")[0].args["status"] == "is thinking…"


async def test_conversations_members_paginates_with_the_sdk_cursor(fake: FakeSlack) -> None:
    users = ["U0ALICE", "U0BOB", "U0CAROL", "U0DAVE", "U0ERIN"]
    fake.set_members(CHANNEL, users)
    web = client(fake)

    first = await web.conversations_members(channel=CHANNEL, limit=2)
    assert first.data == {
        "ok": True,
        "members": ["U0ALICE", "U0BOB"],
        "response_metadata": {"next_cursor": first["response_metadata"]["next_cursor"]},
    }
    first_cursor = first["response_metadata"]["next_cursor"]
    assert first_cursor
    # The SDK follows next_cursor itself (and overwrites `first` with each page as it goes).
    pages = [page["members"] async for page in first]
    assert pages == [["U0ALICE", "U0BOB"], ["U0CAROL", "U0DAVE"], ["U0ERIN"]]

    cursor, collected = "", []
    while True:  # what a caller paginating by hand does
        page = await web.conversations_members(channel=CHANNEL, limit=2, cursor=cursor or None)
        collected += page["members"]
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert collected == users
    calls = fake.calls_to("conversations.members")
    assert {(c.http_method, c.content_type) for c in calls} == {("GET", "")}  # query string
    assert calls[0].args == {"channel": CHANNEL, "limit": "2"}
    assert calls[1].args == {"channel": CHANNEL, "limit": "2", "cursor": first_cursor}

    everyone = await web.conversations_members(channel=CHANNEL)  # default limit 100
    assert everyone["members"] == users
    assert everyone["response_metadata"] == {"next_cursor": ""}

    fake.add_channel("C0EMPTY", "empty")
    empty = await web.conversations_members(channel="C0EMPTY")
    assert empty["members"] == [] and empty["response_metadata"]["next_cursor"] == ""
    with pytest.raises(SlackApiError) as unknown:
        await web.conversations_members(channel="C0NOWHERE")
    assert unknown.value.response["error"] == "channel_not_found"
    with pytest.raises(SlackApiError) as bad_cursor:
        await web.conversations_members(channel=CHANNEL, cursor="not-a-cursor")
    assert bad_cursor.value.response["error"] == "invalid_cursor"


async def test_new_methods_share_auth_and_fault_injection(fake: FakeSlack) -> None:
    fake.set_members(CHANNEL, ["U0ALICE"])
    fake.set_usergroup("S0ONCALL", ["U0BOB"])
    question = fake.message_event("hi")
    fake.rate_limit("conversations.members", retry_after=3)
    fake.fail("usergroups.users.list", "missing_scope")
    fake.fail("chat.getPermalink", "ratelimited")
    fake.fail("chat.postEphemeral", "user_not_in_channel")
    web = client(fake)

    with pytest.raises(SlackApiError) as limited:
        await web.conversations_members(channel=CHANNEL)
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "3"
    assert limited.value.response["error"] == "ratelimited"
    with pytest.raises(SlackApiError) as scope:
        await web.usergroups_users_list(usergroup="S0ONCALL")
    assert scope.value.response["error"] == "missing_scope"
    with pytest.raises(SlackApiError) as failed:
        await web.chat_getPermalink(channel=CHANNEL, message_ts=question["ts"])
    assert failed.value.response["error"] == "ratelimited"
    with pytest.raises(SlackApiError) as not_in:
        await web.chat_postEphemeral(channel=CHANNEL, user="U0ALICE", text="psst")
    assert not_in.value.response["error"] == "user_not_in_channel"
    assert fake.ephemerals == []

    # only the scripted call: the next ones succeed
    assert (await web.conversations_members(channel=CHANNEL))["members"] == ["U0ALICE"]
    assert (await web.usergroups_users_list(usergroup="S0ONCALL"))["users"] == ["U0BOB"]
    assert (await web.chat_getPermalink(channel=CHANNEL, message_ts=question["ts"]))["ok"]
    assert (await web.chat_postEphemeral(channel=CHANNEL, user="U0ALICE", text="psst"))["ok"]

    for call in (
        client(fake, token="xoxp-user").conversations_members(channel=CHANNEL),
        client(fake, token="xoxp-user").usergroups_users_list(usergroup="S0ONCALL"),
        client(fake, token="xoxp-user").chat_getPermalink(channel=CHANNEL, message_ts="1.0"),
        client(fake, token="xoxp-user").chat_postEphemeral(channel=CHANNEL, user="U0A", text="x"),
    ):
        with pytest.raises(SlackApiError) as rejected:
            await call
        assert rejected.value.response["error"] == "invalid_auth"
    assert [c.token for c in fake.calls[-4:]] == ["xoxp-user"] * 4
    assert len(fake.ephemerals) == 1

    fake.reset()
    assert (fake.channel_members, fake.usergroups, fake.ephemerals) == ({}, {}, [])


async def test_chat_get_permalink(fake: FakeSlack) -> None:
    question = fake.message_event("how do I reset my password?")
    web = client(fake)
    reply = await web.chat_postMessage(channel=CHANNEL, thread_ts=question["ts"], text="Like so.")

    parent = await web.chat_getPermalink(channel=CHANNEL, message_ts=question["ts"])
    digits = question["ts"].replace(".", "")
    assert parent.data == {
        "ok": True,
        "channel": CHANNEL,
        "permalink": f"https://fake-workspace.slack.com/archives/{CHANNEL}/p{digits}",
    }
    threaded = await web.chat_getPermalink(channel=CHANNEL, message_ts=reply["ts"])
    assert threaded["permalink"] == (
        f"https://fake-workspace.slack.com/archives/{CHANNEL}/p{reply['ts'].replace('.', '')}"
        f"?thread_ts={question['ts']}&cid={CHANNEL}"
    )
    [call, _] = fake.calls_to("chat.getPermalink")
    assert (call.http_method, call.content_type) == ("GET", "")
    assert call.args == {"channel": CHANNEL, "message_ts": question["ts"]}

    with pytest.raises(SlackApiError) as missing:
        await web.chat_getPermalink(channel=CHANNEL, message_ts="1.000001")
    assert missing.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as elsewhere:
        await web.chat_getPermalink(channel="C0OTHER", message_ts=question["ts"])
    assert elsewhere.value.response["error"] == "message_not_found"


async def test_usergroups_users_list(fake: FakeSlack) -> None:
    fake.set_usergroup("S0ONCALL", ["U0ALICE", "U0BOB"])
    web = client(fake)

    listed = await web.usergroups_users_list(usergroup="S0ONCALL")

    assert listed.data == {"ok": True, "users": ["U0ALICE", "U0BOB"]}
    [call] = fake.calls_to("usergroups.users.list")
    assert (call.http_method, call.content_type) == ("GET", "")
    assert call.args == {"usergroup": "S0ONCALL"}
    fake.set_usergroup("S0EMPTY", [])
    assert (await web.usergroups_users_list(usergroup="S0EMPTY"))["users"] == []
    with pytest.raises(SlackApiError) as unknown:
        await web.usergroups_users_list(usergroup="S0NOPE")
    assert unknown.value.response["error"] == "no_such_subteam"


async def test_chat_post_ephemeral_is_recorded_not_posted(fake: FakeSlack) -> None:
    question = fake.message_event("escalate this", mention=True)
    web = client(fake)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "Only you can see this"}}]

    sent = await web.chat_postEphemeral(
        channel=CHANNEL, user="U0BOB", text="fallback", blocks=blocks, thread_ts=question["ts"]
    )
    plain = await web.chat_postEphemeral(channel=CHANNEL, user="U0ALICE", text="hi Alice")

    assert set(sent.data) == {"ok", "message_ts"}
    assert float(sent["message_ts"]) > float(question["ts"])
    assert plain["message_ts"] != sent["message_ts"]
    assert fake.ephemerals_for("U0BOB") == [
        {
            "channel": CHANNEL,
            "user": "U0BOB",
            "text": "fallback",
            "blocks": blocks,
            "thread_ts": question["ts"],
        }
    ]
    assert fake.ephemerals_for("U0ALICE") == [
        {
            "channel": CHANNEL,
            "user": "U0ALICE",
            "text": "hi Alice",
            "blocks": None,
            "thread_ts": None,
        }
    ]
    assert fake.ephemerals_for("U0CAROL") == []
    assert [e["user"] for e in fake.ephemerals] == ["U0BOB", "U0ALICE"]
    assert fake.messages(CHANNEL) == []  # never in the channel's history
    assert [m["ts"] for m in fake.messages(CHANNEL, include_events=True)] == [question["ts"]]
    call = fake.calls_to("chat.postEphemeral")[0]
    assert (call.http_method, call.content_type) == ("POST", "application/json")
    assert call.args["blocks"] == blocks

    with pytest.raises(SlackApiError) as no_text:
        await web.api_call("chat.postEphemeral", json={"channel": CHANNEL, "user": "U0BOB"})
    assert no_text.value.response["error"] == "no_text"
    assert len(fake.ephemerals) == 2


async def test_block_action_payload_and_response_url(fake: FakeSlack) -> None:
    question = fake.message_event("hi")
    posted = await client(fake).chat_postMessage(
        channel=CHANNEL, thread_ts=question["ts"], text="Was this helpful?"
    )
    payload = fake.block_action("feedback_up", "up", message_ts=posted["ts"])

    assert payload["type"] == "block_actions"
    assert payload["message"]["ts"] == posted["ts"]
    assert payload["message"]["thread_ts"] == question["ts"]
    assert payload["container"]["channel_id"] == CHANNEL
    assert payload["actions"][0]["action_id"] == "feedback_up"
    assert payload["actions"][0]["value"] == "up"
    body, headers = fake.signed_request(payload)
    assert body == form_body(payload) == fake.form_body(payload)
    assert json.loads(parse_qs(body.decode())["payload"][0]) == payload
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert SignatureVerifier(fake.signing_secret).is_valid_request(body, headers)

    async with httpx.AsyncClient() as http:
        answer = await http.post(
            payload["response_url"], json={"replace_original": True, "text": "Thanks!"}
        )
    assert answer.status_code == 200
    assert fake.response_urls == [{"replace_original": True, "text": "Thanks!"}]
    assert fake.messages(CHANNEL, thread_ts=question["ts"])[0]["text"] == "Thanks!"


# slack_sdk 3.48 builds the client-credentials header with aiohttp.BasicAuth, deprecated in 3.14.
@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
async def test_oauth_install_issues_a_workspace_token(fake: FakeSlack) -> None:
    fake.oauth_codes["code-123"] = "T0OTHER"
    web = AsyncWebClient(base_url=fake.api_url)

    installed = await web.oauth_v2_access(client_id="111.222", client_secret="shh", code="code-123")

    assert installed["access_token"] == "xoxb-installed-T0OTHER"
    assert installed["team"]["id"] == "T0OTHER"
    assert installed["bot_user_id"] == fake.bot_user_id
    [call] = fake.calls_to("oauth.v2.access")
    assert call.args["client_id"] == "111.222"  # from HTTP Basic auth
    assert call.args["code"] == "code-123"
    assert call.token is None
    identity = await client(fake, token=installed["access_token"]).auth_test()
    assert identity["team_id"] == "T0OTHER"


async def test_bolt_app_handles_a_signed_mention(fake: FakeSlack) -> None:
    app = AsyncApp(signing_secret=fake.signing_secret, client=client(fake))

    @app.event("app_mention")
    async def answer(event: dict[str, Any], say: Any) -> None:
        await say(text="Hello from bolt", thread_ts=event["ts"])

    mention = fake.message_event("hi", mention=True)
    body, headers = fake.signed_request(fake.event_envelope(mention))
    response = await app.async_dispatch(bolt_request(body, headers))
    assert response.status == 200
    for _ in range(200):  # bolt acks first and runs the listener in the background
        if fake.messages(CHANNEL):
            break
        await asyncio.sleep(0.01)
    assert fake.messages(CHANNEL, thread_ts=mention["ts"])[0]["text"] == "Hello from bolt"
    [post] = fake.calls_to("chat.postMessage")
    assert post.args["team_id"] == fake.team_id  # bolt's per-request client adds team_id

    forged_headers = fake.signed_headers(body, secret="not-the-secret")
    rejected = await app.async_dispatch(bolt_request(body, forged_headers))
    assert rejected.status == 401


# -- Socket Mode ---------------------------------------------------------------------------------


def socket_mode_app(fake: FakeSlack) -> AsyncApp:
    """A Bolt app whose client (and so the Socket Mode handler's web client) is the fake's."""
    return AsyncApp(client=client(fake))


async def test_socket_mode_wire_protocol(fake: FakeSlack) -> None:
    opened = await client(fake).apps_connections_open(app_token=fake.app_token)
    url = urlsplit(opened["url"])
    assert (url.scheme, url.path) == ("ws", "/link/")
    assert parse_qs(url.query)["app_id"] == [fake.app_id]
    assert fake.calls_to("apps.connections.open")[0].token == fake.app_token

    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as unknown:
            await http.ws_connect(f"{fake.base_url}/link/?ticket=forged&app_id={fake.app_id}")
        assert unknown.value.status == 401

        ws = await http.ws_connect(opened["url"], autoping=False)
        assert await ws.receive_json() == {
            "type": "hello",
            "num_connections": 1,
            "debug_info": {
                "host": "applink-fake",
                "build_number": 10,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": fake.app_id},
        }
        assert fake.socket_connections == 1 and fake.connected_sockets == 1
        await ws.ping(b"sdk-ping-pong:1.5")
        pong = await ws.receive()
        assert (pong.type, pong.data) == (aiohttp.WSMsgType.PONG, b"sdk-ping-pong:1.5")

        event = fake.event_envelope(fake.message_event("hi", mention=True))
        event_id = fake.push_event(event, retry_attempt=1, retry_reason="timeout")
        assert await ws.receive_json() == {
            "envelope_id": event_id,
            "payload": event,
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": 1,
            "retry_reason": "timeout",
        }
        click = fake.block_action("feedback_up", "up")
        click_id = fake.push_interactive(click)
        assert await ws.receive_json() == {
            "envelope_id": click_id,
            "payload": click,
            "type": "interactive",
            "accepts_response_payload": True,
        }
        command_id = fake.push_slash_command({"command": "/ask", "text": "vpn?"})
        command = await ws.receive_json()
        assert command["type"] == "slash_commands" and command["accepts_response_payload"] is True
        assert command["envelope_id"] == command_id
        assert command["payload"]["command"] == "/ask" and command["payload"]["text"] == "vpn?"
        assert command["payload"]["user_id"] == "U0ALICE"
        assert command["payload"]["channel_id"] == CHANNEL
        async with httpx.AsyncClient() as responder:
            answer = {"response_type": "in_channel", "text": "Try reconnecting."}
            await responder.post(command["payload"]["response_url"], json=answer)
        assert fake.messages(CHANNEL)[-1]["text"] == "Try reconnecting."
        assert [e["envelope_id"] for e in fake.envelopes] == [event_id, click_id, command_id]

        await ws.send_json({"envelope_id": event_id})
        await ws.send_str("not json")
        assert fake.wait_for_ack(event_id, timeout=2) == {"envelope_id": event_id}
        assert fake.acks == [{"envelope_id": event_id}]
        await eventually(lambda: len(fake.socket_frames) == 3)
        assert [(f.kind, f.data) for f in fake.socket_frames] == [
            ("ping", b"sdk-ping-pong:1.5"),
            ("text", {"envelope_id": event_id}),
            ("text", "not json"),
        ]
        assert {f.connection for f in fake.socket_frames} == {1}
        with pytest.raises(TimeoutError, match="not acked"):
            await fake.wait_for_ack_async(click_id, timeout=0.05)

        fake.drop_connections()
        closed = await ws.receive()
        assert closed.type == aiohttp.WSMsgType.CLOSE
        assert fake.connected_sockets == 0
        queued = fake.push_event(event)  # no client: waits for the next connection
        with pytest.raises(TimeoutError, match="not delivered"):
            fake.wait_for_ack(queued, timeout=0.05)
        await ws.close()

        async with http.ws_connect(opened["url"]) as again:
            assert (await again.receive_json())["type"] == "hello"
            assert (await again.receive_json())["envelope_id"] == queued
            assert fake.socket_connections == 2
            fake.reset()  # closes the socket and forgets the socket state
            assert (await again.receive()).type == aiohttp.WSMsgType.CLOSE
    assert (fake.socket_connections, fake.acks, fake.envelopes) == (0, [], [])
    await eventually(lambda: fake.connected_sockets == 0)
    assert fake.socket_frames == []  # the old connection's close answer is not recorded


async def test_socket_mode_handler_dispatches_a_mention_and_acks(fake: FakeSlack) -> None:
    app = socket_mode_app(fake)
    seen: list[dict[str, Any]] = []

    @app.event("app_mention")
    async def answer(event: dict[str, Any], say: Any) -> None:
        await say(text="Hello over Socket Mode", thread_ts=event["ts"])

    handler = AsyncSocketModeHandler(app, fake.app_token)

    async def record(_client: Any, message: dict[str, Any], _raw: str | None) -> None:
        seen.append(message)

    handler.client.message_listeners.append(record)
    try:
        await handler.connect_async()
        [opened] = fake.calls_to("apps.connections.open")
        assert opened.token == fake.app_token  # the app token replaces the client's bot token
        assert fake.socket_connections == 1

        mention = fake.message_event("hi", mention=True)
        envelope = fake.event_envelope(mention)
        envelope_id = fake.push_event(envelope)
        assert await fake.wait_for_ack_async(envelope_id) == {"envelope_id": envelope_id}
        [reply] = await eventually(lambda: fake.messages(CHANNEL, thread_ts=mention["ts"]))
        assert reply["text"] == "Hello over Socket Mode"
        assert fake.calls_to("chat.postMessage")[0].token == fake.bot_token
        assert seen[0]["type"] == "hello"
        assert seen[1]["payload"] == envelope
        assert any(f.kind == "ping" for f in fake.socket_frames)  # the SDK's first ping
    finally:
        await handler.close_async()
    await eventually(lambda: fake.connected_sockets == 0)
    assert fake.socket_frames[-1].kind == "close"


async def test_socket_mode_handler_reconnects_after_the_server_drops_it(fake: FakeSlack) -> None:
    app = socket_mode_app(fake)
    texts: list[str] = []

    @app.event("app_mention")
    async def mentioned(event: dict[str, Any]) -> None:
        texts.append(event["text"])

    handler = AsyncSocketModeHandler(app, fake.app_token)
    try:
        await handler.connect_async()
        first = fake.push_event(fake.event_envelope(fake.message_event("one", mention=True)))
        await fake.wait_for_ack_async(first)

        fake.drop_connections()
        second = fake.push_event(fake.event_envelope(fake.message_event("two", mention=True)))
        await fake.wait_for_ack_async(second)  # delivered once the client has reconnected

        assert fake.socket_connections == 2
        assert len(fake.calls_to("apps.connections.open")) == 2
        assert [(a["envelope_id"], f.connection) for a, f in _ack_frames(fake)] == [
            (first, 1),
            (second, 2),
        ]
        await eventually(lambda: len(texts) == 2)
        assert texts == [f"<@{fake.bot_user_id}> one", f"<@{fake.bot_user_id}> two"]
    finally:
        await handler.close_async()


def _ack_frames(fake: FakeSlack) -> list[tuple[dict[str, Any], Any]]:
    return [
        (f.data, f)
        for f in fake.socket_frames
        if f.kind == "text" and isinstance(f.data, dict) and "envelope_id" in f.data
    ]


async def test_socket_mode_handler_acks_commands_and_actions(fake: FakeSlack) -> None:
    app = socket_mode_app(fake)

    @app.command("/ask")
    async def ask(ack: Any, command: dict[str, Any]) -> None:
        await ack(text=f"Looking into {command['text']}")

    @app.action("feedback_up")
    async def feedback(ack: Any) -> None:
        await ack()

    handler = AsyncSocketModeHandler(app, fake.app_token)
    try:
        await handler.connect_async()
        command_id = fake.push_slash_command({"command": "/ask", "text": "the VPN"})
        ack = await fake.wait_for_ack_async(command_id)
        assert ack == {"envelope_id": command_id, "payload": {"text": "Looking into the VPN"}}
        click_id = fake.push_interactive(fake.block_action("feedback_up", "up"))
        assert await fake.wait_for_ack_async(click_id) == {"envelope_id": click_id}
    finally:
        await handler.close_async()


async def test_socket_mode_rejects_wrong_app_tokens(
    fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    web = client(fake)
    for token, error in [
        ("xapp-1-revoked", "invalid_auth"),
        (fake.bot_token, "not_allowed_token_type"),
        ("", "not_authed"),
    ]:
        with pytest.raises(SlackApiError) as rejected:
            await web.apps_connections_open(app_token=token)
        assert rejected.value.response["error"] == error

    # The SDK's connect() never raises: it logs the error and retries every ping_interval.
    handler = AsyncSocketModeHandler(socket_mode_app(fake), "xapp-1-revoked", ping_interval=0.05)
    with pytest.raises(SlackApiError, match="invalid_auth"):
        await handler.client.issue_new_wss_url()  # what a caller can check before connecting
    with caplog.at_level(logging.ERROR):
        connecting = asyncio.create_task(handler.connect_async())
        await eventually(lambda: len(fake.calls_to("apps.connections.open")) >= 6)
        await handler.close_async()
        await asyncio.wait_for(connecting, timeout=1)
    assert "Failed to connect" in caplog.text and "invalid_auth" in caplog.text
    assert fake.socket_connections == 0
