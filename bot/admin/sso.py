"""Single sign-on through an authenticating proxy (oauth2-proxy, Google IAP, ...).

The proxy signs people in and passes their identity in a header (`X-Forwarded-Email`). Any
client could send that header itself, so it is believed only from the proxies listed in
BOTHUB_ADMIN_SSO_TRUSTED_PROXIES (the address bothub sees the request come from); from
anywhere else it is ignored, as if it were not there.

A browser behind the proxy sends its proxy session cookie on its own, also on requests another
site makes it send, so forms need a CSRF token here too. With no session of ours to bind it to,
the token is an HMAC of the identity and a 12-hour window under a server key: every worker
that shares the key (BOTHUB_ADMIN_SECRET, or one derived from BOTHUB_ADMIN_TOKEN) accepts the
tokens of the others, and a token stops working a window after it was issued.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.config import ConfigError

MAX_IDENTITY_CHARS = 320  # the longest an email address can be
CSRF_WINDOW_SECONDS = 12 * 60 * 60
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """`10.0.0.0/8, 127.0.0.1` -> networks; a bad entry is a `ConfigError` naming it."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"BOTHUB_ADMIN_SSO_TRUSTED_PROXIES: {item!r} is not an IP "
                              "address or CIDR range (e.g. 10.0.0.0/8)") from None
    return tuple(networks)


def parse_allowed(text: str) -> tuple[str, ...]:
    return tuple(item.strip().lower() for item in text.split(",") if item.strip())


@dataclass(frozen=True, slots=True)
class SsoConfig:
    header: str
    trusted: tuple[Network, ...]
    allowed: tuple[str, ...] = ()  # lower-case emails or "@domain"; empty: anyone

    @classmethod
    def from_settings(cls, header: str | None, trusted: str, allowed: str) -> SsoConfig | None:
        """None when no header is configured. A header without trusted proxies is refused:
        it would either trust everyone or no one."""
        if header is None or not header.strip():
            return None
        networks = parse_networks(trusted)
        if not networks:
            raise ConfigError("BOTHUB_ADMIN_SSO_HEADER is set but "
                              "BOTHUB_ADMIN_SSO_TRUSTED_PROXIES is empty: list the addresses "
                              "of the authenticating proxy (e.g. 10.0.0.5/32)")
        return cls(header=header.strip().lower(), trusted=networks,
                   allowed=parse_allowed(allowed))

    def trusts(self, address: str) -> bool:
        try:
            peer = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped
        return any(peer in network for network in self.trusted)

    def allows(self, identity: str) -> bool:
        if not self.allowed:
            return True
        identity = identity.lower()
        domain = "@" + identity.rpartition("@")[2] if "@" in identity else None
        return identity in self.allowed or (domain is not None and domain in self.allowed)


def clean_identity(value: str) -> str:
    """The header's value as an identity: printable, trimmed, bounded; "" if nothing is left."""
    text = "".join(ch for ch in value if ch.isprintable()).strip()
    return text[:MAX_IDENTITY_CHARS]


class SsoCsrf:
    """CSRF tokens for SSO identities (see the module's docstring)."""

    def __init__(self, key: bytes, *, clock: Callable[[], float] = time.time) -> None:
        self._key = hmac.new(key, b"bothub admin sso csrf", hashlib.sha256).digest()
        self._clock = clock

    def _token(self, identity: str, window: int) -> str:
        message = f"{window}.{identity}".encode("utf-8", "replace")
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def token(self, identity: str) -> str:
        return self._token(identity, int(self._clock() // CSRF_WINDOW_SECONDS))

    def ok(self, identity: str, given: str | None) -> bool:
        """This window's token or the previous one's (a form opened just before the turn)."""
        if not given:
            return False
        window = int(self._clock() // CSRF_WINDOW_SECONDS)
        offered = given.encode("utf-8", "replace")
        return any(hmac.compare_digest(self._token(identity, w).encode("ascii"), offered)
                   for w in (window, window - 1))
