"""The Microsoft Teams adapter: Bot Framework activities on `POST /api/messages`.

Each request's JWT is verified by botbuilder (401 without work otherwise) unless no
`MICROSOFT_APP_ID` is set, which is for a local Bot Framework Emulator only and says so loudly.
Messages are acknowledged at once and answered in the background (Bot Framework gives a bot
15 seconds to answer the HTTP request); an invoke (an Adaptive Card button) is answered in the
HTTP response. In channels and group chats the bot answers when @-mentioned, in 1:1 chats
always. Bot Framework redelivers an activity with the same id, which the engine stores once.

Escalations (see `escalations`): agents act in the human channel with the card's buttons or by
@-mentioning the bot (`claim 12`, or `resolve` in the escalation's reply chain); what they write
in that reply chain is the desk's, not a question for the bot.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from adapters.base import DestinationUnavailable, InFlight
from adapters.health import LinkHealth
from adapters.http import NotJson, parse_json, read_capped
from adapters.teams import escalations, inbound, render
from adapters.teams.channel import ResumedTeamsChannel, TeamsReplyChannel
from adapters.teams.escalations import TeamsOutlet
from adapters.teams.proactive import Proactive
from adapters.teams.references import TeamsConversations
from adapters.teams.wiring import (
    AuthUnavailable,
    BadActivity,
    BotFrameworkConnection,
    ConnectorError,
    InvokeReply,
    NotAuthorized,
    Turn,
)
from bot.engine import Engine
from bot.escalation.store import Actor
from bot.model import Author, Message
from bot.store.inbox import Journal
from bot.store.repository import StorageUnavailable

log = structlog.get_logger(__name__)

# A message is acknowledged once its question is in the inbox; this long at most (Bot Framework
# retries a request that takes more than about 15 seconds).
ACCEPT_SECONDS = 10.0
# Set in each turn's task: the event `_receive` waits for before it answers the HTTP request.
_ACCEPTED: ContextVar[asyncio.Event | None] = ContextVar("teams_accepted", default=None)
MAX_BODY_BYTES = 512 * 1024  # Teams activities are far smaller; attachments travel as URLs
# The hosts of Microsoft's Bot Framework connectors (Teams, the Bot Framework Service and the
# government and China clouds). A bot may call only these unless told otherwise.
MICROSOFT_HOSTS = ("smba.trafficmanager.net", "botframework.com", "teams.microsoft.com",
                   "teams.microsoft.us", "botframework.azure.us", "botframework.azure.cn")
LOOPBACK = {"localhost", "127.0.0.1", "::1"}
WELCOME = ("Hi, I'm {name}. Ask me anything about our products and I'll answer from our "
           "documentation. In channels and group chats, @-mention me with your question.")
THANKS = "Thanks for the feedback!"
QUEUE_DOWN = "Sorry, I can't reach the escalation queue right now. Please try again."
# Teams waits a few seconds for an invoke's answer; slower work goes on and the card says so.
INVOKE_SECONDS = 4.0
WORKING = "Working on it… the escalation's post will show the outcome."


class ServiceUrls:
    """Which connectors replies may go to: Microsoft's by default, loopback (the Emulator) when
    authentication is off, or the prefixes in `TEAMS_ALLOWED_SERVICE_URLS`. Without this an
    unauthenticated activity could make the bot send requests anywhere."""

    def __init__(self, configured: str, *, auth_enabled: bool) -> None:
        self._prefixes = [p if p.endswith("/") else p + "/"
                          for p in (part.strip() for part in configured.split(",")) if p]
        self._auth_enabled = auth_enabled

    def allows(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme not in {"https", "http"} or not parts.hostname:
            return False
        if self._prefixes:
            normalized = url if url.endswith("/") else url + "/"
            return any(normalized.startswith(prefix) for prefix in self._prefixes)
        if not self._auth_enabled:
            return parts.hostname in LOOPBACK
        return parts.scheme == "https" and any(
            parts.hostname == host or parts.hostname.endswith("." + host)
            for host in MICROSOFT_HOSTS)


class TeamsAdapter:
    name = "teams"

    def __init__(self, engine: Engine, connection: BotFrameworkConnection,
                 conversations: TeamsConversations, *, service_urls: ServiceUrls,
                 default_service_url: str | None = None, update_interval: float = 1.0) -> None:
        self._engine = engine
        self._connection = connection
        self._conversations = conversations
        self._service_urls = service_urls
        self._default_service_url = default_service_url
        self._update_interval = update_interval
        self._in_flight = InFlight()
        self._link = LinkHealth(self.name)
        self._proactive = Proactive(connection, conversations, allows=service_urls.allows,
                                    default_service_url=default_service_url)
        self.outlet = TeamsOutlet(self._proactive)
        self._commands_seen: OrderedDict[str, None] = OrderedDict()

    async def start(self) -> None:
        if self._connection.auth_enabled:
            log.info("teams.ready", app_id=self._connection.credentials.app_id,
                     tenant=self._connection.credentials.tenant_id or "multi-tenant")
        else:
            log.warning("teams.auth_disabled",
                        warning="MICROSOFT_APP_ID is not set: /api/messages accepts "
                                "UNAUTHENTICATED activities, for a local Bot Framework "
                                "Emulator (replies go to loopback addresses only). For Teams, "
                                "set MICROSOFT_APP_ID and MICROSOFT_APP_PASSWORD.")

    async def health(self) -> dict[str, object]:
        """Activities arrive over HTTP, so Teams is up when the server is; without an app id
        only a local Bot Framework Emulator can talk to it."""
        if not self._connection.auth_enabled:
            return self._link.report("not_configured", "no MICROSOFT_APP_ID: only a local Bot "
                                     "Framework Emulator can connect", mode="http", auth="off")
        return self._link.report("ok", "receiving activities on POST /api/messages",
                                 mode="http", auth="on")

    async def stop(self) -> None:
        await self._in_flight.drain()

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/api/messages", include_in_schema=False)
        async def messages(request: Request) -> Response:
            return await self._receive(request)

        return router

    # -- HTTP -----------------------------------------------------------------------------------

    async def _receive(self, request: Request) -> Response:
        body = await read_capped(request, MAX_BODY_BYTES)
        if body is None:
            log.warning("teams.body_too_large")
            return _problem(413, f"the activity is larger than {MAX_BODY_BYTES} bytes")
        try:
            data = parse_json(body)
        except NotJson:
            return _problem(400, "the body is not JSON")
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            return _problem(400, "the body is not a Bot Framework activity")
        if not isinstance(_get(data, "conversation", "id"), str):
            return _problem(400, "the activity names no conversation")
        try:
            activity = self._connection.parse(data)
        except BadActivity as exc:
            log.warning("teams.malformed_activity", error=str(exc))
            return _problem(400, "the body is not a Bot Framework activity")
        try:
            identity = await self._connection.authenticate(
                request.headers.get("authorization"), activity)
        except NotAuthorized as exc:
            log.warning("teams.unauthorized", reason=str(exc))
            return _problem(401, "unauthorized")
        except AuthUnavailable as exc:
            log.error("teams.auth_unavailable", reason=str(exc))
            self._link.error("cannot verify requests: Microsoft's signing keys unavailable")
            return _problem(503, "cannot verify the request right now")
        kind = data.get("type")
        self._link.event(kind if isinstance(kind, str) else "other")
        service_url = data.get("serviceUrl")
        if not isinstance(service_url, str) or not self._service_urls.allows(service_url):
            log.warning("teams.service_url_refused", service_url=str(service_url)[:200],
                        hint="set TEAMS_ALLOWED_SERVICE_URLS if this connector is yours")
            return _problem(403, "serviceUrl is not an allowed Bot Framework connector")
        if data["type"] == "invoke":
            reply = await self._run(identity, activity, data)
            if reply is None:
                return Response(status_code=200)
            return JSONResponse(reply.body or {}, status_code=reply.status)
        # Acknowledged once a question is in the inbox (or the activity needs no answer), while
        # the answer goes on in the background.
        accepted = asyncio.Event()
        turn = self._in_flight.spawn(self._run(identity, activity, data, accepted))
        waiting = asyncio.ensure_future(accepted.wait())
        await asyncio.wait({turn, waiting}, timeout=ACCEPT_SECONDS,
                           return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        return Response(status_code=200)

    async def _run(self, identity: Any, activity: Any, body: dict[str, Any],
                   accepted: asyncio.Event | None = None) -> InvokeReply | None:
        if accepted is not None:
            _ACCEPTED.set(accepted)
        with self._in_flight.track():
            try:
                return await self._connection.run_turn(identity, activity, body, self._on_turn)
            except Exception:
                log.exception("teams.turn_failed", activity_type=getattr(activity, "type", None))
                return InvokeReply(500) if getattr(activity, "type", None) == "invoke" else None

    # -- activities -----------------------------------------------------------------------------

    async def _on_turn(self, turn: Turn) -> InvokeReply | None:
        kind = turn.activity.get("type")
        if kind == "message":
            await self._on_message(turn)
        elif kind == "invoke":
            return await self._on_invoke(turn)
        elif kind == "conversationUpdate":
            await self._on_conversation_update(turn)
        elif kind == "installationUpdate":
            await self._on_installation_update(turn)
        else:
            log.info("teams.activity_ignored", activity_type=kind)
        return None

    async def _remember(self, turn: Turn) -> None:
        activity = turn.activity
        try:
            await self._conversations.remember(turn.reference, kind=inbound.scope(activity),
                                               tenant_id=inbound.tenant(activity))
        except StorageUnavailable as exc:
            log.warning("teams.reference_not_saved", reason=exc.reason)

    async def _on_message(self, turn: Turn) -> None:
        activity = turn.activity
        sender = inbound.as_dict(activity.get("from"))
        if sender.get("id") == inbound.bot_id(activity) or not activity.get("id"):
            return
        await self._remember(turn)
        self.outlet.saw(sender)
        personal = inbound.scope(activity) == "personal"
        mentioned = inbound.mentions_bot(activity)
        if not personal and await self._for_the_desk(turn, mentioned=mentioned):
            return
        if not personal and not mentioned:
            return
        attachments = inbound.attachments(activity, turn.bearer_token)
        text = inbound.text(activity)
        if not text and not attachments and activity.get("value") is not None:
            return  # an old-style card submit, not a question
        message = Message(
            key=inbound.conversation_key(activity), id=str(activity["id"]),
            author=inbound.author(activity), text=text, attachments=attachments,
            mentioned=not personal, direct=personal,
            channel_name=inbound.channel_name(activity),
            raw={"id": activity["id"], "conversation_id": activity["conversation"]["id"]})
        accepted = await self._engine.accept(
            message, route={"conversation": str(activity["conversation"]["id"])})
        signal = _ACCEPTED.get()
        if signal is not None:
            signal.set()
        channel = TeamsReplyChannel(turn, personal=personal,
                                    update_interval=self._update_interval,
                                    journal=accepted.journal)
        await channel.typing()
        await self._engine.respond(accepted, channel)

    async def resume(self, route: Mapping[str, Any],
                     journal: Journal) -> ResumedTeamsChannel | None:
        """A reply channel into the conversation a question came from, for the inbox's
        retries (through its stored conversation reference)."""
        conversation = str(route.get("conversation") or "")
        if not conversation:
            return None
        try:
            await self._proactive.reference(conversation)
        except DestinationUnavailable as exc:
            log.warning("teams.resume_unreachable", reason=str(exc))
            return None
        return ResumedTeamsChannel(self._proactive, conversation, journal)

    async def _on_invoke(self, turn: Turn) -> InvokeReply:
        activity = turn.activity
        action = inbound.as_dict(inbound.as_dict(activity.get("value")).get("action"))
        verb = action.get("verb")
        if activity.get("name") == "adaptiveCard/action":
            if verb == render.FEEDBACK_VERB:
                return await self._on_feedback(turn, action)
            if verb == render.HANDOFF_VERB:
                return await self._on_handoff(turn, action)
            if isinstance(verb, str) and verb in escalations.VERBS:
                return await self._on_escalation_action(turn, verb, action)
        log.info("teams.invoke_ignored", name=str(activity.get("name"))[:100],
                 verb=str(verb)[:100])
        return InvokeReply(200, {"statusCode": 400, "type": "application/vnd.microsoft.error",
                                 "value": {"code": "BadRequest",
                                           "message": "This action is not known."}})

    async def _on_feedback(self, turn: Turn, action: dict[str, Any]) -> InvokeReply:
        activity = turn.activity
        data = inbound.as_dict(action.get("data"))
        user = inbound.author(activity).id
        try:
            recorded = await self._engine.record_feedback(str(data.get("ref") or ""), user,
                                                          helpful=data.get("vote") == "up")
        except StorageUnavailable as exc:
            log.error("teams.feedback_not_saved", reason=exc.reason)
            recorded = False
        text = THANKS if recorded else "Sorry, I couldn't record that feedback."
        return _card_reply(render.notice_card(text))

    async def _on_handoff(self, turn: Turn, action: dict[str, Any]) -> InvokeReply:
        """"Talk to a person" on an answer: the conversation goes to the human channel."""
        data = inbound.as_dict(action.get("data"))
        author = inbound.author(turn.activity)
        try:
            text = await self._engine.request_human(str(data.get("ref") or ""),
                                                    Author(author.id, author.display_name))
        except StorageUnavailable as exc:
            log.error("teams.handoff_failed", reason=exc.reason)
            text = "Sorry, I can't reach our support team's queue right now."
        return _card_reply(render.notice_card(text))

    # -- escalations ----------------------------------------------------------------------------

    async def _on_escalation_action(self, turn: Turn, verb: str,
                                    action: dict[str, Any]) -> InvokeReply:
        """Claim/Release/Resolve on an escalation's card. The desk edits the post for everyone;
        the clicker gets the card back at once, with the desk's answer on top (a refusal
        too: only agents may act)."""
        desk = self._engine.desk
        number = inbound.as_dict(action.get("data")).get("id")
        if isinstance(number, str) and number.isdigit() and len(number) <= 18:
            number = int(number)
        if desk is None or not isinstance(number, int) or isinstance(number, bool):
            return _card_reply(render.notice_card("This escalation is not known here."))
        self.outlet.saw(inbound.as_dict(turn.activity.get("from")))
        author = inbound.author(turn.activity)
        agent = Actor(author.id, author.display_name, self.name)
        what, save = escalations.VERBS[verb]

        async def act() -> InvokeReply:
            try:
                answer = await desk.act(number, what, agent, save=save)
                ticket = await desk.store.get(number)
            except StorageUnavailable as exc:
                log.error("teams.escalation_action_failed", reason=exc.reason)
                return _card_reply(render.notice_card(QUEUE_DOWN))
            if ticket is None:
                return _card_reply(render.notice_card(answer))
            return _card_reply(escalations.ticket_card(
                ticket, link=await desk.link(ticket.origin), notice=answer))

        task = self._in_flight.spawn(act())  # a shutdown waits for it
        try:
            return await asyncio.wait_for(asyncio.shield(task), INVOKE_SECONDS)
        except TimeoutError:
            log.warning("teams.escalation_action_slow", id=number, action=what)
            return _card_reply(render.notice_card(WORKING))

    async def _for_the_desk(self, turn: Turn, *, mentioned: bool) -> bool:
        """A channel or group chat message for the escalation desk: an agent's command to the
        bot (answered in place), or words in an escalation's reply chain (relayed to the user
        where the desk must). False: not the desk's, handle it as usual."""
        desk = self._engine.desk
        if desk is None:
            return False
        activity = turn.activity
        channel = inbound.scope(activity) == "channel"
        if not mentioned and not channel:
            return False
        thread = inbound.conversation_key(activity).thread if channel else None
        author = inbound.author(activity)
        agent = Actor(author.id, author.display_name, self.name)
        text = inbound.text(activity)
        try:
            if mentioned:
                conversation = str(inbound.as_dict(activity.get("conversation")).get("id"))
                answer = await desk.command(text, agent, channel=conversation.split(";")[0],
                                            thread=thread)
                if answer is not None:
                    if self._first_time(str(activity.get("id"))):
                        await TeamsReplyChannel(turn, personal=False).send(render.plain(answer))
                    return True
            if thread is None:
                return False
            return await desk.agent_message(agent, text, thread=thread)
        except StorageUnavailable as exc:
            log.error("teams.escalation_command_failed", reason=exc.reason)
            if mentioned:
                await TeamsReplyChannel(turn, personal=False).send(render.plain(QUEUE_DOWN))
                return True
            return False

    def _first_time(self, activity_id: str) -> bool:
        """Bot Framework redelivers an activity it thinks was lost: answer a command once
        (the desk's transitions are safe to repeat; its answer would not be)."""
        if activity_id in self._commands_seen:
            return False
        self._commands_seen[activity_id] = None
        while len(self._commands_seen) > 1000:
            self._commands_seen.popitem(last=False)
        return True

    async def _on_conversation_update(self, turn: Turn) -> None:
        activity = turn.activity
        me = inbound.bot_id(activity)
        added = [m for m in activity.get("membersAdded") or [] if isinstance(m, dict)]
        removed = [m for m in activity.get("membersRemoved") or [] if isinstance(m, dict)]
        if any(member.get("id") == me for member in removed):
            log.info("teams.bot_removed", conversation=_get(activity, "conversation", "id"))
            return
        await self._remember(turn)
        if any(member.get("id") == me for member in added):
            log.info("teams.bot_added", scope=inbound.scope(activity),
                     conversation=_get(activity, "conversation", "id"))
            name = _get(activity, "recipient", "name") or "your support assistant"
            await TeamsReplyChannel(turn, personal=False).send(
                render.plain(WELCOME.format(name=name)))

    async def _on_installation_update(self, turn: Turn) -> None:
        action = str(turn.activity.get("action") or "")
        log.info("teams.installation_update", action=action[:40],
                 conversation=_get(turn.activity, "conversation", "id"))
        if action.startswith("add"):
            await self._remember(turn)

    # -- proactive ------------------------------------------------------------------------------

    async def post_to(self, conversation_id: str, activities: list[dict[str, Any]]) -> str:
        """Post into a conversation bothub was not asked in: through the reference stored when
        the bot was added there, or `TEAMS_SERVICE_URL` for a conversation id given by hand."""
        try:
            posted = await self._proactive.send(conversation_id, activities)
        except ConnectorError as exc:
            raise DestinationUnavailable(f"Teams refused the post: {exc}") from None
        return posted[0] if posted else ""


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)  # type: ignore[assignment]
    return data


def _card_reply(card: dict[str, Any]) -> InvokeReply:
    """An invoke's answer: the card that replaces the clicked one for the clicker."""
    return InvokeReply(200, {"statusCode": 200, "type": render.ADAPTIVE_CARD, "value": card})


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
