"""Who may use /admin: the `require_admin` dependency and the refusals it raises.

Two ways in, both proving knowledge of BOTHUB_ADMIN_TOKEN:
- `Authorization: Bearer <token>` on any request, for scripts. No CSRF token is needed: a
  browser never adds that header to a request another site makes it send.
- a session cookie from the login form (`bot.admin.session`), for browsers. Because a browser
  does send cookies on its own, every state-changing request from a cookie session must also
  carry the session's CSRF token (form field `csrf_token` or header `X-CSRF-Token`).

Any route becomes an admin route by depending on `require_admin`; pages get the CSRF token to
put into their forms from the `AdminSession` it returns. Refusals are `AdminDenied`, rendered
by `admin_denied_response`: pages redirect to the login form, `/admin/api/...` answers JSON.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
from dataclasses import dataclass
from typing import Literal

import structlog
from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from bot.admin.forms import read_form
from bot.admin.pages import html_response, message_page
from bot.admin.session import SESSION_COOKIE, SessionSigner
from bot.admin.throttle import LoginThrottle

log = structlog.get_logger(__name__)

ADMIN_PREFIX = "/admin"
API_PREFIX = "/admin/api/"
LOGIN_PATH = "/admin/login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WWW_AUTHENTICATE = 'Bearer realm="bothub admin"'


@dataclass(frozen=True, slots=True)
class AdminSession:
    """An authenticated admin request: `via` says how; `csrf` is what a page puts into its
    forms (empty for bearer requests, which need none)."""

    via: Literal["bearer", "cookie"]
    csrf: str


class AdminDenied(Exception):
    """An admin request refused: 401 (not signed in), 403 (no CSRF token) or 429 (too many
    failures). `api` picks JSON over HTML."""

    def __init__(self, status: int, message: str, *, api: bool, clear_cookie: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.api = api
        self.clear_cookie = clear_cookie
        self.retry_after = retry_after


class AdminAuth:
    """The admin token, the session signer derived from it, and the failure throttle."""

    def __init__(self, token: str, *, throttle: LoginThrottle | None = None,
                 signer: SessionSigner | None = None) -> None:
        self._digest = hashlib.sha256(token.strip().encode("utf-8")).digest()
        self.signer = signer or SessionSigner(token.strip())
        self.throttle = throttle or LoginThrottle()

    def token_ok(self, given: str) -> bool:
        """Constant-time, and over digests, so neither content nor length leaks by timing.
        Surrounding whitespace is ignored on both sides (a pasted token often carries some)."""
        digest = hashlib.sha256(given.strip().encode("utf-8", "replace")).digest()
        return hmac.compare_digest(digest, self._digest)

    async def failed(self, address: str, via: str) -> None:
        """Count a failure against `address`, log it (never the value tried), and make the
        client wait before it hears the answer."""
        count = self.throttle.failed(address)
        log.warning("admin.auth_failed", via=via, client=address, failures=count)
        await asyncio.sleep(self.throttle.delay)

    def refuse_if_throttled(self, address: str, *, api: bool) -> None:
        wait = self.throttle.retry_after(address)
        if wait is not None:
            raise AdminDenied(429, "too many failed attempts; try again later", api=api,
                              retry_after=wait)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def admin_auth(request: Request) -> AdminAuth:
    """The app's admin settings; 404 when admin is off, as if the route did not exist."""
    auth = getattr(request.app.state, "admin_auth", None)
    if not isinstance(auth, AdminAuth):
        raise HTTPException(404, "Not Found")
    return auth


def is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX)


async def require_admin(request: Request) -> AdminSession:
    """FastAPI dependency: the request's admin session, or `AdminDenied`."""
    auth = admin_auth(request)
    header = request.headers.get("authorization")
    if header is not None:  # a client that sends a token expects a status code, not a page
        address = client_address(request)
        auth.refuse_if_throttled(address, api=True)
        scheme, _, given = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not auth.token_ok(given):
            await auth.failed(address, via="bearer")
            raise AdminDenied(401, "invalid admin token", api=True)
        return AdminSession(via="bearer", csrf="")
    cookie = request.cookies.get(SESSION_COOKIE)
    session = auth.signer.verify(cookie)
    if session is None:
        raise AdminDenied(401, "sign in first: POST /admin/login, or send "
                               "Authorization: Bearer <BOTHUB_ADMIN_TOKEN>",
                          api=is_api(request), clear_cookie=cookie is not None)
    if request.method not in SAFE_METHODS:
        csrf = request.headers.get(CSRF_HEADER) or (await read_form(request)).get(CSRF_FIELD)
        if not auth.signer.csrf_ok(session, csrf):
            log.warning("admin.csrf_rejected", client=client_address(request),
                        path=request.url.path)
            raise AdminDenied(403, "missing or invalid CSRF token; reload the page and try "
                                   "again", api=is_api(request))
    return AdminSession(via="cookie", csrf=auth.signer.csrf_token(session))


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path=ADMIN_PREFIX, httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")


async def admin_denied_response(request: Request, exc: Exception) -> Response:
    """Exception handler for `AdminDenied` (registered on the app by `mount_admin`)."""
    if not isinstance(exc, AdminDenied):  # pragma: no cover - registered for AdminDenied only
        raise exc
    headers: dict[str, str] = {"Cache-Control": "no-store"}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    response: Response
    if exc.status == 401 and not exc.api:
        response = RedirectResponse(LOGIN_PATH, status_code=303, headers=headers)
    elif exc.api:
        if exc.status == 401:
            headers["WWW-Authenticate"] = WWW_AUTHENTICATE
        response = JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)
    else:
        title = "Too many attempts" if exc.status == 429 else "Request refused"
        response = html_response(message_page(title, exc.message), exc.status, headers)
    if exc.clear_cookie:
        clear_session_cookie(response, request)
    return response
