"""Which Slack events get an answer, and how they become a `Message`."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.slack import inbound
from bot.model import AttachmentKind, FetchBytes

WS = inbound.Workspace(team_id="T1", bot_user_id="U0BOT")


def event(**fields: Any) -> dict[str, Any]:
    return {"type": "message", "user": "U1", "text": "hi", "channel": "C1",
            "ts": "1700000000.000100", "channel_type": "channel", **fields}


@pytest.mark.parametrize(("fields", "answerable"), [
    ({}, True),
    ({"subtype": "file_share"}, True),
    ({"subtype": "message_changed"}, False),
    ({"subtype": "message_deleted"}, False),
    ({"subtype": "channel_join"}, False),
    ({"bot_id": "B1"}, False),
    ({"user": "U0BOT"}, False),
    ({"user": None}, False),
    ({"ts": None}, False),
])
def test_only_people_asking_get_answers(fields: dict[str, Any], answerable: bool) -> None:
    assert inbound.is_answerable(event(**fields), WS) is answerable


def test_a_mention_becomes_a_message_in_its_own_thread() -> None:
    def fetcher(url: str) -> FetchBytes:
        async def fetch() -> bytes:
            return url.encode()

        return fetch

    files = [{"id": "F1", "name": "shot.png", "mimetype": "image/png", "size": 10,
              "url_private_download": "https://files.slack.com/F1/shot.png"}]
    message = inbound.to_message(event(type="app_mention", text="<@U0BOT> why is it *slow*?",
                                       files=files), WS,
                                 display_name="Ada", channel_name="support", fetcher=fetcher)
    assert message.text == "why is it *slow*?"
    assert message.key.thread == "1700000000.000100" and message.key.workspace == "T1"
    assert message.id == "1700000000.000100" and message.mentioned and not message.direct
    assert message.channel_name == "#support" and message.author.display_name == "Ada"
    [attachment] = message.attachments
    assert attachment.kind is AttachmentKind.IMAGE and attachment.size == 10


def test_a_reply_in_a_thread_belongs_to_that_thread() -> None:
    key = inbound.conversation_key(event(thread_ts="1699999999.000001"), WS)
    assert key.thread == "1699999999.000001"


def test_mentions_of_someone_else_are_not_mentions_of_the_bot() -> None:
    assert not inbound.mentions_bot(event(text="ask <@U999> about it"), WS)
    assert inbound.mentions_bot(event(text="hey <@U0BOT|bothub> there"), WS)
