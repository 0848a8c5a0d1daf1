"""/admin: sign-in and sign-out, the home page and the JSON health endpoint.

`mount_admin` is the only thing the server calls. Without BOTHUB_ADMIN_TOKEN it mounts nothing,
so every /admin path is a plain 404: the admin area does not exist rather than being locked.
New pages are routes on `admin_router` (or any router) that depend on `require_admin`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import SecretStr

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
from bot.admin.pages import home_page, html_response, login_page
from bot.admin.session import SESSION_COOKIE
from bot.log_redaction import register_secrets

log = structlog.get_logger(__name__)

HealthReport = Callable[[], Awaitable[Mapping[str, Any]]]
Admin = Annotated[AdminSession, Depends(require_admin)]
# Shorter tokens still work, but the operator is told: the throttle only slows guessing down.
RECOMMENDED_TOKEN_LENGTH = 24


def admin_router(health: HealthReport) -> APIRouter:
    """The admin routes; `health` returns the same report as /healthz."""
    router = APIRouter(prefix=ADMIN_PREFIX, include_in_schema=False)

    @router.get("/login")
    async def login_form(request: Request) -> Response:
        if admin_auth(request).signer.verify(request.cookies.get(SESSION_COOKIE)) is not None:
            return RedirectResponse(ADMIN_PREFIX, status_code=303)
        return html_response(login_page())

    @router.post("/login")
    async def login(request: Request) -> Response:
        auth = admin_auth(request)
        address = client_address(request)
        token = (await read_form(request)).get("token", "")
        # No await from this check to the count below: concurrent guesses cannot all slip in.
        auth.refuse_if_throttled(address, api=False)
        if not auth.token_ok(token):
            await auth.failed(address, via="login")
            return html_response(login_page("That is not the admin token."), 401,
                                 {"WWW-Authenticate": WWW_AUTHENTICATE})
        auth.throttle.succeeded(address)
        cookie, session = auth.signer.issue()
        response = RedirectResponse(ADMIN_PREFIX, status_code=303)
        response.set_cookie(SESSION_COOKIE, cookie, max_age=auth.signer.lifetime,
                            path=ADMIN_PREFIX, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        log.info("admin.signed_in", client=address, expires=session.expires)
        return response

    @router.post("/logout")
    async def logout(request: Request, _admin: Admin) -> Response:
        response = RedirectResponse("/admin/login", status_code=303)
        clear_session_cookie(response, request)
        return response

    @router.get("")
    async def home(admin: Admin) -> Response:
        return html_response(home_page(await health(), admin.csrf))

    @router.get("/api/health")
    async def api_health(_admin: Admin) -> JSONResponse:
        return JSONResponse(dict(await health()), headers={"Cache-Control": "no-store"})

    return router


def mount_admin(app: FastAPI, token: SecretStr | None, *, health: HealthReport) -> bool:
    """Add /admin to `app` when a token is set; returns whether it did. A blank token counts
    as none: an empty BOTHUB_ADMIN_TOKEN= line must not open admin to an empty password."""
    value = token.get_secret_value() if token is not None else ""
    if not value.strip():
        return False
    register_secrets([value])  # whatever else is configured, this one never reaches a log
    if len(value.strip()) < RECOMMENDED_TOKEN_LENGTH:
        log.warning("admin.short_token", length=len(value.strip()),
                    hint=f"use at least {RECOMMENDED_TOKEN_LENGTH} random characters, "
                         "e.g. `openssl rand -hex 32`")
    app.state.admin_auth = AdminAuth(value.strip())
    app.add_exception_handler(AdminDenied, admin_denied_response)
    app.include_router(admin_router(health))
    return True
