"""Answers into a Slack thread, streamed.

Where the workspace offers Slack's chat streaming (`chat.startStream` / `appendStream` /
`stopStream`), the answer streams natively. Elsewhere a placeholder appears at once and the text
grows by `chat.update`. Either way writes are throttled (Slack allows about one message write
per second per channel) and a 429 is retried by the client after its Retry-After. If the message
cannot be written any more (deleted, thread gone, stream expired) the final answer is posted as
a new message, so the answer is never lost to a failed edit.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.base import ReplyStream
from adapters.slack import render
from adapters.throttle import EditThrottle
from bot.model import Reply
from bot.store.inbox import Journal, unjournaled

log = structlog.get_logger(__name__)

PLACEHOLDER = "_Looking into it…_"
GONE = {"message_not_found", "channel_not_found", "thread_not_found", "cant_update_message",
        "is_archived", "not_in_channel", "edit_window_closed"}
# Answers to chat.startStream meaning "not for this workspace or app": stop trying.
STREAMING_UNSUPPORTED = {"unknown_method", "method_deprecated", "not_allowed_token_type",
                         "feature_not_enabled", "team_not_allowed", "missing_scope"}


ANSWER_EVENT = "bothub_answer"  # Slack message metadata type on answers (see `send`)
NOTE_EVENT = "bothub_note"  # and on side notes


async def adopt_earlier_answer(client: AsyncWebClient, channel: str, thread_ts: str,
                               journal: Journal, *, after: str = "",
                               others: Collection[str] = ()) -> None:
    """Before a retry answers, find a message an earlier attempt posted for the same inbox
    entry but died before noting; the retry then edits it instead of posting a second. Posted
    messages carry their entry in metadata. A native stream cannot: when the earlier attempt
    had begun one (`Journal.starting`), the first untagged bot message after the question
    (`after`) that no other answer owns (`others`) is taken to be it."""
    if journal.existing() is not None or journal.entry_id is None:
        return
    messages: list[dict[str, Any]] = []
    cursor = None
    try:
        while True:
            response = await client.conversations_replies(
                channel=channel, ts=thread_ts, include_all_metadata=True, limit=200,
                cursor=cursor)
            messages.extend(response.get("messages") or [])
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor or len(messages) >= 2000:
                break
    except SlackApiError as exc:
        log.info("slack.earlier_answer_unknown", error=exc.response.get("error"))
        return
    for message in messages:
        metadata = message.get("metadata") or {}
        payload = metadata.get("event_payload") or {}
        if metadata.get("event_type") == ANSWER_EVENT and \
                payload.get("entry") == str(journal.entry_id) and \
                payload.get("slot") == journal.slot:
            await journal.note(str(message["ts"]))
            return
    if not journal.starting():
        return
    for message in messages:
        ts = str(message.get("ts") or "")
        if message.get("bot_id") and not message.get("metadata") and ts not in others and \
                (not after or _ts(ts) > _ts(after)):
            log.info("slack.adopted_untagged_stream", ts=ts)
            await journal.note(ts)
            return


def _ts(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0


class NativeStreaming:
    """Whether Slack's chat streaming works here: unknown until tried, then remembered."""

    def __init__(self, enabled: bool = True) -> None:
        self.available: bool | None = None if enabled else False


class SlackReplyChannel:
    def __init__(self, client: AsyncWebClient, channel: str, thread_ts: str, *,
                 update_interval: float = 1.0, recipient: tuple[str, str] | None = None,
                 native: NativeStreaming | None = None, journal: Journal | None = None) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.update_interval = update_interval
        self._recipient = recipient  # (team id, user id): native streams require them
        self._native = native or NativeStreaming(enabled=False)
        # The answer's message, noted so that a retry after a crash edits it (no second answer)
        self.journal = journal or unjournaled()

    async def post(self, reply: Reply) -> None:
        parts = render.messages(reply)
        if reply.aside:
            for text, blocks in parts:
                await self.send(text, blocks)
            return
        first, rest = parts[0], parts[1:]
        earlier = self.journal.existing()
        if earlier is None or not await SlackStream(self, earlier).replace(*first):
            ts = await self.send(*first, answer=True)
            if ts is not None:
                await self.journal.note(ts)
        for text, blocks in rest:
            await self.send(text, blocks)

    async def send(self, text: str, blocks: list[dict[str, Any]] | None = None,
                   channel: str | None = None, thread_ts: str | None = "", *,
                   answer: bool = False) -> str | None:
        """Post one message; the ts, or None when Slack refused (logged, never raised: the
        answer is stored whatever happens to its delivery). An `answer` message carries its
        inbox entry in Slack's message metadata: a retry after a crash finds it there even
        when the crash came before the inbox noted it."""
        metadata = None
        if answer and self.journal.entry_id is not None:
            metadata = {"event_type": ANSWER_EVENT,
                        "event_payload": {"entry": str(self.journal.entry_id),
                                          "slot": self.journal.slot}}
        elif self.journal.entry_id is not None:  # a side note: never mistaken for an answer
            metadata = {"event_type": NOTE_EVENT, "event_payload": {}}
        try:
            response = await self.client.chat_postMessage(
                channel=channel or self.channel,
                thread_ts=self.thread_ts if thread_ts == "" else thread_ts,
                text=text, blocks=blocks, unfurl_links=False, unfurl_media=False,
                metadata=metadata)
        except SlackApiError as exc:
            log.error("slack.post_failed", channel=channel or self.channel,
                      error=exc.response.get("error"))
            return None
        return str(response["ts"])

    async def stream(self) -> ReplyStream:
        earlier = self.journal.existing()
        if earlier is not None:  # a retry: the answer grows in the message already there
            return SlackStream(self, earlier)
        if self._native.available is not False and self._recipient is not None:
            team, user = self._recipient
            await self.journal.intend()  # a stream cannot be tagged: say one is coming
            try:
                response = await self.client.chat_startStream(
                    channel=self.channel, thread_ts=self.thread_ts, recipient_team_id=team,
                    recipient_user_id=user)
            except SlackApiError as exc:
                error = exc.response.get("error")
                log.info("slack.native_streaming_unavailable", error=error)
                if error in STREAMING_UNSUPPORTED:
                    self._native.available = False
            else:
                self._native.available = True
                await self.journal.note(str(response["ts"]))
                return NativeSlackStream(self, str(response["ts"]))
        ts = await self.send(PLACEHOLDER, answer=True)
        if ts is not None:
            await self.journal.note(ts)
        return SlackStream(self, ts)


class SlackStream:
    def __init__(self, channel: SlackReplyChannel, ts: str | None) -> None:
        self._channel = channel
        self._ts = ts  # None: the placeholder could not be posted; the answer comes at the end
        self._text = ""
        self._shown = ""
        self._throttle = EditThrottle(channel.update_interval)

    async def append(self, text: str) -> None:
        self._text += text
        if self._ts is not None and self._throttle.due():
            pieces = render.split(render.to_mrkdwn(self._text))
            await self._update(pieces[0] + (" …" if len(pieces) > 1 else ""), None)

    async def _update(self, text: str, blocks: list[dict[str, Any]] | None) -> bool:
        if self._ts is None:
            return False
        if text == self._shown and blocks is None:
            return True
        self._throttle.wrote()
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

    async def replace(self, text: str, blocks: list[dict[str, Any]] | None) -> bool:
        """Show `text` in this message; False when it cannot be edited any more."""
        return await self._update(text, blocks)

    async def finish(self, reply: Reply) -> None:
        parts = render.messages(reply)
        text, blocks = parts[0]
        if not await self._update(text, blocks):
            ts = await self._channel.send(text, blocks, answer=True)
            if ts is not None:
                await self._channel.journal.note(ts)
        for text, blocks in parts[1:]:
            await self._channel.send(text, blocks)


class NativeSlackStream:
    """Slack's own streaming: Markdown appended to a message Slack renders as it grows."""

    def __init__(self, channel: SlackReplyChannel, ts: str) -> None:
        self._channel = channel
        self._ts = ts
        self._sent = ""  # what Slack has been given
        self._pending = ""
        self._broken = False
        self._throttle = EditThrottle(channel.update_interval)

    async def append(self, text: str) -> None:
        self._pending += text
        if self._throttle.due():
            await self._flush()

    async def _flush(self) -> None:
        if not self._pending or self._broken:
            return
        self._throttle.wrote()
        try:
            await self._channel.client.chat_appendStream(
                channel=self._channel.channel, ts=self._ts, markdown_text=self._pending)
        except SlackApiError as exc:  # the stream expired or the message is gone
            log.warning("slack.stream_append_failed", error=exc.response.get("error"))
            self._broken = True
            return
        self._sent += self._pending
        self._pending = ""

    async def finish(self, reply: Reply) -> None:
        extras = [block for block in (render.sources_block(reply), render.feedback_block(reply))
                  if block is not None]
        if not self._broken:
            shown = self._sent + self._pending
            # The final text normally extends what was streamed; a notice that replaces it
            # (a failure before any answer) is streamed whole.
            rest = (reply.text[len(shown.rstrip()):] if reply.text.startswith(shown.rstrip())
                    else ("\n\n" if shown else "") + reply.text)
            try:
                await self._channel.client.chat_stopStream(
                    channel=self._channel.channel, ts=self._ts,
                    markdown_text=(self._pending + rest) or None, blocks=extras or None)
                return
            except SlackApiError as exc:
                log.warning("slack.stream_stop_failed", error=exc.response.get("error"))
        await self._channel.post(reply)
