"""The fake Bot Framework, driven by the real botbuilder SDK (ConnectorClient, CloudAdapter,
ConfigurationBotFrameworkAuthentication) and msal.

These pin down the wire behaviour the Teams adapter's tests rely on: how the SDK encodes
conversation ids and reacts to errors, that the tokens the fake mints are accepted (and the bad
ones refused) by the SDK's own validation, and that the bot's outbound token comes from the
fake's HTTPS token endpoint.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import msal
import pytest
from botbuilder.core import TurnContext
from botbuilder.core.teams import TeamsInfo, teams_get_channel_id, teams_get_team_info
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import Activity, ErrorResponseException
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import JwtTokenExtractor, MicrosoftAppCredentials
from msrest.authentication import BasicTokenAuthentication

from tests.fakes.botframework_server import (
    BOT_FRAMEWORK_SCOPE,
    FILE_DOWNLOAD_INFO,
    FakeBotFramework,
)

CHANNEL = "19:general@thread.tacv2"
TEAM = "19:team@thread.tacv2"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeBotFramework]:
    """One server pair per module: starting threads and sockets per test would be wasted time."""
    with FakeBotFramework() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeBotFramework, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBotFramework]:
    """The shared server, reset, with `requests` (the SDK's and msal's HTTP client) trusting
    the issuer's certificate."""
    server.reset()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.issuer.ca_path)
    yield server
    server.reset()


@pytest.fixture
async def connector(fake: FakeBotFramework) -> AsyncIterator[ConnectorClient]:
    """The SDK's connector client, without credentials (no Authorization header)."""
    async with ConnectorClient(MicrosoftAppCredentials.empty(), base_url=fake.service_url) as c:
        yield c


def with_token(fake: FakeBotFramework, token: str) -> ConnectorClient:
    return ConnectorClient(
        BasicTokenAuthentication({"access_token": token}), base_url=fake.service_url
    )


def authentication(fake: FakeBotFramework) -> ConfigurationBotFrameworkAuthentication:
    return ConfigurationBotFrameworkAuthentication(fake.sdk_configuration())


def sdk_activity(activity: dict[str, Any]) -> Activity:
    """What CloudAdapter.process builds from the request body."""
    return Activity().deserialize(activity)


# -- connector ---------------------------------------------------------------------------------


async def test_reply_update_delete_in_a_channel_thread(
    fake: FakeBotFramework, connector: ConnectorClient
) -> None:
    question = fake.message("how do I reset my password?", scope="channel", mention_bot=True)
    thread = question["conversation"]["id"]
    assert thread == f"{CHANNEL};messageid={question['id']}"

    reply = await connector.conversations.reply_to_activity(
        thread, question["id"], Activity(type="message", text="Thinking…")
    )
    assert int(reply.id) > int(question["id"])
    [call] = fake.calls()
    assert call.operation == "reply_to_activity"
    assert call.status == 201
    assert call.conversation_id == thread  # decoded; on the wire every ":@;=" is escaped
    assert call.path == (
        "/v3/conversations/19%3Ageneral%40thread.tacv2%3Bmessageid%3D"
        f"{question['id']}/activities/{question['id']}"
    )
    assert call.activity_id == question["id"]
    assert call.authorization is None

    updated = await connector.conversations.update_activity(
        thread, reply.id, Activity(type="message", id=reply.id, text="Use the reset link.")
    )
    assert updated.id == reply.id
    assert fake.activities(thread) == [{"type": "message", "text": "Thinking…"}]
    assert [u["text"] for u in fake.updates(thread, reply.id)] == ["Use the reset link."]
    [message] = fake.messages(thread)
    assert message["id"] == reply.id
    assert message["replyToId"] == question["id"]
    assert fake.texts(CHANNEL) == ["Use the reset link."]  # a bare channel id covers its threads

    await connector.conversations.delete_activity(thread, reply.id)
    assert fake.messages(thread) == []
    assert fake.deleted(thread) == [reply.id]
    with pytest.raises(ErrorResponseException) as gone:
        await connector.conversations.update_activity(
            thread, reply.id, Activity(type="message", id=reply.id, text="again")
        )
    assert gone.value.response.status_code == 404
    assert gone.value.error.error.code == "ActivityNotFound"


async def test_send_to_conversation_and_create_conversation(
    fake: FakeBotFramework, connector: ConnectorClient
) -> None:
    personal = fake.message("hi")["conversation"]["id"]
    assert personal == "a:personal-user-1"
    typing = await connector.conversations.send_to_conversation(personal, Activity(type="typing"))
    sent = await connector.conversations.send_to_conversation(
        personal, Activity(type="message", text="Hello!")
    )
    assert int(sent.id) == int(typing.id) + 1
    assert [a["type"] for a in fake.activities(personal)] == ["typing", "message"]
    assert fake.activities(personal, type="message") == [{"type": "message", "text": "Hello!"}]

    created = await connector.conversations.create_conversation(
        {
            "isGroup": True,
            "channelData": {"channel": {"id": CHANNEL}},
            "activity": {"type": "message", "text": "A new post"},
        }
    )
    assert created.id == f"{CHANNEL};messageid={created.activity_id}"
    assert created.service_url == fake.service_url
    assert fake.texts(created.id) == ["A new post"]
    chat = await connector.conversations.create_conversation(
        {"bot": {"id": fake.bot_id}, "members": [{"id": "29:user-2"}], "tenantId": "tenant-1"}
    )
    assert chat.id == "a:new-1"
    assert chat.activity_id is None
    assert [c.operation for c in fake.calls("POST")][-2:] == ["create_conversation"] * 2


async def test_members_are_looked_up_by_id_or_aad_object_id(
    fake: FakeBotFramework, connector: ConnectorClient
) -> None:
    bob = fake.add_member("29:user-2", "Bob Builder", conversation_id=CHANNEL)
    thread = f"{CHANNEL};messageid=1"

    ada = await connector.conversations.get_conversation_member(thread, "29:user-1")
    assert (ada.name, ada.role) == ("Ada Lovelace", None)
    assert ada.aad_object_id == fake.message("x")["from"]["aadObjectId"]
    by_aad = await connector.conversations.get_conversation_member(thread, bob["aadObjectId"])
    assert by_aad.id == "29:user-2"
    members = await connector.conversations.get_conversation_members(thread)
    assert {m.id for m in members} == {"29:user-1", "29:user-2"}
    with pytest.raises(ErrorResponseException) as elsewhere:
        await connector.conversations.get_conversation_member("a:personal-user-1", "29:user-2")
    assert elsewhere.value.response.status_code == 404
    assert elsewhere.value.error.error.code == "MemberNotFoundInConversation"


async def test_require_auth_wants_a_token_the_issuer_issued(
    fake: FakeBotFramework, connector: ConnectorClient
) -> None:
    fake.require_auth = True
    with pytest.raises(ErrorResponseException) as denied:
        await connector.conversations.send_to_conversation(
            "a:personal-user-1", Activity(type="message", text="hi")
        )
    assert denied.value.response.status_code == 401
    assert denied.value.error.error.code == "Unauthorized"

    async with with_token(fake, "not-issued-here") as stranger:
        with pytest.raises(ErrorResponseException) as unknown:
            await stranger.conversations.send_to_conversation(
                "a:personal-user-1", Activity(type="message", text="hi")
            )
    assert unknown.value.response.status_code == 401

    token = fake.issuer.issue_token(fake.app_id)
    async with with_token(fake, token) as bot:
        await bot.conversations.send_to_conversation(
            "a:personal-user-1", Activity(type="message", text="hi")
        )
    assert [c.status for c in fake.calls()] == [401, 401, 201]
    assert fake.calls()[-1].authorization == f"Bearer {token}"
    assert fake.texts("a:personal-user-1") == ["hi"]


async def test_fail_next_surfaces_as_the_sdks_error(
    fake: FakeBotFramework, connector: ConnectorClient
) -> None:
    conversation = "a:personal-user-1"
    fake.fail_next(status=429, retry_after=2, method="POST")
    with pytest.raises(ErrorResponseException) as throttled:
        await connector.conversations.send_to_conversation(
            conversation, Activity(type="message", text="hi")
        )
    assert throttled.value.response.status_code == 429
    assert throttled.value.response.headers["Retry-After"] == "2"
    fake.fail_next(status=403, code="BotNotInConversationRoster", message="The bot is gone.")
    with pytest.raises(ErrorResponseException) as removed:
        await connector.conversations.send_to_conversation(
            conversation, Activity(type="message", text="hi")
        )
    assert removed.value.error.error.code == "BotNotInConversationRoster"
    assert removed.value.error.error.message == "The bot is gone."

    sent = await connector.conversations.send_to_conversation(
        conversation, Activity(type="message", text="hi")
    )
    assert [c.status for c in fake.calls()] == [429, 403, 201]
    assert fake.activities(conversation) == [{"type": "message", "text": "hi"}]

    # msrest's urllib3 retry policy retries a PUT (never a POST) on 429 + Retry-After.
    fake.fail_next(status=429, retry_after=0, method="PUT")
    await connector.conversations.update_activity(
        conversation, sent.id, Activity(type="message", id=sent.id, text="edited")
    )
    assert [c.status for c in fake.calls("PUT")] == [429, 200]
    assert fake.texts(conversation) == ["edited"]


async def test_delay_answers_late(fake: FakeBotFramework, connector: ConnectorClient) -> None:
    fake.delay(0.2, method="POST")
    started = time.monotonic()
    await connector.conversations.send_to_conversation("c", Activity(type="typing"))
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    await connector.conversations.send_to_conversation("c", Activity(type="typing"))
    assert time.monotonic() - started < 0.2  # only the next call


async def test_attachments_need_the_bot_token_and_files_do_not(fake: FakeBotFramework) -> None:
    image_url = fake.add_attachment(b"\x89PNG fake", "image/png")
    file_url = fake.add_file("report 1.pdf", b"%PDF-1.7", "application/pdf")
    assert image_url.startswith(f"{fake.service_url}v3/attachments/")
    fake.require_auth = True
    token = fake.issuer.issue_token(fake.app_id)

    async with httpx.AsyncClient() as http:
        refused = await http.get(image_url)
        image = await http.get(image_url, headers={"Authorization": f"Bearer {token}"})
        document = await http.get(file_url)
        missing = await http.get(f"{fake.base_url}/files/nope.pdf")

    assert refused.status_code == 401
    assert (image.status_code, image.content) == (200, b"\x89PNG fake")
    assert image.headers["Content-Type"] == "image/png"
    assert (document.status_code, document.content) == (200, b"%PDF-1.7")
    assert missing.status_code == 404
    assert [c.operation for c in fake.calls()] == ["get_attachment"] * 2 + ["download_file"] * 2


async def test_wait_for_counts_posted_activities(
    fake: FakeBotFramework, connector: ConnectorClient
) -> None:
    async def post_later() -> None:
        await asyncio.sleep(0.05)
        await connector.conversations.send_to_conversation(
            "a:personal-user-1", Activity(type="message", text="late")
        )

    task = asyncio.create_task(post_later())
    [activity] = await fake.wait_for_async(1)
    await task
    assert activity["text"] == "late"
    assert await fake.wait_for_async(lambda: fake.texts()) == ["late"]
    with pytest.raises(TimeoutError, match="send_to_conversation"):
        await fake.wait_for_async(2, timeout=0.05)


def test_wait_for_blocks_until_a_post_from_another_thread(fake: FakeBotFramework) -> None:
    def post() -> None:
        time.sleep(0.05)
        httpx.post(
            f"{fake.service_url}v3/conversations/a%3Apersonal-user-1/activities",
            json={"type": "message", "text": "from a thread"},
        )

    poster = threading.Thread(target=post)
    poster.start()
    try:
        [activity] = fake.wait_for(1, timeout=5)
    finally:
        poster.join()
    assert activity["text"] == "from a thread"
    with pytest.raises(TimeoutError):
        fake.wait_for(lambda: fake.deleted(), timeout=0.05)


async def test_reset_restores_defaults(fake: FakeBotFramework, connector: ConnectorClient) -> None:
    fake.require_auth = True
    fake.bot_name = "renamed"
    fake.fail_next(5)
    fake.reset()
    assert (fake.require_auth, fake.bot_name) == (False, "bothub")
    await connector.conversations.send_to_conversation("c", Activity(type="message", text="x"))
    assert [c.status for c in fake.calls()] == [201]


# -- activities --------------------------------------------------------------------------------


def test_channel_message_parses_as_teams_sends_it(fake: FakeBotFramework) -> None:
    image = fake.image_attachment(fake.add_attachment(b"png", "image/png"))
    raw = fake.message("help", scope="channel", mention_bot=True, attachments=[image])
    activity = sdk_activity(raw)

    assert activity.type == "message"
    assert activity.channel_id == "msteams"
    assert activity.service_url == fake.service_url
    assert activity.text == "<at>bothub</at> help"
    assert activity.recipient.id == fake.bot_id == f"28:{fake.app_id}"
    assert activity.conversation.conversation_type == "channel"
    assert activity.conversation.is_group is True
    assert activity.conversation.id == f"{CHANNEL};messageid={raw['id']}"
    assert raw["conversation"]["tenantId"] == "tenant-1"  # sent, but dropped by the SDK model
    assert teams_get_channel_id(activity) == CHANNEL
    assert teams_get_team_info(activity).id == TEAM
    mention, client_info = activity.entities
    assert (mention.type, mention.additional_properties["mentioned"]["id"]) == (
        "mention",
        fake.bot_id,
    )
    assert client_info.type == "clientInfo"
    assert [a.content_type for a in activity.attachments] == ["image/*", "text/html"]
    assert "schema.skype.com/Mention" in activity.attachments[1].content
    assert activity.timestamp is not None
    assert raw["timestamp"].endswith("Z")
    assert raw["localTimestamp"].endswith("-07:00")


def test_scopes_and_ids(fake: FakeBotFramework) -> None:
    first, second = fake.message("a"), fake.message("b", scope="groupChat")
    assert int(second["id"]) == int(first["id"]) + 1
    assert "isGroup" not in first["conversation"]
    assert first["channelData"] == {"tenant": {"id": "tenant-1"}}
    assert second["conversation"]["id"] == "19:group-1@thread.v2"
    assert second["conversation"]["conversationType"] == "groupChat"
    reply = fake.message("more", scope="channel", reply_chain=first["id"])
    assert reply["conversation"]["id"] == f"{CHANNEL};messageid={first['id']}"
    assert reply["channelData"]["teamsChannelId"] == CHANNEL
    assert "attachments" not in reply
    assert (
        fake.message("x", user_id="29:user-9")["from"]["aadObjectId"]
        != first["from"]["aadObjectId"]
    )

    file = fake.file_download_attachment("a.png", fake.add_file("a.png", b"x", "image/png"))
    assert file["contentType"] == FILE_DOWNLOAD_INFO
    assert file["content"]["downloadUrl"].endswith("/files/a.png")


def test_event_activities(fake: FakeBotFramework) -> None:
    added = sdk_activity(fake.conversation_update(scope="channel"))
    assert added.type == "conversationUpdate"
    assert [m.id for m in added.members_added] == [fake.bot_id]
    assert added.conversation.id == CHANNEL
    assert added.channel_data["eventType"] == "teamMemberAdded"
    assert added.id.startswith("f:")

    installed = sdk_activity(fake.installation_update("remove"))
    assert (installed.type, installed.action) == ("installationUpdate", "remove")

    card = fake.message("card")
    click = sdk_activity(fake.invoke_action("feedback", {"helpful": True}, reply_to_id=card["id"]))
    assert (click.type, click.name, click.reply_to_id) == (
        "invoke",
        "adaptiveCard/action",
        card["id"],
    )
    assert click.value == {
        "action": {"type": "Action.Execute", "verb": "feedback", "data": {"helpful": True}},
        "trigger": "manual",
    }

    like = sdk_activity(fake.message_reaction("like", reply_to_id=card["id"]))
    assert [r.type for r in like.reactions_added] == ["like"]
    assert sdk_activity(fake.typing()).type == "typing"
    assert fake.message_reaction("heart", added=False)["reactionsRemoved"] == [{"type": "heart"}]


# -- tokens ------------------------------------------------------------------------------------


async def test_sdk_accepts_a_channel_token_and_fetches_metadata_once(
    fake: FakeBotFramework,
) -> None:
    JwtTokenExtractor.metadataCache.pop(fake.issuer.openid_metadata_url, None)
    activity = fake.message("hi", scope="channel")

    result = await authentication(fake).authenticate_request(
        sdk_activity(activity), fake.auth_headers(activity)["Authorization"]
    )
    claims = result.claims_identity.claims
    assert set(claims) == {"serviceurl", "nbf", "exp", "iss", "aud"}
    assert claims["serviceurl"] == fake.service_url
    assert claims["aud"] == fake.app_id
    assert result.audience == "https://api.botframework.com"

    await authentication(fake).authenticate_request(
        sdk_activity(activity), fake.auth_headers(activity)["Authorization"]
    )
    assert (fake.issuer.metadata_fetches, fake.issuer.jwks_fetches) == (1, 1)  # SDK cache


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"signed_with": "forged"}, "Signature verification failed"),
        ({"signed_with": "none"}, "algorithm not in allowed list"),
        ({"expires_in": -600}, "Signature has expired"),
        ({"not_before_offset": 600}, "not yet valid"),
        ({"audience": "22222222-0000-0000-0000-000000000000"}, "Invalid AppId"),
        ({"issuer": "https://evil.example.com"}, "Identity missing"),
        ({"service_url": "https://smba.trafficmanager.net/amer/"}, "Invalid 'serviceurl'"),
        ({"extra_claims": {"serviceurl": None}}, "'serviceurl' claim missing"),
    ],
    ids=["forged", "unsigned", "expired", "not-yet", "audience", "issuer", "serviceurl", "no-url"],
)
async def test_sdk_refuses_bad_channel_tokens(
    fake: FakeBotFramework, overrides: dict[str, Any], error: str
) -> None:
    activity = fake.message("hi")
    header = fake.auth_headers(activity, **overrides)["Authorization"]
    with pytest.raises(Exception, match=error):
        await authentication(fake).authenticate_request(sdk_activity(activity), header)


def test_msal_gets_a_token_over_https(fake: FakeBotFramework) -> None:
    def app(secret: str, client_id: str | None = None) -> msal.ConfidentialClientApplication:
        return msal.ConfidentialClientApplication(
            client_id or fake.app_id,
            client_credential=secret,
            authority=fake.issuer.login_url(),
            validate_authority=False,
            instance_discovery=False,
        )

    result = app(fake.app_password).acquire_token_for_client(scopes=[BOT_FRAMEWORK_SCOPE])
    assert result["token_type"] == "Bearer"
    assert fake.issuer.token_owner(result["access_token"]) == fake.app_id
    assert result["access_token"] in fake.issuer.issued_tokens
    wrong = app("wrong").acquire_token_for_client(scopes=[BOT_FRAMEWORK_SCOPE])
    assert wrong["error"] == "invalid_client"
    assert "AADSTS7000215" in wrong["error_description"]
    unknown = app("x", "99999999-0000-0000-0000-000000000000").acquire_token_for_client(
        scopes=[BOT_FRAMEWORK_SCOPE]
    )
    assert unknown["error"] == "unauthorized_client"

    requests = fake.issuer.token_requests
    assert [(r.client_id, r.status) for r in requests] == [
        (fake.app_id, 200),
        (fake.app_id, 401),
        ("99999999-0000-0000-0000-000000000000", 400),
    ]
    assert {(r.tenant, r.scope, r.auth_method) for r in requests} == {
        ("botframework.com", BOT_FRAMEWORK_SCOPE, "client_secret_post")
    }


def test_basic_client_authentication_is_accepted(fake: FakeBotFramework) -> None:
    response = httpx.post(
        fake.issuer.token_url(),
        data={"grant_type": "client_credentials", "scope": BOT_FRAMEWORK_SCOPE},
        auth=(fake.app_id, fake.app_password),
        verify=ssl.create_default_context(cafile=fake.issuer.ca_path),
    )
    assert response.status_code == 200
    assert response.json()["expires_in"] == 3599
    assert fake.issuer.token_requests[-1].auth_method == "client_secret_basic"


async def test_cloud_adapter_round_trip_with_the_sdks_own_credentials(
    fake: FakeBotFramework,
) -> None:
    """Inbound JWT validated, outbound token from msal (instance discovery patched), reply
    posted with that token: the whole production path, nothing mocked but one msal URL."""
    fake.require_auth = True
    adapter = CloudAdapter(authentication(fake))
    activity = fake.message("hello", scope="channel", mention_bot=True)

    members: list[Any] = []

    async def logic(turn: TurnContext) -> None:
        members.append(await TeamsInfo.get_member(turn, turn.activity.from_property.id))
        await turn.send_activity("hi back")

    with fake.issuer.patch_msal():
        await adapter.process_activity(
            fake.auth_headers(activity)["Authorization"], sdk_activity(activity), logic
        )

    [member] = members
    assert (member.name, member.email) == ("Ada Lovelace", "ada@example.com")
    lookup, call = fake.calls()
    assert (lookup.operation, lookup.member_id) == ("get_conversation_member", "29:user-1")
    assert lookup.conversation_id == activity["conversation"]["id"]
    assert (call.operation, call.status) == ("reply_to_activity", 201)
    assert call.conversation_id == activity["conversation"]["id"]
    assert call.activity_id == activity["id"]
    assert call.body is not None and call.body["text"] == "hi back"
    assert call.authorization is not None
    assert fake.issuer.token_owner(call.authorization.removeprefix("Bearer ")) == fake.app_id
    [token_request] = fake.issuer.token_requests
    assert token_request.scope == BOT_FRAMEWORK_SCOPE
    assert fake.issuer.discovery_requests == 1
