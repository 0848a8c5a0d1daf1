"""Teams end to end: activities in over HTTP, the real botbuilder out to the fake connector.

Authentication runs botbuilder's real JWT validation against the fake token issuer's signing
keys and OpenID metadata; the bot's own token comes from the issuer through msal over HTTPS.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.base import DestinationUnavailable
from bot.model import ConversationKey
from bot.server import create_app, platform_adapters
from tests.adapters.worker_crash import kill_the_worker, take_over
from tests.conftest import LiveServer, make_settings, running_server, wait_for
from tests.fakes.botframework_server import FakeBotFramework
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
       b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
       b"\x00\x00\x00\x00IEND\xaeB`\x82")


class TeamsServer(LiveServer):
    teams: Any  # the running TeamsAdapter, for proactive posts
    sign: Any = None  # with authentication on: activity -> headers with a valid token


@contextmanager
def teams_server(settings: Any) -> Iterator[TeamsServer]:
    built: dict[str, Any] = {}

    def make_app(hub: Any) -> Any:
        adapters = platform_adapters(hub, teams_update_interval=0.05)
        built["teams"] = next(a for a in adapters if a.name == "teams")
        return create_app(hub, services=False, adapters=adapters)

    with running_server(settings, make_app) as live:
        server = TeamsServer(url=live.url, hub=live.hub, loop=live.loop)
        server.teams = built["teams"]
        yield server


def teams_settings(tmp_path: Path, fake_openai: FakeOpenAI, fake: FakeBotFramework, *,
                   auth: bool, **overrides: Any) -> Any:
    values: dict[str, Any] = {"teams_allowed_service_urls": fake.service_url}
    if auth:
        values.update(microsoft_app_id=fake.app_id, microsoft_app_password=fake.app_password,
                      teams_openid_metadata_url=fake.issuer.openid_metadata_url,
                      teams_login_url=fake.issuer.login_url_prefix)
    values.update(overrides)
    return make_settings(tmp_path, fake_openai, **values)


@pytest.fixture
def open_server(tmp_path: Path, fake_openai: FakeOpenAI,
                fake_teams: FakeBotFramework) -> Iterator[TeamsServer]:
    """Authentication off: the local-emulator mode."""
    with teams_server(teams_settings(tmp_path, fake_openai, fake_teams, auth=False)) as live:
        yield live


@pytest.fixture(params=["auth off", "auth on"])
def server(request: pytest.FixtureRequest, fake_teams: FakeBotFramework) -> TeamsServer:
    """Each behaviour in the emulator mode and as in production; `post` signs when needed."""
    if request.param == "auth off":
        live: TeamsServer = request.getfixturevalue("open_server")
        return live
    live = request.getfixturevalue("secure_server")
    live.sign = fake_teams.auth_headers
    return live


@pytest.fixture
def secure_server(tmp_path: Path, fake_openai: FakeOpenAI, fake_teams: FakeBotFramework,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[TeamsServer]:
    """Authentication on, as in production."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake_teams.issuer.ca_path)
    fake_teams.require_auth = True
    with teams_server(teams_settings(tmp_path, fake_openai, fake_teams, auth=True)) as live:
        yield live


def post(server: TeamsServer, activity: Any, headers: dict[str, str] | None = None,
         **options: Any) -> httpx.Response:
    if isinstance(activity, (bytes, str)):
        return httpx.post(f"{server.url}/api/messages", content=activity,
                          headers=headers or {"Content-Type": "application/json"}, timeout=15,
                          **options)
    if headers is None and server.sign is not None:
        headers = server.sign(activity)
    return httpx.post(f"{server.url}/api/messages", json=activity, headers=headers, timeout=15,
                      **options)


def messages(fake: FakeBotFramework, conversation_id: str) -> list[dict[str, Any]]:
    return [a for a in fake.activities(conversation_id) if a.get("type") == "message"]


def answer(fake: FakeBotFramework, conversation_id: str, timeout: float = 10) -> dict[str, Any]:
    """The bot's finished answer: the message carrying the feedback card."""
    def find() -> dict[str, Any] | None:
        return next((m for m in messages(fake, conversation_id)
                     if any(a.get("contentType") == "application/vnd.microsoft.card.adaptive"
                            for a in m.get("attachments") or [])), None)
    return wait_for(find, timeout=timeout)


def streaminfo(activity: dict[str, Any]) -> dict[str, Any] | None:
    return next((e for e in activity.get("entities") or [] if e.get("type") == "streaminfo"),
                None)


# -- conversations ---------------------------------------------------------------------------

def test_a_personal_chat_streams_the_answer_and_remembers(
        server: TeamsServer, fake_teams: FakeBotFramework, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="Open **Settings**, then choose Security and reset "
                                         "your password there.", chunk_delay=0.03))
    first = fake_teams.message("how do I reset my password?")
    assert post(server, first).status_code == 200
    conversation = first["conversation"]["id"]
    final = answer(fake_teams, conversation)

    sent = fake_teams.activities(conversation)
    assert sent[0]["type"] == "typing" and streaminfo(sent[0]) is None  # at once
    informative = sent[1]
    assert streaminfo(informative)["streamType"] == "informative"
    updates = [a for a in sent if a["type"] == "typing" and streaminfo(a)
               and streaminfo(a)["streamType"] == "streaming"]
    assert updates, "the answer should grow in place"
    stream_id = streaminfo(updates[0])["streamId"]
    assert stream_id and all(streaminfo(u)["streamId"] == stream_id for u in updates)
    sequences = [streaminfo(a)["streamSequence"] for a in [informative, *updates]]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    assert final["text"] == ("Open **Settings**, then choose Security and reset your password "
                             "there.")
    assert final["textFormat"] == "markdown"
    assert streaminfo(final) == {"type": "streaminfo", "streamType": "final",
                                 "streamId": stream_id}
    assert any("AIGeneratedContent" in (e.get("additionalType") or [])
               for e in final["entities"])
    assert len(messages(fake_teams, conversation)) == 1

    follow_up = fake_teams.message("and what did I ask before?",
                                   conversation_id=conversation)
    post(server, follow_up)
    wait_for(lambda: len([m for m in messages(fake_teams, conversation)
                          if m.get("attachments")]) == 2)
    prompt = fake_openai.chat_requests()[-1]["messages"]
    assert {"role": "user", "content": "how do I reset my password?"} in prompt
    assert prompt[-1] == {"role": "user", "content": "and what did I ask before?"}


def test_a_channel_mention_is_answered_in_its_reply_chain_without_streaming(
        server: TeamsServer, fake_teams: FakeBotFramework, fake_openai: FakeOpenAI) -> None:
    post_ = fake_teams.message("where are the invoices?", scope="channel", mention_bot=True)
    assert post(server, post_).status_code == 200
    conversation = post_["conversation"]["id"]
    final = answer(fake_teams, conversation)
    assert final["text"] == "You said: where are the invoices?"
    assert streaminfo(final) is None
    assert not [a for a in fake_teams.activities(conversation) if streaminfo(a)]
    replies = [c for c in fake_teams.calls("POST") if c.conversation_id == conversation]
    assert replies and all(c.activity_id == post_["id"] for c in replies)  # in the chain
    assert fake_openai.chat_requests()[-1]["messages"][-1]["content"] == \
        "where are the invoices?"  # the mention is not part of the question

    chat = fake_teams.message("just chatting among ourselves", scope="channel")
    post(server, chat)
    time.sleep(0.3)
    assert len(fake_openai.chat_requests()) == 1
    assert not fake_teams.activities(chat["conversation"]["id"])


def test_follow_ups_in_the_same_reply_chain_share_the_conversation(
        server: TeamsServer, fake_teams: FakeBotFramework, fake_openai: FakeOpenAI) -> None:
    first = fake_teams.message("my plan is Team", scope="channel", mention_bot=True)
    post(server, first)
    answer(fake_teams, first["conversation"]["id"])
    root = first["conversation"]["id"].split(";messageid=")[1]
    second = fake_teams.message("which plan am I on?", scope="channel", mention_bot=True,
                                reply_chain=root)
    post(server, second)
    wait_for(lambda: len(fake_openai.chat_requests()) == 2)
    contents = [m["content"] for m in fake_openai.chat_requests()[-1]["messages"]]
    assert "my plan is Team" in contents

    elsewhere = fake_teams.message("which plan am I on?", scope="channel", mention_bot=True)
    post(server, elsewhere)
    wait_for(lambda: len(fake_openai.chat_requests()) == 3)
    contents = [m["content"] for m in fake_openai.chat_requests()[-1]["messages"]]
    assert "my plan is Team" not in contents  # another reply chain, another conversation


def test_a_group_chat_needs_a_mention_and_gets_one_message(
        server: TeamsServer, fake_teams: FakeBotFramework, fake_openai: FakeOpenAI) -> None:
    ignored = fake_teams.message("lunch at noon?", scope="groupChat")
    asked = fake_teams.message("what does the Team plan cost?", scope="groupChat",
                               mention_bot=True,
                               conversation_id=ignored["conversation"]["id"])
    post(server, ignored)
    post(server, asked)
    final = answer(fake_teams, asked["conversation"]["id"])
    assert final["text"] == "You said: what does the Team plan cost?"
    assert len(fake_openai.chat_requests()) == 1
    assert len(messages(fake_teams, asked["conversation"]["id"])) == 1


def test_long_answers_are_split_into_several_messages(
        server: TeamsServer, fake_teams: FakeBotFramework, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="word " * 4000))
    question = fake_teams.message("tell me everything", scope="groupChat", mention_bot=True)
    post(server, question)
    answer(fake_teams, question["conversation"]["id"])
    sent = messages(fake_teams, question["conversation"]["id"])
    assert len(sent) == 2
    assert " ".join(m["text"] for m in sent).split() == ["word"] * 4000
    assert "attachments" not in sent[0]


# -- authentication --------------------------------------------------------------------------

def test_a_signed_activity_is_answered_with_the_bots_own_token(
        secure_server: TeamsServer, fake_teams: FakeBotFramework) -> None:
    activity = fake_teams.message("hello with a token")
    response = post(secure_server, activity, headers=fake_teams.auth_headers(activity))
    assert response.status_code == 200
    final = answer(fake_teams, activity["conversation"]["id"])
    assert final["text"] == "You said: hello with a token"
    calls = [c for c in fake_teams.calls() if c.conversation_id == activity["conversation"]["id"]]
    issued = fake_teams.issuer.issued_tokens
    assert calls and all(c.authorization and c.authorization.split(" ", 1)[1] in issued
                         for c in calls)
    assert {r.tenant for r in fake_teams.issuer.token_requests} == {"botframework.com"}
    # msal's cache is kept: one token for many calls
    assert len(fake_teams.issuer.token_requests) == 1


@pytest.mark.parametrize("token", [
    {"signed_with": "none"},
    {"signed_with": "forged"},
    {"expires_in": -3600},
    {"extra_claims": {"exp": None}},  # a token that never expires is not accepted
    {"audience": "someone-elses-app"},
    {"issuer": "https://sts.example.com/"},
    {"service_url": "https://smba.trafficmanager.net/emea/"},
])
def test_bad_tokens_get_401_and_no_work(
        secure_server: TeamsServer, fake_teams: FakeBotFramework, fake_openai: FakeOpenAI,
        token: dict[str, Any]) -> None:
    activity = fake_teams.message("let me in")
    response = post(secure_server, activity, headers=fake_teams.auth_headers(activity, **token))
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized"}
    time.sleep(0.2)
    assert not fake_teams.calls() and not fake_openai.chat_requests()


def test_no_token_and_garbage_tokens_get_401(
        secure_server: TeamsServer, fake_teams: FakeBotFramework) -> None:
    activity = fake_teams.message("let me in")
    assert post(secure_server, activity).status_code == 401
    for header in ["Bearer", "Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Bearer a.b.c"]:
        response = post(secure_server, activity, headers={"Authorization": header})
        assert response.status_code == 401, header
    assert not fake_teams.calls()


def test_a_single_tenant_bot_gets_its_token_from_its_tenant(
        tmp_path: Path, fake_openai: FakeOpenAI, fake_teams: FakeBotFramework,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake_teams.issuer.ca_path)
    fake_teams.require_auth = True
    settings = teams_settings(tmp_path, fake_openai, fake_teams, auth=True,
                              microsoft_app_tenant_id="contoso-tenant")
    with teams_server(settings) as server:
        activity = fake_teams.message("single tenant?")
        post(server, activity, headers=fake_teams.auth_headers(activity))
        answer(fake_teams, activity["conversation"]["id"])
    assert {r.tenant for r in fake_teams.issuer.token_requests} == {"contoso-tenant"}


def test_a_wrong_app_password_is_logged_and_nothing_is_lost(
        tmp_path: Path, fake_openai: FakeOpenAI, fake_teams: FakeBotFramework,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake_teams.issuer.ca_path)
    fake_teams.require_auth = True
    settings = teams_settings(tmp_path, fake_openai, fake_teams, auth=True,
                              microsoft_app_password="wrong")
    with teams_server(settings) as server:
        activity = fake_teams.message("will I get an answer?")
        assert post(server, activity, headers=fake_teams.auth_headers(activity)).status_code \
            == 200
        wait_for(lambda: fake_teams.issuer.token_requests)
        stored = wait_for(lambda: server.run(_stored_texts(server)) or None)
    assert "will I get an answer?" in stored
    calls = fake_teams.calls()
    assert calls and all(c.status == 401 and c.authorization is None for c in calls)


async def _stored_texts(server: LiveServer) -> list[str]:
    from sqlalchemy import select

    from bot.store.tables import StoredMessage

    async with server.hub.database.connect() as connection:
        return list((await connection.execute(select(StoredMessage.text))).scalars())


# -- cards, lifecycle, proactive ---------------------------------------------------------------

def test_feedback_buttons_are_stored_and_acknowledged(
        server: TeamsServer, fake_teams: FakeBotFramework) -> None:
    question = fake_teams.message("rate me")
    post(server, question)
    card = answer(fake_teams, question["conversation"]["id"])["attachments"][0]["content"]
    up = next(a for a in card["actions"] if a["data"]["vote"] == "up")
    assert up["type"] == "Action.Execute"

    click = fake_teams.invoke_action(up["verb"], up["data"],
                                     conversation_id=question["conversation"]["id"])
    response = post(server, click)
    assert response.status_code == 200
    assert response.json()["statusCode"] == 200
    assert "Thanks for the feedback" in json.dumps(response.json()["value"])
    async def votes() -> list[tuple[str, int]]:
        store = server.hub.store
        conversation = await store.find(ConversationKey(
            "teams", fake_teams.tenant_id, question["conversation"]["id"],
            question["conversation"]["id"]))
        assert conversation is not None
        rows = await store.messages(conversation.id)
        return await store.feedback(rows[1].id)

    assert server.run(votes()) == [(question["from"]["aadObjectId"], 1)]

    forged = fake_teams.invoke_action(up["verb"], {"ref": "999999", "vote": "down"})
    assert "couldn't record" in json.dumps(post(server, forged).json())
    unknown = fake_teams.invoke_action("launch.rockets", {})
    response = post(server, unknown)
    assert response.status_code == 200 and response.json()["statusCode"] == 400


def test_being_added_says_hello_and_enables_proactive_posts(
        server: TeamsServer, fake_teams: FakeBotFramework) -> None:
    added = fake_teams.conversation_update(scope="channel")
    assert post(server, added).status_code == 200
    channel = added["conversation"]["id"].split(";")[0]
    hello = wait_for(lambda: messages(fake_teams, added["conversation"]["id"])
                     or messages(fake_teams, channel))
    assert "@-mention me" in hello[0]["text"]

    adapter = server.teams
    posted = server.run(adapter.post_to(channel, [{"type": "message", "text": "escalated"}]))
    assert posted
    assert any(m["text"] == "escalated" for m in messages(fake_teams, channel))
    with pytest.raises(DestinationUnavailable):
        server.run(adapter.post_to("19:never-seen@thread.tacv2", [{"type": "message",
                                                                       "text": "x"}]))


def test_installation_updates_and_unknown_activities_are_accepted_quietly(
        server: TeamsServer, fake_teams: FakeBotFramework, fake_openai: FakeOpenAI) -> None:
    install = fake_teams.installation_update("add")
    assert post(server, install).status_code == 200
    adapter = server.teams
    reference = wait_for(lambda: server.run(
        adapter._conversations.find(install["conversation"]["id"])))
    assert reference["serviceUrl"] == fake_teams.service_url
    for activity in [fake_teams.installation_update("remove"), fake_teams.typing(),
                     fake_teams.message_reaction(),
                     {**fake_teams.typing(), "type": "somethingNew"}]:
        assert post(server, activity).status_code == 200
    time.sleep(0.2)
    assert not fake_openai.chat_requests()
    assert not [a for a in fake_teams.activities() if a.get("type") == "message"]


def test_a_service_url_from_settings_reaches_an_unseen_conversation(
        tmp_path: Path, fake_openai: FakeOpenAI, fake_teams: FakeBotFramework) -> None:
    settings = teams_settings(tmp_path, fake_openai, fake_teams, auth=False,
                              teams_service_url=fake_teams.service_url)
    with teams_server(settings) as server:
        adapter = server.teams
        server.run(adapter.post_to("19:agents@thread.tacv2",
                                   [{"type": "message", "text": "a new escalation"}]))
    assert messages(fake_teams, "19:agents@thread.tacv2")[0]["text"] == "a new escalation"


# -- attachments -----------------------------------------------------------------------------

def test_pasted_images_are_fetched_with_the_bots_token_and_seen_by_the_model(
        secure_server: TeamsServer, fake_teams: FakeBotFramework, fake_openai: FakeOpenAI) -> None:
    inline = fake_teams.add_attachment(PNG, "image/png")
    upload = fake_teams.add_file("screenshot.png", PNG, "image/png")
    activity = fake_teams.message("what is on these screenshots?", attachments=[
        fake_teams.image_attachment(inline, content_type="image/*"),
        fake_teams.file_download_attachment("screenshot.png", upload),
        fake_teams.html_attachment("<p>what is on these screenshots?</p>")])
    post(secure_server, activity, headers=fake_teams.auth_headers(activity))
    answer(fake_teams, activity["conversation"]["id"])
    content = fake_openai.chat_requests()[-1]["messages"][-1]["content"]
    images = [part["image_url"]["url"] for part in content if part["type"] == "image_url"]
    assert len(images) == 2 and all(i.startswith("data:image/png;base64,") for i in images)
    downloads = [c for c in fake_teams.calls("GET")]
    by_path = {c.path.split("/")[1]: c for c in downloads}
    assert by_path["v3"].authorization.split(" ", 1)[1] in fake_teams.issuer.issued_tokens
    assert by_path["files"].authorization is None  # pre-authenticated: no token sent


def test_the_token_never_goes_to_another_host(
        secure_server: TeamsServer, fake_teams: FakeBotFramework, fake_openai: FakeOpenAI) -> None:
    inline = fake_teams.add_attachment(PNG, "image/png")
    elsewhere = inline.replace("127.0.0.1", "localhost")  # the same fake under another name
    activity = fake_teams.message("look", attachments=[fake_teams.image_attachment(elsewhere)])
    post(secure_server, activity, headers=fake_teams.auth_headers(activity))
    final = answer(fake_teams, activity["conversation"]["id"])
    fetches = fake_teams.calls("GET")
    assert len(fetches) == 1 and fetches[0].authorization is None
    assert "couldn't use" in final["text"]  # unavailable without the token, and said so
    assert not [p for p in fake_openai.chat_requests()[-1]["messages"][-1]["content"]
                if isinstance(p, dict) and p.get("type") == "image_url"]


# -- bad input and faults --------------------------------------------------------------------

@pytest.mark.parametrize(("body", "status"), [
    (b"not json", 400),
    (b"\xff\xfe\x00", 400),
    (b"[" * 100_000, 400),  # deeper than Python's json can recurse
    (b'{"type": "message", "id": ' + b"9" * 5_000 + b"}", 400),  # past the int digit limit
    (b"[1, 2, 3]", 400),
    (b'{"text": "no type"}', 400),
    (b'{"type": 5}', 400),
    (b'{"type": "message", "text": "no conversation", "serviceUrl": "http://127.0.0.1:9/"}', 400),
    (b'{"type": "message", "entities": "not a list", "serviceUrl": "http://127.0.0.1:9/"}', 400),
])
def test_malformed_activities_get_a_clear_error(
        open_server: TeamsServer, body: bytes, status: int) -> None:
    response = post(open_server, body)
    assert response.status_code == status
    assert "error" in response.json()


def test_a_huge_body_is_refused_unread(open_server: TeamsServer,
                                       fake_teams: FakeBotFramework) -> None:
    activity = fake_teams.message("x" * (600 * 1024))
    assert post(open_server, activity).status_code == 413


def test_a_long_message_gets_a_polite_reply(
        server: TeamsServer, fake_teams: FakeBotFramework, fake_openai: FakeOpenAI) -> None:
    activity = fake_teams.message("why? " * 20_000)
    assert post(server, activity).status_code == 200
    reply = wait_for(lambda: messages(fake_teams, activity["conversation"]["id"]))
    assert "characters long; I can read up to 8,000" in reply[0]["text"]
    assert not fake_openai.chat_requests()


def test_a_service_url_that_is_not_allowed_is_refused(
        tmp_path: Path, fake_openai: FakeOpenAI, fake_teams: FakeBotFramework) -> None:
    settings = teams_settings(tmp_path, fake_openai, fake_teams, auth=False,
                              teams_allowed_service_urls="")
    with teams_server(settings) as server:
        for url in ["https://attacker.example/", "http://169.254.169.254/", "file:///etc/"]:
            activity = {**fake_teams.message("call home"), "serviceUrl": url}
            assert post(server, activity).status_code == 403
        assert post(server, fake_teams.message("loopback is the emulator")).status_code == 200


def test_a_redelivered_activity_is_answered_once(
        server: TeamsServer, fake_teams: FakeBotFramework, fake_openai: FakeOpenAI) -> None:
    activity = fake_teams.message("only once please")
    for _ in range(3):
        assert post(server, activity).status_code == 200
    answer(fake_teams, activity["conversation"]["id"])
    time.sleep(0.3)
    assert len(fake_openai.chat_requests()) == 1
    assert len(messages(fake_teams, activity["conversation"]["id"])) == 1


def test_a_connector_failing_mid_stream_still_delivers_the_answer(
        server: TeamsServer, fake_teams: FakeBotFramework, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="A careful answer " * 10, chunk_delay=0.02))
    activity = fake_teams.message("stream through failures")
    conversation = activity["conversation"]["id"]
    post(server, activity)
    wait_for(lambda: any(streaminfo(a) for a in fake_teams.activities(conversation)))
    fake_teams.fail_next(1, status=500)  # a stream update: the stream ends, the answer comes
    final = answer(fake_teams, conversation)
    assert final["text"] == ("A careful answer " * 10).strip()


def test_a_throttled_connector_is_retried_after_its_retry_after(
        server: TeamsServer, fake_teams: FakeBotFramework) -> None:
    fake_teams.fail_next(1, status=429, retry_after=1)
    activity = fake_teams.message("hello slowly", scope="groupChat", mention_bot=True)
    post(server, activity)
    final = answer(fake_teams, activity["conversation"]["id"])
    assert final["text"] == "You said: hello slowly"
    assert len(messages(fake_teams, activity["conversation"]["id"])) == 1


def test_a_connector_that_is_down_loses_nothing(
        server: TeamsServer, fake_teams: FakeBotFramework) -> None:
    fake_teams.fail_next(100, status=500)
    activity = fake_teams.message("is anyone there?")
    assert post(server, activity).status_code == 200
    stored = wait_for(lambda: [t for t in server.run(_stored_texts(server))
                               if "is anyone there?" in t and t.startswith("You said")])
    assert stored


def test_fifty_concurrent_conversations_each_get_their_own_answer(
        server: TeamsServer, fake_teams: FakeBotFramework) -> None:
    questions = [fake_teams.message(f"question number {n}", user_id=f"29:user-{n}",
                                    conversation_id=f"a:personal-{n}") for n in range(50)]
    with ThreadPoolExecutor(max_workers=25) as pool:
        statuses = list(pool.map(lambda a: post(server, a).status_code, questions))
    assert statuses == [200] * 50
    for n, question in enumerate(questions):
        final = answer(fake_teams, question["conversation"]["id"], timeout=30)
        assert final["text"] == f"You said: question number {n}"
        assert len(messages(fake_teams, question["conversation"]["id"])) == 1


# -- a worker that dies mid-answer -----------------------------------------------------------

async def _kill_the_worker_and_take_over(server: TeamsServer) -> None:
    await kill_the_worker(server, "teams")
    await take_over(server)


async def _inbox_rows(server: LiveServer) -> list[Any]:
    from sqlalchemy import select

    from bot.store.tables import InboxEntry

    async with server.hub.database.connect() as connection:
        return list((await connection.execute(
            select(InboxEntry.state, InboxEntry.attempts, InboxEntry.route, InboxEntry.posted)
            .order_by(InboxEntry.id))).all())


def test_a_personal_answer_cut_short_by_a_dead_worker_is_finished_in_its_streamed_message(
        server: TeamsServer, fake_teams: FakeBotFramework, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="partly written " * 60, chunk_delay=0.05))
    activity = fake_teams.message("where are my invoices?")
    conversation = activity["conversation"]["id"]
    assert post(server, activity).status_code == 200
    growing = wait_for(lambda: [a for a in fake_teams.activities(conversation)
                                if (streaminfo(a) or {}).get("streamType") == "streaming"])
    stream_id = (streaminfo(growing[0]) or {})["streamId"]  # the worker dies mid-stream
    assert fake_openai.chat_requests()

    fake_openai.queue(ScriptedReply(text="Invoices are under Billing."))
    server.run(_kill_the_worker_and_take_over(server))

    [final] = fake_teams.messages(conversation)
    assert final["id"] == stream_id and final["text"] == "Invoices are under Billing."
    assert any(a.get("contentType") == "application/vnd.microsoft.card.adaptive"
               for a in final.get("attachments") or [])  # the feedback card, as usual
    [edit] = fake_teams.updates(conversation, activity_id=stream_id)  # a PUT of that message
    assert edit["type"] == "message" and edit["text"] == "Invoices are under Billing."
    posted = [c for c in fake_teams.calls("POST") if c.conversation_id == conversation]
    assert not [c for c in posted if (c.body or {}).get("type") == "message"]  # no new post
    assert len(fake_openai.chat_requests()) == 2
    [(state, attempts, _route, noted)] = server.run(_inbox_rows(server))
    assert (state, attempts, noted) == ("done", 2, {"answer": stream_id})


def test_a_channel_answer_lost_with_its_worker_is_posted_once_after_the_takeover(
        server: TeamsServer, fake_teams: FakeBotFramework, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="never finished", delay=30))
    question = fake_teams.message("where are the invoices?", scope="channel", mention_bot=True)
    conversation = question["conversation"]["id"]
    assert post(server, question).status_code == 200
    wait_for(lambda: fake_openai.chat_requests())  # the model is writing; nothing is shown
    assert messages(fake_teams, conversation) == []

    fake_openai.queue(ScriptedReply(text="Invoices are under Billing."))
    server.run(_kill_the_worker_and_take_over(server))

    [final] = fake_teams.messages(conversation)
    assert final["text"] == "Invoices are under Billing." and streaminfo(final) is None
    assert final["conversation"]["id"] == conversation  # in the question's reply chain
    assert fake_teams.updates() == []
    assert len(fake_openai.chat_requests()) == 2
    [(state, attempts, _route, noted)] = server.run(_inbox_rows(server))
    assert (state, attempts, noted) == ("done", 2, {"answer": final["id"]})


def test_a_message_is_acknowledged_only_once_its_question_is_in_the_inbox(
        server: TeamsServer, fake_teams: FakeBotFramework, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="Slowly but surely.", delay=1.5))
    activity = fake_teams.message("is this kept if you crash?")
    conversation = activity["conversation"]["id"]
    assert post(server, activity).status_code == 200
    [(state, attempts, route, _posted)] = server.run(_inbox_rows(server))  # right after the 200
    assert (state, attempts, route) == ("working", 1, {"conversation": conversation})
    assert fake_teams.messages(conversation) == []  # the answer is still being written
    assert answer(fake_teams, conversation)["text"] == "Slowly but surely."
    wait_for(lambda: server.run(_inbox_rows(server))[0][0] == "done")
