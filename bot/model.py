"""The platform-free vocabulary every adapter speaks.

Adapters turn platform events into a `Message` and render a `Reply` back; the engine sees nothing
else. The types are small and frozen so that one message can be handed between tasks safely, and
whatever only one platform needs travels in `raw`, untouched by the core.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

FetchBytes = Callable[[], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """Where a conversation lives: one type on every platform.

    `workspace` is the Slack team, Discord guild or Teams tenant; `thread` is the Slack thread ts,
    the Discord thread id or the Teams reply chain. A platform without threads uses the channel id.
    """

    platform: str
    workspace: str
    channel: str
    thread: str

    def __str__(self) -> str:
        return f"{self.platform}:{self.workspace}:{self.channel}:{self.thread}"


@dataclass(frozen=True, slots=True)
class Author:
    id: str
    display_name: str = ""
    is_bot: bool = False

    @property
    def name(self) -> str:
        return self.display_name or self.id


class AttachmentKind(enum.StrEnum):
    IMAGE = "image"
    AUDIO = "audio"
    FILE = "file"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file on a message. Bytes are fetched lazily: most attachments are never read.

    `fetch` is supplied by the adapter, which alone knows how to authenticate the download.
    """

    name: str
    content_type: str
    size: int | None = None
    url: str | None = None
    fetch: FetchBytes | None = field(default=None, compare=False, repr=False)

    @property
    def kind(self) -> AttachmentKind:
        major = self.content_type.split("/", 1)[0].lower()
        if major == "image":
            return AttachmentKind.IMAGE
        if major == "audio" or self.content_type.lower() in {"video/webm", "video/ogg"}:
            return AttachmentKind.AUDIO
        return AttachmentKind.FILE

    def describe(self) -> dict[str, Any]:
        """What is stored about the file: never its bytes, never a signed URL's token."""
        return {"name": self.name, "content_type": self.content_type, "size": self.size,
                "kind": self.kind.value}


@dataclass(frozen=True, slots=True)
class Message:
    """One inbound chat message, normalised.

    `event_id` identifies the delivery for de-duplication (platform retries reuse it); `id` is the
    platform's message id, which replies and feedback refer to.
    """

    key: ConversationKey
    id: str
    author: Author
    text: str
    attachments: tuple[Attachment, ...] = ()
    mentioned: bool = False
    direct: bool = False
    event_id: str = ""
    channel_name: str = ""
    sent_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def platform(self) -> str:
        return self.key.platform

    @property
    def dedupe_id(self) -> str:
        return self.event_id or self.id

    def envelope(self, text: str) -> dict[str, Any]:
        """What the inbox keeps to answer this message again after a crash: the stored (redacted)
        text, never the original, and files by description only (their bytes and signed URLs
        stay with the platform)."""
        return {"key": [self.key.platform, self.key.workspace, self.key.channel,
                        self.key.thread],
                "id": self.id, "event_id": self.event_id, "text": text,
                "author": [self.author.id, self.author.display_name],
                "attachments": [a.describe() for a in self.attachments],
                "mentioned": self.mentioned, "direct": self.direct,
                "channel_name": self.channel_name, "sent_at": self.sent_at.isoformat()}

    @classmethod
    def from_envelope(cls, envelope: Mapping[str, Any]) -> Message:
        platform, workspace, channel, thread = (str(part) for part in envelope["key"])
        author_id, author_name = (str(part) for part in envelope["author"])
        return cls(key=ConversationKey(platform, workspace, channel, thread),
                   id=str(envelope["id"]), event_id=str(envelope.get("event_id") or ""),
                   author=Author(author_id, author_name), text=str(envelope.get("text") or ""),
                   attachments=tuple(
                       Attachment(str(a.get("name") or "file"),
                                  str(a.get("content_type") or "application/octet-stream"),
                                  a.get("size"))
                       for a in envelope.get("attachments") or ()),
                   mentioned=bool(envelope.get("mentioned")),
                   direct=bool(envelope.get("direct")),
                   channel_name=str(envelope.get("channel_name") or ""),
                   sent_at=datetime.fromisoformat(str(envelope["sent_at"])))


@dataclass(frozen=True, slots=True)
class Citation:
    index: int
    title: str
    url: str = ""
    snippet: str = ""


class ReplyMode(enum.StrEnum):
    """How an answer was produced, so adapters can mark answers that did not come from the model."""

    MODEL = "model"
    RETRIEVAL_ONLY = "retrieval_only"
    NOTICE = "notice"  # a polite message from bothub itself: input refused, failure, no model


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    mode: ReplyMode = ReplyMode.MODEL
    citations: tuple[Citation, ...] = ()
    # Opaque to adapters: what a feedback button sends back (`Engine.record_feedback`);
    # empty for replies that take no feedback (notices).
    ref: str = ""
    # Offer a "talk to a person" button (sending `ref` to `Engine.request_human`): the
    # conversation has a human channel to go to.
    handoff: bool = False
    # A side note beside the answer (a redaction notice, "a person will join"), not the answer
    # itself: a retried answer edits its earlier answer message, never a side note.
    aside: bool = False
