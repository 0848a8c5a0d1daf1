"""The HTTP app of `bothub serve`: health, metrics and the adapters' routes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol, runtime_checkable

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.base import EscalationOutlet
from adapters.web import web_chat_router
from bot import metrics
from bot.admin import mount_admin
from bot.app import Hub
from bot.log_redaction import configured_secrets, register_secrets
from bot.redelivery import Resumer
from bot.telemetry import tracing

log = structlog.get_logger(__name__)


async def _knowledge_health(hub: Hub) -> dict[str, object]:
    try:
        runs = await hub.knowledge.catalog.runs(limit=1)
        chunks = await hub.knowledge.index.count()
    except Exception as exc:
        return {"state": "down", "error": type(exc).__name__}
    last = runs[0] if runs else None
    return {"state": "ok" if chunks else "empty", "chunks": chunks,
            "retrieval": "hybrid" if hub.knowledge.embedder else "full-text",
            "last_sync": None if last is None else {
                "status": last.status, "started_at": last.started_at.isoformat(),
                "trigger": last.trigger}}


@runtime_checkable
class ReportsHealth(Protocol):
    """An adapter that can say how its link to its platform is (see `adapters.health`)."""

    name: str

    async def health(self) -> Mapping[str, object]: ...


PLATFORMS = ("slack", "discord", "teams")  # served by adapters when configured; web always is


async def adapters_health(adapters: Sequence[object]) -> dict[str, dict[str, object]]:
    """Each platform's link: what its adapter reports, "not_configured" without one. An
    adapter whose report fails is "unknown", and /healthz still answers."""
    report: dict[str, dict[str, object]] = {
        name: {"state": "not_configured", "detail": "not configured"} for name in PLATFORMS}
    for adapter in adapters:
        if not isinstance(adapter, ReportsHealth):
            continue
        try:
            report[adapter.name] = dict(await adapter.health())
        except Exception as exc:
            log.warning("adapter.health_failed", adapter=adapter.name,
                        error=type(exc).__name__)
            report[adapter.name] = {"state": "unknown", "detail": "its health check failed",
                                    "last_error": type(exc).__name__}
    report["web"] = {"state": "ok", "detail": "web chat at / and POST /api/chat"}
    return report


async def health_report(hub: Hub, adapters: Sequence[object] = ()) -> dict[str, object]:
    """What /healthz (and /admin/api/health) answer: each component's state, each platform's
    link, and "ok" or "degraded" overall (the database is the one part the hub cannot serve
    without)."""
    started = time.monotonic()
    components: dict[str, dict[str, object]] = {}
    try:
        await hub.store.ping()
        components["database"] = {"state": "ok",
                                  "latency_ms": round((time.monotonic() - started) * 1000, 1)}
    except Exception as exc:
        components["database"] = {"state": "down", "error": type(exc).__name__}
    components["model"] = ({"state": "configured", "model": hub.engine.model_name}
                           if hub.model else {"state": "not_configured"})
    components["knowledge"] = await _knowledge_health(hub)
    if hub.engine.limiter is not None:
        components["limits"] = await hub.engine.limiter.health()
    healthy = components["database"]["state"] == "ok"
    return {"status": "ok" if healthy else "degraded", "components": components,
            "adapters": await adapters_health(adapters)}


def platform_adapters(hub: Hub, *, slack_update_interval: float = 1.0,
                      slack_native_streaming: bool | None = None,
                      discord_update_interval: float = 1.0,
                      teams_update_interval: float = 1.0) -> list[Any]:
    """The adapters the settings ask for; each brings its own routes. Teams is always there:
    without MICROSOFT_APP_ID it serves a local Bot Framework Emulator only."""
    settings = hub.settings
    adapters: list[Any] = []
    if settings.slack_bot_token is not None or settings.slack_oauth:
        from adapters.slack import SlackAdapter
        from adapters.slack.oauth import oauth_settings

        secret, app_token = settings.slack_signing_secret, settings.slack_app_token
        token = settings.slack_bot_token
        adapters.append(SlackAdapter(
            hub.engine, bot_token=token.get_secret_value() if token else None,
            oauth=None if token else oauth_settings(settings, hub.database),
            signing_secret=secret.get_secret_value() if secret else None,
            app_token=app_token.get_secret_value() if app_token else None,
            api_url=settings.slack_api_url, update_interval=slack_update_interval,
            native_streaming=settings.slack_native_streaming if slack_native_streaming is None
            else slack_native_streaming))
    if settings.discord_bot_token is not None:
        from adapters.discord import DiscordAdapter

        adapters.append(DiscordAdapter(
            hub.engine, token=settings.discord_bot_token.get_secret_value(),
            api_url=settings.discord_api_url,
            listen_channels=hub.behaviour.discord.listen_channels,
            sharded=hub.behaviour.discord.sharded, update_interval=discord_update_interval))
    adapters.append(teams_adapter(hub, update_interval=teams_update_interval))
    return adapters


def teams_adapter(hub: Hub, *, update_interval: float = 1.0) -> Any:
    from adapters.teams import TeamsAdapter
    from adapters.teams.app import ServiceUrls
    from adapters.teams.references import TeamsConversations
    from adapters.teams.wiring import BotCredentials, BotFrameworkConnection

    settings = hub.settings
    password = settings.microsoft_app_password
    connection = BotFrameworkConnection(BotCredentials(
        app_id=settings.microsoft_app_id,
        password=password.get_secret_value() if password else None,
        tenant_id=settings.microsoft_app_tenant_id,
        openid_metadata_url=settings.teams_openid_metadata_url,
        login_url=settings.teams_login_url))
    return TeamsAdapter(
        hub.engine, connection, TeamsConversations(hub.database),
        service_urls=ServiceUrls(settings.teams_allowed_service_urls,
                                 auth_enabled=connection.auth_enabled),
        default_service_url=settings.teams_service_url, update_interval=update_interval)


def create_app(hub: Hub, *, services: bool = True,
               adapters: list[Any] | None = None) -> FastAPI:
    """`services=False` leaves out the scheduler and the first sync (tests that do not need
    them); the app always closes the hub when it stops."""
    # Before anything logs: no configured secret may reach a log line (see bot.log_redaction).
    register_secrets(configured_secrets(hub.settings, hub.behaviour))
    adapters = platform_adapters(hub) if adapters is None else adapters

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if services:
            await hub.start_services()
        for adapter in adapters:
            outlet = getattr(adapter, "outlet", None)
            if isinstance(outlet, EscalationOutlet) and hub.engine.desk is not None:
                hub.engine.desk.register(outlet)
            if isinstance(adapter, Resumer):
                hub.redelivery.register(adapter)
        for adapter in adapters:
            try:
                await adapter.start()
            except Exception:  # a platform that is down must not keep the others from serving
                log.exception("adapter.start_failed", adapter=adapter.name)
        if not admin_on:
            log.info("admin.off", hint="set BOTHUB_ADMIN_TOKEN (or BOTHUB_ADMIN_SSO_*) "
                                          "to enable /admin")
        log.info("bothub.ready", model=hub.engine.model_name or "none (no OPENAI_API_KEY)",
                 adapters=[adapter.name for adapter in adapters] or ["web"],
                 database=hub.database.url.render_as_string(hide_password=True))
        yield
        for adapter in adapters:
            await adapter.stop()
        await hub.close()

    app = FastAPI(title="bothub", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.middleware("http")
    async def count_requests(request: Request,
                             call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # Named by the route's template once it is known (below), never by the raw path.
        with tracing.span(request.method, **{"http.request.method": request.method,
                                             "url.path": request.url.path[:200]}) as span:
            try:
                response = await call_next(request)
            except Exception:
                log.exception("http.unhandled", path=request.url.path)
                response = JSONResponse({"error": "internal error"}, status_code=500)
            # The route's template, not the path: an id in a URL must not become a series.
            route = getattr(request.scope.get("route"), "path", "unmatched")
            span.update_name(f"{request.method} {route}")
            span.set_attributes({"http.route": route,
                                 "http.response.status_code": response.status_code})
        metrics.HTTP_REQUESTS.add(1, {"route": route, "status": str(response.status_code)})
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid request", "details": exc.errors()[:5]},
                            status_code=422)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        # 200 either way (the contract): the body says which part is down.
        return JSONResponse(await health_report(hub, adapters))

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    admin_on = mount_admin(app, hub, health=lambda: health_report(hub, adapters))
    app.include_router(web_chat_router(hub.engine))
    for adapter in adapters:
        app.include_router(adapter.router())
    return app
