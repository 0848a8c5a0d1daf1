"""The Slack adapter: slack-bolt (async) on `POST /slack/events`, or over Socket Mode.

Over HTTP, each request's signature and timestamp are verified (401 otherwise); Socket Mode
(`SLACK_APP_TOKEN`) needs no public URL: the app token authenticates a websocket that bothub
opens to Slack. Either way bolt acknowledges within
Slack's 3 seconds; the answer is worked out after the ack. A delivery Slack retries
(`X-Slack-Retry-Num`), or the `message` twin of an `app_mention`, carries the same message ts,
which the engine stores once: a restart does not forget it, so no question is answered twice.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from slack_bolt import BoltResponse
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.starlette.async_handler import (
    to_async_bolt_request,
    to_starlette_response,
)
from slack_bolt.async_app import AsyncApp
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from adapters.base import DestinationUnavailable, InFlight
from adapters.health import LinkHealth
from adapters.http import parse_json, read_capped
from adapters.slack import escalations, files, inbound, render
from adapters.slack.channel import NativeStreaming, SlackReplyChannel, adopt_earlier_answer
from adapters.slack.escalations import SlackOutlet
from adapters.slack.inbound import Workspace
from bot.engine import Engine
from bot.escalation.store import Actor
from bot.model import Author, Message
from bot.store.inbox import Journal
from bot.store.repository import StorageUnavailable

log = structlog.get_logger(__name__)


# Slack's own payloads are a few KiB; the largest (a modal's whole view with its state, sent
# form-encoded, where one non-ASCII character can take 9 bytes) stay well below this. Larger
# than the web chat's and Teams' 512 KiB for that headroom, and still refused before the
# signature is checked, so an unauthenticated client cannot make us buffer what it sends.
MAX_BODY_BYTES = 1024 * 1024
# What bolt derives from a payload and uses as ids (the installation lookup, its listeners).
_CONTEXT_IDS = ("enterprise_id", "team_id", "user_id", "actor_enterprise_id", "actor_team_id",
                "actor_user_id", "channel_id", "thread_ts", "response_url")


def well_formed(body: bytes, content_type: str) -> bool:
    """What bolt can parse: JSON events, or a form whose `payload` is JSON (interactivity) or
    a slash command's fields, with the shape bolt and our listeners rely on (`well_shaped`).
    Bolt raises on anything else, which must not become a 500."""
    try:
        text = body.decode("utf-8")
        if content_type.startswith("application/x-www-form-urlencoded"):
            fields = parse_qs(text, strict_parsing=bool(text))
            if "payload" in fields:
                payload = parse_json(fields["payload"][0])
            else:
                return "command" in fields and all(_text(v) for vs in fields.values()
                                                   for v in vs)
        else:
            payload = parse_json(text)
    except (UnicodeDecodeError, ValueError):  # parse_json's NotJson is a ValueError
        return False
    return well_shaped(payload)


def _text(value: object) -> bool:
    """A string that can be stored and sent (no lone surrogates)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _optional_text(value: object) -> bool:
    return value is None or _text(value)


def _reference(value: object) -> bool:
    """`team`, `user`, `channel`, `enterprise`: an id, or an object with one (bolt reads
    `value["id"]` after `"id" in value`, so a number or a boolean makes it raise)."""
    if isinstance(value, dict):
        return all(_optional_text(value.get(key)) for key in ("id", "team_id", "enterprise_id"))
    return value is None or isinstance(value, list) or _text(value)


# Events of Slack's AI-assistant threads: bolt attaches `say`/`set_title` for them before any
# listener runs, and raises unless the event names its thread.
ASSISTANT_THREAD_EVENTS = frozenset({"assistant_thread_started",
                                     "assistant_thread_context_changed"})


def _names_its_thread(event: dict[str, Any]) -> bool:
    thread = event.get("assistant_thread")
    if isinstance(thread, dict):
        return _text(thread.get("channel_id")) and _text(thread.get("thread_ts"))
    return event.get("channel") is not None and event.get("thread_ts") is not None


def well_shaped(payload: object) -> bool:
    """The envelope of an event, an interactivity payload or a command, with fields of the
    types Slack sends where bolt (its context, authorization, listener matchers) or our
    listeners read them. A signed payload of another shape is not Slack's: a 400."""
    if not isinstance(payload, dict):
        return False
    if not all(_optional_text(payload.get(key)) for key in (
            "type", "team_id", "api_app_id", "enterprise_id", "user_id", "channel_id",
            "response_url", "context_team_id", "context_enterprise_id")):
        return False
    if not all(_reference(payload.get(key)) for key in ("team", "user", "channel",
                                                        "enterprise")):
        return False
    authorizations = payload.get("authorizations")
    if authorizations is not None and not (
            isinstance(authorizations, list)
            and all(isinstance(a, dict) and _owner(a) for a in authorizations)):
        return False
    if "event" in payload:
        event = payload["event"]
        if not (isinstance(event, dict) and _text(event.get("type")) and _owner(event)
                and all(_reference(event.get(key)) for key in ("user", "channel"))
                and all(_optional_text(event.get(key)) for key in ("user_team", "team"))):
            return False
        if event["type"] in ASSISTANT_THREAD_EVENTS and not _names_its_thread(event):
            return False
    for key in ("view", "message", "previous_message", "item", "assistant_thread"):
        if payload.get(key) is not None and not isinstance(payload[key], dict):
            return False
    view = payload.get("view")
    if isinstance(view, dict) and not all(_optional_text(view.get(key)) for key in (
            "team_id", "app_installed_team_id")):
        return False
    actions = payload.get("actions")
    if payload.get("type") in {"block_actions", "interactive_message"} and not actions:
        return False  # bolt reads the first action of these before any listener runs
    if actions is not None and not (
            isinstance(actions, list)
            and all(isinstance(a, dict) and _optional_text(a.get("action_id"))
                    and _optional_text(a.get("block_id")) for a in actions)):
        return False
    response_urls = payload.get("response_urls")
    return response_urls is None or (
        isinstance(response_urls, list)
        and all(isinstance(r, dict) and _optional_text(r.get("response_url"))
                for r in response_urls))


def _dict(value: object) -> dict[str, Any]:
    """`value` when it is an object, else an empty one (for fields a payload may mistype)."""
    return value if isinstance(value, dict) else {}


def _owner(part: dict[str, Any]) -> bool:
    """The ids of who a payload (or one of its authorizations) belongs to."""
    return all(_optional_text(part.get(key)) for key in ("team_id", "enterprise_id", "user_id"))


def bolt_request(request: Request, body: bytes) -> AsyncBoltRequest | None:
    """The request for bolt, built from the body we already read (bolt's starlette adapter
    would read it again); None when bolt cannot make sense of it (it parses the body and
    derives its context here) or derives ids that are not text."""
    try:
        built = to_async_bolt_request(request, body)
    except (UnicodeDecodeError, ValueError, RecursionError, TypeError, AttributeError,
            KeyError, IndexError):
        return None
    if not well_shaped(built.body) or not all(
            _optional_text(built.context.get(key)) for key in _CONTEXT_IDS):
        return None
    return built


class SlackAdapter:
    """One workspace (`bot_token`) or many (`oauth`: installs stored in our database)."""

    name = "slack"

    def __init__(self, engine: Engine, *, signing_secret: str | None,
                 bot_token: str | None = None, oauth: AsyncOAuthSettings | None = None,
                 app_token: str | None = None, api_url: str = "https://slack.com/api/",
                 update_interval: float = 1.0, native_streaming: bool = True) -> None:
        if (bot_token is None) == (oauth is None):
            raise ValueError("give either a bot token or OAuth settings")
        self._engine = engine
        self._update_interval = update_interval
        self._native = NativeStreaming(enabled=native_streaming)
        self._api_host = urlsplit(api_url).hostname or "slack.com"
        self.client = AsyncWebClient(token=bot_token, base_url=api_url)
        self.client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=3))
        self.app = AsyncApp(client=self.client, signing_secret=signing_secret or "",
                            request_verification_enabled=signing_secret is not None,
                            oauth_settings=oauth, process_before_response=True)
        if oauth is not None:
            # app_uninstalled / tokens_revoked delete the workspace's installation.
            self.app.enable_token_revocation_listeners()
        self.app.error(_on_bolt_error)
        self._verifier = SignatureVerifier(signing_secret) if signing_secret else None
        self._oauth = oauth is not None
        self._app_token = app_token
        self._socket: AsyncSocketModeHandler | None = None
        self._names: OrderedDict[str, str] = OrderedDict()
        self._in_flight = InFlight()
        self._link = LinkHealth(self.name)
        self.outlet = SlackOutlet(self._client_for)
        self._register()

    def router(self) -> APIRouter:
        """`POST /slack/events` when a signing secret is set (no route in Socket Mode only)."""
        router = APIRouter()
        if self._verifier is None:
            return router

        @router.post("/slack/events", include_in_schema=False)
        async def events(request: Request) -> Response:
            body = await read_capped(request, MAX_BODY_BYTES)
            if body is None:
                log.warning("slack.body_too_large")
                return JSONResponse(
                    {"error": f"the request body is larger than {MAX_BODY_BYTES} bytes"},
                    status_code=413)
            if not self._signed(body, dict(request.headers)):
                return JSONResponse({"error": "invalid signature"}, status_code=401)
            built = None
            if well_formed(body, request.headers.get("content-type", "")):
                built = bolt_request(request, body)
            if built is None:
                log.warning("slack.malformed_request", size=len(body))
                return JSONResponse({"error": "malformed request body"}, status_code=400)
            answer = await self.app.async_dispatch(built)
            return to_starlette_response(answer)

        if self._oauth:
            @router.get("/slack/install", include_in_schema=False)
            @router.get("/slack/oauth_redirect", include_in_schema=False)
            async def install(request: Request) -> Response:
                # These GETs need no body: bolt would parse whatever a client sends.
                flow = self.app.oauth_flow
                assert flow is not None
                get = to_async_bolt_request(request, b"")
                if request.url.path == flow.install_path:
                    return to_starlette_response(await flow.handle_installation(get))
                return to_starlette_response(await flow.handle_callback(get))

        return router

    def _signed(self, body: bytes, headers: dict[str, str]) -> bool:
        assert self._verifier is not None
        try:
            return self._verifier.is_valid_request(body, headers)
        # slack_sdk decodes the body as UTF-8 to sign it (other bytes cannot be Slack's), reads
        # the timestamp with int() (ValueError) and compares signatures with compare_digest,
        # which refuses non-ASCII text (TypeError): none of these was signed by Slack.
        except (UnicodeDecodeError, ValueError, TypeError):
            return False

    async def start(self) -> None:
        # One HTTP session for every Web API call, so that calls reuse kept-alive connections.
        # Without one, slack_sdk opens a session, a TCP connection (and a TLS handshake to
        # slack.com) for each call: several per answer (open, stream, finish). Bolt's
        # per-request clients take this client's session. The timeout is the client's, as
        # slack_sdk gives the sessions it opens itself, and calls are not queued behind a
        # connection limit (each had its own connection before).
        if self.client.session is None:
            self.client.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=self.client.timeout))
        if not self._oauth:
            try:  # a wrong token shows now, not at the first question
                await self.client.auth_test()
            except SlackApiError as exc:
                log.error("slack.token_rejected", error=exc.response.get("error"),
                          hint="check SLACK_BOT_TOKEN (xoxb-…)")
                self._link.error(f"bot token rejected ({exc.response.get('error')})")
        if self._app_token:
            socket = AsyncSocketModeHandler(self.app, self._app_token)
            # A bad app token would otherwise be retried quietly forever: say so once, clearly.
            try:
                await socket.client.issue_new_wss_url()
            except SlackApiError as exc:
                log.error("slack.socket_mode_unavailable", error=exc.response.get("error"),
                          hint="SLACK_APP_TOKEN must be an app-level token (xapp-…) with the "
                               "connections:write scope, and Socket Mode enabled for the app")
                self._link.error(f"Socket Mode unavailable ({exc.response.get('error')})")
                await socket.client.close()
                return
            await socket.connect_async()
            self._socket = socket
            log.info("slack.socket_mode_connected")

    async def health(self) -> dict[str, object]:
        """How events arrive (Socket Mode or HTTP) and whether that works: a socket that is
        not connected, or a token Slack rejected at start, is down."""
        mode = "socket" if self._app_token else "http"
        workspaces = "many workspaces (OAuth)" if self._oauth else "one workspace"
        if self._app_token:
            if self._socket is None:
                return self._link.report("down", "Socket Mode is not connected", mode=mode,
                                         workspaces=workspaces)
            if not await self._socket.client.is_connected():
                return self._link.report("connecting", "Socket Mode is reconnecting",
                                         mode=mode, workspaces=workspaces)
            return self._link.report("ok", "connected over Socket Mode", mode=mode,
                                     workspaces=workspaces)
        if self._link.last_error is not None:  # only set by a rejected token at start
            return self._link.report("down", "Slack rejected the bot token at start",
                                     mode=mode, workspaces=workspaces)
        return self._link.report("ok", "receiving events on POST /slack/events", mode=mode,
                                 workspaces=workspaces)

    async def stop(self) -> None:
        """Stop taking events, then let answers in progress finish: their questions were
        already acknowledged."""
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        await self._in_flight.drain()
        session, self.client.session = self.client.session, None
        if session is not None:
            await session.close()

    def _register(self) -> None:
        self.app.use(_NoteEvent(self._link))
        self.app.event("app_mention")(self._on_mention)
        self.app.event("message")(self._on_message)
        self.app.command("/ask")(self._on_ask)
        self.app.action(re.compile(f"^({render.FEEDBACK_UP}|{render.FEEDBACK_DOWN})$"))(
            self._on_feedback)
        self.app.action(render.HANDOFF)(self._on_handoff)
        self.app.action(re.compile(f"^{escalations.ACTION_PREFIX}"))(self._on_escalation_action)
        # Anything else Slack sends (other event types this app may be subscribed to) is
        # acknowledged and ignored, so that Slack does not retry it or disable the app.
        self.app.event(re.compile(".*"))(self._ignore)

    async def _ignore(self, body: dict[str, Any]) -> None:
        log.debug("slack.ignored_event", type=_dict(body.get("event")).get("type"))

    # Listeners run before Slack is acknowledged (`process_before_response`): a question is
    # stored in the inbox first, then acknowledged, then answered in the background. Anything
    # slow that is not a question (agents' commands, button clicks) runs after the ack.

    async def _on_mention(self, event: dict[str, Any], body: dict[str, Any], client: Any,
                          context: Any) -> None:
        workspace = _workspace(context)
        if self._foreign(body, workspace) or not inbound.is_answerable(event, workspace):
            return
        if self._in_human_channel(event):
            self._in_flight.spawn(self._desk_mention(event, workspace, client, context))
            return
        await self._accept(event, workspace, client, context)

    async def _desk_mention(self, event: dict[str, Any], workspace: Workspace, client: Any,
                            context: Any) -> None:
        if not await self._agent_command(event, workspace, client):
            await self._accept(event, workspace, client, context)

    async def _on_message(self, event: dict[str, Any], body: dict[str, Any], client: Any,
                          context: Any) -> None:
        workspace = _workspace(context)
        if self._foreign(body, workspace) or not inbound.is_answerable(event, workspace):
            return
        if event.get("channel_type") == "im":
            await self._accept(event, workspace, client, context)
            return
        if inbound.mentions_bot(event, workspace):
            return  # its app_mention event answers it
        if event.get("thread_ts"):
            if self._in_human_channel(event):
                self._in_flight.spawn(self._agent_reply(event, workspace, client))
                return
            # A follow-up without a mention, in a thread the bot already talks in.
            key = inbound.conversation_key(event, workspace)
            try:
                known = await self._engine.conversation_exists(key)
            except StorageUnavailable:
                known = False
            if known:
                await self._accept(event, workspace, client, context)

    def _in_human_channel(self, event: dict[str, Any]) -> bool:
        desk = self._engine.desk
        return desk is not None and desk.is_human_channel("slack", str(event.get("channel")))

    def _foreign(self, body: dict[str, Any], workspace: Workspace) -> bool:
        team = body.get("team_id")
        if team and team != workspace.team_id:
            log.warning("slack.foreign_workspace", team_id=team)
            return True
        return False

    def _reply_channel(self, client: Any, channel: str, thread_ts: str, *, team: str,
                       user: str, journal: Journal | None = None) -> SlackReplyChannel:
        return SlackReplyChannel(client, channel, thread_ts,
                                 update_interval=self._update_interval, recipient=(team, user),
                                 native=self._native, journal=journal)

    async def _accept(self, event: dict[str, Any], workspace: Workspace, client: Any,
                      context: Any) -> None:
        """Store the question with where to answer it, then answer after the ack."""
        message = inbound.to_message(
            event, workspace,
            display_name=await self._user_name(client, workspace, str(event.get("user"))),
            channel_name=await self._channel_name(client, workspace, event),
            fetcher=files.fetcher(str(context.bot_token or ""), {self._api_host}))
        await self._accept_message(message, client, str(event["channel"]), workspace.team_id)

    async def _accept_message(self, message: Message, client: Any, channel: str,
                              team: str) -> None:
        # `after`: the question's own ts (its answer comes after it in the thread)
        route = {"channel": channel, "thread_ts": message.key.thread, "team": team,
                 "user": message.author.id, "after": message.id}
        accepted = await self._engine.accept(message, route=route)
        self._in_flight.spawn(self._engine.respond(accepted, self._reply_channel(
            client, channel, message.key.thread, team=team, user=message.author.id,
            journal=accepted.journal)))

    async def resume(self, route: Mapping[str, Any], journal: Journal) -> SlackReplyChannel | None:
        """A reply channel into the thread a question came from, for the inbox's retries."""
        try:
            client = await self._client_for(str(route.get("team") or "") or None)
        except DestinationUnavailable as exc:
            log.warning("slack.resume_unreachable", reason=str(exc))
            return None
        channel, thread_ts = str(route["channel"]), str(route["thread_ts"])
        await adopt_earlier_answer(client, channel, thread_ts, journal,
                                   after=str(route.get("after") or ""),
                                   others=await journal.others())
        return self._reply_channel(client, channel, thread_ts,
                                   team=str(route.get("team") or ""),
                                   user=str(route.get("user") or ""), journal=journal)

    async def _on_ask(self, ack: Any, command: dict[str, Any], respond: Any, client: Any,
                      context: Any) -> None:
        question = str(command.get("text") or "").strip()
        if not question:
            await ack("Ask a question after the command, like "
                      "`/ask how do I reset my password?`")
            return
        await ack()
        self._in_flight.spawn(self._ask(question, command, respond, client, context))

    async def _ask(self, question: str, command: dict[str, Any], respond: Any, client: Any,
                   context: Any) -> None:
        workspace = _workspace(context)
        if command.get("team_id") not in (None, workspace.team_id):
            await _respond(respond, "This app is not set up for this workspace.")
            return
        user = str(command.get("user_id") or "")
        channel_id = str(command.get("channel_id") or "")
        poster = self._reply_channel(client, channel_id, "", team=workspace.team_id, user=user)
        root = await poster.send(f"*<@{user}> asked:* {render.escape(question)}",
                                 thread_ts=None)
        if root is None:
            await _respond(respond, "I can't post in this channel. Invite me with "
                           "`/invite @bothub`, or ask me in a direct message.")
            return
        message = inbound.command_message(
            command, workspace, thread_ts=root,
            display_name=await self._user_name(client, workspace, user),
            channel_name=str(command.get("channel_name") or ""))
        await self._accept_message(message, client, channel_id, workspace.team_id)

    async def _on_feedback(self, ack: Any, body: dict[str, Any],
                           action: dict[str, Any]) -> None:
        await ack()
        self._in_flight.spawn(self._feedback(body, action))

    async def _feedback(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        user = str(_dict(body.get("user")).get("id") or "")
        helpful = action.get("action_id") == render.FEEDBACK_UP
        try:
            recorded = await self._engine.record_feedback(str(action.get("value") or ""), user,
                                                          helpful=helpful)
        except StorageUnavailable as exc:
            log.error("slack.feedback_not_saved", reason=exc.reason)
            return
        log.info("slack.feedback", user=user, helpful=helpful, recorded=recorded)

    # -- escalations ----------------------------------------------------------------------------

    async def _client_for(self, team_id: str | None) -> AsyncWebClient:
        """The client for a workspace: the one bot token, or the workspace's installation
        (the latest installation when no workspace is named)."""
        if not self._oauth:
            return self.client
        store = self.app.installation_store
        bot = await store.async_find_bot(enterprise_id=None, team_id=team_id) if store else None
        if bot is None or not bot.bot_token:
            raise DestinationUnavailable(f"bothub is not installed in Slack team {team_id}")
        return AsyncWebClient(token=bot.bot_token, base_url=self.client.base_url,
                              session=self.client.session)

    async def _agent(self, client: Any, workspace: Workspace, user_id: str) -> Actor:
        return Actor(user_id, await self._user_name(client, workspace, user_id), "slack")

    async def _agent_command(self, event: dict[str, Any], workspace: Workspace,
                             client: Any) -> bool:
        """`@bot claim|release|resolve [n] [save]`: answered in place; True when it was one."""
        desk = self._engine.desk
        if desk is None:
            return False
        text = inbound.strip_bot_mention(str(event.get("text") or ""), workspace.bot_user_id)
        agent = await self._agent(client, workspace, str(event.get("user")))
        try:
            answer = await desk.command(text, agent, channel=str(event.get("channel")),
                                        thread=event.get("thread_ts"))
        except StorageUnavailable as exc:
            log.error("slack.escalation_command_failed", reason=exc.reason)
            answer = "Sorry, I can't reach the escalation queue right now. Please try again."
        if answer is None:
            return False
        await self._say(client, str(event["channel"]), str(event.get("thread_ts") or event["ts"]),
                        answer)
        return True

    async def _agent_reply(self, event: dict[str, Any], workspace: Workspace,
                           client: Any) -> bool:
        """A message in an escalation's thread: the desk relays it where it must."""
        desk = self._engine.desk
        if desk is None:
            return False
        agent = await self._agent(client, workspace, str(event.get("user")))
        try:
            return await desk.agent_message(agent, str(event.get("text") or ""),
                                            thread=str(event["thread_ts"]))
        except StorageUnavailable as exc:
            log.error("slack.agent_reply_not_relayed", reason=exc.reason)
            return False

    async def _on_escalation_action(self, ack: Any, body: dict[str, Any],
                                    action: dict[str, Any], client: Any,
                                    context: Any) -> None:
        await ack()
        self._in_flight.spawn(self._escalation_action(body, action, client, context))

    async def _escalation_action(self, body: dict[str, Any], action: dict[str, Any],
                                 client: Any, context: Any) -> None:
        desk = self._engine.desk
        value = str(action.get("value") or "")
        if desk is None or not value.isdigit():
            return
        verb = str(action.get("action_id") or "").removeprefix(escalations.ACTION_PREFIX)
        user = str(_dict(body.get("user")).get("id") or "")
        agent = await self._agent(client, _workspace(context), user)
        try:
            answer = await desk.act(int(value), "resolve" if verb.startswith("resolve") else verb,
                                    agent, save=verb == "resolve_save")
        except StorageUnavailable as exc:
            log.error("slack.escalation_action_failed", reason=exc.reason)
            answer = "Sorry, I can't reach the escalation queue right now. Please try again."
        channel = str(_dict(body.get("channel")).get("id") or "")
        await self._whisper(client, channel, user, answer)

    async def _on_handoff(self, ack: Any, body: dict[str, Any], action: dict[str, Any],
                          client: Any, context: Any) -> None:
        await ack()
        self._in_flight.spawn(self._handoff(body, action, client, context))

    async def _handoff(self, body: dict[str, Any], action: dict[str, Any], client: Any,
                       context: Any) -> None:
        user = str(_dict(body.get("user")).get("id") or "")
        workspace = _workspace(context)
        author = Author(user, await self._user_name(client, workspace, user))
        try:
            answer = await self._engine.request_human(str(action.get("value") or ""), author)
        except StorageUnavailable as exc:
            log.error("slack.handoff_failed", reason=exc.reason)
            answer = "Sorry, I can't reach our support team's queue right now."
        channel = str(_dict(body.get("channel")).get("id") or "")
        await self._whisper(client, channel, user, answer)

    async def _say(self, client: Any, channel: str, thread_ts: str, text: str) -> None:
        try:
            await client.chat_postMessage(channel=channel, thread_ts=thread_ts,
                                          text=render.to_mrkdwn(text))
        except SlackApiError as exc:
            log.warning("slack.post_failed", channel=channel, error=exc.response.get("error"))

    async def _whisper(self, client: Any, channel: str, user: str, text: str) -> None:
        """An answer only the clicking user sees."""
        if not channel or not user:
            return
        try:
            await client.chat_postEphemeral(channel=channel, user=user,
                                            text=render.to_mrkdwn(text))
        except SlackApiError as exc:
            log.warning("slack.ephemeral_failed", error=exc.response.get("error"))

    async def _user_name(self, client: Any, workspace: Workspace, user_id: str) -> str:
        async def lookup() -> str:
            user = (await client.users_info(user=user_id))["user"]
            profile = user.get("profile") or {}
            return str(profile.get("display_name") or user.get("real_name") or user.get("name")
                       or "")

        return await self._cached(f"{workspace.team_id}:u:{user_id}", lookup)

    async def _channel_name(self, client: Any, workspace: Workspace,
                            event: dict[str, Any]) -> str:
        if event.get("channel_type") == "im":
            return ""

        async def lookup() -> str:
            info = await client.conversations_info(channel=str(event["channel"]))
            return str(info["channel"].get("name") or "")

        return await self._cached(f"{workspace.team_id}:c:{event['channel']}", lookup)

    async def _cached(self, key: str, lookup: Callable[[], Awaitable[str]]) -> str:
        if key in self._names:
            self._names.move_to_end(key)
            return self._names[key]
        try:
            name = await lookup()
        except SlackApiError as exc:
            log.info("slack.lookup_failed", key=key, error=exc.response.get("error"))
            name = ""
        self._names[key] = name
        if len(self._names) > 5000:
            self._names.popitem(last=False)
        return name


class _NoteEvent(AsyncMiddleware):
    """Every verified request, over HTTP or Socket Mode, counted by kind and noted for
    `health`. A class, not a function: bolt builds a function middleware's arguments from the
    payload (`action`, ...) and raises on a malformed one before any listener could refuse it."""

    def __init__(self, link: LinkHealth) -> None:
        self._link = link

    async def async_process(self, *, req: AsyncBoltRequest, resp: BoltResponse,
                            next: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse:
        self._link.event(inbound.event_kind(req.body))
        return await next()


async def _on_bolt_error(error: Exception, request: AsyncBoltRequest,
                         logger: logging.Logger) -> BoltResponse | None:
    """Bolt's error handler (its middleware's and its listeners'). OAuth mode: bolt tells a
    workspace it has no installation for so through the payload's response_url, before it
    answers the request; when that URL fails, the request still gets the answer bolt would
    have given (200, empty), not a 500, and Slack does not retry it."""
    if isinstance(error, aiohttp.ClientError | TimeoutError) \
            and request.context.authorize_result is None:
        log.warning("slack.respond_failed", error=repr(error), team_id=request.context.team_id)
        return BoltResponse(status=200, body="")
    logger.exception(f"Failed to handle a Slack request (error: {error})")  # as bolt would
    return None


async def _respond(respond: Any, text: str) -> None:
    """Answer through a command's response_url, after the ack: a failure there (Slack's URL
    expired, or a payload's URL that does not work) is logged, not left in a dead task."""
    try:
        await respond(text)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.warning("slack.respond_failed", error=repr(exc))


def _workspace(context: Any) -> Workspace:
    """The workspace our token belongs to, and the bot's user there, from bolt's authorize
    (not from the request, which names whatever team its sender claims)."""
    authorized = context.authorize_result
    team = (authorized.team_id if authorized is not None else None) or context.team_id
    bot_user = (authorized.bot_user_id if authorized is not None else None) or \
        context.bot_user_id
    return Workspace(team_id=str(team or ""), bot_user_id=str(bot_user or ""))
