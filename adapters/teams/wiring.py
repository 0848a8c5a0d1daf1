"""The one module that touches the Bot Framework SDK (botbuilder-core 4.17).

Microsoft ended support for the Bot Framework SDK at the end of 2025 in favour of the Microsoft
365 Agents SDK. Every botbuilder, botframework, msrest and msal import is kept here, behind a
small interface of plain dicts (activities as Bot Framework JSON), so that moving to the Agents
SDK means rewriting this module alone.

Two habits of the SDK are worked around here because they would stall the whole event loop:
its OpenID metadata download (for JWT validation) and msal's token requests use blocking
`requests` calls without a timeout. Authentication therefore runs in a worker thread, and the
bot's own token is fetched in a worker thread, kept in one msal cache per audience (the SDK
would otherwise build a new msal app, with an empty cache, for every turn) and handed to the
connector client ready-made.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

import msal
import requests
import structlog
from botbuilder.core import InvokeResponse, TurnContext
from botbuilder.integration.aiohttp import (
    CloudAdapter,
    ConfigurationBotFrameworkAuthentication,
    ConfigurationServiceClientCredentialFactory,
)
from botbuilder.schema import Activity, CallerIdConstants, ConversationReference, Entity
from botframework.connector.auth import (
    AuthenticateRequestResult,
    AuthenticationConstants,
    MicrosoftAppCredentials,
    ServiceClientCredentialsFactory,
)
from msrest.authentication import Authentication
from msrest.exceptions import ClientRequestError, DeserializationError, HttpOperationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

log = structlog.get_logger(__name__)

PUBLIC_LOGIN_URL = AuthenticationConstants.TO_CHANNEL_FROM_BOT_LOGIN_URL_PREFIX
PUBLIC_OAUTH_SCOPE = AuthenticationConstants.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE
PUBLIC_TOKEN_ISSUER = AuthenticationConstants.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER
DEFAULT_TENANT = AuthenticationConstants.DEFAULT_CHANNEL_AUTH_TENANT
MAX_RETRY_AFTER = 10.0
MEMBERS_PAGE_SIZE = 500  # the most Teams hands out per page
MAX_MEMBER_PAGES = 40  # 20,000 members: enough for any escalation channel


class NotAuthorized(Exception):
    """The request's token is missing, unsigned, forged, expired or not meant for this bot."""


class AuthUnavailable(Exception):
    """The signing keys could not be fetched: nobody can be authenticated right now."""


class BadActivity(Exception):
    """The body is JSON but not an activity the SDK can read."""


class ConnectorError(Exception):
    """The connector (Teams) refused or failed a call; `status` is None for a network failure."""

    def __init__(self, status: int | None, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class BotCredentials:
    """`app_id` None: no authentication (a local Bot Framework Emulator). `openid_metadata_url`
    and `login_url` point at another cloud's (or a test's) token service."""

    app_id: str | None = None
    password: str | None = None
    tenant_id: str | None = None
    openid_metadata_url: str | None = None
    login_url: str | None = None

    @property
    def authority(self) -> str:
        prefix = (self.login_url or PUBLIC_LOGIN_URL).rstrip("/")
        return f"{prefix}/{self.tenant_id or DEFAULT_TENANT}"


def client_credentials_token(credentials: BotCredentials, timeout: float) -> dict[str, Any]:
    """One client-credentials token request, as the hub makes them, for `bothub check`: msal's
    result (`access_token`, or `error` and `error_description`). Blocking: run it in a thread.
    With a custom login URL neither authority validation nor instance discovery is done (both
    would ask Microsoft about a foreign authority)."""
    public = credentials.login_url is None
    app = msal.ConfidentialClientApplication(
        credentials.app_id, client_credential=credentials.password,
        authority=credentials.authority, validate_authority=public,
        instance_discovery=public, timeout=timeout)
    result: dict[str, Any] = app.acquire_token_for_client(
        scopes=[f"{PUBLIC_OAUTH_SCOPE}/.default"])
    return result


@dataclass(frozen=True, slots=True)
class InvokeReply:
    status: int
    body: dict[str, Any] | None = None


def _configuration(credentials: BotCredentials) -> SimpleNamespace:
    """The configuration object botbuilder reads its settings from, by attribute name."""
    config = SimpleNamespace(APP_ID=credentials.app_id or "",
                             APP_PASSWORD=credentials.password or "")
    if credentials.tenant_id:
        config.APP_TYPE, config.APP_TENANTID = "SingleTenant", credentials.tenant_id
    if credentials.openid_metadata_url or credentials.login_url:
        # Any of these switches botbuilder to its "parameterized" mode, which needs them all.
        metadata = (credentials.openid_metadata_url
                    or AuthenticationConstants.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL)
        config.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL = metadata
        config.TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL = metadata
        config.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER = PUBLIC_TOKEN_ISSUER
        config.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE = PUBLIC_OAUTH_SCOPE
        config.TO_CHANNEL_FROM_BOT_LOGIN_URL = credentials.authority
        config.OAUTH_URL = AuthenticationConstants.OAUTH_URL
        config.CALLER_ID = CallerIdConstants.public_azure_channel.value
        config.VALIDATE_AUTHORITY = credentials.login_url is None
    return config


class _BearerToken(Authentication):  # type: ignore[misc]
    """The bot's token, fetched before the request is made: signing a request (which msrest
    does synchronously) then never waits on the network."""

    def __init__(self, app_id: str, token: str | None) -> None:
        self.microsoft_app_id = app_id
        self.token = token

    def signed_session(self, session: requests.Session | None = None) -> requests.Session:
        session = super().signed_session(session)
        if self.token:
            session.headers["Authorization"] = f"Bearer {self.token}"
        return session


class _CachedCredentialFactory(ServiceClientCredentialsFactory):  # type: ignore[misc]
    """One msal client (one token cache) per audience; tokens fetched in a worker thread."""

    def __init__(self, credentials: BotCredentials, config: SimpleNamespace) -> None:
        self._settings = credentials
        self._inner = ConfigurationServiceClientCredentialFactory(config)
        self._cache: dict[tuple[str, str, str], Authentication] = {}

    async def is_valid_app_id(self, app_id: str) -> bool:
        return bool(await self._inner.is_valid_app_id(app_id))

    async def is_authentication_disabled(self) -> bool:
        return bool(await self._inner.is_authentication_disabled())

    async def create_credentials(self, app_id: str, oauth_scope: str, login_endpoint: str,
                                 validate_authority: bool) -> Authentication:
        key = (app_id or "", oauth_scope or "", login_endpoint or "")
        credentials = self._cache.get(key)
        if credentials is None:
            credentials = await self._inner.create_credentials(
                app_id, oauth_scope, login_endpoint, validate_authority)
            if isinstance(credentials, MicrosoftAppCredentials) and self._settings.login_url \
                    and credentials.microsoft_app_id:
                # botbuilder would let msal validate a non-Microsoft authority online.
                credentials.app = msal.ConfidentialClientApplication(
                    credentials.microsoft_app_id, client_credential=self._settings.password,
                    authority=self._settings.authority, validate_authority=False,
                    instance_discovery=False)
            self._cache[key] = credentials
        if not isinstance(credentials, MicrosoftAppCredentials) \
                or not credentials.microsoft_app_id:
            return credentials  # authentication off: requests go unsigned
        token: str | None = None
        try:  # msal answers from its cache until the token is about to expire
            token = await asyncio.to_thread(credentials.get_access_token)
        except PermissionError as exc:  # the turn goes on: the question is still stored
            log.error("teams.token_refused", error=str(exc)[:300],
                      hint="check MICROSOFT_APP_ID, MICROSOFT_APP_PASSWORD and "
                           "MICROSOFT_APP_TENANT_ID")
        except (requests.RequestException, ValueError) as exc:
            log.error("teams.token_unavailable", error=f"{type(exc).__name__}: {exc}"[:300])
        return _BearerToken(credentials.microsoft_app_id, token)


class Turn:
    """One activity being handled, with the means to answer it in its conversation."""

    def __init__(self, context: TurnContext, connection: BotFrameworkConnection,
                 body: dict[str, Any] | None = None) -> None:
        self._context = context
        self._connection = connection
        # The JSON as received: the SDK's own serialization would lose entity fields.
        self.activity: dict[str, Any] = body if body is not None else \
            context.activity.serialize()
        self.reference: dict[str, Any] = TurnContext.get_conversation_reference(
            context.activity).serialize()

    async def send(self, activity: dict[str, Any]) -> str:
        """Post an activity into the conversation (as a reply to the incoming one, if any);
        returns the new activity's id."""
        outgoing = _activity(activity)
        response = await _call(lambda: self._context.send_activity(outgoing))
        return str(getattr(response, "id", "") or "")

    async def update(self, activity_id: str, activity: dict[str, Any]) -> None:
        outgoing = _activity(activity)
        outgoing.id = activity_id
        await _call(lambda: self._context.update_activity(outgoing))

    async def members(self) -> list[dict[str, Any]]:
        """The conversation's members (`id`, `aadObjectId`, `name`...), every page of them.
        For a team's channel Teams answers with the members of the team (or, for a private or
        shared channel, of the channel)."""
        client = self._context.turn_state.get(self._context.adapter.BOT_CONNECTOR_CLIENT_KEY)
        conversation_id = self._context.activity.conversation.id
        members: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(MAX_MEMBER_PAGES):
            page = await _call(functools.partial(
                client.conversations.get_conversation_paged_members, conversation_id,
                page_size=MEMBERS_PAGE_SIZE, continuation_token=token))
            members.extend(member.serialize() for member in page.members or [])
            token = page.continuation_token
            if not token:
                break
        return members

    async def bearer_token(self) -> str | None:
        """The bot's token for downloads from the connector; None with authentication off."""
        client = self._context.turn_state.get(self._context.adapter.BOT_CONNECTOR_CLIENT_KEY)
        credentials = getattr(getattr(client, "config", None), "credentials", None)
        return credentials.token if isinstance(credentials, _BearerToken) else None


class BotFrameworkConnection:
    """botbuilder's CloudAdapter with its authentication, behind plain-dict methods."""

    def __init__(self, credentials: BotCredentials) -> None:
        self.credentials = credentials
        config = _configuration(credentials)
        self._credential_factory = _CachedCredentialFactory(credentials, config)
        self._auth = ConfigurationBotFrameworkAuthentication(
            config, credentials_factory=self._credential_factory)
        self._adapter = CloudAdapter(self._auth)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.credentials.app_id)

    @staticmethod
    def parse(body: dict[str, Any]) -> Any:
        """The SDK's activity for a JSON body; `BadActivity` when it cannot be read."""
        try:
            activity = Activity().deserialize(body)
        except (DeserializationError, ValueError, TypeError, AttributeError) as exc:
            raise BadActivity(str(exc)[:200]) from None
        if not isinstance(activity, Activity):
            raise BadActivity("not an activity")
        return activity

    async def authenticate(self, auth_header: str | None, activity: Any) -> Any:
        """The request's verified identity. Runs off the event loop: the SDK downloads signing
        keys with blocking calls."""
        check = self._auth.authenticate_request(activity, auth_header)
        try:
            if not self.auth_enabled and not auth_header:
                result = await check  # nothing to download: no token to check
            else:
                result = await asyncio.to_thread(asyncio.run, check)
        except requests.RequestException as exc:
            raise AuthUnavailable(f"signing keys unavailable: {type(exc).__name__}") from None
        except Exception as exc:
            raise NotAuthorized(f"{type(exc).__name__}: {str(exc)[:120]}") from None
        if not isinstance(result, AuthenticateRequestResult):
            raise NotAuthorized("no identity")
        if self.auth_enabled and not _expires(result):
            # The SDK checks `exp` only when a token has one: a token without it would be
            # good forever.
            raise NotAuthorized("the token has no expiry (exp)")
        return result

    async def run_turn(self, authenticated: Any, activity: Any, body: dict[str, Any],
                       logic: Callable[[Turn], Awaitable[InvokeReply | None]]
                       ) -> InvokeReply | None:
        """Run `logic` for the activity (parsed from `body`); an invoke's reply goes back in
        the HTTP response."""
        async def callback(context: TurnContext) -> None:
            reply = await logic(Turn(context, self, body))
            if reply is not None:
                await context.send_activity(Activity(
                    type="invokeResponse",
                    value=InvokeResponse(status=reply.status, body=reply.body)))

        response = await self._adapter.process_activity(authenticated, activity, callback)
        if response is None:
            return None
        return InvokeReply(status=int(response.status), body=response.body)

    async def continue_conversation(self, reference: dict[str, Any],
                                    logic: Callable[[Turn], Awaitable[None]]) -> None:
        """Act in a conversation without being asked (proactive messages)."""
        async def callback(context: TurnContext) -> None:
            await logic(Turn(context, self))

        parsed = ConversationReference().deserialize(reference)
        try:
            await self._adapter.continue_conversation(parsed, callback,
                                                      bot_app_id=self.credentials.app_id or "")
        except ConnectorError:
            raise
        except (HttpOperationError, ClientRequestError, PermissionError) as exc:
            raise _connector_error(exc) from None


    async def members(self, reference: dict[str, Any]) -> list[dict[str, Any]]:
        """The members of the conversation `reference` points at (see `Turn.members`)."""
        found: list[dict[str, Any]] = []

        async def collect(turn: Turn) -> None:
            found.extend(await turn.members())

        await self.continue_conversation(reference, collect)
        return found


class _OpenEntity(Entity):  # type: ignore[misc]
    """An entity that keeps every field when serialized. botbuilder's `Entity` knows only
    `type` and silently drops the rest (a mention's target, Teams' `streaminfo` fields)."""

    _attribute_map: ClassVar[dict[str, dict[str, str]]] = {
        "additional_properties": {"key": "", "type": "{object}"}, **Entity._attribute_map}


def _expires(result: AuthenticateRequestResult) -> bool:
    """Whether the validated token carried an expiry time (`exp`, seconds since the epoch)."""
    claims = getattr(result.claims_identity, "claims", None)
    expiry = claims.get("exp") if isinstance(claims, dict) else None
    return isinstance(expiry, int | float) and not isinstance(expiry, bool)


def _activity(data: dict[str, Any]) -> Any:
    activity = Activity().deserialize(data)
    entities = []
    for item in data.get("entities") or []:
        entity = _OpenEntity(type=item.get("type"))
        entity.additional_properties = {k: v for k, v in item.items() if k != "type"}
        entities.append(entity)
    activity.entities = entities or None
    return activity


def _connector_error(exc: Exception) -> ConnectorError:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    retry_after = _retry_after(getattr(response, "headers", None) or {})
    if isinstance(exc, PermissionError):  # msal: the app id or password was refused
        return ConnectorError(401, f"no token for the bot: {str(exc)[:160]}")
    return ConnectorError(status, f"{type(exc).__name__}: {str(exc)[:160]}", retry_after)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


def _retryable(exc: BaseException) -> bool:
    """Throttled or briefly unavailable: the call was not carried out, so it is safe to repeat
    (a 500 may have posted the message already; repeating it could post it twice)."""
    return isinstance(exc, ConnectorError) and exc.status in {429, 503}


def _wait(state: Any) -> float:
    exc = state.outcome.exception() if state.outcome else None
    hinted = getattr(exc, "retry_after", None)
    if hinted is not None:
        return min(float(hinted), MAX_RETRY_AFTER)
    return min(0.5 * 2 ** (state.attempt_number - 1), MAX_RETRY_AFTER)


async def _call(make: Callable[[], Awaitable[Any]]) -> Any:
    """One connector call, repeated after a 429 or 503 (honouring Retry-After)."""
    async for attempt in AsyncRetrying(retry=retry_if_exception(_retryable), wait=_wait,
                                       stop=stop_after_attempt(3), reraise=True):
        with attempt:
            try:
                return await make()
            except (HttpOperationError, ClientRequestError, PermissionError) as exc:
                raise _connector_error(exc) from None
    raise AssertionError("unreachable")  # pragma: no cover
