"""/admin: sign-in and sign-out, the overview, the JSON health endpoint, and every page module.

`mount_admin` is the only thing the server calls. With neither BOTHUB_ADMIN_TOKEN nor SSO
configured it mounts nothing, so every /admin path is a plain 404: the admin area does not
exist rather than being locked. A page module offers `router(hub) -> APIRouter` whose routes
depend on `require_admin` (see `bot.admin.auth`) and render through `bot.admin.layout`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from bot.admin import (
    conversations_page,
    escalations_page,
    feedback_page,
    health_page,
    knowledge_page,
    usage_page,
)
from bot.admin.auth import (
    ADMIN_PREFIX,
    WWW_AUTHENTICATE,
    AdminAuth,
    AdminDenied,
    AdminSession,
    admin_auth,
    admin_denied_response,
    clear_session_cookie,
    client_address,
    require_admin,
)
from bot.admin.forms import read_form
from bot.admin.layout import html_response, login_page, message_page
from bot.admin.overview_page import overview
from bot.admin.session import SESSION_COOKIE, clean_name
from bot.admin.sso import SsoConfig
from bot.app import Hub
from bot.log_redaction import register_secrets
from bot.store.repository import StorageUnavailable

log = structlog.get_logger(__name__)

HealthReport = Callable[[], Awaitable[Mapping[str, Any]]]
Admin = Annotated[AdminSession, Depends(require_admin)]
# Shorter tokens still work, but the operator is told: the throttle only slows guessing down.
RECOMMENDED_TOKEN_LENGTH = 24


def _page_routers(hub: Hub, health: HealthReport) -> list[APIRouter]:
    """Every page of the dashboard. ADD NEW PAGE MODULES HERE: one line each."""
    routers = [
        escalations_page.router(hub),
        conversations_page.router(hub),
        feedback_page.router(hub),
    ]
    # --- pages of the knowledge-base / usage / health module owner go below this line ---
    routers += [knowledge_page.router(hub), usage_page.router(hub), health_page.router(health)]
    # --- end of their pages ---
    return routers


def admin_router(hub: Hub, health: HealthReport) -> APIRouter:
    """The admin routes; `health` returns the same report as /healthz."""
    router = APIRouter(prefix=ADMIN_PREFIX, include_in_schema=False)

    @router.get("/login")
    async def login_form(request: Request) -> Response:
        auth = admin_auth(request)
        signed_in = auth.signer.verify(request.cookies.get(SESSION_COOKIE)) is not None
        if signed_in or auth.sso_identity(request) is not None:
            return RedirectResponse(ADMIN_PREFIX, status_code=303)
        if not auth.has_token:
            return html_response(login_page(
                "Sign in through your company's single sign-on: this bothub accepts no token."),
                403)
        return html_response(login_page())

    @router.post("/login")
    async def login(request: Request) -> Response:
        auth = admin_auth(request)
        address = client_address(request)
        form = await read_form(request)
        token, name = form.get("token", ""), clean_name(form.get("name", ""))
        # No await from this check to the count below: concurrent guesses cannot all slip in.
        auth.refuse_if_throttled(address, api=False)
        if not auth.token_ok(token):
            await auth.failed(address, via="login")
            return html_response(login_page("That is not the admin token.", name=name), 401,
                                 {"WWW-Authenticate": WWW_AUTHENTICATE})
        auth.throttle.succeeded(address)
        cookie, session = auth.signer.issue(name)
        response = RedirectResponse(ADMIN_PREFIX, status_code=303)
        response.set_cookie(SESSION_COOKIE, cookie, max_age=auth.signer.lifetime,
                            path=ADMIN_PREFIX, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        log.info("admin.signed_in", client=address, expires=session.expires,
                 named=bool(session.name))
        return response

    @router.post("/logout")
    async def logout(request: Request, _admin: Admin) -> Response:
        response = RedirectResponse("/admin/login", status_code=303)
        clear_session_cookie(response, request)
        return response

    @router.get("")
    async def home(request: Request, admin: Admin) -> Response:
        return await overview(request, admin, hub, await health())

    @router.get("/api/health")
    async def api_health(_admin: Admin) -> JSONResponse:
        return JSONResponse(dict(await health()), headers={"Cache-Control": "no-store"})

    for page_router in _page_routers(hub, health):
        router.include_router(page_router)
    return router


async def storage_unavailable(request: Request, exc: Exception) -> Response:
    """An admin page whose database is down says so (503) instead of failing with a 500;
    anywhere else the exception goes on to the server's own handling."""
    path = request.url.path
    if path != ADMIN_PREFIX and not path.startswith(ADMIN_PREFIX + "/"):
        raise exc
    log.warning("admin.storage_unavailable", path=path, error=str(exc)[:200])
    text = "The database is not answering right now; try again in a moment."
    headers = {"Retry-After": "5", "Cache-Control": "no-store"}
    if path.startswith(ADMIN_PREFIX + "/api/"):
        return JSONResponse({"error": text}, status_code=503, headers=headers)
    return html_response(message_page("Database unavailable", text), 503, headers)


def mount_admin(app: FastAPI, hub: Hub, *, health: HealthReport) -> bool:
    """Add /admin to `app` when a token or SSO is configured; returns whether it did. A blank
    token counts as none: an empty BOTHUB_ADMIN_TOKEN= line must not open admin to an empty
    password. Raises `ConfigError` for an SSO header without trusted proxies."""
    settings = hub.settings
    value = settings.admin_token.get_secret_value().strip() if settings.admin_token else ""
    sso = SsoConfig.from_settings(settings.admin_sso_header, settings.admin_sso_trusted_proxies,
                                  settings.admin_sso_allowed)
    if not value and sso is None:
        return False
    secret = settings.admin_secret.get_secret_value().strip() if settings.admin_secret else ""
    register_secrets([v for v in (value, secret) if v])  # never reach a log, whatever else
    if value and len(value) < RECOMMENDED_TOKEN_LENGTH:
        log.warning("admin.short_token", length=len(value),
                    hint=f"use at least {RECOMMENDED_TOKEN_LENGTH} random characters, "
                         "e.g. `openssl rand -hex 32`")
    if sso is not None and not value and not secret:
        log.warning("admin.sso_without_secret",
                    hint="set BOTHUB_ADMIN_SECRET when running several workers, or a form "
                         "opened on one may be refused by another")
    app.state.admin_auth = AdminAuth(value or None, sso=sso, secret=secret or None)
    app.add_exception_handler(AdminDenied, admin_denied_response)
    app.add_exception_handler(StorageUnavailable, storage_unavailable)
    app.include_router(admin_router(hub, health))
    log.info("admin.on", token=bool(value), sso_header=sso.header if sso else None)
    return True
