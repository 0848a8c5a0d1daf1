"""Who may use /admin: the `require_admin` dependency and the refusals it raises.

Three ways in. Two prove knowledge of BOTHUB_ADMIN_TOKEN:
- `Authorization: Bearer <token>` on any request, for scripts. No CSRF token is needed: a
  browser never adds that header to a request another site makes it send.
- a session cookie from the login form (`bot.admin.session`), for browsers. Because a browser
  does send cookies on its own, every state-changing request from a cookie session must also
  carry the session's CSRF token (form field `csrf_token` or header `X-CSRF-Token`).
The third is single sign-on: an authenticating proxy's identity header, believed only from
the proxy's own addresses (`bot.admin.sso`); its forms carry a CSRF token bound to the identity.

Any route becomes an admin route by depending on `require_admin`; pages get the CSRF token to
put into their forms from the `AdminSession` it returns. Refusals are `AdminDenied`, rendered
by `admin_denied_response`: pages redirect to the login form, `/admin/api/...` answers JSON.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from typing import Literal

import structlog
from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from bot.admin.forms import read_form
from bot.admin.layout import html_response, message_page
from bot.admin.session import SESSION_COOKIE, SessionSigner
from bot.admin.sso import SsoConfig, SsoCsrf, clean_identity
from bot.admin.throttle import LoginThrottle
from bot.peer import connecting_peer

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
    forms (empty for bearer requests, which need none); `name` is who, as far as known (the
    name typed at sign-in, or the SSO identity)."""

    via: Literal["bearer", "cookie", "sso"]
    csrf: str
    name: str = ""

    @property
    def who(self) -> str:
        """How escalation events and notices name this admin."""
        return self.name or ("admin (API token)" if self.via == "bearer" else "admin")


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
    """The admin token (if any), the session signer derived from it, SSO (if configured), the
    server key for SSO CSRF tokens and flash messages, and the failure throttle."""

    def __init__(self, token: str | None, *, sso: SsoConfig | None = None,
                 secret: str | None = None, throttle: LoginThrottle | None = None,
                 signer: SessionSigner | None = None) -> None:
        token = token.strip() if token and token.strip() else None
        self.has_token = token is not None
        self._digest = hashlib.sha256((token or secrets.token_hex(32)).encode("utf-8")).digest()
        # One key for what every worker must agree on: the configured secret, else the token.
        # Neither: a random key, fine for one process (a form may then fail on another worker).
        material = secret or token or secrets.token_hex(32)
        self.key = hmac.new(material.encode("utf-8"), b"bothub admin server key",
                            hashlib.sha256).digest()
        self.signer = signer or SessionSigner(token or material)
        self.sso = sso
        self.sso_csrf = SsoCsrf(self.key)
        self.throttle = throttle or LoginThrottle()

    def token_ok(self, given: str) -> bool:
        """Constant-time, and over digests, so neither content nor length leaks by timing.
        Surrounding whitespace is ignored on both sides (a pasted token often carries some).
        Without a configured token nothing matches."""
        digest = hashlib.sha256(given.strip().encode("utf-8", "replace")).digest()
        return hmac.compare_digest(digest, self._digest) and self.has_token

    def sign(self, text: str) -> str:
        return base64.urlsafe_b64encode(hmac.new(self.key, text.encode("utf-8"),
                                                 hashlib.sha256).digest()[:18]).decode("ascii")

    def sso_identity(self, request: Request) -> str | None:
        """The SSO identity of this request: the proxy's header, from a trusted proxy only."""
        if self.sso is None:
            return None
        value = request.headers.get(self.sso.header)
        if value is None:
            return None
        address = connecting_peer(request)  # the proxy itself, not whom it forwards for
        if not self.sso.trusts(address):
            log.warning("admin.sso_header_untrusted", client=address, header=self.sso.header,
                        hint="add the proxy to BOTHUB_ADMIN_SSO_TRUSTED_PROXIES if it is yours")
            return None
        return clean_identity(value) or None

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


async def _csrf_given(request: Request) -> str | None:
    return request.headers.get(CSRF_HEADER) or (await read_form(request)).get(CSRF_FIELD)


def _csrf_refused(request: Request) -> AdminDenied:
    log.warning("admin.csrf_rejected", client=client_address(request), path=request.url.path)
    return AdminDenied(403, "missing or invalid CSRF token; reload the page and try again",
                       api=is_api(request))


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
    identity = auth.sso_identity(request)
    if identity is not None:
        assert auth.sso is not None
        if not auth.sso.allows(identity):
            log.warning("admin.sso_not_allowed", identity=identity)
            raise AdminDenied(403, f"{identity} is not allowed into the bothub admin area "
                                   "(BOTHUB_ADMIN_SSO_ALLOWED)", api=is_api(request))
        if request.method not in SAFE_METHODS and \
                not auth.sso_csrf.ok(identity, await _csrf_given(request)):
            raise _csrf_refused(request)
        return AdminSession(via="sso", csrf=auth.sso_csrf.token(identity), name=identity)
    cookie = request.cookies.get(SESSION_COOKIE)
    session = auth.signer.verify(cookie)
    if session is None:
        raise AdminDenied(401, "sign in first: POST /admin/login, or send "
                               "Authorization: Bearer <BOTHUB_ADMIN_TOKEN>",
                          api=is_api(request), clear_cookie=cookie is not None)
    if request.method not in SAFE_METHODS and \
            not auth.signer.csrf_ok(session, await _csrf_given(request)):
        raise _csrf_refused(request)
    return AdminSession(via="cookie", csrf=auth.signer.csrf_token(session), name=session.name)


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
