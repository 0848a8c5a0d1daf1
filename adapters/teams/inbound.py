"""Reading Teams activities (Bot Framework JSON) into bothub's vocabulary."""

from __future__ import annotations

import html
import mimetypes
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from adapters.http import download
from bot.model import Attachment, Author, ConversationKey

FILE_DOWNLOAD_INFO = "application/vnd.microsoft.teams.file.download.info"
# Where Teams keeps pasted images: the bot's token may go there (and to the connector itself).
TOKEN_HOSTS = ("asm.skype.com", "trafficmanager.net", "botframework.com", "teams.microsoft.com",
               "teams.microsoft.us")
TAG = re.compile(r"<[^>]{1,200}>")

TokenSource = Callable[[], Awaitable[str | None]]


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def scope(activity: dict[str, Any]) -> str:
    """`personal` (1:1), `groupChat` or `channel`."""
    kind = as_dict(activity.get("conversation")).get("conversationType")
    # Not a string (an object, a list: unhashable) counts as absent.
    return kind if isinstance(kind, str) and kind in {"personal", "groupChat", "channel"} \
        else "personal"


def tenant(activity: dict[str, Any]) -> str:
    conversation = as_dict(activity.get("conversation"))
    channel_data = as_dict(activity.get("channelData"))
    return str(conversation.get("tenantId") or as_dict(channel_data.get("tenant")).get("id") or "")


def conversation_key(activity: dict[str, Any]) -> ConversationKey:
    """A channel's reply chain, or the whole group or 1:1 chat."""
    conversation_id = str(as_dict(activity.get("conversation")).get("id") or "")
    if scope(activity) != "channel":
        return ConversationKey("teams", tenant(activity) or "-", conversation_id, conversation_id)
    root, _, chain = conversation_id.partition(";messageid=")
    # A new post's answer starts a reply chain rooted at the post itself.
    thread = chain or str(activity.get("replyToId") or activity.get("id") or "")
    channel = as_dict(as_dict(activity.get("channelData")).get("channel")).get("id") or root
    return ConversationKey("teams", tenant(activity) or "-", str(channel), thread)


def bot_id(activity: dict[str, Any]) -> str:
    return str(as_dict(activity.get("recipient")).get("id") or "")


def mentions_bot(activity: dict[str, Any]) -> bool:
    me = bot_id(activity)
    return any(as_dict(entity).get("type") == "mention"
               and as_dict(as_dict(entity).get("mentioned")).get("id") == me
               for entity in activity.get("entities") or [])


def text(activity: dict[str, Any]) -> str:
    """The question: the bot's @-mention removed, other mentions kept as names, markup gone."""
    raw = activity.get("text")
    value = raw if isinstance(raw, str) else ""
    me = bot_id(activity)
    for entity in activity.get("entities") or []:
        entity = as_dict(entity)
        mention = entity.get("text")
        if entity.get("type") == "mention" and isinstance(mention, str) and mention \
                and as_dict(entity.get("mentioned")).get("id") == me:
            value = value.replace(mention, " ")
    return html.unescape(TAG.sub("", value)).strip()


def author(activity: dict[str, Any]) -> Author:
    sender = as_dict(activity.get("from"))
    return Author(id=str(sender.get("aadObjectId") or sender.get("id") or ""),
                  display_name=str(sender.get("name") or ""))


def channel_name(activity: dict[str, Any]) -> str:
    kind = scope(activity)
    if kind == "personal":
        return "a direct message"
    if kind == "groupChat":
        return str(as_dict(activity.get("conversation")).get("name") or "a group chat")
    name = as_dict(as_dict(activity.get("channelData")).get("channel")).get("name")
    return f"#{name}" if name else "a Teams channel"


def attachments(activity: dict[str, Any], token: TokenSource) -> tuple[Attachment, ...]:
    """Pasted images (fetched with the bot's token from Teams' hosts) and uploaded files
    (pre-authenticated download URLs, fetched without it). Cards and the HTML copy of the
    message are not files."""
    service_host = urlsplit(str(activity.get("serviceUrl") or "")).hostname or ""
    found: list[Attachment] = []
    for number, item in enumerate(activity.get("attachments") or [], start=1):
        item = as_dict(item)
        content_type = str(item.get("contentType") or "")
        if content_type == FILE_DOWNLOAD_INFO:
            content = as_dict(item.get("content"))
            url = content.get("downloadUrl")
            if not isinstance(url, str):
                continue
            name = str(item.get("name") or f"file-{number}")
            guessed = mimetypes.guess_type(f"x.{content.get('fileType') or ''}")[0]
            found.append(Attachment(name=name, content_type=guessed or
                                    mimetypes.guess_type(name)[0] or "application/octet-stream",
                                    url=url, fetch=_fetcher(url, None)))
        elif content_type.startswith(("image/", "audio/", "video/")):
            url = item.get("contentUrl")
            if not isinstance(url, str) or not url.startswith(("https://", "http://")):
                continue
            host = urlsplit(url).hostname or ""
            trusted = host == service_host or any(host == h or host.endswith("." + h)
                                                  for h in TOKEN_HOSTS)
            found.append(Attachment(name=str(item.get("name") or f"image-{number}"),
                                    content_type=content_type, url=url,
                                    fetch=_fetcher(url, token if trusted else None)))
    return tuple(found)


def _fetcher(url: str, token: TokenSource | None) -> Callable[[], Awaitable[bytes]]:
    async def fetch() -> bytes:
        bearer = await token() if token is not None else None
        return await download(url, platform="Teams", bearer=bearer,
                              follow_redirects=bearer is None)

    return fetch
