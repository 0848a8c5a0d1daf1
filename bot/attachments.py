"""Turning a message's files into what the model can use: images as data URLs, voice as text.

Files are fetched through the adapter's own `fetch` (which carries the platform's credentials),
checked against size limits before and after download, and never stored: only a description and,
for audio, the transcript are kept.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import structlog

from bot import replies
from bot.config import Limits
from bot.llm import ChatModel, ModelError
from bot.model import Attachment, AttachmentKind

log = structlog.get_logger(__name__)

IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}


@dataclass
class PreparedInput:
    text: str
    image_urls: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # told to the user: what was not used and why

    @property
    def empty(self) -> bool:
        return not self.text and not self.image_urls


async def prepare(text: str, attachments: tuple[Attachment, ...], model: ChatModel,
                  limits: Limits) -> PreparedInput:
    prepared = PreparedInput(text=text)
    transcripts: list[str] = []
    for attachment in attachments:
        record = attachment.describe()
        prepared.records.append(record)
        if attachment.kind is AttachmentKind.IMAGE:
            await _add_image(prepared, attachment, limits)
        elif attachment.kind is AttachmentKind.AUDIO:
            transcript = await _transcribe(prepared, attachment, model, limits)
            if transcript:
                record["transcript"] = transcript
                transcripts.append(transcript)
        else:  # never fetched: documents and archives are not read blindly
            prepared.notes.append(replies.skipped_attachments(
                [attachment.name], "I can read images and voice messages, not other files"))
    if transcripts:
        spoken = "\n".join(transcripts)
        prepared.text = f"{text}\n\n{spoken}".strip() if text else spoken
    return prepared


async def _read(attachment: Attachment, limit: int) -> bytes | None:
    """The file's bytes, or None when it is too large or cannot be fetched."""
    if attachment.fetch is None or (attachment.size is not None and attachment.size > limit):
        return None
    try:
        data = await attachment.fetch()
    except Exception as exc:
        log.warning("attachment.fetch_failed", name=attachment.name, error=str(exc)[:200])
        return None
    return data if len(data) <= limit else None


def sniff_image(data: bytes) -> str | None:
    """The image type the bytes really are: platforms send vague types (Teams: `image/*`)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in {b"GIF87a", b"GIF89a"}:
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


async def _add_image(prepared: PreparedInput, attachment: Attachment, limits: Limits) -> None:
    declared = attachment.content_type.lower().split(";")[0].strip()
    if declared not in IMAGE_TYPES and declared != "image/*":
        prepared.notes.append(replies.skipped_attachments(
            [attachment.name], "I can read PNG, JPEG, GIF and WebP images"))
        return
    if len(prepared.image_urls) >= limits.max_images_per_message:
        prepared.notes.append(replies.skipped_attachments(
            [attachment.name], f"I read at most {limits.max_images_per_message} images a message"))
        return
    data = await _read(attachment, limits.max_image_bytes)
    if data is None:
        prepared.notes.append(replies.skipped_attachments(
            [attachment.name], f"it is unavailable or larger than "
                               f"{limits.max_image_bytes // (1024 * 1024)} MB"))
        return
    content_type = sniff_image(data) or (declared if declared in IMAGE_TYPES else None)
    if content_type is None:
        prepared.notes.append(replies.skipped_attachments(
            [attachment.name], "I can read PNG, JPEG, GIF and WebP images"))
        return
    prepared.image_urls.append(
        f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}")


async def _transcribe(prepared: PreparedInput, attachment: Attachment, model: ChatModel,
                      limits: Limits) -> str:
    data = await _read(attachment, limits.max_audio_bytes)
    if data is None:
        prepared.notes.append(replies.skipped_attachments(
            [attachment.name], f"it is unavailable or larger than "
                               f"{limits.max_audio_bytes // (1024 * 1024)} MB"))
        return ""
    try:
        return await model.transcribe(attachment.name, data, attachment.content_type)
    except ModelError:
        prepared.notes.append(replies.AUDIO_UNREADABLE)
        return ""
