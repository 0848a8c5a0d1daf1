"""Reading Teams activities and rendering replies: the pure parts of the Teams adapter."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.teams import inbound, render
from adapters.teams.app import ServiceUrls
from bot.model import Citation, ConversationKey, Reply, ReplyMode

BOT = {"id": "28:bot", "name": "bothub"}


def activity(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "message", "id": "1700000000001", "serviceUrl": "https://smba.trafficmanager.net/emea/",
        "recipient": BOT, "from": {"id": "29:u", "name": "Ada", "aadObjectId": "aad-ada"},
        "conversation": {"id": "a:chat", "conversationType": "personal", "tenantId": "t1"},
    }
    base.update(fields)
    return base


def mention(text: str = "<at>bothub</at>", who: dict[str, str] = BOT) -> dict[str, Any]:
    return {"type": "mention", "text": text, "mentioned": who}


def test_the_bots_mention_is_removed_and_others_are_kept_as_names() -> None:
    message = activity(text="<at>bothub</at> ask <at>Grace</at> about &lt;div&gt; tags",
                       entities=[mention(), mention("<at>Grace</at>", {"id": "29:g"})])
    assert inbound.text(message) == "ask Grace about <div> tags"
    assert inbound.mentions_bot(message)
    assert not inbound.mentions_bot(activity(entities=[mention("<at>Grace</at>",
                                                               {"id": "29:g"})]))


@pytest.mark.parametrize("kind", [{"personal": True}, ["channel"], 5, None, "meeting"])
def test_a_conversation_type_that_is_not_a_known_string_counts_as_personal(kind: Any) -> None:
    message = activity()
    message["conversation"]["conversationType"] = kind
    assert inbound.scope(message) == "personal"
    assert inbound.channel_name(message) == "a direct message"


@pytest.mark.parametrize("entities", [None, [], ["junk"], [{"type": "mention"}],
                                      [{"type": "mention", "mentioned": "x", "text": 5}]])
def test_odd_entities_do_not_break_reading(entities: Any) -> None:
    message = activity(text="hello", entities=entities)
    assert inbound.text(message) == "hello"
    assert not inbound.mentions_bot(message)


def test_conversation_keys() -> None:
    personal = activity()
    assert inbound.conversation_key(personal) == ConversationKey("teams", "t1", "a:chat",
                                                                 "a:chat")
    group = activity(conversation={"id": "19:g@thread.v2", "conversationType": "groupChat",
                                   "tenantId": "t1"})
    assert inbound.conversation_key(group).thread == "19:g@thread.v2"
    chain = activity(conversation={"id": "19:c@thread.tacv2;messageid=1699", "tenantId": "t1",
                                   "conversationType": "channel"},
                     channelData={"channel": {"id": "19:c@thread.tacv2"}})
    assert inbound.conversation_key(chain) == ConversationKey("teams", "t1",
                                                              "19:c@thread.tacv2", "1699")
    new_post = activity(conversation={"id": "19:c@thread.tacv2", "conversationType": "channel"},
                        channelData={"tenant": {"id": "t2"}})
    assert inbound.conversation_key(new_post) == ConversationKey(
        "teams", "t2", "19:c@thread.tacv2", "1700000000001")


def test_attachments_keep_the_token_for_microsoft_hosts() -> None:
    message = activity(attachments=[
        {"contentType": "image/*", "contentUrl": "https://smba.trafficmanager.net/emea/v3/a/1"},
        {"contentType": "image/png", "contentUrl": "https://elsewhere.example/cat.png"},
        {"contentType": "image/png", "contentUrl": "javascript:alert(1)"},
        {"contentType": "application/vnd.microsoft.teams.file.download.info", "name": "s.jpg",
         "content": {"downloadUrl": "https://sharepoint.example/dl?token=x", "fileType": "jpg"}},
        {"contentType": "text/html", "content": "<p>hi</p>"},
        {"contentType": "application/vnd.microsoft.card.adaptive", "content": {}},
        "junk",
    ])

    async def token() -> str:
        raise AssertionError("not called while reading")

    found = inbound.attachments(message, token)
    assert [(a.name, a.content_type) for a in found] == [
        ("image-1", "image/*"), ("image-2", "image/png"), ("s.jpg", "image/jpeg")]


def test_service_urls() -> None:
    microsoft = ServiceUrls("", auth_enabled=True)
    assert microsoft.allows("https://smba.trafficmanager.net/emea/")
    assert microsoft.allows("https://smba.infra.gcc.teams.microsoft.com/")
    assert not microsoft.allows("http://smba.trafficmanager.net/emea/")
    assert not microsoft.allows("https://smba.trafficmanager.net.evil.example/")
    assert not microsoft.allows("http://127.0.0.1:3978/")
    emulator = ServiceUrls("", auth_enabled=False)
    assert emulator.allows("http://localhost:55000/")
    assert not emulator.allows("https://smba.trafficmanager.net/emea/")
    listed = ServiceUrls("https://connector.example/teams, http://127.0.0.1:9/",
                         auth_enabled=True)
    assert listed.allows("https://connector.example/teams/")
    assert listed.allows("http://127.0.0.1:9/")
    assert not listed.allows("https://connector.example/teamsx/")
    assert not listed.allows("file:///etc/passwd")


def test_rendering() -> None:
    reply = Reply("Use **SSO** [1].", citations=(Citation(1, "Single [sign-on]", "https://d/sso"),),
                  ref="42")
    [message] = render.messages(reply)
    assert message["text"] == ("Use **SSO** [1].\n\n**Sources:** [1] [Single (sign-on)]"
                               "(https://d/sso)")
    card = message["attachments"][0]["content"]
    assert [a["data"] for a in card["actions"]] == [{"ref": "42", "vote": "up"},
                                                     {"ref": "42", "vote": "down"}]
    notice = render.messages(Reply("Sorry.", mode=ReplyMode.NOTICE))
    assert notice == [{"type": "message", "text": "Sorry.", "textFormat": "markdown"}]
    quoted = render.messages(Reply("From the docs.", mode=ReplyMode.RETRIEVAL_ONLY))
    assert quoted[0]["text"].startswith("*From the knowledge base")
    assert "entities" not in quoted[0]


def test_the_shipped_app_manifest_is_complete() -> None:
    import json
    import struct
    from pathlib import Path

    folder = Path(__file__).parents[2] / "teams-app"
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["bots"][0]["botId"] == manifest["id"]
    assert set(manifest["bots"][0]["scopes"]) == {"personal", "team", "groupChat"}
    for icon, size in (("color", 192), ("outline", 32)):
        data = (folder / manifest["icons"][icon]).read_bytes()
        assert data.startswith(b"\x89PNG") and struct.unpack(">II", data[16:24]) == (size, size)


def test_only_the_wiring_module_touches_the_bot_framework_sdk() -> None:
    """A later move to the Microsoft 365 Agents SDK must touch one module alone."""
    import ast
    from pathlib import Path

    root = Path(__file__).parents[2]
    sdk = ("botbuilder", "botframework", "msrest", "msal")
    offenders = []
    for path in [*root.glob("bot/**/*.py"), *root.glob("adapters/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name.split(".")[0] in sdk for name in names):
                offenders.append(str(path.relative_to(root)))
    assert set(offenders) == {"adapters/teams/wiring.py"}


async def test_without_an_app_id_the_log_says_authentication_is_off() -> None:
    from structlog.testing import capture_logs

    from adapters.teams import TeamsAdapter
    from adapters.teams.wiring import BotCredentials, BotFrameworkConnection

    adapter = TeamsAdapter(None, BotFrameworkConnection(BotCredentials()),  # type: ignore[arg-type]
                           None,  # type: ignore[arg-type]  (start() needs neither)
                           service_urls=ServiceUrls("", auth_enabled=False))
    with capture_logs() as logs:
        await adapter.start()
    assert logs[0]["log_level"] == "warning"
    assert "UNAUTHENTICATED" in logs[0]["warning"]
