"""A fake Slack Web API, plus builders for signed Events API and interactivity requests.

The real `slack_sdk` `AsyncWebClient(token=..., base_url=fake.api_url)` and `slack_bolt` talk to
it over a loopback socket, so the bot's real HTTP path (encoding, auth header, retry handlers,
error mapping) is exercised instead of a mocked SDK. Like the fake OpenAI server it runs in its
own thread with its own event loop, so sync tests, async tests and subprocesses can share it.

Wire details this mirrors (slack_sdk 3.48):

* Every method is requested at `{base_url}{method}`. Methods taking blocks/attachments
  (`chat.postMessage`, `chat.postEphemeral`, `chat.update`, `chat.*Stream`,
  `assistant.threads.setStatus`) send a JSON body; `auth.test`, `chat.delete` and `reactions.*`
  POST with their arguments in the *query string* and an empty body; `users.info`,
  `conversations.*`, `chat.getPermalink` and `usergroups.users.list` are GETs with a query string;
  `api_call(data=...)` and `oauth.v2.access` send `application/x-www-form-urlencoded`, where
  `blocks`/`attachments` are JSON strings (decoded here). The token travels as
  `Authorization: Bearer ...` (a `token` argument is accepted too); `oauth.v2.access` uses HTTP
  Basic auth with client_id:client_secret.
* Answers are HTTP 200 `{"ok": true, ...}` / `{"ok": false, "error": ...}`; rate limits are HTTP
  429 with `Retry-After` (seconds) and `{"ok": false, "error": "ratelimited"}`.
* Socket Mode: `apps.connections.open` (app-level `xapp-` token in the Authorization header) answers
  a `ws://.../link/?ticket=...&app_id=...` URL. On connecting, the server sends `hello`; it then
  sends envelopes (`{"envelope_id", "payload", "type": "events_api" | "interactive" |
  "slash_commands", "accepts_response_payload", ...}`) and the client acks each with a text frame
  `{"envelope_id": ..., "payload"?: ...}`. slack_sdk's aiohttp client pings right after connecting
  (`sdk-ping-pong:<time>`) and reads the pong; when the server closes the socket it calls
  `apps.connections.open` again and reconnects.

Typical use::

    with FakeSlack() as fake:
        client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
        event = fake.message_event("hi", mention=True)
        body, headers = fake.signed_request(fake.event_envelope(event))
        ...  # POST body/headers to the bot's /slack/events endpoint
        assert fake.messages("C0GENERAL", thread_ts=event["ts"])[-1]["text"] == "Hello!"

Socket Mode with Bolt: the handler's web client defaults to `app.client`, and
`apps.connections.open` sends the app token in place of the client's own, so pointing the app's
client at the fake is enough::

    app = AsyncApp(client=AsyncWebClient(token=fake.bot_token, base_url=fake.api_url))
    handler = AsyncSocketModeHandler(app, fake.app_token)
    await handler.connect_async()
    envelope_id = fake.push_event(fake.event_envelope(fake.message_event("hi", mention=True)))
    ack = await fake.wait_for_ack_async(envelope_id)
    ...
    await handler.close_async()
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import copy
import itertools
import json
import mimetypes
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import WSMsgType, web
from slack_sdk.signature import SignatureVerifier

from tests.fakes.background_server import SHUTDOWN_GRACE, STARTUP_TIMEOUT, BackgroundServer

__all__ = [
    "DEFAULT_APP_TOKEN",
    "DEFAULT_BOT_TOKEN",
    "DEFAULT_SIGNING_SECRET",
    "PERMALINK_BASE",
    "FakeSlack",
    "SlackCall",
    "SocketFrame",
    "form_body",
]

DEFAULT_BOT_TOKEN = "xoxb-test-token"
DEFAULT_APP_TOKEN = "xapp-1-test-token"
DEFAULT_SIGNING_SECRET = "test-signing-secret"
DEFAULT_TEAM_ID = "T0TEST"
DEFAULT_TEAM_NAME = "Test Workspace"
DEFAULT_BOT_USER_ID = "U0BOT"
DEFAULT_BOT_ID = "B0BOT"
DEFAULT_APP_ID = "A0TEST"
DEFAULT_BOT_NAME = "bothub"
DEFAULT_VERIFICATION_TOKEN = "fake-verification-token"
DEFAULT_SCOPES = (
    "app_mentions:read",
    "channels:history",
    "chat:write",
    "files:read",
    "groups:history",
    "im:history",
    "reactions:write",
    "users:read",
)
SLACKBOT_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"

# Timestamps look like Slack's ("1700000000.000100") and increase by 100 µs per message.
_TS_START_MICROS = 1_700_000_000_000_100
_TS_STEP_MICROS = 100
# chat.getPermalink answers https://fake-workspace.slack.com/archives/<channel>/p<ts digits>.
PERMALINK_BASE = "https://fake-workspace.slack.com/archives/"
# conversations.members: Slack's default page size and its maximum.
_MEMBERS_DEFAULT_LIMIT = 100
_MEMBERS_MAX_LIMIT = 1000
# Arguments Slack accepts as JSON strings in form-encoded or query-string requests.
_JSON_STRING_ARGS = frozenset(
    {"blocks", "attachments", "metadata", "chunks", "user_auth_blocks", "loading_messages"}
)
_INTERACTIVE_TYPES = frozenset(
    {
        "block_actions",
        "block_suggestion",
        "interactive_message",
        "message_action",
        "shortcut",
        "view_closed",
        "view_submission",
    }
)
_FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# Socket Mode: what the hello message reports, and how long to wait for acks / closing sockets.
_SOCKET_DEBUG_INFO = {
    "host": "applink-fake",
    "build_number": 10,
    "approximate_connection_time": 18060,
}
_ACK_TIMEOUT = 5.0
_ACK_POLL_INTERVAL = 0.005
_LOGIN_PAGE = (
    "<!DOCTYPE html><html><head><title>Slack</title></head>"
    "<body><h1>Sign in to Test Workspace</h1></body></html>"
)


@dataclass
class SlackCall:
    """One Web API request as the fake saw it."""

    method: str  # e.g. "chat.postMessage"
    token: str | None  # from the Authorization header (or a `token` argument)
    args: dict[str, Any]  # query string + form/JSON body; JSON strings (blocks, ...) decoded
    at: float  # time.monotonic() when it arrived
    http_method: str = "POST"
    content_type: str = ""  # "application/json", "application/x-www-form-urlencoded" or ""


@dataclass
class SocketFrame:
    """One websocket frame a Socket Mode client sent to the fake."""

    kind: str  # "text", "binary", "ping", "pong" or "close"
    data: Any  # text: the decoded JSON (the raw string if not JSON); ping/pong: bytes; close: code
    connection: int  # which connection sent it: 1 for the first since the last reset()
    at: float  # time.monotonic() when it arrived


@dataclass
class _SocketConnection:
    ws: web.WebSocketResponse
    number: int  # 1-based, counted since the last reset()
    generation: int  # the reset() it belongs to: frames from older ones are not recorded


class _SlackError(Exception):
    """Raised by a method handler to answer {"ok": false, "error": error}."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def form_body(payload: dict[str, Any]) -> bytes:
    """An interactivity request body exactly as Slack sends it: `payload=<url-encoded JSON>`."""
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode("ascii")


def _event_context(event_type: str, team_id: str, app_id: str, channel: str | None) -> str:
    data = {"et": event_type, "tid": team_id, "aid": app_id, "cid": channel}
    raw = json.dumps(data, separators=(",", ":")).encode()
    return "4-" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _str_arg(args: dict[str, Any], name: str) -> str | None:
    value = args.get(name)
    if value is None or value == "":
        return None
    return str(value)


def _chunk_text(chunks: Any) -> str:
    """The text carried by `markdown_text` streaming chunks (other chunk types carry none)."""
    if not isinstance(chunks, list):
        return ""
    return "".join(
        str(chunk.get("text", ""))
        for chunk in chunks
        if isinstance(chunk, dict) and chunk.get("type") == "markdown_text"
    )


def _filetype(name: str, mimetype: str) -> str:
    if "." in name:
        return name.rsplit(".", 1)[1].lower()
    if mimetype == "text/plain":
        return "text"
    extension = mimetypes.guess_extension(mimetype) or ""
    return extension.lstrip(".") or "binary"


class FakeSlack(BackgroundServer):
    """The fake server; see the module docstring. Public attributes may be changed at any time."""

    name = "fake Slack server"
    thread_name = "fake-slack"
    bot_token: str = DEFAULT_BOT_TOKEN
    app_token: str = DEFAULT_APP_TOKEN
    signing_secret: str = DEFAULT_SIGNING_SECRET
    team_id: str = DEFAULT_TEAM_ID
    bot_user_id: str = DEFAULT_BOT_USER_ID
    bot_id: str = DEFAULT_BOT_ID

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self._acked = threading.Condition(self._lock)  # notified whenever an ack arrives
        self._generations = itertools.count()
        self._send_lock: asyncio.Lock | None = None  # created on the server's loop
        self._tasks: set[asyncio.Task[Any]] = set()  # background sends/closes on the loop
        self._ts_counter = itertools.count()
        self._id_counter = itertools.count(1)
        self._methods: dict[str, Callable[[dict[str, Any], str | None], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "chat.startStream": self._chat_start_stream,
            "chat.appendStream": self._chat_append_stream,
            "chat.stopStream": self._chat_stop_stream,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
            "conversations.replies": self._conversations_replies,
            "conversations.members": self._conversations_members,
            "usergroups.users.list": self._usergroups_users_list,
            "files.info": self._files_info,
            "assistant.threads.setStatus": self._assistant_set_status,
            "oauth.v2.access": self._oauth_v2_access,
            "apps.connections.open": self._apps_connections_open,
        }
        self._init_state()

    def _init_state(self) -> None:
        """Every piece of per-test state, at its default. Called with the lock held (or in init)."""
        self.bot_token = DEFAULT_BOT_TOKEN
        self.app_token = DEFAULT_APP_TOKEN
        self.signing_secret = DEFAULT_SIGNING_SECRET
        self.team_id = DEFAULT_TEAM_ID
        self.bot_user_id = DEFAULT_BOT_USER_ID
        self.bot_id = DEFAULT_BOT_ID
        self.app_id = DEFAULT_APP_ID
        self.bot_name = DEFAULT_BOT_NAME
        self.verification_token = DEFAULT_VERIFICATION_TOKEN
        self.scopes: list[str] = list(DEFAULT_SCOPES)
        self.calls: list[SlackCall] = []
        self.downloads: list[tuple[str, str | None]] = []
        self.response_urls: list[dict[str, Any]] = []
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        # conversations.members: channel id -> member user ids (see set_members())
        self.channel_members: dict[str, list[str]] = {}
        # usergroups.users.list: usergroup (subteam) id -> user ids (see set_usergroup())
        self.usergroups: dict[str, list[str]] = {}
        # chat.postEphemeral: {channel, user, text, blocks, thread_ts}, in order (ephemerals_for())
        self.ephemerals: list[dict[str, Any]] = []
        self.teams: dict[str, str] = {DEFAULT_TEAM_ID: DEFAULT_TEAM_NAME}
        # oauth.v2.access: code -> team id it installs into (unknown codes install self.team_id)
        self.oauth_codes: dict[str, str] = {}
        self._token_teams: dict[str, str] = {}
        self._files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self._history: dict[str, list[dict[str, Any]]] = {}
        self._posted: set[tuple[str, str]] = set()
        self._streaming: set[tuple[str, str]] = set()
        self._response_url_targets: dict[str, tuple[str, str, str | None]] = {}
        self._outcomes: dict[str, collections.deque[tuple[str, Any]]] = {}
        # Socket Mode
        self.socket_frames: list[SocketFrame] = []  # every frame clients sent, in order
        self.acks: list[dict[str, Any]] = []  # text frames carrying an envelope_id
        self.envelopes: list[dict[str, Any]] = []  # every envelope pushed, in order
        self.socket_connections = 0  # websocket connections accepted so far
        self._socket_generation = next(self._generations)
        self._sockets: list[_SocketConnection] = []  # open and deliverable, oldest first
        self._tickets: set[str] = set()
        self._undelivered: collections.deque[tuple[str, str]] = collections.deque()
        self._delivered: dict[str, int] = {}  # envelope_id -> connection number
        self.add_user("U0ALICE", "Alice Example", "alice")
        self.add_user("U0BOB", "Bob Example", "bob")
        self._add_bot_user()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The server root: "http://127.0.0.1:PORT"."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """What to pass as the SDK's `base_url`: "http://127.0.0.1:PORT/api/"."""
        return f"{self.base_url}/api/"

    def _on_serving(self) -> None:
        """The send lock belongs to the server's loop; it exists before `_loop` is published, so
        anything that sees the server started also finds the lock."""
        self._send_lock = asyncio.Lock()

    async def _on_stopping(self) -> None:
        """Close the Socket Mode websockets with 1001 (going away) so clients see a clean close,
        not a handler cancelled by the runner's cleanup."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        await self._close_sockets(sockets, code=1001, grace=SHUTDOWN_GRACE)

    # -- scripting and inspection ------------------------------------------------------------

    def reset(self) -> None:
        """Forget calls, messages, files and scripts and restore every default. Open Socket Mode
        connections are closed from the server side; their frames are no longer recorded."""
        with self._lock:
            sockets = self._sockets
            self._init_state()
        self._close_later(sockets)

    def calls_to(self, method: str) -> list[SlackCall]:
        """The recorded calls of one Web API method, in order."""
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """The next `times` calls of `method` get HTTP 429 with `Retry-After: retry_after`."""
        with self._lock:
            queue = self._outcomes.setdefault(method, collections.deque())
            queue.extend(("ratelimited", retry_after) for _ in range(times))

    def fail(self, method: str, error: str, times: int = 1) -> None:
        """The next `times` calls of `method` answer HTTP 200 {"ok": false, "error": error}."""
        with self._lock:
            queue = self._outcomes.setdefault(method, collections.deque())
            queue.extend(("error", error) for _ in range(times))

    def add_user(
        self,
        user_id: str,
        real_name: str,
        display_name: str,
        is_bot: bool = False,
        **extra: Any,
    ) -> dict[str, Any]:
        """Register a users.info `user` object (extra keys are merged in); return it."""
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": self.team_id,
            "name": display_name.lower().replace(" ", ".") or user_id.lower(),
            "deleted": False,
            "color": "9f69e7",
            "real_name": real_name,
            "tz": "Europe/London",
            "tz_label": "Greenwich Mean Time",
            "tz_offset": 0,
            "profile": {
                "title": "",
                "phone": "",
                "real_name": real_name,
                "real_name_normalized": real_name,
                "display_name": display_name,
                "display_name_normalized": display_name,
                "status_text": "",
                "status_emoji": "",
                "avatar_hash": "g0000000000",
                "image_48": f"https://avatars.example/{user_id}_48.png",
                "image_72": f"https://avatars.example/{user_id}_72.png",
                "team": self.team_id,
            },
            "is_admin": False,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": 1_700_000_000,
        }
        if not is_bot:
            user["profile"]["email"] = f"{user['name']}@example.com"
        user.update(extra)
        with self._lock:
            self.users[user_id] = user
        return user

    def _add_bot_user(self) -> None:
        bot = self.add_user(self.bot_user_id, self.bot_name, self.bot_name, is_bot=True)
        bot["profile"]["bot_id"] = self.bot_id
        bot["profile"]["api_app_id"] = self.app_id

    def add_channel(
        self,
        channel_id: str,
        name: str | None = None,
        *,
        is_private: bool | None = None,
        is_im: bool | None = None,
        user: str | None = None,
    ) -> dict[str, Any]:
        """Register a conversations.info `channel` object. Unregistered ids are synthesised:
        "D..." is the DM with "U..." (D0ALICE <-> U0ALICE), "G..." a private channel, and
        "C0GENERAL" the public channel "general"."""
        with self._lock:
            self.channels.pop(channel_id, None)
            channel = self._make_channel(
                channel_id, name, is_private=is_private, is_im=is_im, user=user
            )
            self.channels[channel_id] = channel
        return channel

    def set_members(self, channel: str, users: list[str]) -> None:
        """What conversations.members answers for `channel` (in this order). A channel with no
        members set answers channel_not_found, unless add_channel() registered it (then none)."""
        with self._lock:
            self.channel_members[channel] = list(dict.fromkeys(users))  # no duplicates

    def set_usergroup(self, group_id: str, users: list[str]) -> None:
        """What usergroups.users.list answers for `group_id` ("S..."); unknown groups answer
        no_such_subteam."""
        with self._lock:
            self.usergroups[group_id] = list(users)

    def ephemerals_for(self, user: str) -> list[dict[str, Any]]:
        """The chat.postEphemeral messages sent to `user`, in order: {channel, user, text, blocks,
        thread_ts} (blocks/thread_ts None when not sent). They are never in messages()."""
        with self._lock:
            return [copy.deepcopy(e) for e in self.ephemerals if e["user"] == user]

    def add_file(self, file_id: str, name: str, mimetype: str, content: bytes) -> dict[str, Any]:
        """Host a file; return its Slack file object. The URLs need `Bearer <bot_token>`."""
        path = f"/files-pri/{self.team_id}-{file_id}"
        quoted = quote(name)
        filetype = _filetype(name, mimetype)
        obj: dict[str, Any] = {
            "id": file_id,
            "created": 1_700_000_000,
            "timestamp": 1_700_000_000,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": filetype,
            "pretty_type": filetype.upper(),
            "user": "U0ALICE",
            "user_team": self.team_id,
            "editable": False,
            "size": len(content),
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": True,
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": f"{self.base_url}{path}/{quoted}",
            "url_private_download": f"{self.base_url}{path}/download/{quoted}",
            "permalink": f"https://test-workspace.slack.com/files/U0ALICE/{file_id}/{quoted}",
            "is_starred": False,
            "has_rich_preview": False,
            "file_access": "visible",
        }
        with self._lock:
            self._files[file_id] = (obj, content)
        return copy.deepcopy(obj)

    def add_message(self, channel: str, message: dict[str, Any]) -> None:
        """Put a message (e.g. from another user) into a channel's history, as if posted there.

        message_event() does this already for the events it builds."""
        stored = copy.deepcopy(message)
        for key in ("channel", "channel_type", "event_ts"):
            stored.pop(key, None)
        stored["type"] = "message"
        with self._lock:
            self._store(channel, stored)

    def messages(
        self, channel: str, thread_ts: str | None = None, *, include_events: bool = False
    ) -> list[dict[str, Any]]:
        """Messages posted through the Web API to `channel` (or one thread of it: the parent and
        its replies), as they are now (after updates and deletes), in ts order. With
        `include_events`, messages from message_event()/add_message() are included too."""
        with self._lock:
            result = []
            for message in self._history.get(channel, []):
                ts = message["ts"]
                if not include_events and (channel, ts) not in self._posted:
                    continue
                if thread_ts is not None and thread_ts not in (ts, message.get("thread_ts")):
                    continue
                result.append(self._view(channel, message))
            return result

    # -- Socket Mode -------------------------------------------------------------------------

    @property
    def connected_sockets(self) -> int:
        """How many Socket Mode websockets are open now (`socket_connections` counts them all)."""
        with self._lock:
            return len(self._sockets)

    def push_event(
        self, envelope_payload: dict[str, Any], *, retry_attempt: int = 0, retry_reason: str = ""
    ) -> str:
        """Send an Events API envelope (e.g. from event_envelope()) over Socket Mode; return its
        envelope_id. Like the other push_*() methods this returns at once (from any thread):
        the envelope goes to the newest open connection, or waits for a client to connect."""
        return self._push(
            "events_api",
            envelope_payload,
            accepts_response_payload=False,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
        )

    def push_interactive(
        self, payload: dict[str, Any], *, accepts_response_payload: bool = True
    ) -> str:
        """Send an interactivity payload (e.g. from block_action()) over Socket Mode."""
        return self._push("interactive", payload, accepts_response_payload=accepts_response_payload)

    def push_slash_command(self, fields: dict[str, Any]) -> str:
        """Send a slash command over Socket Mode. `fields` (e.g. {"command": "/ask", "text": ...})
        override Slack's defaults: "/bothub" typed by U0ALICE in C0GENERAL. Unless given, the
        response_url points at this server (POSTs land in `response_urls`)."""
        channel = str(fields.get("channel_id", "C0GENERAL"))
        user = str(fields.get("user_id", "U0ALICE"))
        with self._lock:
            user_name = str(self.users.get(user, {}).get("name", user.lower()))
            channel_name = str(self._make_channel(channel).get("name", channel))
            key = f"{self.team_id}/{next(self._id_counter)}/{uuid.uuid4().hex[:24]}"
            if "response_url" not in fields:
                self._response_url_targets[key] = (channel, "", None)
        payload: dict[str, Any] = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "team_domain": "test-workspace",
            "channel_id": channel,
            "channel_name": channel_name,
            "user_id": user,
            "user_name": user_name,
            "command": "/bothub",
            "text": "",
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": f"{self.base_url}/commands/{key}",
            "trigger_id": f"{next(self._id_counter)}.{int(time.time())}.{uuid.uuid4().hex}",
        }
        payload.update(fields)
        return self._push("slash_commands", payload, accepts_response_payload=True)

    def wait_for_ack(self, envelope_id: str, timeout: float = _ACK_TIMEOUT) -> dict[str, Any]:
        """Block until the client acks `envelope_id`; return the ack frame. For a client running
        in another thread or process: in an async test await wait_for_ack_async() instead, so
        the client on the test's loop can run."""
        deadline = time.monotonic() + timeout
        with self._acked:
            while (ack := self._ack_for(envelope_id)) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(self._no_ack_message(envelope_id, timeout))
                self._acked.wait(remaining)
            return ack

    async def wait_for_ack_async(
        self,
        envelope_id: str,
        timeout: float = _ACK_TIMEOUT,  # noqa: ASYNC109 -- mirrors wait_for_ack()
    ) -> dict[str, Any]:
        """wait_for_ack() without blocking the calling event loop."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                ack = self._ack_for(envelope_id)
                if ack is not None:
                    return ack
                if time.monotonic() >= deadline:
                    raise TimeoutError(self._no_ack_message(envelope_id, timeout))
            await asyncio.sleep(_ACK_POLL_INTERVAL)

    def drop_connections(self) -> None:
        """Close every Socket Mode websocket from the server side (returns at once). Nothing more
        is sent on them; a client with auto-reconnect calls apps.connections.open again."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        self._close_later(sockets)

    def _push(self, kind: str, payload: dict[str, Any], **fields: Any) -> str:
        loop = self._loop
        if loop is None:
            raise RuntimeError("FakeSlack is not started")
        envelope_id = str(uuid.uuid4())
        envelope = {"envelope_id": envelope_id, "payload": payload, "type": kind, **fields}
        text = json.dumps(envelope, separators=(",", ":"))
        with self._lock:
            self.envelopes.append(json.loads(text))
            self._undelivered.append((envelope_id, text))
        loop.call_soon_threadsafe(self._spawn, self._deliver())
        return envelope_id

    def _ack_for(self, envelope_id: str) -> dict[str, Any] | None:
        for ack in self.acks:
            if ack.get("envelope_id") == envelope_id:
                return copy.deepcopy(ack)
        return None

    def _no_ack_message(self, envelope_id: str, timeout: float) -> str:
        if not any(e["envelope_id"] == envelope_id for e in self.envelopes):
            return f"envelope {envelope_id} was never pushed (or reset() forgot it)"
        connection = self._delivered.get(envelope_id)
        if connection is None:
            return (
                f"envelope {envelope_id} was not delivered within {timeout} s: no Socket Mode "
                f"client connected (connections so far: {self.socket_connections})"
            )
        return (
            f"envelope {envelope_id} was sent on connection {connection} but not acked within "
            f"{timeout} s; acks received: {[a.get('envelope_id') for a in self.acks]}"
        )

    # -- signed requests from Slack ----------------------------------------------------------

    def signed_headers(
        self,
        body: bytes,
        *,
        timestamp: int | None = None,
        secret: str | None = None,
        retry_num: int | None = None,
        retry_reason: str | None = None,
        content_type: str | None = None,
    ) -> dict[str, str]:
        """Headers Slack sends with an Events API / interactivity request carrying `body`.

        The Content-Type is form-encoded for `payload=` bodies, else JSON (unless given)."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        verifier = SignatureVerifier(self.signing_secret if secret is None else secret)
        signature = verifier.generate_signature(timestamp=ts, body=body)
        if content_type is None:
            content_type = (
                _FORM_CONTENT_TYPE if body.startswith(b"payload=") else "application/json"
            )
        headers = {
            "Content-Type": content_type,
            "User-Agent": SLACKBOT_USER_AGENT,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature or "",
        }
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
        elif retry_reason is not None:
            headers["X-Slack-Retry-Reason"] = retry_reason
        return headers

    def signed_request(
        self, payload: dict[str, Any], **header_options: Any
    ) -> tuple[bytes, dict[str, str]]:
        """(body, headers) for an Events API envelope (JSON) or an interactivity payload (form);
        `header_options` go to signed_headers()."""
        if payload.get("type") in _INTERACTIVE_TYPES:
            body = form_body(payload)
        else:
            body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        return body, self.signed_headers(body, **header_options)

    @staticmethod
    def form_body(payload: dict[str, Any]) -> bytes:
        """See the module-level form_body()."""
        return form_body(payload)

    def url_verification(self, challenge: str = "fake-challenge") -> dict[str, Any]:
        """The handshake Slack sends when an events URL is configured."""
        return {
            "token": self.verification_token,
            "challenge": challenge,
            "type": "url_verification",
        }

    def event_envelope(
        self, event: dict[str, Any], *, event_id: str | None = None, team_id: str | None = None
    ) -> dict[str, Any]:
        """Wrap an event in the `event_callback` envelope Slack POSTs to the events URL."""
        team = team_id or self.team_id
        if event_id is None:
            event_id = f"Ev{next(self._id_counter):010d}"
        return {
            "token": self.verification_token,
            "team_id": team,
            "context_team_id": team,
            "context_enterprise_id": None,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": team,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": _event_context(
                str(event.get("type")), team, self.app_id, event.get("channel")
            ),
        }

    def message_event(
        self,
        text: str,
        *,
        channel: str = "C0GENERAL",
        user: str = "U0ALICE",
        ts: str | None = None,
        thread_ts: str | None = None,
        channel_type: str = "channel",
        files: list[dict[str, Any]] | None = None,
        mention: bool = False,
        subtype: str | None = None,
        bot_id: str | None = None,
    ) -> dict[str, Any]:
        """An `app_mention` (mention=True) or `message` event, and record the message in the
        channel's history (so conversations.replies, reactions and chat.update see it).

        Like Slack, `app_mention` events carry no `channel_type`; messages from bots carry
        `bot_id` and no `client_msg_id`."""
        ts = ts or self._next_ts()
        if mention:
            text = f"<@{self.bot_user_id}> {text}"
        event: dict[str, Any] = {"type": "app_mention" if mention else "message"}
        if subtype is None and files:
            subtype = "file_share"
        if subtype is not None:
            event["subtype"] = subtype
        event["user"] = user
        if bot_id is not None:
            event["bot_id"] = bot_id
            if bot_id == self.bot_id:
                event["app_id"] = self.app_id
        else:
            event["client_msg_id"] = str(uuid.uuid4())
        event["text"] = text
        event["team"] = self.team_id
        if files:
            event["files"] = copy.deepcopy(files)
            event["upload"] = False
            event["display_as_bot"] = False
        event["ts"] = ts
        if thread_ts is not None:
            event["thread_ts"] = thread_ts
            with self._lock:
                parent = self._find(channel, thread_ts)
            if parent is not None and thread_ts != ts:
                event["parent_user_id"] = parent.get("user")
        event["channel"] = channel
        event["event_ts"] = ts
        if not mention:
            event["channel_type"] = channel_type
        self.add_message(channel, event)
        return event

    def block_action(
        self,
        action_id: str,
        value: str,
        *,
        user: str = "U0ALICE",
        channel: str = "C0GENERAL",
        message_ts: str | None = None,
        thread_ts: str | None = None,
        block_id: str = "actions",
    ) -> dict[str, Any]:
        """A `block_actions` interactivity payload for a button click on a message (by default
        the latest message in the channel). Send it with signed_request() / form_body().
        Its response_url points at this server; POSTs there land in `response_urls`."""
        with self._lock:
            if message_ts is None:
                history = self._history.get(channel) or []
                message_ts = history[-1]["ts"] if history else self._next_ts()
            stored = self._find(channel, message_ts)
            if stored is not None:
                message = self._view(channel, stored)
            else:
                message = {
                    "type": "message",
                    "user": self.bot_user_id,
                    "bot_id": self.bot_id,
                    "app_id": self.app_id,
                    "text": "",
                    "ts": message_ts,
                    "team": self.team_id,
                }
            if thread_ts is not None:
                message["thread_ts"] = thread_ts
            thread_ts = message.get("thread_ts")
            key = f"{self.team_id}/{next(self._id_counter)}/{uuid.uuid4().hex[:24]}"
            self._response_url_targets[key] = (channel, message_ts, thread_ts)
            user_name = str(self.users.get(user, {}).get("name", user.lower()))
            channel_name = str(self._make_channel(channel).get("name", channel))
        now = time.time()
        container: dict[str, Any] = {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        }
        if thread_ts is not None:
            container["thread_ts"] = thread_ts
        return {
            "type": "block_actions",
            "user": {
                "id": user,
                "username": user_name,
                "name": user_name,
                "team_id": self.team_id,
            },
            "api_app_id": self.app_id,
            "token": self.verification_token,
            "container": container,
            "trigger_id": f"{next(self._id_counter)}.{int(now)}.{uuid.uuid4().hex}",
            "team": {"id": self.team_id, "domain": "test-workspace"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": channel_name},
            "message": message,
            "state": {"values": {}},
            "response_url": f"{self.base_url}/actions/{key}",
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": block_id,
                    "text": {"type": "plain_text", "text": value, "emoji": True},
                    "value": value,
                    "type": "button",
                    "action_ts": f"{now:.6f}",
                }
            ],
        }

    # -- state helpers (call with the lock held) ---------------------------------------------

    def _next_ts(self) -> str:
        micros = _TS_START_MICROS + _TS_STEP_MICROS * next(self._ts_counter)
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _team_of(self, token: str | None) -> str:
        return self._token_teams.get(token or "", self.team_id)

    def _find(self, channel: str, ts: str) -> dict[str, Any] | None:
        for message in self._history.get(channel, []):
            if message["ts"] == ts:
                return message
        return None

    def _store(self, channel: str, message: dict[str, Any]) -> None:
        history = self._history.setdefault(channel, [])
        history[:] = [m for m in history if m["ts"] != message["ts"]]
        history.append(message)
        history.sort(key=lambda m: float(m["ts"]))

    def _view(self, channel: str, message: dict[str, Any]) -> dict[str, Any]:
        """A copy of a stored message with the thread summary Slack adds to thread parents."""
        view = copy.deepcopy(message)
        ts = message["ts"]
        replies = [
            m for m in self._history.get(channel, []) if m.get("thread_ts") == ts and m["ts"] != ts
        ]
        if replies:
            users = list(dict.fromkeys(str(m.get("user")) for m in replies))
            view["thread_ts"] = ts
            view["reply_count"] = len(replies)
            view["reply_users"] = users
            view["reply_users_count"] = len(users)
            view["latest_reply"] = replies[-1]["ts"]
        return view

    def _resolve_channel(self, channel: str) -> str:
        """Posting to a user id posts to the DM with that user, as Slack does."""
        if channel[:1] in ("U", "W"):
            return "D" + channel[1:]
        return channel

    def _make_channel(
        self,
        channel_id: str,
        name: str | None = None,
        *,
        is_private: bool | None = None,
        is_im: bool | None = None,
        user: str | None = None,
    ) -> dict[str, Any]:
        registered = self.channels.get(channel_id)
        if registered is not None and name is None and is_private is None and is_im is None:
            return copy.deepcopy(registered)
        if is_im is None:
            is_im = channel_id.startswith("D")
        if is_im:
            return {
                "id": channel_id,
                "created": 1_700_000_000,
                "is_im": True,
                "is_org_shared": False,
                "context_team_id": self.team_id,
                "updated": 1_700_000_000_000,
                "user": user or "U" + channel_id[1:],
                "is_user_deleted": False,
                "priority": 0,
            }
        if is_private is None:
            is_private = channel_id.startswith("G")
        if name is None:
            name = channel_id[1:].lstrip("0").lower() or channel_id.lower()
        return {
            "id": channel_id,
            "name": name,
            "is_channel": not is_private,
            "is_group": is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": is_private,
            "created": 1_700_000_000,
            "is_archived": False,
            "is_general": name == "general",
            "unlinked": 0,
            "name_normalized": name,
            "is_shared": False,
            "is_org_shared": False,
            "is_pending_ext_shared": False,
            "pending_shared": [],
            "context_team_id": self.team_id,
            "updated": 1_700_000_000_000,
            "creator": "U0ALICE",
            "is_ext_shared": False,
            "shared_team_ids": [self.team_id],
            "is_member": True,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "previous_names": [],
        }

    def _bot_message(self, token: str | None, ts: str) -> dict[str, Any]:
        team = self._team_of(token)
        return {
            "user": self.bot_user_id,
            "type": "message",
            "ts": ts,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "text": "",
            "team": team,
            "bot_profile": {
                "id": self.bot_id,
                "deleted": False,
                "name": self.bot_name,
                "updated": 1_700_000_000,
                "app_id": self.app_id,
                "icons": {"image_48": "https://avatars.example/bot_48.png"},
                "team_id": team,
            },
        }

    def _existing(self, args: dict[str, Any], ts_name: str = "ts") -> tuple[str, dict[str, Any]]:
        channel = _str_arg(args, "channel")
        if channel is None:
            raise _SlackError("channel_not_found")
        channel = self._resolve_channel(channel)
        ts = _str_arg(args, ts_name)
        message = self._find(channel, ts) if ts is not None else None
        if message is None:
            raise _SlackError("message_not_found")
        return channel, message

    # -- Web API methods (called with the lock held) -----------------------------------------

    def _auth_test(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        team = self._team_of(token)
        name = self.teams.get(team, team)
        return {
            "ok": True,
            "url": f"https://{name.lower().replace(' ', '-')}.slack.com/",
            "team": name,
            "user": self.bot_name,
            "team_id": team,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        channel = _str_arg(args, "channel")
        if channel is None:
            raise _SlackError("channel_not_found")
        channel = self._resolve_channel(channel)
        text, blocks = args.get("text"), args.get("blocks")
        attachments, markdown_text = args.get("attachments"), args.get("markdown_text")
        if isinstance(blocks, str):
            raise _SlackError("invalid_blocks_format")
        if blocks is not None and not isinstance(blocks, list):
            raise _SlackError("invalid_blocks")
        if markdown_text and (text or blocks):
            raise _SlackError("markdown_text_conflict")
        if not (text or blocks or attachments or markdown_text):
            raise _SlackError("no_text")
        message = self._bot_message(token, self._next_ts())
        message["text"] = str(markdown_text or text or "")
        if blocks:
            message["blocks"] = blocks
        if attachments:
            message["attachments"] = attachments
        if isinstance(args.get("metadata"), dict):
            message["metadata"] = args["metadata"]
        thread_ts = _str_arg(args, "thread_ts")
        if thread_ts is not None:
            message["thread_ts"] = thread_ts
            parent = self._find(channel, thread_ts)
            if parent is not None:
                message["parent_user_id"] = parent.get("user")
            if str(args.get("reply_broadcast")) in ("1", "true", "True"):
                message["subtype"] = "thread_broadcast"
        self._store(channel, message)
        self._posted.add((channel, message["ts"]))
        return {
            "ok": True,
            "channel": channel,
            "ts": message["ts"],
            "message": copy.deepcopy(message),
        }

    def _chat_update(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        channel, message = self._existing(args)
        if message.get("user") != self.bot_user_id or message.get("bot_id") is None:
            raise _SlackError("cant_update_message")
        blocks = args.get("blocks")
        if isinstance(blocks, str):
            raise _SlackError("invalid_blocks_format")
        if not any(k in args for k in ("text", "blocks", "attachments", "markdown_text")):
            raise _SlackError("no_text")
        if "markdown_text" in args:
            message["text"] = str(args["markdown_text"])
        elif "text" in args:
            message["text"] = str(args["text"])
        for key in ("blocks", "attachments"):
            if key in args:
                if args[key]:
                    message[key] = args[key]
                else:
                    message.pop(key, None)
        if isinstance(args.get("metadata"), dict):
            message["metadata"] = args["metadata"]
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {
            "ok": True,
            "channel": channel,
            "ts": message["ts"],
            "text": message["text"],
            "message": copy.deepcopy(message),
        }

    def _chat_delete(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        channel, message = self._existing(args)
        if message.get("user") != self.bot_user_id:
            raise _SlackError("cant_delete_message")
        ts = message["ts"]
        self._history[channel] = [m for m in self._history[channel] if m["ts"] != ts]
        self._posted.discard((channel, ts))
        self._streaming.discard((channel, ts))
        return {"ok": True, "channel": channel, "ts": ts}

    def _chat_post_ephemeral(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        channel = _str_arg(args, "channel")
        if channel is None:
            raise _SlackError("channel_not_found")
        channel = self._resolve_channel(channel)
        user = _str_arg(args, "user")
        if user is None:
            raise _SlackError("user_not_found")
        text, blocks = args.get("text"), args.get("blocks")
        attachments, markdown_text = args.get("attachments"), args.get("markdown_text")
        if isinstance(blocks, str):
            raise _SlackError("invalid_blocks_format")
        if blocks is not None and not isinstance(blocks, list):
            raise _SlackError("invalid_blocks")
        if markdown_text and (text or blocks):
            raise _SlackError("markdown_text_conflict")
        if not (text or blocks or attachments or markdown_text):
            raise _SlackError("no_text")
        self.ephemerals.append(
            {
                "channel": channel,
                "user": user,
                "text": str(markdown_text or text or ""),
                "blocks": copy.deepcopy(blocks) if blocks else None,
                "thread_ts": _str_arg(args, "thread_ts"),
            }
        )
        return {"ok": True, "message_ts": self._next_ts()}

    def _chat_get_permalink(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        channel, message = self._existing(args, "message_ts")
        ts = message["ts"]
        permalink = f"{PERMALINK_BASE}{channel}/p{ts.replace('.', '')}"
        thread_ts = message.get("thread_ts")
        if thread_ts and thread_ts != ts:  # a reply: Slack links it inside its thread
            permalink += f"?thread_ts={thread_ts}&cid={channel}"
        return {"ok": True, "channel": channel, "permalink": permalink}

    def _chat_start_stream(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        channel = _str_arg(args, "channel")
        if channel is None:
            raise _SlackError("channel_not_found")
        channel = self._resolve_channel(channel)
        thread_ts = _str_arg(args, "thread_ts")
        if thread_ts is None:
            raise _SlackError("invalid_arguments")
        message = self._bot_message(token, self._next_ts())
        message["text"] = str(args.get("markdown_text") or "") + _chunk_text(args.get("chunks"))
        message["thread_ts"] = thread_ts
        parent = self._find(channel, thread_ts)
        if parent is not None:
            message["parent_user_id"] = parent.get("user")
        self._store(channel, message)
        self._posted.add((channel, message["ts"]))
        self._streaming.add((channel, message["ts"]))
        return {"ok": True, "channel": channel, "ts": message["ts"]}

    def _streaming_message(self, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        channel, message = self._existing(args)
        if (channel, message["ts"]) not in self._streaming:
            raise _SlackError("message_not_in_streaming_state")
        message["text"] = (
            message.get("text", "")
            + str(args.get("markdown_text") or "")
            + _chunk_text(args.get("chunks"))
        )
        return channel, message

    def _chat_append_stream(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        channel, message = self._streaming_message(args)
        return {"ok": True, "channel": channel, "ts": message["ts"]}

    def _chat_stop_stream(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        channel, message = self._streaming_message(args)
        if isinstance(args.get("blocks"), list):
            message["blocks"] = args["blocks"]
        if isinstance(args.get("metadata"), dict):
            message["metadata"] = args["metadata"]
        self._streaming.discard((channel, message["ts"]))
        return {
            "ok": True,
            "channel": channel,
            "ts": message["ts"],
            "message": copy.deepcopy(message),
        }

    def _reactions_add(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        name = _str_arg(args, "name")
        if name is None:
            raise _SlackError("invalid_name")
        _, message = self._existing(args, "timestamp")
        name = name.strip(":")
        reactions = message.setdefault("reactions", [])
        for reaction in reactions:
            if reaction["name"] == name:
                if self.bot_user_id in reaction["users"]:
                    raise _SlackError("already_reacted")
                reaction["users"].append(self.bot_user_id)
                reaction["count"] += 1
                break
        else:
            reactions.append({"name": name, "users": [self.bot_user_id], "count": 1})
        return {"ok": True}

    def _reactions_remove(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        name = _str_arg(args, "name")
        if name is None:
            raise _SlackError("invalid_name")
        _, message = self._existing(args, "timestamp")
        name = name.strip(":")
        reactions = message.get("reactions", [])
        for reaction in reactions:
            if reaction["name"] == name and self.bot_user_id in reaction["users"]:
                reaction["users"].remove(self.bot_user_id)
                reaction["count"] -= 1
                break
        else:
            raise _SlackError("no_reaction")
        message["reactions"] = [r for r in reactions if r["count"] > 0]
        if not message["reactions"]:
            del message["reactions"]
        return {"ok": True}

    def _users_info(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        user = self.users.get(_str_arg(args, "user") or "")
        if user is None:
            raise _SlackError("user_not_found")
        return {"ok": True, "user": copy.deepcopy(user)}

    def _conversations_info(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        channel = _str_arg(args, "channel")
        if channel is None:
            raise _SlackError("channel_not_found")
        return {"ok": True, "channel": self._make_channel(channel)}

    def _conversations_replies(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        channel = _str_arg(args, "channel")
        if channel is None:
            raise _SlackError("channel_not_found")
        ts = _str_arg(args, "ts")
        if ts is None:
            raise _SlackError("thread_not_found")
        thread = [
            self._view(channel, m)
            for m in self._history.get(channel, [])
            if ts in (m["ts"], m.get("thread_ts"))
        ]
        if not thread:
            raise _SlackError("thread_not_found")
        try:
            limit = max(1, min(int(args.get("limit") or 1000), 1000))
            cursor = str(args.get("cursor") or "")
            start = int(base64.b64decode(cursor).decode().split(":")[1]) if cursor else 0
        except (ValueError, IndexError, UnicodeDecodeError, binascii.Error) as exc:
            raise _SlackError("invalid_cursor") from exc
        page = thread[start : start + limit]
        has_more = start + limit < len(thread)
        next_cursor = (
            base64.b64encode(f"index:{start + limit}".encode()).decode() if has_more else ""
        )
        return {
            "ok": True,
            "messages": page,
            "has_more": has_more,
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _conversations_members(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        channel = _str_arg(args, "channel")
        if channel is None:
            raise _SlackError("channel_not_found")
        members = self.channel_members.get(channel)
        if members is None:
            if channel not in self.channels:
                raise _SlackError("channel_not_found")
            members = []
        try:
            limit = int(args.get("limit") or _MEMBERS_DEFAULT_LIMIT)
            limit = max(1, min(limit, _MEMBERS_MAX_LIMIT))
            cursor = str(args.get("cursor") or "")
            start = 0
            if cursor:  # like Slack's: base64 of "user:<the next page's first member>"
                kind, _, user = base64.b64decode(cursor, validate=True).decode().partition(":")
                if kind != "user":
                    raise ValueError(cursor)
                start = members.index(user)
        except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
            raise _SlackError("invalid_cursor") from exc
        page = members[start : start + limit]
        next_cursor = ""
        if start + limit < len(members):
            next_cursor = base64.b64encode(f"user:{members[start + limit]}".encode()).decode()
        return {"ok": True, "members": page, "response_metadata": {"next_cursor": next_cursor}}

    def _usergroups_users_list(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        group = _str_arg(args, "usergroup")
        if group is None:
            raise _SlackError("invalid_arguments")
        users = self.usergroups.get(group)
        if users is None:
            raise _SlackError("no_such_subteam")
        return {"ok": True, "users": list(users)}

    def _files_info(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        entry = self._files.get(_str_arg(args, "file") or "")
        if entry is None:
            raise _SlackError("file_not_found")
        return {
            "ok": True,
            "file": copy.deepcopy(entry[0]),
            "comments": [],
            "response_metadata": {"next_cursor": ""},
        }

    def _assistant_set_status(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        if _str_arg(args, "channel_id") is None or _str_arg(args, "thread_ts") is None:
            raise _SlackError("invalid_arguments")
        if "status" not in args:
            raise _SlackError("invalid_arguments")
        return {"ok": True}

    def _oauth_v2_access(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        if not args.get("client_id"):
            raise _SlackError("invalid_client_id")
        if not args.get("client_secret"):
            raise _SlackError("bad_client_secret")
        code = _str_arg(args, "code")
        if code is None:
            raise _SlackError("invalid_code")
        team = self.oauth_codes.get(code, self.team_id)
        self.teams.setdefault(team, f"Workspace {team}")
        access_token = f"xoxb-installed-{team}"
        self._token_teams[access_token] = team
        return {
            "ok": True,
            "app_id": self.app_id,
            "authed_user": {"id": "U0ALICE"},
            "scope": ",".join(self.scopes),
            "token_type": "bot",
            "access_token": access_token,
            "bot_user_id": self.bot_user_id,
            "team": {"id": team, "name": self.teams[team]},
            "enterprise": None,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        ticket = str(uuid.uuid4())
        self._tickets.add(ticket)
        url = f"ws://127.0.0.1:{self._port}/link/?ticket={ticket}&app_id={self.app_id}"
        return {"ok": True, "url": url}

    # -- HTTP --------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/files-pri/{file_key}/download/{name}", self._download)
        app.router.add_get("/files-pri/{file_key}/{name}", self._download)
        app.router.add_post("/actions/{key:.+}", self._response_url)
        app.router.add_post("/commands/{key:.+}", self._response_url)
        app.router.add_get("/link/", self._socket_mode)
        app.router.add_get("/", self._login_page)
        return app

    def _respond(self, body: dict[str, Any], status: int = 200, **headers: str) -> web.Response:
        base = {
            "x-slack-req-id": uuid.uuid4().hex,
            "x-oauth-scopes": ",".join(self.scopes),
            "x-accepted-oauth-scopes": "",
        }
        base.update(headers)
        return web.json_response(body, status=status, headers=base)

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        content_type = request.content_type if request.body_exists else ""
        invalid_json = False
        if request.body_exists:
            if content_type == "application/json":
                try:
                    parsed = json.loads(await request.read())
                except ValueError:
                    parsed = None
                if isinstance(parsed, dict):
                    args.update(parsed)
                else:
                    invalid_json = True
            elif content_type in (_FORM_CONTENT_TYPE, "multipart/form-data"):
                for field_name, field_value in (await request.post()).items():
                    if isinstance(field_value, web.FileField):
                        data = field_value.file.read()
                        args[field_name] = {
                            "filename": field_value.filename,
                            "content_type": field_value.content_type,
                            "size": len(data),
                        }
                    else:
                        args[field_name] = field_value
            else:
                await request.read()
        for name in _JSON_STRING_ARGS:
            value = args.get(name)
            if isinstance(value, str) and value[:1] in ("[", "{"):
                # a malformed value stays a string; handlers answer invalid_blocks_format
                with contextlib.suppress(ValueError):
                    args[name] = json.loads(value)

        token: str | None = None
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            token = authorization[len("Bearer ") :].strip() or None
        elif authorization.startswith("Basic "):
            try:
                decoded = base64.b64decode(authorization[len("Basic ") :]).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            client_id, _, client_secret = decoded.partition(":")
            args.setdefault("client_id", client_id)
            args.setdefault("client_secret", client_secret)
        body_token = args.pop("token", None)
        if token is None and isinstance(body_token, str) and body_token:
            token = body_token

        with self._lock:
            self.calls.append(
                SlackCall(
                    method=method,
                    token=token,
                    args=copy.deepcopy(args),
                    at=time.monotonic(),
                    http_method=request.method,
                    content_type=content_type,
                )
            )
            if invalid_json:
                return self._respond({"ok": False, "error": "invalid_json"})
            if method == "apps.connections.open":  # needs the app-level token
                if token is None:
                    return self._respond({"ok": False, "error": "not_authed"})
                if token.startswith(("xoxb-", "xoxp-")):
                    return self._respond({"ok": False, "error": "not_allowed_token_type"})
                if token != self.app_token:
                    return self._respond({"ok": False, "error": "invalid_auth"})
            elif method != "oauth.v2.access":
                if token is None:
                    return self._respond({"ok": False, "error": "not_authed"})
                if not token.startswith("xoxb-"):
                    return self._respond({"ok": False, "error": "invalid_auth"})
            queue = self._outcomes.get(method)
            if queue:
                kind, value = queue.popleft()
                if kind == "ratelimited":
                    body = {"ok": False, "error": "ratelimited"}
                    return self._respond(body, status=429, **{"Retry-After": str(value)})
                return self._respond({"ok": False, "error": value})
            handler = self._methods.get(method)
            if handler is None:
                return self._respond({"ok": False, "error": "unknown_method"})
            try:
                return self._respond(handler(args, token))
            except _SlackError as exc:
                return self._respond({"ok": False, "error": exc.error})

    async def _download(self, request: web.Request) -> web.StreamResponse:
        authorization = request.headers.get("Authorization")
        with self._lock:
            self.downloads.append((request.path, authorization))
            team, _, file_id = request.match_info["file_key"].partition("-")
            entry = self._files.get(file_id)
            allowed = {f"Bearer {self.bot_token}"} | {
                f"Bearer {token}" for token, t in self._token_teams.items() if t == team
            }
        if not authorization:
            # Slack sends browsers (and clients without a token) to the workspace sign-in page.
            raise web.HTTPFound(f"{self.base_url}/?redir={quote(request.path, safe='')}")
        if authorization not in allowed:
            return web.Response(status=403, text=_LOGIN_PAGE, content_type="text/html")
        if entry is None or entry[0]["name"] != request.match_info["name"]:
            return web.Response(status=404, text="File not found", content_type="text/plain")
        obj, content = entry
        headers = {}
        if "/download/" in request.path:
            headers["Content-Disposition"] = f'attachment; filename="{quote(obj["name"])}"'
        return web.Response(body=content, content_type=obj["mimetype"], headers=headers)

    async def _login_page(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=_LOGIN_PAGE, content_type="text/html")

    async def _response_url(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return web.Response(status=400, text="invalid_payload", content_type="text/plain")
        with self._lock:
            self.response_urls.append(copy.deepcopy(body))
            target = self._response_url_targets.get(request.match_info["key"])
            if target is None:
                return web.Response(status=404, text="no_service", content_type="text/plain")
            channel, message_ts, thread_ts = target
            message = self._find(channel, message_ts)
            if body.get("delete_original") in (True, "true"):
                if message is not None:
                    self._history[channel].remove(message)
                    self._posted.discard((channel, message_ts))
            elif body.get("replace_original") in (True, "true"):
                if message is not None:
                    message["text"] = str(body.get("text", ""))
                    if body.get("blocks"):
                        message["blocks"] = body["blocks"]
                    else:
                        message.pop("blocks", None)
            elif body.get("response_type") == "in_channel":
                new = self._bot_message(None, self._next_ts())
                new["text"] = str(body.get("text", ""))
                if body.get("blocks"):
                    new["blocks"] = body["blocks"]
                reply_to = body.get("thread_ts") or thread_ts
                if reply_to:
                    new["thread_ts"] = reply_to
                self._store(channel, new)
                self._posted.add((channel, new["ts"]))
            # anything else is an ephemeral message: only the clicking user sees it, nothing stored
        return web.json_response({"ok": True})

    # -- Socket Mode websocket ---------------------------------------------------------------

    async def _socket_mode(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            known = request.query.get("ticket", "") in self._tickets
        if not known:
            return web.Response(status=401, text="invalid_ticket", content_type="text/plain")
        ws = web.WebSocketResponse(autoping=False)  # pings are recorded, then answered below
        assert self._send_lock is not None
        async with self._send_lock:  # hello goes out before any envelope
            with self._lock:  # counted before the handshake answer: connected means counted
                self.socket_connections += 1
                conn = _SocketConnection(ws, self.socket_connections, self._socket_generation)
                self._sockets.append(conn)
                hello = {
                    "type": "hello",
                    "num_connections": len(self._sockets),
                    "debug_info": dict(_SOCKET_DEBUG_INFO),
                    "connection_info": {"app_id": self.app_id},
                }
            try:
                await ws.prepare(request)
                with self._lock:
                    dropped = conn not in self._sockets  # by drop_connections() or reset()
                if not dropped:
                    await ws.send_str(json.dumps(hello, separators=(",", ":")))
            except BaseException:
                with self._lock:
                    if conn in self._sockets:
                        self._sockets.remove(conn)
                raise
        if dropped:
            await ws.close()
            return ws
        await self._deliver()
        try:
            while True:
                message = await ws.receive()
                if message.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
                self._record_frame(conn, message)
                if message.type == WSMsgType.PING:
                    await ws.pong(message.data)
                elif message.type == WSMsgType.CLOSE:  # autoclose has answered it
                    break
        finally:
            with self._lock:
                if conn in self._sockets:
                    self._sockets.remove(conn)
            await ws.close()
        return ws

    def _record_frame(self, conn: _SocketConnection, message: Any) -> None:
        kinds = {
            WSMsgType.TEXT: "text",
            WSMsgType.BINARY: "binary",
            WSMsgType.PING: "ping",
            WSMsgType.PONG: "pong",
            WSMsgType.CLOSE: "close",
        }
        data = message.data
        if message.type == WSMsgType.TEXT:
            with contextlib.suppress(ValueError):
                data = json.loads(data)
        with self._acked:
            if conn.generation != self._socket_generation:
                return
            frame = SocketFrame(kinds[message.type], data, conn.number, time.monotonic())
            self.socket_frames.append(frame)
            if isinstance(data, dict) and "envelope_id" in data:
                self.acks.append(data)
                self._acked.notify_all()

    async def _deliver(self) -> None:
        """Send undelivered envelopes, oldest first, to the newest open connection."""
        assert self._send_lock is not None
        async with self._send_lock:
            while True:
                with self._lock:
                    if not self._undelivered or not self._sockets:
                        return
                    envelope_id, text = self._undelivered[0]
                    conn = self._sockets[-1]
                try:
                    await conn.ws.send_str(text)
                except (ConnectionError, RuntimeError):  # closed under us: try another one
                    with self._lock:
                        if conn in self._sockets:
                            self._sockets.remove(conn)
                    continue
                with self._lock:
                    if self._undelivered and self._undelivered[0][0] == envelope_id:
                        self._undelivered.popleft()
                        self._delivered[envelope_id] = conn.number

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a coroutine as a task on the server's loop (call there), keeping a reference."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _close_later(self, sockets: list[_SocketConnection]) -> None:
        """Close sockets from any thread without waiting (the client has to answer the close)."""
        loop = self._loop
        if loop is not None and sockets:
            loop.call_soon_threadsafe(self._spawn, self._close_sockets(sockets))

    @staticmethod
    async def _close_sockets(
        sockets: list[_SocketConnection], code: int = 1000, grace: float = STARTUP_TIMEOUT
    ) -> None:
        """Close (1000 normal, 1001 going away), waiting up to `grace` s for the clients' answer."""
        if not sockets:
            return
        closing = [asyncio.ensure_future(conn.ws.close(code=code)) for conn in sockets]
        _, pending = await asyncio.wait(closing, timeout=grace)
        for task in pending:
            task.cancel()
        for task in closing:  # a client gone without answering the close is no error here
            if not task.cancelled():
                task.exception()
