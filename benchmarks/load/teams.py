"""Teams: Bot Framework activities POSTed to `/api/messages`, answers read at the fake connector.

Authentication is on, as in production: the hub validates each activity's JWT against the fake
issuer's signing keys (fetched over HTTPS, hence REQUESTS_CA_BUNDLE) and gets its own token for
the connector from the issuer, which the connector requires. Bot Framework Service reuses its
token for an hour, so the run signs one and sends it with every activity.

Each conversation is a 1:1 chat with its own user, where Teams streams: the hub opens the
stream with an informative typing activity, grows the text with streaming typing activities
that name the stream (`streamId`, the informative activity's id) and ends it with the final
message, which names the stream too. A stream is therefore one message here, keyed by its
stream id; the bare typing indicator (no text) is not a write. Times are the connector's
arrival stamps (`ConnectorCall.at`).
"""

from __future__ import annotations

import json
from typing import Any

from benchmarks.load.driver import HttpDriver
from benchmarks.load.measure import Question, Shown, Write, question_text
from tests.fakes.botframework_server import FakeBotFramework

WRITES = ("send_to_conversation", "reply_to_activity", "update_activity")


class TeamsDriver(HttpDriver):
    platform = "teams"

    def __init__(self) -> None:
        self.fake = FakeBotFramework()
        self._headers: dict[str, str] | None = None

    def start(self) -> None:
        self.fake.start()
        self.fake.require_auth = True  # the connector wants the hub's own token

    def stop(self) -> None:
        self.fake.stop()

    def env(self) -> dict[str, str]:
        issuer = self.fake.issuer
        return {"MICROSOFT_APP_ID": self.fake.app_id,
                "MICROSOFT_APP_PASSWORD": self.fake.app_password,
                "TEAMS_OPENID_METADATA_URL": issuer.openid_metadata_url,
                "TEAMS_LOGIN_URL": issuer.login_url_prefix,
                "TEAMS_ALLOWED_SERVICE_URLS": self.fake.service_url,
                "REQUESTS_CA_BUNDLE": issuer.ca_path}

    def question(self, number: int, conversation: int | None) -> Question:
        user = f"load-warm-{number}" if conversation is None else f"load-{conversation:04d}"
        activity = self.fake.message(question_text(number), scope="personal",
                                     user_id=f"29:{user}", user_name=f"Load User {user}")
        return Question(number, str(activity["conversation"]["id"]), payload=activity)

    async def send(self, question: Question) -> None:
        if self._headers is None:
            self._headers = self.fake.auth_headers(question.payload)
        await self.post(question, "/api/messages", json.dumps(question.payload).encode(),
                        self._headers)

    def messages(self) -> list[Shown]:
        return [Shown(_stream_id(m) or str(m["id"]), str(m.get("text") or ""))
                for m in self.fake.messages()]

    def writes(self) -> list[Write]:
        found = []
        for call in self.fake.calls():
            body = call.body
            if call.operation not in WRITES or call.status >= 300 or not body:
                continue
            if body.get("type") == "typing" and _streaminfo(body) is None:
                continue  # the typing indicator: no text shown
            stream = _stream_id(body)
            if call.operation == "update_activity":
                found.append(Write(call.at, call.activity_id, str(body.get("text") or "")))
            else:
                found.append(Write(call.at, stream, str(body.get("text") or ""),
                                   opens=call.conversation_id if stream is None else None))
        return found

    def thread_texts(self, question: Question) -> list[str]:
        return self.fake.texts(question.thread)


def _streaminfo(activity: dict[str, Any]) -> dict[str, Any] | None:
    return next((e for e in activity.get("entities") or []
                 if isinstance(e, dict) and e.get("type") == "streaminfo"), None)


def _stream_id(activity: dict[str, Any]) -> str | None:
    info = _streaminfo(activity)
    return str(info["streamId"]) if info and info.get("streamId") else None
