"""Multi-workspace Slack: OAuth installs stored in our database, a signed OAuth state.

Installations live in the `slack_installations` / `slack_bots` tables (created by our
migrations, read and written by slack_sdk's async SQLAlchemy store). The OAuth `state` needs no
table: it is signed with `SLACK_STATE_SECRET` and expires; bolt also binds it to the installing
browser with a cookie, so a state copied elsewhere is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings
from bot.store.tables import SLACK_BOTS, SLACK_INSTALLATIONS

SCOPES = ["app_mentions:read", "channels:history", "groups:history", "im:history",
          "mpim:history", "chat:write", "commands", "files:read", "users:read",
          "channels:read", "groups:read"]


class SignedStateStore(AsyncOAuthStateStore):
    def __init__(self, secret: str, *, expiration_seconds: int = 600) -> None:
        self._key = secret.encode("utf-8")
        self.expiration_seconds = expiration_seconds

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    async def async_issue(self, *args: object, **kwargs: object) -> str:
        payload = f"{secrets.token_urlsafe(16)}.{int(time.time()) + self.expiration_seconds}"
        return f"{payload}.{self._sign(payload)}"

    async def async_consume(self, state: str) -> bool:
        if not state.isascii():  # ours are; compare_digest and _sign accept nothing else
            return False
        nonce, _, rest = state.partition(".")
        expires, _, signature = rest.partition(".")
        if not (nonce and expires.isdigit() and len(expires) <= 20 and signature):
            return False
        if not hmac.compare_digest(signature, self._sign(f"{nonce}.{expires}")):
            return False
        return int(expires) >= time.time()


def oauth_settings(settings: Settings, database: AsyncEngine) -> AsyncOAuthSettings:
    assert settings.slack_client_id and settings.slack_client_secret
    assert settings.slack_state_secret is not None
    store = AsyncSQLAlchemyInstallationStore(
        client_id=settings.slack_client_id, engine=database,
        bots_table_name=SLACK_BOTS, installations_table_name=SLACK_INSTALLATIONS)
    return AsyncOAuthSettings(
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret.get_secret_value(), scopes=SCOPES,
        installation_store=store,
        state_store=SignedStateStore(settings.slack_state_secret.get_secret_value()),
        install_path="/slack/install", redirect_uri_path="/slack/oauth_redirect")
