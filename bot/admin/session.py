"""Signed, expiring admin sessions for browsers, and the CSRF tokens that go with them.

A browser cannot send `Authorization: Bearer` on its own, so after one successful login it
carries a cookie instead. The cookie holds only an expiry time, a random session id, the name
the admin gave (so a claimed escalation says who claimed it) and an HMAC over all three: never
the admin token. The HMAC key is derived from the admin token, which
means no second secret to configure and keep equal across workers, and changing
BOTHUB_ADMIN_TOKEN invalidates every session issued under the old one (the kill switch: a
session is not stored server-side, so logging out only removes the browser's copy).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

SESSION_COOKIE = "bothub_admin"
SESSION_SECONDS = 12 * 60 * 60
_VERSION = "v2"
MAX_NAME_CHARS = 64
_MAX_COOKIE_CHARS = 400  # anything longer is not ours; do not spend an HMAC on it


@dataclass(frozen=True, slots=True)
class Session:
    """One browser login: `id` is random and names it, `expires` is in Unix seconds, `name`
    is who signed in, as they typed it (may be empty)."""

    id: str
    expires: int
    name: str = ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class SessionSigner:
    """Issues and checks session cookies and CSRF tokens under a key derived from the token."""

    def __init__(self, admin_token: str, *, lifetime: int = SESSION_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = hmac.new(admin_token.encode("utf-8"), b"bothub admin session key",
                             hashlib.sha256).digest()
        self.lifetime = lifetime
        self._clock = clock

    def _mac(self, message: str) -> str:
        return _b64(hmac.new(self._key, message.encode("ascii"), hashlib.sha256).digest())

    def issue(self, name: str = "") -> tuple[str, Session]:
        """A new session and the cookie value that carries it."""
        name = clean_name(name)
        session = Session(id=secrets.token_urlsafe(18),
                          expires=int(self._clock()) + self.lifetime, name=name)
        payload = f"{_VERSION}.{session.expires}.{session.id}.{_b64(name.encode('utf-8'))}"
        return f"{payload}.{self._mac(payload)}", session

    def verify(self, cookie: str | None) -> Session | None:
        """The session in a cookie, or None when it is missing, forged, altered or expired."""
        if not cookie or len(cookie) > _MAX_COOKIE_CHARS:
            return None
        parts = cookie.split(".")
        if (len(parts) != 5 or parts[0] != _VERSION or not parts[2]
                or not (parts[1].isascii() and parts[1].isdigit())):  # int() takes "²"
            return None
        payload = ".".join(parts[:4])
        try:
            mac = self._mac(payload)
        except UnicodeEncodeError:  # not ASCII: not ours
            return None
        # compare_digest refuses a str that is not ASCII (TypeError): compare bytes instead.
        if not hmac.compare_digest(mac.encode("ascii"), parts[4].encode("utf-8", "replace")):
            return None
        try:  # signed by us, so well-formed; decoded defensively all the same
            name = base64.urlsafe_b64decode(parts[3] + "=" * (-len(parts[3]) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        session = Session(id=parts[2], expires=int(parts[1]), name=clean_name(name))
        return session if session.expires > self._clock() else None

    def csrf_token(self, session: Session) -> str:
        """The token a page puts into its forms: bound to this session (double-submit through
        a cookie would also trust a cookie an attacker planted on a sibling subdomain)."""
        return self._mac(f"csrf.{session.id}")

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        if not given:
            return False
        return hmac.compare_digest(self.csrf_token(session).encode("ascii"),
                                   given.encode("utf-8", "replace"))


def clean_name(name: str) -> str:
    """A display name as typed into the login form: one line, printable, at most
    `MAX_NAME_CHARS` characters."""
    printable = "".join(ch for ch in name if ch.isprintable())
    return " ".join(printable.split())[:MAX_NAME_CHARS]
