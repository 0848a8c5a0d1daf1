"""A fake Discord: the REST API (v10) plus the gateway websocket, on one loopback port.

The real `discord.py` client logs in, connects to the gateway, receives events and calls the
REST API against it, so the bot's real wire path (rate-limit handling, gateway resume, payload
parsing, error mapping) is exercised instead of a mocked library. Like the other fakes it runs
in its own thread with its own event loop (see `BackgroundServer`).

Wiring discord.py (2.7) to it: two class attributes, both restored by `patch_discord_py()`::

    discord.http.Route.BASE = fake.api_url                     # "http://127.0.0.1:PORT/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)

A plain `Client` never asks GET /gateway/bot (only `AutoShardedClient` does, and gets
`gateway_url` from it); it connects to DEFAULT_GATEWAY and, after READY, to the
`resume_gateway_url` (the same URL here). Pass `guild_ready_timeout=0.05` (or so) to the client
in tests: discord.py fires `on_ready` only after `guild_ready_timeout` seconds (default 2 s)
without a further GUILD_CREATE.

Wire details this mirrors:

* Login: GET /users/@me (401 `{"message": "401: Unauthorized", "code": 0}` for a wrong token:
  discord.py raises LoginFailure), then GET /oauth2/applications/@me. Every API answer has
  `Content-Type: application/json` exactly (discord.py only decodes that exact value; aiohttp's
  json_response would add "; charset=utf-8") and `Via: 1.1 google`.
* Rate limits: HTTP 429, body `{"message": "You are being rate limited.", "retry_after": x,
  "global": false, "code": 0}`, headers `Retry-After` (whole seconds, rounded up) and
  `X-RateLimit-Limit/Remaining/Reset/Reset-After/Bucket/Scope` (+ `X-RateLimit-Global`).
  discord.py sleeps the body's `retry_after` and retries (up to 5 tries in all) - but only if
  the 429 has a `Via` header; without it, it assumes a Cloudflare ban and raises HTTPException.
  Successful answers carry `X-RateLimit-Limit: 5`, `Remaining: 4`, `Reset-After: 1` and a
  per-route bucket, so discord.py never has to wait pre-emptively. discord.py retries 500, 502,
  504 and 524 itself after 1, 3, 5... seconds: script 503 (raised at once as
  DiscordServerError) unless a test means to wait.
* Gateway: `{gateway_url}?v=10&encoding=json&compress=zlib-stream` (discord.py asks for
  `zstd-stream` instead when `zstandard` or Python 3.14's `compression.zstd` is importable).
  HELLO (op 10) first; op 1 heartbeats are answered with op 11; IDENTIFY (op 2) gets READY
  (s=1) then one GUILD_CREATE per guild. With `compress=zlib-stream` every server frame is
  binary: one zlib stream per connection, each message flushed with Z_SYNC_FLUSH (ends in
  00 00 ff ff), exactly as Discord does. Otherwise (no `compress`, or `zstd-stream`, which is
  not implemented) frames are plain JSON text, which discord.py always accepts: it only
  decompresses binary frames. The client always sends JSON text. IDENTIFY's own
  `compress: true` (per-payload compression) is ignored, as Discord does when the connection
  uses transport compression. `encoding=etf` is refused (close 4002).
* Sequence numbers are per session and on every dispatch. RESUME (op 6) with a known
  session_id replays every dispatch after the client's `seq`, then sends RESUMED; an unknown or
  ended session gets INVALID_SESSION (op 9, d=false): discord.py then closes with 1000 and
  IDENTIFYs again (a new session; what the old one missed is lost, as on Discord). Events
  dispatched while no connection is attached are kept in the session and replayed on RESUME.
  A client closing with 1000/1001 ends its session; any other close keeps it resumable.
* Intents (from IDENTIFY) filter what a session receives: guild MESSAGE_* events need
  GUILD_MESSAGES (1 << 9), DM ones DIRECT_MESSAGES (1 << 12), reactions 1 << 10 / 1 << 13,
  typing 1 << 11 / 1 << 14, channel/thread/guild events GUILDS (1 << 0). Without
  MESSAGE_CONTENT (1 << 15), guild messages arrive with empty content, embeds, attachments and
  components unless they mention the bot or are its own (DMs always carry content). IDENTIFY
  asking for a privileged intent (members, presences, message content) not in
  `privileged_intents` is closed with 4014 (discord.py raises PrivilegedIntentsRequired).

Typical use (an async test; the client runs on the test's loop)::

    class Bot(discord.Client):
        async def on_ready(self): ready.set()
        async def before_identify_hook(self, shard_id, *, initial=False): pass  # see below

    with FakeDiscord() as fake, fake.patch_discord_py():
        client = Bot(intents=intents, guild_ready_timeout=0.05)
        task = asyncio.create_task(client.start(fake.bot_token))
        await asyncio.wait_for(ready.wait(), 2)  # (wait_until_ready() fails before login)
        fake.dispatch_message("hello", channel_id=fake.general_channel_id, mentions_bot=True)
        ...
        assert fake.messages(fake.general_channel_id)[-1]["content"] == "Hi!"
        await client.close()
        await task

discord.py quirks worth knowing: its default `before_identify_hook` sleeps 5 s before every
IDENTIFY but the first (after INVALID_SESSION, say), so override it in tests that re-identify;
RESUME has no such delay. `Client.close()` asks for close code 1000 but its own read loop
usually closes first with 4000, so the session stays resumable here as on Discord.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import copy
import datetime
import hashlib
import itertools
import json
import math
import mimetypes
import re
import secrets
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import WSMsgType, web

from tests.fakes.background_server import SHUTDOWN_GRACE, BackgroundServer

__all__ = [
    "API_VERSION",
    "BOT_USER_ID",
    "ROUTES",
    "DiscordCall",
    "FakeDiscord",
    "GatewayEvent",
    "GatewayFrame",
    "Intents",
    "UploadedFile",
    "snowflake_ms",
]

API_VERSION = 10
DISCORD_EPOCH_MS = 1_420_070_400_000
DEFAULT_BOT_TOKEN = "fake-bot-token"
# Fixed ids (valid snowflakes from early 2024) so tests can name them; generated ids are newer.
APPLICATION_ID = "1190000000000000001"
BOT_USER_ID = APPLICATION_ID  # a bot user shares its application's id
GUILD_ID = "1190000000000000100"
GENERAL_CHANNEL_ID = "1190000000000000200"
FORUM_CHANNEL_ID = "1190000000000000300"
BOT_ROLE_ID = "1190000000000000400"
ALICE_ID = "1001"
BOB_ID = "1002"

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
HEARTBEAT_INTERVAL_MS = 41_250
INTERACTION_TIMEOUT = 3.0  # seconds to answer an interaction before its token stops working

# Permission bits (https://discord.com/developers/docs/topics/permissions)
_EVERYONE_PERMISSIONS = "2248473465835073"  # what Discord gives @everyone in a new server
_BOT_PERMISSIONS = str(
    (1 << 6)  # ADD_REACTIONS
    | (1 << 10)  # VIEW_CHANNEL
    | (1 << 11)  # SEND_MESSAGES
    | (1 << 14)  # EMBED_LINKS
    | (1 << 15)  # ATTACH_FILES
    | (1 << 16)  # READ_MESSAGE_HISTORY
    | (1 << 35)  # CREATE_PUBLIC_THREADS
    | (1 << 38)  # SEND_MESSAGES_IN_THREADS
)
# Application flags: the three privileged intents switched on ("limited": < 100 servers).
_APPLICATION_FLAGS = (1 << 13) | (1 << 15) | (1 << 19)

_TEXT, _DM, _ANNOUNCEMENT, _ANNOUNCEMENT_THREAD, _PUBLIC_THREAD, _PRIVATE_THREAD, _FORUM = (
    0,
    1,
    5,
    10,
    11,
    12,
    15,
)
_THREAD_TYPES = frozenset({_ANNOUNCEMENT_THREAD, _PUBLIC_THREAD, _PRIVATE_THREAD})
_MESSAGE_PARENT_TYPES = frozenset({_TEXT, _ANNOUNCEMENT})
_FLAG_HAS_THREAD = 1 << 5
_FLAG_EPHEMERAL = 1 << 6
_FLAG_LOADING = 1 << 7
_FLAG_VOICE_MESSAGE = 1 << 13


class Intents:
    """Gateway intent bits used by the fake (same values as discord.Intents)."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    GUILD_MESSAGE_TYPING = 1 << 11
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    DIRECT_MESSAGE_TYPING = 1 << 14
    MESSAGE_CONTENT = 1 << 15
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


# (guild intent, DM intent) each event needs; GUILDS for guild/channel/thread events.
_EVENT_INTENTS: dict[str, tuple[int, int]] = {
    **{
        name: (Intents.GUILD_MESSAGES, Intents.DIRECT_MESSAGES)
        for name in ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE", "MESSAGE_DELETE_BULK")
    },
    **{
        name: (Intents.GUILD_MESSAGE_REACTIONS, Intents.DIRECT_MESSAGE_REACTIONS)
        for name in (
            "MESSAGE_REACTION_ADD",
            "MESSAGE_REACTION_REMOVE",
            "MESSAGE_REACTION_REMOVE_ALL",
            "MESSAGE_REACTION_REMOVE_EMOJI",
        )
    },
    "TYPING_START": (Intents.GUILD_MESSAGE_TYPING, Intents.DIRECT_MESSAGE_TYPING),
    **{
        name: (Intents.GUILDS, Intents.GUILDS)
        for name in (
            "GUILD_CREATE",
            "GUILD_UPDATE",
            "GUILD_DELETE",
            "GUILD_ROLE_CREATE",
            "CHANNEL_CREATE",
            "CHANNEL_UPDATE",
            "CHANNEL_DELETE",
            "THREAD_CREATE",
            "THREAD_UPDATE",
            "THREAD_DELETE",
            "THREAD_LIST_SYNC",
            "THREAD_MEMBER_UPDATE",
        )
    },
}
_CONTENT_FIELDS = ("content", "embeds", "attachments", "components", "poll")

# Every REST route the fake answers: (method, path template under /api/v10, needs bot auth).
# The "route_key" of a call is "METHOD template", e.g. "POST /channels/{channel_id}/messages".
ROUTES: tuple[tuple[str, str, bool], ...] = (
    ("GET", "/users/@me", True),
    ("GET", "/users/{user_id}", True),
    ("POST", "/users/@me/channels", True),
    ("GET", "/oauth2/applications/@me", True),
    ("GET", "/applications/@me", True),
    ("GET", "/gateway", False),
    ("GET", "/gateway/bot", True),
    ("GET", "/guilds/{guild_id}", True),
    ("GET", "/guilds/{guild_id}/channels", True),
    ("GET", "/guilds/{guild_id}/members/{user_id}", True),
    ("GET", "/channels/{channel_id}", True),
    ("PATCH", "/channels/{channel_id}", True),
    ("DELETE", "/channels/{channel_id}", True),
    ("GET", "/channels/{channel_id}/messages", True),
    ("POST", "/channels/{channel_id}/messages", True),
    ("GET", "/channels/{channel_id}/messages/{message_id}", True),
    ("PATCH", "/channels/{channel_id}/messages/{message_id}", True),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}", True),
    ("POST", "/channels/{channel_id}/messages/{message_id}/threads", True),
    ("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", True),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", True),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/{user_id}", True),
    ("POST", "/channels/{channel_id}/threads", True),
    ("PUT", "/channels/{channel_id}/thread-members/@me", True),
    ("DELETE", "/channels/{channel_id}/thread-members/@me", True),
    ("POST", "/channels/{channel_id}/typing", True),
    ("POST", "/interactions/{interaction_id}/{interaction_token}/callback", False),
    ("POST", "/webhooks/{application_id}/{interaction_token}", False),
    ("GET", "/webhooks/{application_id}/{interaction_token}/messages/{message_id}", False),
    ("PATCH", "/webhooks/{application_id}/{interaction_token}/messages/{message_id}", False),
    ("DELETE", "/webhooks/{application_id}/{interaction_token}/messages/{message_id}", False),
)
ROUTE_KEYS = frozenset(f"{method} {template}" for method, template, _ in ROUTES)

_MENTION_RE = re.compile(r"<@!?(\d+)>")
_CUSTOM_EMOJI_RE = re.compile(r"^a?:?[\w~-]{2,32}:\d{15,21}$")


def snowflake_ms(snowflake: str | int) -> int:
    """The creation time (ms since the Unix epoch) encoded in a snowflake."""
    return (int(snowflake) >> 22) + DISCORD_EPOCH_MS


def _iso(ms: int) -> str:
    """Discord's timestamp format: "2024-01-01T00:00:00.000000+00:00"."""
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return moment.isoformat(timespec="microseconds")


def _form_error(path: list[str], code: str, message: str) -> dict[str, Any]:
    """Discord's 50035 body, with the nested `errors` object pointing at the bad field."""
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        errors = {key: errors}
    return {"message": "Invalid Form Body", "code": 50035, "errors": errors}


def _compile(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    pattern = ""
    for index, part in enumerate(parts):
        pattern += f"(?P<{part}>[^/]+)" if index % 2 else re.escape(part)
    return re.compile(pattern)


@dataclass
class UploadedFile:
    """One file part of a multipart request."""

    field: str  # e.g. "files[0]"
    filename: str
    content_type: str
    content: bytes


@dataclass
class DiscordCall:
    """One REST request as the fake saw it."""

    method: str
    path: str  # under the API root, decoded: "/channels/1190000000000000200/messages"
    route_key: str  # "POST /channels/{channel_id}/messages"; "" when no route matched
    json: Any  # JSON body (multipart: the decoded payload_json), None without one
    headers: dict[str, str]  # keys lower-cased
    query: dict[str, str] = field(default_factory=dict)
    files: list[UploadedFile] = field(default_factory=list)
    status: int = 0  # the HTTP status answered
    at: float = 0.0  # time.monotonic() on arrival


@dataclass
class GatewayFrame:
    """One websocket frame a client sent to the gateway."""

    op: int | None  # None for frames that are not JSON objects
    payload: Any  # the whole decoded frame ({"op": ..., "d": ...}), or the raw data
    connection: int  # 1 for the first connection since the last reset()
    at: float

    @property
    def data(self) -> Any:
        """The frame's "d"."""
        return self.payload.get("d") if isinstance(self.payload, dict) else None


@dataclass
class GatewayEvent:
    """One dispatch (op 0) the fake queued for a session, as the session sees it."""

    seq: int
    name: str
    data: dict[str, Any]
    session_id: str


@dataclass
class _LogEntry:
    seq: int
    text: str  # the serialised frame
    target: int | None  # None: any connection of the session (replayable); else that one only


@dataclass
class _Session:
    id: str
    intents: int
    seq: int = 0
    log: list[_LogEntry] = field(default_factory=list)
    conn: _GatewayConnection | None = None
    ended: bool = False


@dataclass
class _GatewayConnection:
    ws: web.WebSocketResponse
    number: int
    generation: int
    compress: str | None
    lock: asyncio.Lock
    compressor: Any = None
    session: _Session | None = None
    sent_seq: int = 0
    dropped: bool = False


@dataclass
class _Interaction:
    id: str
    token: str
    channel_id: str
    message_id: str | None
    user_id: str
    created: float
    responded: bool = False
    original_message_id: str | None = None


class _DiscordError(Exception):
    """Raised by a handler: answer `status` with Discord's JSON error body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message"))
        self.status = status
        self.body = body


def _invalid(path: list[str], code: str, message: str) -> _DiscordError:
    """400 Invalid Form Body (50035) for one field."""
    return _DiscordError(400, _form_error(path, code, message))


def _error(status: int, code: int, message: str) -> _DiscordError:
    return _DiscordError(status, {"message": message, "code": code})


def _unknown_channel() -> _DiscordError:
    return _error(404, 10003, "Unknown Channel")


def _unknown_message() -> _DiscordError:
    return _error(404, 10008, "Unknown Message")


class FakeDiscord(BackgroundServer):
    """The fake Discord; see the module docstring. Public attributes may be changed any time."""

    name: ClassVar[str] = "fake Discord server"
    thread_name: ClassVar[str] = "fake-discord"

    bot_token: str = DEFAULT_BOT_TOKEN
    application_id: str = APPLICATION_ID
    guild_id: str = GUILD_ID
    general_channel_id: str = GENERAL_CHANNEL_ID
    forum_channel_id: str = FORUM_CHANNEL_ID

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self._generations = itertools.count()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_snowflake = 0
        self._routes = [
            (method, f"{method} {template}", _compile(template), auth)
            for method, template, auth in ROUTES
        ]
        self._handlers: dict[str, Callable[[dict[str, str], DiscordCall], tuple[int, Any]]] = {
            "GET /users/@me": self._get_me,
            "GET /users/{user_id}": self._get_user,
            "POST /users/@me/channels": self._open_dm_route,
            "GET /oauth2/applications/@me": self._get_application,
            "GET /applications/@me": self._get_application,
            "GET /gateway": self._get_gateway,
            "GET /gateway/bot": self._get_gateway_bot,
            "GET /guilds/{guild_id}": self._get_guild,
            "GET /guilds/{guild_id}/channels": self._get_guild_channels,
            "GET /guilds/{guild_id}/members/{user_id}": self._get_member,
            "GET /channels/{channel_id}": self._get_channel,
            "PATCH /channels/{channel_id}": self._edit_channel,
            "DELETE /channels/{channel_id}": self._delete_channel_route,
            "GET /channels/{channel_id}/messages": self._get_messages,
            "POST /channels/{channel_id}/messages": self._create_message,
            "GET /channels/{channel_id}/messages/{message_id}": self._get_message,
            "PATCH /channels/{channel_id}/messages/{message_id}": self._edit_message,
            "DELETE /channels/{channel_id}/messages/{message_id}": self._delete_message,
            "POST /channels/{channel_id}/messages/{message_id}/threads": (
                self._start_thread_from_message
            ),
            "PUT /channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me": (
                self._add_reaction
            ),
            "DELETE /channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me": (
                self._remove_reaction
            ),
            "DELETE /channels/{channel_id}/messages/{message_id}/reactions/{emoji}/{user_id}": (
                self._remove_reaction
            ),
            "POST /channels/{channel_id}/threads": self._start_thread,
            "PUT /channels/{channel_id}/thread-members/@me": self._join_thread,
            "DELETE /channels/{channel_id}/thread-members/@me": self._leave_thread,
            "POST /channels/{channel_id}/typing": self._typing,
            "POST /interactions/{interaction_id}/{interaction_token}/callback": (
                self._interaction_callback
            ),
            "POST /webhooks/{application_id}/{interaction_token}": self._followup,
            "GET /webhooks/{application_id}/{interaction_token}/messages/{message_id}": (
                self._get_webhook_message
            ),
            "PATCH /webhooks/{application_id}/{interaction_token}/messages/{message_id}": (
                self._edit_webhook_message
            ),
            "DELETE /webhooks/{application_id}/{interaction_token}/messages/{message_id}": (
                self._delete_webhook_message
            ),
        }
        self._init_state()

    def _init_state(self) -> None:
        """Every piece of per-test state, at its default. Called with the lock held (or in init)."""
        self.bot_token = DEFAULT_BOT_TOKEN
        self.application_id = APPLICATION_ID
        self.guild_id = GUILD_ID
        self.general_channel_id = GENERAL_CHANNEL_ID
        self.forum_channel_id = FORUM_CHANNEL_ID
        self.heartbeat_interval = HEARTBEAT_INTERVAL_MS  # ms, sent in HELLO
        self.privileged_intents = Intents.PRIVILEGED  # switched on in the "developer portal"
        self.interaction_timeout: float | None = INTERACTION_TIMEOUT
        self.upload_limit = DEFAULT_UPLOAD_LIMIT
        self.unarchive_on_post = False  # True: a post unarchives an unlocked archived thread
        self.echo_bot_messages = True  # the bot's own messages are dispatched to it too
        # Recorded traffic
        self.calls: list[DiscordCall] = []
        self.gateway_frames: list[GatewayFrame] = []
        self.events: list[GatewayEvent] = []
        self.gateway_connections: list[dict[str, Any]] = []  # query and close code per connection
        self.identify_count = 0
        self.resume_count = 0
        self.invalid_sessions = 0
        self.interaction_responses: list[dict[str, Any]] = []
        self.downloads: list[str] = []
        # Discord's state
        self.users: dict[str, dict[str, Any]] = {}
        self.guilds: dict[str, dict[str, Any]] = {}
        self.members: dict[str, dict[str, dict[str, Any]]] = {}  # guild id -> user id -> member
        self.channels: dict[str, dict[str, Any]] = {}  # guild channels, threads and DMs
        self._messages: dict[str, dict[str, dict[str, Any]]] = {}  # channel -> id -> message
        self._edits: dict[str, list[dict[str, Any]]] = {}  # message id -> earlier versions
        self._dm_by_user: dict[str, str] = {}
        self._closed_dms: set[str] = set()
        self._attachments: dict[str, tuple[dict[str, Any], bytes]] = {}
        self._interactions: dict[str, _Interaction] = {}
        self._interactions_by_token: dict[str, _Interaction] = {}
        self._outcomes: dict[str, collections.deque[tuple[str, Any]]] = {}
        # Gateway
        self._generation = next(self._generations)
        self._connection_numbers = itertools.count(1)
        self._connections: list[_GatewayConnection] = []
        self._sessions: dict[str, _Session] = {}

        self._add_user_locked(BOT_USER_ID, "bothub", None, bot=True)
        self._add_user_locked(ALICE_ID, "alice", "Alice")
        self._add_user_locked(BOB_ID, "bob", "Bob")
        self._add_guild_locked(self.guild_id, "Test Server", owner_id=ALICE_ID)
        self._add_channel_locked("general", _TEXT, self.general_channel_id, self.guild_id, None)
        forum = self._add_channel_locked("help", _FORUM, self.forum_channel_id, self.guild_id, None)
        forum["topic"] = "Ask anything"

    # -- lifecycle (start/stop/with: see BackgroundServer) -----------------------------------

    @property
    def base_url(self) -> str:
        """The server root: "http://127.0.0.1:PORT"."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """What discord.http.Route.BASE must be: "http://127.0.0.1:PORT/api/v10"."""
        return f"{self.base_url}/api/v{API_VERSION}"

    @property
    def gateway_url(self) -> str:
        """What DiscordWebSocket.DEFAULT_GATEWAY must be: "ws://127.0.0.1:PORT/gateway"."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def bot_user(self) -> dict[str, Any]:
        """The bot's user object (id == application_id, username "bothub", bot: true)."""
        with self._lock:
            return copy.deepcopy(self.users[BOT_USER_ID])

    @property
    def bot_user_id(self) -> str:
        return BOT_USER_ID

    @contextlib.contextmanager
    def patch_discord_py(self) -> Iterator[None]:
        """Point discord.py's REST base and default gateway at this server; restore on exit."""
        import discord.gateway
        import discord.http
        import yarl

        route, websocket = discord.http.Route, discord.gateway.DiscordWebSocket
        old_base, old_gateway = route.BASE, websocket.DEFAULT_GATEWAY
        route.BASE = self.api_url
        websocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            route.BASE = old_base
            websocket.DEFAULT_GATEWAY = old_gateway

    def _on_serving(self) -> None:
        self._tasks = set()

    async def _on_stopping(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
            for conn in connections:
                self._detach(conn)
        await self._close_connections(connections, code=1001, grace=SHUTDOWN_GRACE)

    # -- scripting and inspection ------------------------------------------------------------

    def reset(self) -> None:
        """Forget calls, messages, sessions and scripts and restore every default. Open gateway
        connections are closed (4000, so a client tries RESUME, gets INVALID_SESSION and
        IDENTIFYs again); their frames are no longer recorded."""
        with self._lock:
            connections = self._connections
            for conn in connections:
                self._detach(conn)
            self._init_state()
        self._close_later(connections, 4000)

    def rate_limit(
        self,
        route_key: str,
        times: int = 1,
        retry_after: float = 0.05,
        *,
        global_limit: bool = False,
    ) -> None:
        """The next `times` calls of `route_key` (e.g. "POST /channels/{channel_id}/messages")
        get HTTP 429 asking to retry after `retry_after` seconds."""
        self._script(route_key, [("ratelimit", (retry_after, global_limit))] * times)

    def fail(
        self,
        route_key: str,
        status: int,
        code: int,
        message: str,
        times: int = 1,
        *,
        errors: dict[str, Any] | None = None,
    ) -> None:
        """The next `times` calls of `route_key` answer `status` with
        `{"message": message, "code": code}` (plus `errors` when given)."""
        body: dict[str, Any] = {"message": message, "code": code}
        if errors is not None:
            body["errors"] = errors
        self._script(route_key, [("fail", (status, body))] * times)

    def _script(self, route_key: str, outcomes: list[tuple[str, Any]]) -> None:
        if route_key not in ROUTE_KEYS:
            raise ValueError(f"unknown route key {route_key!r}; see ROUTES")
        with self._lock:
            self._outcomes.setdefault(route_key, collections.deque()).extend(outcomes)

    def calls_to(self, route_key: str) -> list[DiscordCall]:
        """The recorded calls of one route, in order."""
        with self._lock:
            return [call for call in self.calls if call.route_key == route_key]

    def messages(
        self,
        channel_id: str,
        *,
        author_id: str | None = None,
        include_ephemeral: bool = False,
    ) -> list[dict[str, Any]]:
        """A channel's messages as they are now (after edits, without deleted ones), oldest
        first: the ones clients posted and the ones dispatch_message()/add_message() stored."""
        with self._lock:
            result = []
            for message in self._messages.get(str(channel_id), {}).values():
                if author_id is not None and message["author"]["id"] != str(author_id):
                    continue
                if message["flags"] & _FLAG_EPHEMERAL and not include_ephemeral:
                    continue
                result.append(copy.deepcopy(message))
            return sorted(result, key=lambda m: int(m["id"]))

    def edit_history(self, message_id: str) -> list[dict[str, Any]]:
        """Earlier versions of a message, oldest first (empty if never edited)."""
        with self._lock:
            return copy.deepcopy(self._edits.get(str(message_id), []))

    @property
    def threads(self) -> dict[str, dict[str, Any]]:
        """Thread channels (types 10, 11, 12) by id, archived and locked ones included."""
        with self._lock:
            return {k: v for k, v in self.channels.items() if v["type"] in _THREAD_TYPES}

    def add_user(
        self,
        user_id: str,
        username: str,
        global_name: str | None = None,
        *,
        bot: bool = False,
        member: bool = True,
        dms_closed: bool = False,
    ) -> dict[str, Any]:
        """Register a user (a member of the default guild unless `member` is false); return the
        user object. With `dms_closed`, messages to their DM channel get 403 50007."""
        with self._lock:
            user = self._add_user_locked(str(user_id), username, global_name, bot=bot)
            if member:
                self._add_member_locked(self.guild_id, str(user_id))
            if dms_closed:
                self._closed_dms.add(str(user_id))
            return copy.deepcopy(user)

    def add_guild(self, name: str, *, guild_id: str | None = None) -> dict[str, Any]:
        """Another guild the bot is in, with a "general" text channel (sent in the next READY;
        announced with GUILD_CREATE to live sessions)."""
        with self._lock:
            gid = guild_id or self._next_id()
            guild = self._add_guild_locked(gid, name, owner_id=ALICE_ID)
            self._add_channel_locked("general", _TEXT, None, gid, None)
            self._broadcast("GUILD_CREATE", self._guild_create_payload(gid))
            return copy.deepcopy(guild)

    def add_channel(
        self,
        name: str,
        *,
        type: int = _TEXT,
        channel_id: str | None = None,
        guild_id: str | None = None,
        parent_id: str | None = None,
        topic: str | None = None,
        permission_overwrites: Iterable[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """A guild channel (0 text, 5 announcement, 15 forum...); CHANNEL_CREATE to live
        sessions. `permission_overwrites` are Discord's overwrite objects: `{"id": role or user
        id, "type": 0 (role) or 1 (member), "allow": bits, "deny": bits}` (bits as strings;
        the @everyone role's id is the guild's). The fake records them for clients to compute
        permissions with; it does not enforce them."""
        with self._lock:
            channel = self._add_channel_locked(
                name, type, channel_id, guild_id or self.guild_id, parent_id
            )
            channel["topic"] = topic
            channel["permission_overwrites"] = [
                {
                    "id": str(o["id"]),
                    "type": int(o.get("type", 0)),
                    "allow": str(o.get("allow", "0")),
                    "deny": str(o.get("deny", "0")),
                }
                for o in permission_overwrites
            ]
            self._broadcast("CHANNEL_CREATE", copy.deepcopy(channel))
            return copy.deepcopy(channel)

    def add_role(
        self,
        name: str,
        *,
        role_id: str | None = None,
        permissions: str = "0",
        members: Iterable[str] = (),
        guild_id: str | None = None,
    ) -> dict[str, Any]:
        """A role in the guild (default: the test server), given to `members` (user ids, made
        members if they are not); GUILD_ROLE_CREATE to live sessions. Members' roles reach
        clients through GET /guilds/{id}/members/{user_id}, messages and interactions."""
        with self._lock:
            gid = guild_id or self.guild_id
            guild = self.guilds[gid]
            role = self._role(
                role_id or self._next_id(), name, permissions, position=len(guild["roles"])
            )
            guild["roles"].append(role)
            for user_id in members:
                self._user_or_create(str(user_id))
                member = self._member(gid, str(user_id))
                if role["id"] not in member["roles"]:
                    member["roles"].append(role["id"])
            self._broadcast("GUILD_ROLE_CREATE", {"guild_id": gid, "role": copy.deepcopy(role)})
            return copy.deepcopy(role)

    def add_thread(
        self,
        name: str,
        *,
        parent_id: str | None = None,
        thread_id: str | None = None,
        type: int = _PUBLIC_THREAD,
        owner_id: str = ALICE_ID,
        archived: bool = False,
        locked: bool = False,
    ) -> dict[str, Any]:
        """A thread in `parent_id` (default: the general channel). Active threads are part of
        GUILD_CREATE; live sessions get THREAD_CREATE."""
        with self._lock:
            thread = self._make_thread(
                parent_id or self.general_channel_id,
                name,
                thread_id=thread_id,
                type_=type,
                owner_id=owner_id,
            )
            thread["thread_metadata"]["archived"] = archived
            thread["thread_metadata"]["locked"] = locked
            self._broadcast("THREAD_CREATE", {**copy.deepcopy(thread), "newly_created": True})
            return copy.deepcopy(thread)

    def set_thread_state(
        self, thread_id: str, *, archived: bool | None = None, locked: bool | None = None
    ) -> dict[str, Any]:
        """Archive/lock (or reopen) a thread as a moderator would; THREAD_UPDATE to sessions."""
        with self._lock:
            thread = self._channel(str(thread_id))
            metadata = thread["thread_metadata"]
            if archived is not None:
                metadata["archived"] = archived
                metadata["archive_timestamp"] = _iso(int(time.time() * 1000))
            if locked is not None:
                metadata["locked"] = locked
            self._broadcast("THREAD_UPDATE", copy.deepcopy(thread))
            return copy.deepcopy(thread)

    def delete_channel(self, channel_id: str) -> None:
        """Delete a channel or thread: REST calls on it get 404 10003 "Unknown Channel";
        live sessions get CHANNEL_DELETE / THREAD_DELETE."""
        with self._lock:
            channel = self._channel(str(channel_id))
            self._delete_channel_locked(channel)

    def open_dm(self, user_id: str) -> dict[str, Any]:
        """The DM channel (type 1) between the bot and a user, created on first use."""
        with self._lock:
            return copy.deepcopy(self._dm_channel(str(user_id)))

    def add_attachment(
        self,
        filename: str,
        content_type: str,
        content: bytes,
        *,
        channel_id: str | None = None,
        width: int | None = None,
        height: int | None = None,
        duration_secs: float | None = None,
        waveform: str | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Host a file on the fake CDN; return its attachment object (for message(attachments=
        ...)). `url`/`proxy_url` are served at /attachments/...; a voice message has
        `duration_secs` and `waveform` (message() then sets the IS_VOICE_MESSAGE flag)."""
        with self._lock:
            attachment = self._store_attachment(
                channel_id or self.general_channel_id, filename, content_type, content
            )
            for key, value in (
                ("width", width),
                ("height", height),
                ("duration_secs", duration_secs),
                ("waveform", waveform),
                ("description", description),
            ):
                if value is not None:
                    attachment[key] = value
            return copy.deepcopy(attachment)

    def message(
        self,
        content: str,
        *,
        channel_id: str | None = None,
        author_id: str = ALICE_ID,
        mentions_bot: bool = False,
        attachments: Iterable[dict[str, Any]] = (),
        guild: bool | None = None,
        message_id: str | None = None,
        embeds: Iterable[dict[str, Any]] = (),
        sticker_items: Iterable[dict[str, Any]] = (),
        reply_to: str | None = None,
        flags: int = 0,
        components: Iterable[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """A MESSAGE_CREATE payload from a user (not stored; see dispatch_message()).

        `channel_id` defaults to the general channel; `guild` defaults to what the channel is
        (a DM channel from open_dm() gives a DM message: no guild_id, no member). With
        `mentions_bot`, "<@BOT_ID> " is put in front of the content unless it is there. Other
        "<@id>" mentions of known users are listed in `mentions` too. `reply_to` (a stored
        message id in the same channel) makes it a reply (type 19)."""
        with self._lock:
            channel_id = str(channel_id or self.general_channel_id)
            channel = self.channels.get(channel_id)
            in_guild = guild if guild is not None else (channel is None or channel["type"] != _DM)
            guild_id = (channel or {}).get("guild_id") or self.guild_id if in_guild else None
            author = self._user_or_create(str(author_id))
            mention = f"<@{BOT_USER_ID}>"
            if mentions_bot and mention not in content and f"<@!{BOT_USER_ID}>" not in content:
                content = f"{mention} {content}"
            mid = str(message_id) if message_id is not None else self._next_id()
            message = self._base_message(mid, channel_id, author, content)
            attachment_list = [copy.deepcopy(a) for a in attachments]
            message["attachments"] = attachment_list
            message["embeds"] = [copy.deepcopy(e) for e in embeds]
            message["components"] = [copy.deepcopy(c) for c in components]
            stickers = [copy.deepcopy(s) for s in sticker_items]
            if stickers:
                message["sticker_items"] = stickers
            if any("waveform" in a for a in attachment_list):
                flags |= _FLAG_VOICE_MESSAGE
            message["flags"] = flags
            message["mentions"] = self._mentions(content, guild_id)
            message["mention_everyone"] = "@everyone" in content or "@here" in content
            if reply_to is not None:
                self._attach_reference(message, channel_id, str(reply_to), guild_id)
            return self._gateway_message(message, guild_id)

    def dispatch_message(self, content: str, **options: Any) -> dict[str, Any]:
        """message(content, **options), stored in the channel and dispatched as
        MESSAGE_CREATE; returns the payload."""
        with self._lock:
            payload = self.message(content, **options)
            stored = {k: v for k, v in payload.items() if k not in ("guild_id", "member")}
            self._store_message(stored)
            self.dispatch("MESSAGE_CREATE", payload)
            return payload

    def add_message(self, payload: dict[str, Any]) -> None:
        """Store a message (e.g. from message()) without dispatching it."""
        with self._lock:
            stored = {k: v for k, v in copy.deepcopy(payload).items() if k not in ("guild_id",)}
            stored.pop("member", None)
            self._store_message(stored)

    def interaction_button(
        self,
        custom_id: str,
        *,
        message_id: str,
        user_id: str = ALICE_ID,
        channel_id: str | None = None,
    ) -> dict[str, Any]:
        """An INTERACTION_CREATE payload: `user_id` clicked the button `custom_id` on message
        `message_id` (type 3, component_type 2). Its token works for `interaction_timeout`
        seconds from now; the callback POST /interactions/{id}/{token}/callback is recorded in
        `interaction_responses`. Dispatch it with dispatch("INTERACTION_CREATE", payload)."""
        with self._lock:
            stored = self._find_message(str(message_id))
            cid = str(channel_id or (stored or {}).get("channel_id") or self.general_channel_id)
            channel = self.channels.get(cid) or self._channel(cid)
            user = self._user_or_create(str(user_id))
            interaction_id = self._next_id()
            token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96)
            guild_id = channel.get("guild_id")
            bot = self.users[BOT_USER_ID]
            message = stored or self._base_message(str(message_id), cid, bot, "")
            payload: dict[str, Any] = {
                "id": interaction_id,
                "application_id": self.application_id,
                "type": 3,
                "data": {"custom_id": custom_id, "component_type": 2},
                "channel": self._channel_view(channel),
                "channel_id": cid,
                "token": token,
                "version": 1,
                "message": copy.deepcopy(message),
                "app_permissions": _BOT_PERMISSIONS,
                "locale": "en-US",
                "entitlements": [],
                "entitlement_sku_ids": [],
                "attachment_size_limit": self.upload_limit,
            }
            if guild_id:
                payload["guild_id"] = guild_id
                payload["guild"] = {"id": guild_id, "locale": "en-US", "features": []}
                payload["guild_locale"] = "en-US"
                member = copy.deepcopy(self._member(guild_id, user["id"]))
                member["permissions"] = _EVERYONE_PERMISSIONS
                payload["member"] = member
                payload["authorizing_integration_owners"] = {"0": guild_id}
                payload["context"] = 0
            else:
                payload["user"] = copy.deepcopy(user)
                payload["authorizing_integration_owners"] = {"1": user["id"]}
                payload["context"] = 1
            interaction = _Interaction(
                interaction_id, token, cid, str(message_id), user["id"], time.monotonic()
            )
            self._interactions[interaction_id] = interaction
            self._interactions_by_token[token] = interaction
            return payload

    # -- gateway scripting ---------------------------------------------------------------------

    def dispatch(self, event_name: str, data: dict[str, Any]) -> int:
        """Send an op 0 dispatch to every live session (from any thread); return its sequence
        number in the newest session (0 if that session's intents filter it out). A session
        whose client is disconnected keeps the event and replays it on RESUME. RuntimeError if
        no client has IDENTIFYed (or every session ended)."""
        with self._lock:
            if not any(not s.ended for s in self._sessions.values()):
                raise RuntimeError(
                    "no live gateway session: connect a client and wait for READY first"
                )
            return self._broadcast(event_name, data)

    def drop_gateway(self, code: int = 4000) -> None:
        """Close every gateway connection from the server side (returns at once). Sessions stay
        resumable: discord.py reconnects to resume_gateway_url and sends RESUME. Events
        dispatched from now until then are replayed on RESUME."""
        with self._lock:
            connections, self._connections = self._connections, []
            for conn in connections:
                self._detach(conn)
        self._close_later(connections, code)

    def invalidate_session(self, *, resumable: bool = False) -> None:
        """Send INVALID_SESSION (op 9, d=`resumable`) on every connection. Not resumable: the
        sessions end and discord.py IDENTIFYs anew; resumable: it reconnects and RESUMEs."""
        with self._lock:
            connections = list(self._connections)
            if not resumable:
                for conn in connections:
                    if conn.session is not None:
                        conn.session.ended = True
        frame = json.dumps({"op": 9, "d": resumable, "s": None, "t": None})
        for conn in connections:
            self._spawn_threadsafe(self._send_raw_locked, conn, frame)

    def request_reconnect(self) -> None:
        """Send RECONNECT (op 7): discord.py closes and RESUMEs."""
        with self._lock:
            connections = list(self._connections)
        frame = json.dumps({"op": 7, "d": None, "s": None, "t": None})
        for conn in connections:
            self._spawn_threadsafe(self._send_raw_locked, conn, frame)

    @property
    def connected(self) -> int:
        """How many gateway connections are attached to a session right now."""
        with self._lock:
            return sum(1 for s in self._sessions.values() if s.conn is not None and not s.ended)

    @property
    def session_id(self) -> str | None:
        """The newest session's id (None before the first IDENTIFY)."""
        with self._lock:
            return next(reversed(self._sessions), None)

    def frames(self, op: int) -> list[GatewayFrame]:
        """The recorded client frames with one opcode (1 heartbeat, 2 IDENTIFY, 6 RESUME...)."""
        with self._lock:
            return [frame for frame in self.gateway_frames if frame.op == op]

    def events_named(self, name: str) -> list[GatewayEvent]:
        """The dispatches queued under one event name, in order."""
        with self._lock:
            return [event for event in self.events if event.name == name]

    # -- ids and payload builders (lock held) --------------------------------------------------

    def _next_id(self) -> str:
        """A snowflake for now, strictly increasing."""
        with self._lock:
            ms = int(time.time() * 1000)
            value = ((ms - DISCORD_EPOCH_MS) << 22) | (1 << 17)
            if value <= self._last_snowflake:
                value = self._last_snowflake + 1
            self._last_snowflake = value
            return str(value)

    def _add_user_locked(
        self, user_id: str, username: str, global_name: str | None, *, bot: bool = False
    ) -> dict[str, Any]:
        user: dict[str, Any] = {
            "id": user_id,
            "username": username,
            "discriminator": "0",
            "global_name": global_name,
            "avatar": None,
            "avatar_decoration_data": None,
            "banner": None,
            "accent_color": None,
            "public_flags": 0,
            "flags": 0,
            "collectibles": None,
            "primary_guild": None,
        }
        if bot:
            user["bot"] = True
        self.users[user_id] = user
        return user

    def _user_or_create(self, user_id: str) -> dict[str, Any]:
        user = self.users.get(user_id)
        if user is None:
            user = self._add_user_locked(user_id, f"user{user_id}", None)
            self._add_member_locked(self.guild_id, user_id)
        return user

    def _add_member_locked(self, guild_id: str, user_id: str) -> dict[str, Any]:
        member: dict[str, Any] = {
            "user": self.users[user_id],
            "nick": None,
            "avatar": None,
            "banner": None,
            "roles": [BOT_ROLE_ID] if user_id == BOT_USER_ID and guild_id == GUILD_ID else [],
            "joined_at": _iso(snowflake_ms(guild_id)),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
            "unusual_dm_activity_until": None,
        }
        self.members.setdefault(guild_id, {})[user_id] = member
        return member

    def _member(self, guild_id: str, user_id: str) -> dict[str, Any]:
        member = self.members.get(guild_id, {}).get(user_id)
        if member is None:
            member = self._add_member_locked(guild_id, user_id)
        return member

    def _add_guild_locked(self, guild_id: str, name: str, *, owner_id: str) -> dict[str, Any]:
        roles: list[dict[str, Any]] = [
            self._role(guild_id, "@everyone", _EVERYONE_PERMISSIONS, position=0),
        ]
        if guild_id == GUILD_ID:
            bot_role = self._role(BOT_ROLE_ID, "bothub", _BOT_PERMISSIONS, position=1)
            bot_role["managed"] = True
            bot_role["tags"] = {"bot_id": BOT_USER_ID}
            roles.append(bot_role)
        guild: dict[str, Any] = {
            "id": guild_id,
            "name": name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": owner_id,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "widget_enabled": False,
            "verification_level": 1,
            "default_message_notifications": 1,
            "explicit_content_filter": 2,
            "roles": roles,
            "emojis": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "max_presences": None,
            "max_members": 500000,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": None,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "nsfw_level": 0,
            "nsfw": False,
            "stickers": [],
            "premium_progress_bar_enabled": False,
            "safety_alerts_channel_id": None,
            "incidents_data": None,
        }
        self.guilds[guild_id] = guild
        self.members.setdefault(guild_id, {})
        for user_id in (BOT_USER_ID, owner_id):
            self._add_member_locked(guild_id, user_id)
        if guild_id == GUILD_ID:
            self._add_member_locked(guild_id, BOB_ID)
        return guild

    @staticmethod
    def _role(role_id: str, name: str, permissions: str, *, position: int) -> dict[str, Any]:
        return {
            "id": role_id,
            "name": name,
            "description": None,
            "permissions": permissions,
            "position": position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }

    def _add_channel_locked(
        self,
        name: str,
        type_: int,
        channel_id: str | None,
        guild_id: str,
        parent_id: str | None,
    ) -> dict[str, Any]:
        if guild_id not in self.guilds:
            raise KeyError(f"unknown guild {guild_id}")
        cid = channel_id or self._next_id()
        position = sum(1 for c in self.channels.values() if c.get("guild_id") == guild_id)
        channel: dict[str, Any] = {
            "id": cid,
            "type": type_,
            "guild_id": guild_id,
            "name": name,
            "position": position,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": parent_id,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "default_auto_archive_duration": 1440,
            "flags": 0,
        }
        if type_ == _FORUM:
            channel.update(
                available_tags=[],
                default_reaction_emoji=None,
                default_sort_order=None,
                default_forum_layout=0,
                default_thread_rate_limit_per_user=0,
            )
        self.channels[cid] = channel
        return channel

    def _make_thread(
        self,
        parent_id: str,
        name: str,
        *,
        thread_id: str | None,
        type_: int,
        owner_id: str,
        auto_archive_duration: int = 1440,
        invitable: bool = True,
    ) -> dict[str, Any]:
        parent = self._channel(parent_id)
        tid = thread_id or self._next_id()
        now = _iso(int(time.time() * 1000))
        metadata: dict[str, Any] = {
            "archived": False,
            "auto_archive_duration": auto_archive_duration,
            "archive_timestamp": now,
            "locked": False,
            "create_timestamp": now,
        }
        if type_ == _PRIVATE_THREAD:
            metadata["invitable"] = invitable
        thread: dict[str, Any] = {
            "id": tid,
            "type": type_,
            "guild_id": parent["guild_id"],
            "parent_id": parent_id,
            "owner_id": owner_id,
            "name": name,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "thread_metadata": metadata,
        }
        if parent["type"] == _FORUM:
            thread["applied_tags"] = []
        if owner_id == BOT_USER_ID:
            thread["member"] = self._thread_member(tid)
        self.channels[tid] = thread
        return thread

    @staticmethod
    def _thread_member(thread_id: str) -> dict[str, Any]:
        return {
            "id": thread_id,
            "user_id": BOT_USER_ID,
            "join_timestamp": _iso(int(time.time() * 1000)),
            "flags": 1,
            "muted": False,
            "mute_config": None,
        }

    def _dm_channel(self, user_id: str) -> dict[str, Any]:
        if user_id not in self.users or user_id == BOT_USER_ID:
            raise _error(400, 50033, "Invalid Recipient(s)")
        cid = self._dm_by_user.get(user_id)
        if cid is None:
            cid = self._next_id()
            self._dm_by_user[user_id] = cid
            self.channels[cid] = {
                "id": cid,
                "type": _DM,
                "last_message_id": None,
                "flags": 0,
                "recipients": [self.users[user_id]],
            }
        return self.channels[cid]

    def _channel(self, channel_id: str) -> dict[str, Any]:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise _unknown_channel()
        return channel

    @staticmethod
    def _channel_view(channel: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(channel)

    def _base_message(
        self, message_id: str, channel_id: str, author: dict[str, Any], content: str
    ) -> dict[str, Any]:
        return {
            "id": message_id,
            "type": 0,
            "content": content,
            "channel_id": channel_id,
            "author": copy.deepcopy(author),
            "attachments": [],
            "embeds": [],
            "mentions": [],
            "mention_roles": [],
            "pinned": False,
            "mention_everyone": False,
            "tts": False,
            "timestamp": _iso(snowflake_ms(message_id)),
            "edited_timestamp": None,
            "flags": 0,
            "components": [],
        }

    def _mentions(
        self,
        content: str,
        guild_id: str | None,
        allowed: dict[str, Any] | None = None,
        replied_user: str | None = None,
    ) -> list[dict[str, Any]]:
        """Users `content` mentions (as Discord computes them, filtered by allowed_mentions)."""
        ids: list[str] = []
        if allowed is None or "users" in allowed.get("parse", []):
            candidates = _MENTION_RE.findall(content)
        else:
            explicit = {str(u) for u in allowed.get("users", [])}
            candidates = [u for u in _MENTION_RE.findall(content) if u in explicit]
        for user_id in candidates:
            if user_id in self.users and user_id not in ids:
                ids.append(user_id)
        reply_pings = allowed is None or allowed.get("replied_user", False)
        if replied_user and replied_user not in ids and reply_pings:
            ids.append(replied_user)
        result = []
        for user_id in ids:
            user = copy.deepcopy(self.users[user_id])
            if guild_id:
                member = {k: v for k, v in self._member(guild_id, user_id).items() if k != "user"}
                user["member"] = copy.deepcopy(member)
            result.append(user)
        return result

    def _attach_reference(
        self, message: dict[str, Any], channel_id: str, reply_to: str, guild_id: str | None
    ) -> None:
        referenced = self._messages.get(channel_id, {}).get(reply_to)
        if referenced is None:
            raise KeyError(f"message {reply_to} is not stored in channel {channel_id}")
        message["type"] = 19
        message["message_reference"] = {
            "type": 0,
            "channel_id": channel_id,
            "message_id": reply_to,
        }
        if guild_id:
            message["message_reference"]["guild_id"] = guild_id
        message["referenced_message"] = copy.deepcopy(referenced)

    def _gateway_message(self, message: dict[str, Any], guild_id: str | None) -> dict[str, Any]:
        """A stored (REST-shaped) message as MESSAGE_CREATE/UPDATE carries it."""
        payload = copy.deepcopy(message)
        if guild_id:
            payload["guild_id"] = guild_id
            author_id = payload["author"]["id"]
            if "webhook_id" not in payload:
                member = self._member(guild_id, author_id)
                payload["member"] = {k: copy.deepcopy(v) for k, v in member.items() if k != "user"}
        return payload

    def _store_message(self, message: dict[str, Any]) -> dict[str, Any]:
        channel_id = message["channel_id"]
        self._messages.setdefault(channel_id, {})[message["id"]] = message
        channel = self.channels.get(channel_id)
        if channel is not None:
            channel["last_message_id"] = message["id"]
            if channel["type"] in _THREAD_TYPES and message["id"] != channel_id:
                channel["message_count"] += 1
                channel["total_message_sent"] += 1
        return message

    def _find_message(self, message_id: str) -> dict[str, Any] | None:
        for messages in self._messages.values():
            if message_id in messages:
                return messages[message_id]
        return None

    def _store_attachment(
        self, channel_id: str, filename: str, content_type: str, content: bytes
    ) -> dict[str, Any]:
        attachment_id = self._next_id()
        expires = int(time.time()) + 24 * 3600
        signature = hashlib.sha256(f"{attachment_id}:{expires}".encode()).hexdigest()
        query = f"?ex={expires:x}&is={expires - 24 * 3600:x}&hm={signature}&"
        path = f"/attachments/{channel_id}/{attachment_id}/{filename}"
        attachment: dict[str, Any] = {
            "id": attachment_id,
            "filename": filename,
            "size": len(content),
            "url": f"{self.base_url}{path}{query}",
            "proxy_url": f"{self.base_url}{path}{query}",
            "content_type": content_type,
        }
        if content_type.startswith("image/"):
            attachment["width"] = None
            attachment["height"] = None
        self._attachments[attachment_id] = (attachment, content)
        return attachment

    def _guild_create_payload(self, guild_id: str) -> dict[str, Any]:
        guild = copy.deepcopy(self.guilds[guild_id])
        channels = []
        threads = []
        for channel in self.channels.values():
            if channel.get("guild_id") != guild_id:
                continue
            if channel["type"] in _THREAD_TYPES:
                if not channel["thread_metadata"]["archived"]:
                    threads.append(copy.deepcopy(channel))
            else:
                view = copy.deepcopy(channel)
                view.pop("guild_id", None)
                channels.append(view)
        members = self.members.get(guild_id, {})
        guild.update(
            joined_at=_iso(snowflake_ms(guild_id)),
            large=False,
            unavailable=False,
            member_count=len(members),
            voice_states=[],
            members=[copy.deepcopy(members[BOT_USER_ID])] if BOT_USER_ID in members else [],
            channels=channels,
            threads=threads,
            presences=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
            embedded_activities=[],
            activity_instances=[],
            lazy=True,
            application_command_counts={},
        )
        return guild

    # -- gateway internals ---------------------------------------------------------------------

    def _broadcast(self, event_name: str, data: dict[str, Any]) -> int:
        """Queue a dispatch for every live session (lock held or not); see dispatch()."""
        with self._lock:
            seq = 0
            for session in list(self._sessions.values()):
                if not session.ended:
                    seq = self._log_event(session, event_name, data)
            return seq

    def _log_event(
        self, session: _Session, name: str, data: dict[str, Any], *, target: int | None = None
    ) -> int:
        """Append a dispatch to a session (lock held); schedule sending it. Returns its seq, or
        0 if the session's intents filter it out."""
        visible = self._visible(session, name, data)
        if visible is None:
            return 0
        session.seq += 1
        frame = {"op": 0, "t": name, "s": session.seq, "d": visible}
        session.log.append(_LogEntry(session.seq, json.dumps(frame), target))
        self.events.append(GatewayEvent(session.seq, name, copy.deepcopy(visible), session.id))
        if session.conn is not None:
            self._spawn_threadsafe(self._flush, session.conn)
        return session.seq

    @staticmethod
    def _visible(session: _Session, name: str, data: dict[str, Any]) -> dict[str, Any] | None:
        """What a session with these intents receives of an event (None: nothing)."""
        needs = _EVENT_INTENTS.get(name)
        if needs is None:
            return copy.deepcopy(data)
        in_guild = bool(data.get("guild_id")) or name.startswith(("GUILD_", "THREAD_"))
        if name.startswith("CHANNEL_"):
            in_guild = True
        if not session.intents & (needs[0] if in_guild else needs[1]):
            return None
        visible = copy.deepcopy(data)
        if (
            name in ("MESSAGE_CREATE", "MESSAGE_UPDATE")
            and in_guild
            and not session.intents & Intents.MESSAGE_CONTENT
        ):
            author = (visible.get("author") or {}).get("id")
            mentioned = any(u.get("id") == BOT_USER_ID for u in visible.get("mentions", []))
            if author != BOT_USER_ID and not mentioned:
                for key in _CONTENT_FIELDS:
                    if key in visible:
                        visible[key] = "" if key == "content" else []
                visible.pop("poll", None)
        return visible

    def _detach(self, conn: _GatewayConnection) -> None:
        """Unhook a connection from its session (lock held): nothing more is sent on it."""
        conn.dropped = True
        session = conn.session
        if session is not None and session.conn is conn:
            session.conn = None

    def _spawn_threadsafe(self, function: Callable[..., Any], *args: Any) -> None:
        """Run `function(*args)` (a coroutine function) as a task on the server's loop."""
        loop = self._loop
        if loop is None:
            return

        def spawn() -> None:
            task = loop.create_task(function(*args))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        with contextlib.suppress(RuntimeError):  # loop closed: the server is stopping
            loop.call_soon_threadsafe(spawn)

    def _close_later(self, connections: list[_GatewayConnection], code: int) -> None:
        if connections:
            self._spawn_threadsafe(self._close_connections, connections, code)

    @staticmethod
    async def _close_connections(
        connections: list[_GatewayConnection], code: int, grace: float = 5.0
    ) -> None:
        if not connections:
            return
        closing = [asyncio.ensure_future(conn.ws.close(code=code)) for conn in connections]
        _, pending = await asyncio.wait(closing, timeout=grace)
        for task in pending:
            task.cancel()
        for task in closing:  # a client gone without answering is no error here
            if not task.cancelled():
                task.exception()

    async def _send_text(self, conn: _GatewayConnection, text: str) -> None:
        """Send one frame (conn.lock held): zlib-stream compressed or plain text."""
        if conn.compressor is not None:
            data = conn.compressor.compress(text.encode("utf-8"))
            data += conn.compressor.flush(zlib.Z_SYNC_FLUSH)
            await conn.ws.send_bytes(data)
        else:
            await conn.ws.send_str(text)

    async def _send_raw_locked(self, conn: _GatewayConnection, text: str) -> None:
        async with conn.lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send_text(conn, text)

    async def _flush(self, conn: _GatewayConnection) -> None:
        async with conn.lock:
            await self._drain(conn)

    async def _drain(self, conn: _GatewayConnection) -> None:
        """Send the session's entries after conn.sent_seq, in order (conn.lock held)."""
        while True:
            with self._lock:
                session = conn.session
                if session is None or session.conn is not conn or conn.dropped:
                    return
                index = bisect.bisect_right(session.log, conn.sent_seq, key=lambda e: e.seq)
                entry = next(
                    (e for e in session.log[index:] if e.target is None or e.target == conn.number),
                    None,
                )
                if entry is None:
                    return
            try:
                await self._send_text(conn, entry.text)
            except (ConnectionError, RuntimeError):
                with self._lock:
                    self._detach(conn)
                return
            conn.sent_seq = entry.seq

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        compress = request.query.get("compress")
        encoding = request.query.get("encoding", "json")
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        with self._lock:
            number = next(self._connection_numbers)
            conn = _GatewayConnection(ws, number, self._generation, compress, asyncio.Lock())
            if compress == "zlib-stream":
                conn.compressor = zlib.compressobj()
            self._connections.append(conn)
            info: dict[str, Any] = {
                "number": number,
                "query": dict(request.query),
                "transport": "zlib-stream" if conn.compressor is not None else "text",
                "close_code": None,
            }
            self.gateway_connections.append(info)
        hello = {
            "op": 10,
            "d": {"heartbeat_interval": self.heartbeat_interval, "_trace": ['["gateway-fake"]']},
            "s": None,
            "t": None,
        }
        try:
            if encoding != "json":  # ETF is not implemented (discord.py never asks for it)
                await ws.close(code=4002, message=b"Error while decoding payload.")
                return ws
            async with conn.lock:
                await self._send_text(conn, json.dumps(hello))
            async for message in ws:
                if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                close = await self._handle_frame(conn, message.data)
                if close is not None:
                    await ws.close(code=close[0], message=close[1].encode())
                    break
        except (ConnectionError, RuntimeError):
            pass
        finally:
            with self._lock:
                info["close_code"] = ws.close_code
                session = conn.session
                if session is not None and session.conn is conn and ws.close_code in (1000, 1001):
                    session.ended = True  # a clean close from the client ends the session
                self._detach(conn)
                if conn in self._connections:
                    self._connections.remove(conn)
        return ws

    async def _handle_frame(self, conn: _GatewayConnection, raw: Any) -> tuple[int, str] | None:
        """Handle one client frame; return (code, reason) to close the connection with."""
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            payload = None
        op = payload.get("op") if isinstance(payload, dict) else None
        with self._lock:
            if conn.generation == self._generation:
                recorded = payload if payload is not None else raw
                self.gateway_frames.append(
                    GatewayFrame(op, recorded, conn.number, time.monotonic())
                )
        if not isinstance(payload, dict) or not isinstance(op, int):
            return 4002, "Error while decoding payload."
        data = payload.get("d")
        if op == 1:  # heartbeat
            async with conn.lock:
                await self._send_text(conn, json.dumps({"op": 11, "d": None, "s": None, "t": None}))
            return None
        if op == 2:
            return await self._identify(conn, data if isinstance(data, dict) else {})
        if op == 6:
            return await self._resume(conn, data if isinstance(data, dict) else {})
        if conn.session is None:
            return 4003, "Not authenticated."
        if op == 8:  # request guild members
            await self._members_chunk(conn, data if isinstance(data, dict) else {})
            return None
        if op in (3, 4):  # presence / voice state update: accepted, nothing to answer
            return None
        return 4001, "Unknown opcode."

    async def _identify(
        self, conn: _GatewayConnection, data: dict[str, Any]
    ) -> tuple[int, str] | None:
        if conn.session is not None:
            return 4005, "Already authenticated."
        if data.get("token") != self.bot_token:
            return 4004, "Authentication failed."
        intents = data.get("intents")
        if not isinstance(intents, int):
            return 4013, "Invalid intent(s)."
        if intents & Intents.PRIVILEGED & ~self.privileged_intents:
            return 4014, "Disallowed intent(s)."
        with self._lock:
            if conn.dropped:
                return None
            session = _Session(uuid.uuid4().hex, intents)
            self._sessions[session.id] = session
            self.identify_count += 1
            ready: dict[str, Any] = {
                "v": API_VERSION,
                "user": self._me(),
                "user_settings": {},
                "guilds": [{"id": gid, "unavailable": True} for gid in self.guilds],
                "guild_join_requests": [],
                "relationships": [],
                "private_channels": [],
                "presences": [],
                "session_id": session.id,
                "session_type": "normal",
                "resume_gateway_url": self.gateway_url,
                "auth_session_id_hash": hashlib.sha256(session.id.encode()).hexdigest()[:32],
                "application": {"id": self.application_id, "flags": _APPLICATION_FLAGS},
                "geo_ordered_rtc_regions": ["fake"],
                "_trace": ['["gateway-fake"]'],
            }
            if "shard" in data:
                ready["shard"] = data["shard"]
            self._log_event(session, "READY", ready, target=conn.number)
            for gid in self.guilds:
                self._log_event(session, "GUILD_CREATE", self._guild_create_payload(gid))
            conn.session = session
            session.conn = conn
            conn.sent_seq = 0
        await self._flush(conn)
        return None

    async def _resume(
        self, conn: _GatewayConnection, data: dict[str, Any]
    ) -> tuple[int, str] | None:
        if data.get("token") != self.bot_token:
            return 4004, "Authentication failed."
        with self._lock:
            session = self._sessions.get(str(data.get("session_id")))
            raw_seq = data.get("seq")
            seq = raw_seq if isinstance(raw_seq, int) else 0
            valid = session is not None and not session.ended and seq <= session.seq
            old: _GatewayConnection | None = None
            if session is not None and valid:
                old = session.conn
                if old is not None:
                    self._detach(old)
                conn.session = session
                session.conn = conn
                conn.sent_seq = seq
                self.resume_count += 1
                resumed = {"_trace": ['["gateway-fake"]']}
                self._log_event(session, "RESUMED", resumed, target=conn.number)
            else:
                self.invalid_sessions += 1
        if not valid:
            async with conn.lock:
                await self._send_text(conn, json.dumps({"op": 9, "d": False, "s": None, "t": None}))
            return None
        if old is not None and old is not conn:
            self._close_later([old], 4000)
        await self._flush(conn)
        return None

    async def _members_chunk(self, conn: _GatewayConnection, data: dict[str, Any]) -> None:
        with self._lock:
            session = conn.session
            guild_id = str(data.get("guild_id"))
            if session is None or guild_id not in self.guilds:
                return
            members = list(self.members.get(guild_id, {}).values())
            wanted = data.get("user_ids")
            if wanted:
                wanted_ids = {str(u) for u in (wanted if isinstance(wanted, list) else [wanted])}
                members = [m for m in members if m["user"]["id"] in wanted_ids]
            chunk: dict[str, Any] = {
                "guild_id": guild_id,
                "members": copy.deepcopy(members),
                "chunk_index": 0,
                "chunk_count": 1,
            }
            if data.get("nonce") is not None:
                chunk["nonce"] = data["nonce"]
            if data.get("presences"):
                chunk["presences"] = []
            self._log_event(session, "GUILD_MEMBERS_CHUNK", chunk, target=conn.number)

    # -- HTTP ----------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/gateway/", self._gateway)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._download)
        app.router.add_route("*", r"/api/v{version:\d+}/{tail:.*}", self._api)
        app.router.add_route("*", "/api/{tail:.*}", self._api)
        return app

    def _respond(
        self, status: int, body: Any, route_key: str = "", headers: dict[str, str] | None = None
    ) -> web.Response:
        all_headers = {"Via": "1.1 google"}
        if route_key and status < 400:
            bucket = hashlib.md5(route_key.encode(), usedforsecurity=False).hexdigest()
            all_headers.update(
                {
                    "X-RateLimit-Bucket": bucket,
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "4",
                    "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
                    "X-RateLimit-Reset-After": "1.000",
                }
            )
        all_headers.update(headers or {})
        if body is None:
            return web.Response(status=status, headers=all_headers)
        all_headers["Content-Type"] = "application/json"  # exactly: no "; charset=utf-8"
        return web.Response(status=status, body=json.dumps(body).encode(), headers=all_headers)

    async def _api(self, request: web.Request) -> web.StreamResponse:
        tail = "/" + request.match_info["tail"]
        headers = {k.lower(): v for k, v in request.headers.items()}
        body: Any = None
        files: list[UploadedFile] = []
        bad_body = False
        if request.body_exists:
            if request.content_type == "application/json":
                try:
                    body = json.loads(await request.read())
                except ValueError:
                    bad_body = True
            elif request.content_type == "multipart/form-data":
                for name, value in (await request.post()).items():
                    if isinstance(value, web.FileField):
                        files.append(
                            UploadedFile(
                                name, value.filename, value.content_type, value.file.read()
                            )
                        )
                    elif name == "payload_json":
                        try:
                            body = json.loads(value)
                        except ValueError:
                            bad_body = True
            else:
                await request.read()
        call = DiscordCall(
            method=request.method,
            path=tail,
            route_key="",
            json=body,
            headers=headers,
            query=dict(request.query),
            files=files,
            at=time.monotonic(),
        )
        with self._lock:
            self.calls.append(call)
            status, answer, extra = self._route(request.method, tail, call, bad_body)
            call.status = status
            return self._respond(status, answer, call.route_key, extra)

    def _route(
        self, method: str, path: str, call: DiscordCall, bad_body: bool
    ) -> tuple[int, Any, dict[str, str] | None]:
        """Match, authenticate, apply scripts and run a handler (lock held)."""
        matched_path = False
        for route_method, key, pattern, auth in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            matched_path = True
            if route_method != method:
                continue
            call.route_key = key
            if auth and call.headers.get("authorization") != f"Bot {self.bot_token}":
                return 401, {"message": "401: Unauthorized", "code": 0}, None
            if bad_body:
                invalid = {"message": "The request body contains invalid JSON.", "code": 50109}
                return 400, invalid, None
            queue = self._outcomes.get(key)
            if queue:
                kind, value = queue.popleft()
                if kind == "ratelimit":
                    return self._rate_limited(key, *value)
                status, error_body = value
                return status, copy.deepcopy(error_body), None
            try:
                status, answer = self._handlers[key](match.groupdict(), call)
            except _DiscordError as exc:
                return exc.status, exc.body, None
            return status, answer, None
        if matched_path:
            return 405, {"message": "405: Method Not Allowed", "code": 0}, None
        return 404, {"message": "404: Not Found", "code": 0}, None

    @staticmethod
    def _rate_limited(
        route_key: str, retry_after: float, global_limit: bool
    ) -> tuple[int, Any, dict[str, str]]:
        body = {"message": "You are being rate limited.", "retry_after": retry_after}
        body["global"] = global_limit
        body["code"] = 0
        bucket = hashlib.md5(route_key.encode(), usedforsecurity=False).hexdigest()
        headers = {
            "Retry-After": str(max(1, math.ceil(retry_after))),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Bucket": bucket,
            "X-RateLimit-Scope": "global" if global_limit else "user",
        }
        if global_limit:
            headers["X-RateLimit-Global"] = "true"
        return 429, body, headers

    async def _download(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self.downloads.append(request.path)
            entry = self._attachments.get(request.match_info["attachment_id"])
        if entry is None or entry[0]["filename"] != request.match_info["filename"]:
            return web.Response(
                status=404, text="This content is no longer available.", content_type="text/plain"
            )
        attachment, content = entry
        return web.Response(body=content, headers={"Content-Type": attachment["content_type"]})

    # -- REST handlers (lock held) -------------------------------------------------------------

    def _me(self) -> dict[str, Any]:
        me = copy.deepcopy(self.users[BOT_USER_ID])
        me.update(verified=True, mfa_enabled=False, locale="en-US", email=None, bio="")
        return me

    def _get_me(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        return 200, self._me()

    def _get_user(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        user = self.users.get(p["user_id"])
        if user is None:
            raise _error(404, 10013, "Unknown User")
        return 200, copy.deepcopy(user)

    def _open_dm_route(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        recipient = str((call.json or {}).get("recipient_id", ""))
        return 200, copy.deepcopy(self._dm_channel(recipient))

    def _get_application(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        owner = copy.deepcopy(self.users[ALICE_ID])
        return 200, {
            "id": self.application_id,
            "name": "bothub",
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "hook": True,
            "bot_public": False,
            "bot_require_code_grant": False,
            "verify_key": hashlib.sha256(self.application_id.encode()).hexdigest(),
            "flags": _APPLICATION_FLAGS,
            "owner": owner,
            "team": None,
            "bot": copy.deepcopy(self.users[BOT_USER_ID]),
            "rpc_origins": [],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "event_webhooks_url": None,
            "event_webhooks_status": 1,
            "tags": [],
            "install_params": None,
            "integration_types_config": {"0": {}},
            "custom_install_url": None,
            "terms_of_service_url": None,
            "privacy_policy_url": None,
            "approximate_guild_count": len(self.guilds),
            "approximate_user_install_count": 0,
            "is_monetized": False,
            "is_verified": False,
            "is_discoverable": False,
            "explicit_content_filter": 0,
            "storefront_available": False,
        }

    def _get_gateway(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        return 200, {"url": self.gateway_url}

    def _get_gateway_bot(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        return 200, {
            "url": self.gateway_url,
            "shards": 1,
            "session_start_limit": {
                "total": 1000,
                "remaining": max(0, 1000 - self.identify_count),
                "reset_after": 14_400_000,
                "max_concurrency": 1,
            },
        }

    def _guild(self, guild_id: str) -> dict[str, Any]:
        guild = self.guilds.get(guild_id)
        if guild is None:
            raise _error(404, 10004, "Unknown Guild")
        return guild

    def _get_guild(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        return 200, copy.deepcopy(self._guild(p["guild_id"]))

    def _get_guild_channels(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        self._guild(p["guild_id"])
        return 200, [
            copy.deepcopy(c)
            for c in self.channels.values()
            if c.get("guild_id") == p["guild_id"] and c["type"] not in _THREAD_TYPES
        ]

    def _get_member(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        self._guild(p["guild_id"])
        member = self.members.get(p["guild_id"], {}).get(p["user_id"])
        if member is None:
            raise _error(404, 10007, "Unknown Member")
        return 200, copy.deepcopy(member)

    def _get_channel(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        return 200, copy.deepcopy(self._channel(p["channel_id"]))

    def _edit_channel(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        channel = self._channel(p["channel_id"])
        body = call.json if isinstance(call.json, dict) else {}
        if channel["type"] in _THREAD_TYPES:
            metadata = channel["thread_metadata"]
            if metadata["archived"] and body.get("archived") is not False:
                raise _error(400, 50083, "Thread is archived")
            for key in ("archived", "locked", "auto_archive_duration", "invitable"):
                if key in body:
                    metadata[key] = body[key]
            if "archived" in body:
                metadata["archive_timestamp"] = _iso(int(time.time() * 1000))
        for key in ("name", "topic", "rate_limit_per_user", "nsfw", "flags"):
            if key in body:
                channel[key] = body[key]
        event = "THREAD_UPDATE" if channel["type"] in _THREAD_TYPES else "CHANNEL_UPDATE"
        self._broadcast(event, copy.deepcopy(channel))
        return 200, copy.deepcopy(channel)

    def _delete_channel_locked(self, channel: dict[str, Any]) -> None:
        cid = channel["id"]
        del self.channels[cid]
        self._messages.pop(cid, None)
        if channel["type"] in _THREAD_TYPES:
            data = {k: channel[k] for k in ("id", "guild_id", "parent_id", "type")}
            self._broadcast("THREAD_DELETE", data)
        elif channel["type"] != _DM:
            self._broadcast("CHANNEL_DELETE", copy.deepcopy(channel))

    def _delete_channel_route(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        channel = self._channel(p["channel_id"])
        self._delete_channel_locked(channel)
        return 200, copy.deepcopy(channel)

    def _get_messages(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        self._channel(p["channel_id"])
        messages = sorted(
            self._messages.get(p["channel_id"], {}).values(), key=lambda m: int(m["id"])
        )
        messages = [m for m in messages if not m["flags"] & _FLAG_EPHEMERAL]
        try:
            limit = min(100, max(1, int(call.query.get("limit", "50"))))
        except ValueError:
            raise _invalid(["limit"], "NUMBER_TYPE_COERCE", "Value is not int.") from None
        if "before" in call.query:
            messages = [m for m in messages if int(m["id"]) < int(call.query["before"])]
            messages = messages[-limit:]
        elif "after" in call.query:
            messages = [m for m in messages if int(m["id"]) > int(call.query["after"])]
            messages = messages[:limit]
        elif "around" in call.query:
            around = int(call.query["around"])
            older = [m for m in messages if int(m["id"]) < around][-(limit // 2) :]
            newer = [m for m in messages if int(m["id"]) >= around][: limit - len(older)]
            messages = older + newer
        else:
            messages = messages[-limit:]
        return 200, [copy.deepcopy(m) for m in reversed(messages)]

    def _message_in(self, channel_id: str, message_id: str) -> dict[str, Any]:
        self._channel(channel_id)
        message = self._messages.get(channel_id, {}).get(message_id)
        if message is None:
            raise _unknown_message()
        return message

    def _get_message(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        return 200, copy.deepcopy(self._message_in(p["channel_id"], p["message_id"]))

    def _check_postable(self, channel: dict[str, Any]) -> None:
        """Discord's refusals for posting in a channel (lock held)."""
        if channel["type"] == _FORUM:
            raise _error(400, 50024, "Cannot execute action on this channel type")
        if channel["type"] == _DM:
            recipient = channel["recipients"][0]["id"]
            if recipient in self._closed_dms:
                raise _error(403, 50007, "Cannot send messages to this user")
        if channel["type"] in _THREAD_TYPES:
            metadata = channel["thread_metadata"]
            if metadata["archived"]:
                if metadata["locked"] or not self.unarchive_on_post:
                    raise _error(400, 50083, "Thread is archived")
                metadata["archived"] = False
                metadata["archive_timestamp"] = _iso(int(time.time() * 1000))
                self._broadcast("THREAD_UPDATE", copy.deepcopy(channel))
            elif metadata["locked"]:
                raise _error(403, 160005, "Thread is locked")

    def _validate_message_body(self, body: dict[str, Any], *, creating: bool, files: int) -> None:
        content = body.get("content")
        if content is not None and not isinstance(content, str):
            content = str(content)
            body["content"] = content
        if content is not None and len(content) > MAX_CONTENT:
            raise _invalid(
                ["content"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length."
            )
        embeds = body.get("embeds") or []
        if body.get("embed"):
            embeds = [body["embed"]]
        if len(embeds) > MAX_EMBEDS:
            raise _invalid(
                ["embeds"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_EMBEDS} or fewer in length."
            )
        total = 0
        limits = {"title": 256, "description": 4096}
        for index, embed in enumerate(embeds):
            for key, limit in limits.items():
                value = embed.get(key) or ""
                total += len(value)
                if len(value) > limit:
                    raise _invalid(
                        ["embeds", str(index), key],
                        "BASE_TYPE_MAX_LENGTH",
                        f"Must be {limit} or fewer in length.",
                    )
            for position, embed_field in enumerate(embed.get("fields") or []):
                for key, limit in (("name", 256), ("value", 1024)):
                    value = str(embed_field.get(key) or "")
                    total += len(value)
                    if len(value) > limit:
                        raise _invalid(
                            ["embeds", str(index), "fields", str(position), key],
                            "BASE_TYPE_MAX_LENGTH",
                            f"Must be {limit} or fewer in length.",
                        )
            total += len((embed.get("footer") or {}).get("text") or "")
            total += len((embed.get("author") or {}).get("name") or "")
        if total > MAX_EMBED_TOTAL:
            raise _invalid(
                ["embeds"],
                "MAX_EMBED_SIZE_EXCEEDED",
                f"Embed size exceeds maximum size of {MAX_EMBED_TOTAL}",
            )
        components = body.get("components") or []
        if len(components) > 5:
            raise _invalid(["components"], "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
        if creating and not (
            content or embeds or components or files or body.get("sticker_ids") or body.get("poll")
        ):
            raise _error(400, 50006, "Cannot send an empty message")

    def _attachments_from(self, channel_id: str, call: DiscordCall) -> list[dict[str, Any]]:
        """Attachment objects for the uploaded files (payload "attachments" maps ids)."""
        if not call.files:
            return []
        if sum(len(f.content) for f in call.files) > self.upload_limit:
            raise _error(413, 40005, "Request entity too large")
        described = {
            f"files[{a.get('id')}]": a
            for a in (call.json or {}).get("attachments") or []
            if isinstance(a, dict)
        }
        result = []
        for upload in call.files:
            meta = described.get(upload.field, {})
            filename = str(meta.get("filename") or upload.filename)
            content_type = upload.content_type
            if content_type == "application/octet-stream":
                content_type = mimetypes.guess_type(filename)[0] or content_type
            attachment = self._store_attachment(channel_id, filename, content_type, upload.content)
            if meta.get("description"):
                attachment["description"] = meta["description"]
            result.append(copy.deepcopy(attachment))
        return result

    def _new_bot_message(
        self,
        channel: dict[str, Any],
        body: dict[str, Any],
        call: DiscordCall,
        *,
        extra_flags: int = 0,
        message_id: str | None = None,
    ) -> dict[str, Any]:
        """Create, store and announce a message the bot posts (lock held)."""
        cid = channel["id"]
        guild_id = channel.get("guild_id")
        mid = message_id or self._next_id()
        content = body.get("content") or ""
        message = self._base_message(mid, cid, self.users[BOT_USER_ID], content)
        message["embeds"] = [
            {"type": "rich", **copy.deepcopy(e)} for e in (body.get("embeds") or [])
        ]
        message["components"] = copy.deepcopy(body.get("components") or [])
        message["attachments"] = self._attachments_from(cid, call)
        message["tts"] = bool(body.get("tts", False))
        message["flags"] = int(body.get("flags") or 0) | extra_flags
        if body.get("nonce") is not None:
            message["nonce"] = body["nonce"]
        if body.get("sticker_ids"):
            message["sticker_items"] = [
                {"id": str(s), "name": "sticker", "format_type": 1} for s in body["sticker_ids"]
            ]
        allowed = body.get("allowed_mentions")
        replied_user = None
        reference = body.get("message_reference")
        if isinstance(reference, dict) and reference.get("message_id"):
            ref_channel = str(reference.get("channel_id") or cid)
            referenced = self._messages.get(ref_channel, {}).get(str(reference["message_id"]))
            if referenced is None:
                if reference.get("fail_if_not_exists", True):
                    raise _invalid(
                        ["message_reference"],
                        "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                        "Unknown message",
                    )
            else:
                message["type"] = 19
                message["message_reference"] = {
                    "type": int(reference.get("type", 0)),
                    "channel_id": ref_channel,
                    "message_id": referenced["id"],
                }
                if guild_id:
                    message["message_reference"]["guild_id"] = guild_id
                message["referenced_message"] = copy.deepcopy(referenced)
                replied_user = referenced["author"]["id"]
        message["mentions"] = self._mentions(content, guild_id, allowed, replied_user)
        everyone_allowed = allowed is None or "everyone" in allowed.get("parse", [])
        message["mention_everyone"] = everyone_allowed and (
            "@everyone" in content or "@here" in content
        )
        self._store_message(message)
        if self.echo_bot_messages and not message["flags"] & _FLAG_EPHEMERAL:
            self._broadcast("MESSAGE_CREATE", self._gateway_message(message, guild_id))
        return message

    def _create_message(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        channel = self._channel(p["channel_id"])
        body = call.json if isinstance(call.json, dict) else {}
        self._validate_message_body(body, creating=True, files=len(call.files))
        self._check_postable(channel)
        message = self._new_bot_message(channel, body, call)
        return 200, copy.deepcopy(message)

    def _apply_edit(self, message: dict[str, Any], body: dict[str, Any], call: DiscordCall) -> None:
        self._edits.setdefault(message["id"], []).append(copy.deepcopy(message))
        if "content" in body:
            message["content"] = body["content"] or ""
            channel = self.channels.get(message["channel_id"]) or {}
            message["mentions"] = self._mentions(
                message["content"], channel.get("guild_id"), body.get("allowed_mentions")
            )
        if "embeds" in body:
            message["embeds"] = [
                {"type": "rich", **copy.deepcopy(e)} for e in (body["embeds"] or [])
            ]
        if "components" in body:
            message["components"] = copy.deepcopy(body["components"] or [])
        if "flags" in body and body["flags"] is not None:
            keep = message["flags"] & (_FLAG_EPHEMERAL | _FLAG_HAS_THREAD | _FLAG_VOICE_MESSAGE)
            message["flags"] = int(body["flags"]) | keep
        if "attachments" in body:
            kept = {str(a.get("id")) for a in body["attachments"] or [] if isinstance(a, dict)}
            message["attachments"] = [a for a in message["attachments"] if a["id"] in kept]
        if call.files:
            message["attachments"] += self._attachments_from(message["channel_id"], call)
        message["flags"] &= ~_FLAG_LOADING
        message["edited_timestamp"] = _iso(int(time.time() * 1000))

    def _announce_update(self, message: dict[str, Any]) -> None:
        channel = self.channels.get(message["channel_id"]) or {}
        if not message["flags"] & _FLAG_EPHEMERAL:
            payload = self._gateway_message(message, channel.get("guild_id"))
            self._broadcast("MESSAGE_UPDATE", payload)

    def _edit_message(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        channel = self._channel(p["channel_id"])
        message = self._message_in(p["channel_id"], p["message_id"])
        body = call.json if isinstance(call.json, dict) else {}
        if message["author"]["id"] != BOT_USER_ID and set(body) - {"flags"}:
            raise _error(403, 50005, "Cannot edit a message authored by another user")
        if channel["type"] in _THREAD_TYPES and channel["thread_metadata"]["archived"]:
            raise _error(400, 50083, "Thread is archived")
        self._validate_message_body(body, creating=False, files=len(call.files))
        self._apply_edit(message, body, call)
        self._announce_update(message)
        return 200, copy.deepcopy(message)

    def _remove_message(self, message: dict[str, Any]) -> None:
        channel = self.channels.get(message["channel_id"]) or {}
        del self._messages[message["channel_id"]][message["id"]]
        data = {"id": message["id"], "channel_id": message["channel_id"]}
        if channel.get("guild_id"):
            data["guild_id"] = channel["guild_id"]
        if not message["flags"] & _FLAG_EPHEMERAL:
            self._broadcast("MESSAGE_DELETE", data)

    def _delete_message(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        channel = self._channel(p["channel_id"])
        message = self._message_in(p["channel_id"], p["message_id"])
        if channel["type"] in _THREAD_TYPES and channel["thread_metadata"]["archived"]:
            raise _error(400, 50083, "Thread is archived")
        self._remove_message(message)
        return 204, None

    @staticmethod
    def _thread_name(body: dict[str, Any]) -> str:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _invalid(["name"], "BASE_TYPE_REQUIRED", "This field is required")
        if len(name) > 100:
            raise _invalid(["name"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        return name

    def _start_thread_from_message(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        channel = self._channel(p["channel_id"])
        if channel["type"] not in _MESSAGE_PARENT_TYPES:
            raise _error(400, 50024, "Cannot execute action on this channel type")
        message = self._message_in(p["channel_id"], p["message_id"])
        body = call.json if isinstance(call.json, dict) else {}
        name = self._thread_name(body)
        if message.get("thread") is not None or message["id"] in self.channels:
            raise _error(400, 160004, "A thread has already been created for this message")
        thread_type = _ANNOUNCEMENT_THREAD if channel["type"] == _ANNOUNCEMENT else _PUBLIC_THREAD
        thread = self._make_thread(
            channel["id"],
            name,
            thread_id=message["id"],
            type_=thread_type,
            owner_id=BOT_USER_ID,
            auto_archive_duration=int(body.get("auto_archive_duration") or 1440),
        )
        if body.get("rate_limit_per_user"):
            thread["rate_limit_per_user"] = int(body["rate_limit_per_user"])
        self._edits.setdefault(message["id"], []).append(copy.deepcopy(message))
        message["thread"] = {k: copy.deepcopy(v) for k, v in thread.items() if k != "member"}
        message["flags"] |= _FLAG_HAS_THREAD
        self._broadcast("THREAD_CREATE", {**copy.deepcopy(thread), "newly_created": True})
        self._announce_update(message)
        return 201, copy.deepcopy(thread)

    def _start_thread(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        channel = self._channel(p["channel_id"])
        body = call.json if isinstance(call.json, dict) else {}
        if channel["type"] == _FORUM:
            starter = body.get("message")
            if not isinstance(starter, dict):
                raise _invalid(["message"], "BASE_TYPE_REQUIRED", "This field is required")
            name = self._thread_name(body)
            self._validate_message_body(starter, creating=True, files=len(call.files))
            thread = self._make_thread(
                channel["id"],
                name,
                thread_id=None,
                type_=_PUBLIC_THREAD,
                owner_id=BOT_USER_ID,
                auto_archive_duration=int(body.get("auto_archive_duration") or 1440),
            )
            thread["applied_tags"] = [str(t) for t in body.get("applied_tags") or []]
            self._broadcast("THREAD_CREATE", {**copy.deepcopy(thread), "newly_created": True})
            # The starter message's id is the thread's id.
            message = self._new_bot_message(thread, starter, call, message_id=thread["id"])
            answer = copy.deepcopy(thread)
            answer["message"] = copy.deepcopy(message)
            return 201, answer
        if channel["type"] not in _MESSAGE_PARENT_TYPES:
            raise _error(400, 50024, "Cannot execute action on this channel type")
        if "message" in body:
            raise _invalid(["message"], "BASE_TYPE_BAD_VALUE", "Not allowed for this channel")
        name = self._thread_name(body)
        thread_type = int(body.get("type") or _PRIVATE_THREAD)
        if thread_type not in _THREAD_TYPES:
            raise _invalid(["type"], "BASE_TYPE_CHOICES", "Value must be one of {10, 11, 12}.")
        thread = self._make_thread(
            channel["id"],
            name,
            thread_id=None,
            type_=thread_type,
            owner_id=BOT_USER_ID,
            auto_archive_duration=int(body.get("auto_archive_duration") or 1440),
            invitable=bool(body.get("invitable", True)),
        )
        self._broadcast("THREAD_CREATE", {**copy.deepcopy(thread), "newly_created": True})
        return 201, copy.deepcopy(thread)

    def _join_thread(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        thread = self._channel(p["channel_id"])
        if thread["type"] not in _THREAD_TYPES:
            raise _error(400, 50024, "Cannot execute action on this channel type")
        if thread["thread_metadata"]["archived"]:
            raise _error(400, 50083, "Thread is archived")
        if "member" not in thread:
            thread["member"] = self._thread_member(thread["id"])
            thread["member_count"] += 1
        return 204, None

    def _leave_thread(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        thread = self._channel(p["channel_id"])
        if thread["type"] not in _THREAD_TYPES:
            raise _error(400, 50024, "Cannot execute action on this channel type")
        if thread.pop("member", None) is not None:
            thread["member_count"] -= 1
        return 204, None

    def _typing(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        channel = self._channel(p["channel_id"])
        if channel["type"] == _FORUM:
            raise _error(400, 50024, "Cannot execute action on this channel type")
        return 204, None

    @staticmethod
    def _check_emoji(emoji: str) -> dict[str, Any]:
        """The emoji object for a reaction path segment: "👍" or "name:id" (Discord rejects
        names such as "thumbsup" or ":thumbsup:" with 10014 Unknown Emoji)."""
        if _CUSTOM_EMOJI_RE.match(emoji):
            name, _, emoji_id = emoji.rpartition(":")
            return {"id": emoji_id, "name": name.removeprefix("a:").lstrip(":")}
        if not emoji or all(ch.isascii() for ch in emoji):
            raise _error(400, 10014, "Unknown Emoji")
        return {"id": None, "name": emoji}

    def _add_reaction(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        channel = self._channel(p["channel_id"])
        message = self._message_in(p["channel_id"], p["message_id"])
        emoji = self._check_emoji(p["emoji"])
        if channel["type"] in _THREAD_TYPES and channel["thread_metadata"]["archived"]:
            raise _error(400, 50083, "Thread is archived")
        reactions = message.setdefault("reactions", [])
        reaction = next((r for r in reactions if r["emoji"] == emoji), None)
        if reaction is None:
            reaction = {
                "emoji": emoji,
                "count": 0,
                "count_details": {"burst": 0, "normal": 0},
                "me": False,
                "me_burst": False,
                "burst_colors": [],
                "users": [],
            }
            reactions.append(reaction)
        if BOT_USER_ID not in reaction["users"]:
            reaction["users"].append(BOT_USER_ID)
            reaction["count"] += 1
            reaction["count_details"]["normal"] += 1
            reaction["me"] = True
            data: dict[str, Any] = {
                "user_id": BOT_USER_ID,
                "channel_id": channel["id"],
                "message_id": message["id"],
                "emoji": emoji,
                "burst": False,
                "type": 0,
                "message_author_id": message["author"]["id"],
            }
            if channel.get("guild_id"):
                data["guild_id"] = channel["guild_id"]
                data["member"] = copy.deepcopy(self._member(channel["guild_id"], BOT_USER_ID))
            self._broadcast("MESSAGE_REACTION_ADD", data)
        return 204, None

    def _remove_reaction(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        channel = self._channel(p["channel_id"])
        message = self._message_in(p["channel_id"], p["message_id"])
        emoji = self._check_emoji(p["emoji"])
        user_id = p.get("user_id", BOT_USER_ID)
        reactions = message.get("reactions", [])
        reaction = next((r for r in reactions if r["emoji"] == emoji), None)
        if reaction is not None and user_id in reaction["users"]:
            reaction["users"].remove(user_id)
            reaction["count"] -= 1
            reaction["count_details"]["normal"] -= 1
            reaction["me"] = BOT_USER_ID in reaction["users"]
            if not reaction["count"]:
                reactions.remove(reaction)
            data: dict[str, Any] = {
                "user_id": user_id,
                "channel_id": channel["id"],
                "message_id": message["id"],
                "emoji": emoji,
                "burst": False,
                "type": 0,
            }
            if channel.get("guild_id"):
                data["guild_id"] = channel["guild_id"]
            self._broadcast("MESSAGE_REACTION_REMOVE", data)
        return 204, None

    # -- interactions ----------------------------------------------------------------------------

    def _interaction(self, token: str, interaction_id: str | None = None) -> _Interaction:
        interaction = self._interactions_by_token.get(token)
        if interaction is None or (interaction_id is not None and interaction.id != interaction_id):
            raise _error(404, 10062, "Unknown interaction")
        return interaction

    def _interaction_callback(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        interaction = self._interaction(p["interaction_token"], p["interaction_id"])
        body = call.json if isinstance(call.json, dict) else {}
        if interaction.responded:
            raise _error(400, 40060, "Interaction has already been acknowledged.")
        timeout = self.interaction_timeout
        if timeout is not None and time.monotonic() - interaction.created > timeout:
            raise _error(404, 10062, "Unknown interaction")
        kind = body.get("type")
        raw_data = body.get("data")
        data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
        channel = self._channel(interaction.channel_id)
        message: dict[str, Any] | None = None
        if kind == 4:  # CHANNEL_MESSAGE_WITH_SOURCE
            self._validate_message_body(data, creating=True, files=len(call.files))
            message = self._interaction_message(interaction, channel, data, call, 0)
        elif kind == 5:  # DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE ("thinking...")
            flags = int(data.get("flags") or 0) & _FLAG_EPHEMERAL
            flags |= _FLAG_LOADING
            message = self._interaction_message(interaction, channel, {}, call, flags)
        elif kind == 6:  # DEFERRED_UPDATE_MESSAGE
            interaction.original_message_id = interaction.message_id
        elif kind == 7:  # UPDATE_MESSAGE
            target = self._find_message(interaction.message_id or "")
            if target is None:
                raise _unknown_message()
            self._validate_message_body(data, creating=False, files=len(call.files))
            self._apply_edit(target, data, call)
            self._announce_update(target)
            interaction.original_message_id = target["id"]
            message = target
        elif kind not in (1, 8, 9, 10, 12):
            raise _invalid(
                ["type"], "BASE_TYPE_CHOICES", "Value must be one of {1, 4, 5, 6, 7, 8, 9, 10, 12}."
            )
        interaction.responded = True
        self.interaction_responses.append(
            {
                "interaction_id": interaction.id,
                "type": kind,
                "data": copy.deepcopy(data),
                "message_id": message["id"] if message else None,
            }
        )
        if call.query.get("with_response") not in ("1", "true", "True"):
            return 204, None
        answer: dict[str, Any] = {
            "interaction": {
                "id": interaction.id,
                "type": 3,
                "response_message_id": message["id"] if message else None,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(message and message["flags"] & _FLAG_EPHEMERAL),
            },
        }
        if message is not None:
            answer["resource"] = {"type": kind, "message": copy.deepcopy(message)}
        elif kind is not None:
            answer["resource"] = {"type": kind}
        return 200, answer

    def _interaction_message(
        self,
        interaction: _Interaction,
        channel: dict[str, Any],
        data: dict[str, Any],
        call: DiscordCall,
        flags: int,
    ) -> dict[str, Any]:
        content_data = dict(data)
        message = self._new_bot_message(channel, content_data, call, extra_flags=flags)
        message["webhook_id"] = self.application_id
        message["application_id"] = self.application_id
        message["interaction_metadata"] = {
            "id": interaction.id,
            "type": 3,
            "user": copy.deepcopy(self.users[interaction.user_id]),
            "authorizing_integration_owners": {"0": channel.get("guild_id") or ""},
            "interacted_message_id": interaction.message_id,
        }
        interaction.original_message_id = message["id"]
        return message

    def _followup(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        if p["application_id"] != self.application_id:
            raise _error(404, 10015, "Unknown Webhook")
        interaction = self._interaction(p["interaction_token"])
        if not interaction.responded:
            raise _error(404, 10015, "Unknown Webhook")
        body = call.json if isinstance(call.json, dict) else {}
        self._validate_message_body(body, creating=True, files=len(call.files))
        channel = self._channel(interaction.channel_id)
        message = self._interaction_message(interaction, channel, body, call, 0)
        interaction.original_message_id = interaction.original_message_id or message["id"]
        if call.query.get("wait") in ("1", "true", "True"):
            return 200, copy.deepcopy(message)
        return 204, None

    def _webhook_target(self, p: dict[str, str]) -> dict[str, Any]:
        if p["application_id"] != self.application_id:
            raise _error(404, 10015, "Unknown Webhook")
        interaction = self._interaction(p["interaction_token"])
        message_id = p["message_id"]
        if message_id == "@original":
            if not interaction.responded or interaction.original_message_id is None:
                raise _unknown_message()
            message_id = interaction.original_message_id
        message = self._find_message(message_id)
        if message is None:
            raise _unknown_message()
        return message

    def _get_webhook_message(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        return 200, copy.deepcopy(self._webhook_target(p))

    def _edit_webhook_message(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        message = self._webhook_target(p)
        body = call.json if isinstance(call.json, dict) else {}
        self._validate_message_body(body, creating=False, files=len(call.files))
        self._apply_edit(message, body, call)
        self._announce_update(message)
        return 200, copy.deepcopy(message)

    def _delete_webhook_message(self, p: dict[str, str], call: DiscordCall) -> tuple[int, Any]:
        self._remove_message(self._webhook_target(p))
        return 204, None
