"""Slack: signed `app_mention` events POSTed to `/slack/events`, answers read at the fake Slack.

Questions are spread over CHANNELS channels and USERS users; a conversation is a thread, which
its first question starts at the top level. The bot's writes are the Web API calls that write a
message (`chat.postMessage`, `chat.update` and the native stream's `chat.startStream`,
`chat.appendStream`, `chat.stopStream`), stamped by the fake on arrival (`SlackCall.at`).
"""

from __future__ import annotations

from typing import Any

from benchmarks.load.driver import HttpDriver
from benchmarks.load.measure import Question, Shown, Write, question_text
from tests.fakes.slack_server import FakeSlack

CHANNELS = 10  # the conversations are spread over this many channels
USERS = 50
# Web API methods that write a message; those that open one; those that append a piece.
WRITES = ("chat.postMessage", "chat.update", "chat.startStream", "chat.appendStream",
          "chat.stopStream")
OPENS = ("chat.postMessage", "chat.startStream")
APPENDS = ("chat.appendStream", "chat.stopStream")


class SlackDriver(HttpDriver):
    platform = "slack"

    def __init__(self) -> None:
        self.fake = FakeSlack()
        self.channels = [f"C0LOAD{i:02d}" for i in range(CHANNELS)]
        self.users = [f"U0LOAD{i:03d}" for i in range(USERS)]
        self._threads: dict[int, str] = {}  # conversation -> its thread's ts

    def start(self) -> None:
        self.fake.start()
        for channel in self.channels:
            self.fake.add_channel(channel, channel.lower())
        for user in self.users:
            self.fake.add_user(user, f"Load User {user[-3:]}", f"load{user[-3:]}")

    def stop(self) -> None:
        self.fake.stop()

    def env(self) -> dict[str, str]:
        return {"SLACK_BOT_TOKEN": self.fake.bot_token,
                "SLACK_SIGNING_SECRET": self.fake.signing_secret,
                "SLACK_API_URL": self.fake.api_url}

    def question(self, number: int, conversation: int | None) -> Question:
        if conversation is None:
            channel, user, thread_ts = self.channels[0], self.users[0], None
        else:
            channel = self.channels[conversation % len(self.channels)]
            user = self.users[conversation % len(self.users)]
            thread_ts = self._threads.get(conversation)
        event = self.fake.message_event(question_text(number), channel=channel, user=user,
                                        mention=True, thread_ts=thread_ts)
        thread_ts = thread_ts or event["ts"]
        if conversation is not None:
            self._threads.setdefault(conversation, thread_ts)
        return Question(number, _thread(channel, thread_ts), payload=event)

    async def send(self, question: Question) -> None:
        body, headers = self.fake.signed_request(self.fake.event_envelope(question.payload))
        await self.post(question, "/slack/events", body, headers)

    def messages(self) -> list[Shown]:
        return [Shown(_thread(channel, str(m["ts"])), str(m.get("text") or ""))
                for channel in self.channels for m in self.fake.messages(channel)
                if m.get("user") == self.fake.bot_user_id]

    def writes(self) -> list[Write]:
        found = []
        for method in WRITES:
            for call in self.fake.calls_to(method):
                channel, ts = str(call.args.get("channel")), call.args.get("ts")
                found.append(Write(
                    call.at, _thread(channel, str(ts)) if ts is not None else None,
                    _call_text(call.args),
                    opens=_thread(channel, str(call.args.get("thread_ts")))
                    if method in OPENS else None,
                    appended=method in APPENDS))
        return found

    def thread_texts(self, question: Question) -> list[str]:
        channel, thread_ts = question.thread.split("/", 1)
        return [str(m.get("text") or "") for m in self.fake.messages(channel, thread_ts)]


def _thread(channel: str, ts: str) -> str:
    """A message's or thread's key: channel ids and timestamps hold no "/"."""
    return f"{channel}/{ts}"


def _call_text(args: dict[str, Any]) -> str:
    parts = [str(args.get(k) or "") for k in ("text", "markdown_text")]
    chunks = args.get("chunks")
    if isinstance(chunks, list):
        parts.extend(str(c.get("text") or "") for c in chunks if isinstance(c, dict))
    return " ".join(parts)
