"""Slack event payloads -> `Message`, and which events deserve an answer at all.

Pure functions: everything here is tested without a socket.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.model import Attachment, Author, ConversationKey, FetchBytes, Message

# Subtypes that are not someone asking something: edits, deletions, joins, bot posts...
ANSWERABLE_SUBTYPES = {None, "file_share", "thread_broadcast"}
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


@dataclass(frozen=True, slots=True)
class Workspace:
    team_id: str
    bot_user_id: str


def is_answerable(event: Mapping[str, Any], workspace: Workspace) -> bool:
    """Not the bot's own message, not another bot's, not an edit or a deletion."""
    if event.get("subtype") not in ANSWERABLE_SUBTYPES:
        return False
    if event.get("bot_id") or event.get("user") in (None, workspace.bot_user_id):
        return False
    return bool(event.get("channel") and event.get("ts"))


def mentions_bot(event: Mapping[str, Any], workspace: Workspace) -> bool:
    return any(match == workspace.bot_user_id
               for match in _MENTION.findall(str(event.get("text") or "")))


def strip_bot_mention(text: str, bot_user_id: str) -> str:
    return re.sub(rf"<@{bot_user_id}(?:\|[^>]*)?>", "", text).strip()


def conversation_key(event: Mapping[str, Any], workspace: Workspace) -> ConversationKey:
    """The thread is the conversation: a new question starts one at its own ts."""
    thread = str(event.get("thread_ts") or event["ts"])
    return ConversationKey("slack", workspace.team_id, str(event["channel"]), thread)


def to_message(event: Mapping[str, Any], workspace: Workspace, *, display_name: str,
               channel_name: str, fetcher: Callable[[str], FetchBytes]) -> Message:
    """`fetcher(url)` returns a download for one of the message's files, authorised with the
    bot token (the adapter decides which hosts may see it)."""
    direct = event.get("channel_type") == "im"
    text = strip_bot_mention(str(event.get("text") or ""), workspace.bot_user_id)
    return Message(
        key=conversation_key(event, workspace),
        id=str(event["ts"]),  # retries and app_mention/message twins share it: one answer
        author=Author(id=str(event.get("user")), display_name=display_name),
        text=text,
        attachments=tuple(_attachment(file, fetcher) for file in event.get("files") or ()
                          if isinstance(file, Mapping)),
        mentioned=mentions_bot(event, workspace) or event.get("type") == "app_mention",
        direct=direct,
        channel_name="a direct message" if direct else (f"#{channel_name}" if channel_name
                                                        else ""),
        raw=dict(event),
    )


def _attachment(file: Mapping[str, Any], fetcher: Callable[[str], FetchBytes]) -> Attachment:
    url = str(file.get("url_private_download") or file.get("url_private") or "")
    size = file.get("size")
    return Attachment(name=str(file.get("name") or file.get("id") or "file"),
                      content_type=str(file.get("mimetype") or "application/octet-stream"),
                      size=int(size) if isinstance(size, int) else None,
                      url=url or None, fetch=fetcher(url) if url else None)


def command_message(command: Mapping[str, Any], workspace: Workspace, *, thread_ts: str,
                    display_name: str, channel_name: str) -> Message:
    """`/ask question`: the bot posts the question as a thread root and answers below it."""
    channel = str(command["channel_id"])
    direct = channel.startswith("D")
    return Message(
        key=ConversationKey("slack", workspace.team_id, channel, thread_ts),
        id=f"command:{command.get('trigger_id') or thread_ts}",
        author=Author(id=str(command.get("user_id")), display_name=display_name),
        text=str(command.get("text") or "").strip(), mentioned=True, direct=direct,
        channel_name="a direct message" if direct else (f"#{channel_name}" if channel_name
                                                        else ""),
        raw=dict(command))


def event_kind(body: dict[str, Any]) -> str:
    """What a Slack request is, for the events counter: mention, message, command,
    interaction (buttons), or its own type (counted as "other" by `bot.metrics`)."""
    if body.get("command"):
        return "command"
    kind = body.get("type")
    if kind == "event_callback":
        event = body.get("event")
        kind = event.get("type") if isinstance(event, dict) else None
        return {"app_mention": "mention", "message": "message"}.get(str(kind), "other")
    return "interaction" if kind in {"block_actions", "view_submission"} else "other"
