"""Discord: MESSAGE_CREATE events on the gateway the hub is connected to, answers read at the
fake's REST API.

`bothub serve` logs in to the fake Discord (DISCORD_API_URL; it asks the fake for the gateway
URL) and the run waits until its /healthz reports the gateway connected. A conversation is a
thread: its first question mentions the bot in one of CHANNELS text channels, and the hub opens
a thread on it (the thread takes the message's id); the next questions are asked in that thread
without a mention, as people do. A follow-up due before the hub has opened the thread is asked
as a new mention instead (the thread does not exist yet on Discord either). The bot's writes
are its `POST /channels/{id}/messages` (a placeholder, or an answer sent anew) and
`PATCH /channels/{id}/messages/{id}` (the growing answer), stamped on arrival
(`DiscordCall.at`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from benchmarks.load.driver import Driver
from benchmarks.load.measure import Question, Shown, Write, question_text
from tests.fakes.discord_server import FakeDiscord

CHANNELS = 10  # the conversations start in this many text channels
USERS = 50
POST = "POST /channels/{channel_id}/messages"
EDIT = "PATCH /channels/{channel_id}/messages/{message_id}"
CONNECT_TIMEOUT = 60.0  # seconds for the hub to log in and connect to the gateway


class DiscordDriver(Driver):
    platform = "discord"

    def __init__(self) -> None:
        self.fake = FakeDiscord()
        self.channels: list[str] = []
        self.users = [str(2000 + i) for i in range(USERS)]
        self._threads: dict[int, str] = {}  # conversation -> its thread's id

    def start(self) -> None:
        self.fake.start()
        for i in range(CHANNELS):
            self.channels.append(str(self.fake.add_channel(f"load-{i:02d}")["id"]))
        for user in self.users:
            self.fake.add_user(user, f"load{user}", f"Load User {user}")

    def stop(self) -> None:
        self.fake.stop()

    def env(self) -> dict[str, str]:
        return {"DISCORD_BOT_TOKEN": self.fake.bot_token, "DISCORD_API_URL": self.fake.api_url}

    async def open(self, url: str) -> None:
        """Wait until the hub says it is connected to the gateway (READY and the guild seen)."""
        deadline = time.monotonic() + CONNECT_TIMEOUT
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            while time.monotonic() < deadline:
                try:
                    health = (await client.get("/healthz")).json()
                    if health["adapters"]["discord"]["state"] == "ok":
                        return
                except (httpx.HTTPError, ValueError, KeyError, TypeError):
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"the hub did not connect to the fake Discord gateway within "
                           f"{CONNECT_TIMEOUT:.0f} s")

    async def close(self) -> None:
        pass  # nothing held open: events go through the fake's gateway

    def question(self, number: int, conversation: int | None) -> Question:
        """The message's options; it is built when sent, so that its id (a snowflake of the
        time it was sent) and the thread it opens are known only then."""
        index = conversation or 0
        options: dict[str, Any] = {"content": question_text(number),
                                   "author_id": self.users[index % len(self.users)]}
        thread = self._threads.get(conversation) if conversation is not None else None
        if thread is not None and thread in self.fake.channels:
            options["channel_id"] = thread
            return Question(number, thread, payload=options)
        options.update(channel_id=self.channels[index % len(self.channels)], mentions_bot=True)
        return Question(number, "", payload={**options, "conversation": conversation})

    async def send(self, question: Question) -> None:
        options = dict(question.payload)
        conversation = options.pop("conversation", None)
        content = options.pop("content")
        question.sent = time.monotonic()
        try:
            message = self.fake.dispatch_message(content, **options)
        except RuntimeError:  # no live gateway session (the message is stored all the same)
            question.status = None
            return
        question.status = 200
        if not question.thread:  # a mention: the hub opens a thread with the message's id
            question.thread = str(message["id"])
            if conversation is not None:
                self._threads.setdefault(conversation, question.thread)

    def messages(self) -> list[Shown]:
        bot = self.fake.bot_user_id
        return [Shown(str(m["id"]), str(m.get("content") or ""))
                for channel in list(self.fake.channels)
                for m in self.fake.messages(channel, author_id=bot)]

    def writes(self) -> list[Write]:
        found = []
        for route in (POST, EDIT):
            for call in self.fake.calls_to(route):
                body = call.json if isinstance(call.json, dict) else {}
                if call.status >= 300 or "content" not in body:
                    continue
                parts = call.path.strip("/").split("/")  # channels, id, messages[, id]
                text = str(body.get("content") or "")
                if route == POST:
                    found.append(Write(call.at, None, text, opens=parts[1]))
                else:
                    found.append(Write(call.at, parts[3], text))
        return found

    def thread_texts(self, question: Question) -> list[str]:
        return [str(m.get("content") or "")
                for m in self.fake.messages(question.thread, author_id=self.fake.bot_user_id)]
