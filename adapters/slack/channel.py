"""Answers into a Slack thread: a placeholder at once, then the text growing by `chat.update`.

Updates are throttled (Slack allows about one message write per second per channel) and a 429
is retried by the client after its Retry-After. If the message cannot be updated any more (it
was deleted, the thread is gone) the stream stops updating and the final answer is posted as a
new message, so the answer is never lost to a failed edit.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.base import DestinationUnavailable, ReplyStream
from adapters.slack import render
from bot.model import Reply

log = structlog.get_logger(__name__)

PLACEHOLDER = "_Looking into it…_"
GONE = {"message_not_found", "channel_not_found", "thread_not_found", "cant_update_message",
        "is_archived", "not_in_channel", "edit_window_closed"}


class SlackReplyChannel:
    def __init__(self, client: AsyncWebClient, channel: str, thread_ts: str, *,
                 update_interval: float = 1.0) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.update_interval = update_interval

    async def post(self, reply: Reply) -> None:
        for text, blocks in render.messages(reply):
            await self.send(text, blocks)

    async def send(self, text: str, blocks: list[dict[str, Any]] | None = None,
                   channel: str | None = None, thread_ts: str | None = "") -> str | None:
        """Post one message; the ts, or None when Slack refused (logged, never raised: the
        answer is stored whatever happens to its delivery)."""
        try:
            response = await self.client.chat_postMessage(
                channel=channel or self.channel,
                thread_ts=self.thread_ts if thread_ts == "" else thread_ts,
                text=text, blocks=blocks, unfurl_links=False, unfurl_media=False)
        except SlackApiError as exc:
            log.error("slack.post_failed", channel=channel or self.channel,
                      error=exc.response.get("error"))
            return None
        return str(response["ts"])

    async def stream(self) -> ReplyStream:
        ts = await self.send(PLACEHOLDER)
        return SlackStream(self, ts)

    async def post_elsewhere(self, destination: str, reply: Reply) -> str:
        first: str | None = None
        for text, blocks in render.messages(reply):
            ts = await self.send(text, blocks, channel=destination, thread_ts=first)
            if ts is None:
                raise DestinationUnavailable(f"Slack refused to post in {destination}")
            first = first or ts
        assert first is not None
        return first


class SlackStream:
    def __init__(self, channel: SlackReplyChannel, ts: str | None) -> None:
        self._channel = channel
        self._ts = ts  # None: the placeholder could not be posted; the answer comes at the end
        self._text = ""
        self._shown = ""
        self._last_update = time.monotonic()

    async def append(self, text: str) -> None:
        self._text += text
        if self._ts is not None and \
                time.monotonic() - self._last_update >= self._channel.update_interval:
            pieces = render.split(render.to_mrkdwn(self._text))
            await self._update(pieces[0] + (" …" if len(pieces) > 1 else ""), None)

    async def _update(self, text: str, blocks: list[dict[str, Any]] | None) -> bool:
        if self._ts is None:
            return False
        if text == self._shown and blocks is None:
            return True
        self._last_update = time.monotonic()
        try:
            await self._channel.client.chat_update(channel=self._channel.channel, ts=self._ts,
                                                   text=text, blocks=blocks)
        except SlackApiError as exc:
            error = exc.response.get("error")
            log.warning("slack.update_failed", channel=self._channel.channel, error=error)
            if error in GONE:
                self._ts = None  # stop editing; the final answer is posted anew
            return False
        self._shown = text
        return True

    async def finish(self, reply: Reply) -> None:
        parts = render.messages(reply)
        text, blocks = parts[0]
        if not await self._update(text, blocks):
            await self._channel.send(text, blocks)
        for text, blocks in parts[1:]:
            await self._channel.send(text, blocks)
