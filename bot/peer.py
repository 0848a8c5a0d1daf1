"""Who connected, kept apart from who the proxies say the client is.

Behind a load balancer, `FORWARDED_ALLOW_IPS` makes the client address the user's own (from
X-Forwarded-For), which is what rate limits and the admin sign-in throttle should count. The
admin area's single sign-on must instead trust a header only from the authenticating proxy
that *connected*; once X-Forwarded-For is applied that address is gone. So `bothub serve` applies
the proxy headers itself, inside `behind_proxies`, after noting the connecting peer in the
ASGI scope, where `connecting_peer` finds it.
"""

from __future__ import annotations

import os
from typing import Any, cast

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

PEER_KEY = "bothub.peer"
DEFAULT_TRUSTED = "127.0.0.1,::1"  # uvicorn's own default for FORWARDED_ALLOW_IPS


class _NotePeer:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in {"http", "websocket"}:
            client = scope.get("client")
            scope[PEER_KEY] = client[0] if client else None
        await self.app(scope, receive, send)


def behind_proxies(app: ASGIApp, trusted: str | None = None) -> ASGIApp:
    """`app` with X-Forwarded-For/-Proto applied from `trusted` proxies (FORWARDED_ALLOW_IPS,
    as uvicorn reads it) and the connecting peer noted first. Serve it with uvicorn's own
    `proxy_headers=False`, or the peer is rewritten before it can be noted."""
    hosts = trusted if trusted is not None else os.environ.get("FORWARDED_ALLOW_IPS",
                                                               DEFAULT_TRUSTED)
    # uvicorn types ASGI apps with its own TypedDicts, Starlette with plain mappings.
    proxied: Any = ProxyHeadersMiddleware(cast(Any, app), trusted_hosts=hosts)
    return _NotePeer(proxied)


def connecting_peer(connection: HTTPConnection) -> str:
    """The address that opened the connection (the proxy in front, if any)."""
    noted = connection.scope.get(PEER_KEY)
    if isinstance(noted, str):
        return noted
    return connection.client.host if connection.client else "unknown"
