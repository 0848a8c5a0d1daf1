"""A fake Bot Framework for Microsoft Teams: the connector (REST API the bot calls back on, at the
activity's `serviceUrl`) and the token issuer (OpenID metadata and signing keys for the tokens
Teams sends the bot, and the Entra ID client-credentials endpoint the bot gets its own tokens
from), each on its own loopback port.

The real botbuilder SDK (4.17: `CloudAdapter`, `ConfigurationBotFrameworkAuthentication`,
`ConnectorClient`, msal) talks to it over real sockets, so the bot's whole wire path - JWT
validation, token acquisition, URL encoding, error mapping - runs as in production. Like the other
fakes each server runs in its own thread with its own event loop (see `BackgroundServer`).
`FakeBotFramework` serves the connector over plain HTTP and owns a `FakeTokenIssuer`, which
serves HTTPS with a self-signed certificate (msal refuses plain-http authorities).

Wiring the SDK to it (`fake.sdk_configuration()` builds this object)::

    APP_ID = fake.app_id, APP_PASSWORD = fake.app_password
    TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL = fake.issuer.openid_metadata_url
    TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL = fake.issuer.openid_metadata_url
    TO_BOT_FROM_CHANNEL_TOKEN_ISSUER = "https://api.botframework.com"
    TO_CHANNEL_FROM_BOT_LOGIN_URL = fake.issuer.login_url()   # https://127.0.0.1:PORT/botframework.com
    TO_CHANNEL_FROM_BOT_OAUTH_SCOPE = "https://api.botframework.com"
    OAUTH_URL = "https://api.botframework.com", VALIDATE_AUTHORITY = False

plus two process-wide settings: `REQUESTS_CA_BUNDLE=fake.issuer.ca_path` (the SDK fetches the
OpenID metadata, and msal its tokens, with `requests`), and `with fake.issuer.patch_msal():`
around anything that makes the SDK call the connector - see "msal" below. Both are needed
whenever APP_ID is set, `require_auth` or not: the SDK gets a token before every connector call.

Wire details this mirrors:

* Inbound tokens (Bot Framework Service -> bot): `Authorization: Bearer <JWT>`, RS256, header
  `{"alg", "typ": "JWT", "kid", "x5t"}`, claims exactly `serviceurl`, `nbf`, `exp`, `iss`
  ("https://api.botframework.com") and `aud` (the bot's app id) - no `iat`, `ver` or `appid`:
  a token with `ver` and an `appid` different from `aud` would be taken for a skill token. The
  SDK checks: issuer in its list (before the signature; another issuer -> "Identity missing"),
  the `kid` found in the JWKS and its `endorsements` containing the activity's channelId
  ("msteams"), `alg` in RS256/RS384/RS512, the signature, `exp`/`nbf` with 300 s of leeway, `aud`
  == APP_ID and `serviceurl` == the activity's serviceUrl, compared as exact strings (so the
  trailing slash matters). The OpenID document is `GET /v1/.well-known/openidconfiguration`, its
  `jwks_uri` `GET /v1/.well-known/keys`.
* SDK caching: `JwtTokenExtractor.metadataCache` is class-level, keyed by metadata URL, and
  refreshes a URL's keys only once a day, with a synchronous `requests.get` on the calling loop.
  The signing keys are therefore generated once per process (every `FakeTokenIssuer` signs with
  the same key), so keys cached for a port that a later issuer reuses stay valid. A token whose
  `kid` is not in the cached JWKS makes the SDK raise IndexError (not a refresh).
* msal (the bot's token for the connector): the SDK builds
  `ConfidentialClientApplication(app_id, client_credential=password, authority=LOGIN_URL)` and
  ignores VALIDATE_AUTHORITY, so msal first asks *instance discovery* at the hard-wired
  https://login.microsoftonline.com/common/discovery/instance - unreachable offline (it fails
  at once with requests' ConnectionError, NameResolutionError). `issuer.patch_msal()` points
  that one URL at the issuer's `/common/discovery/instance`; then msal fetches
  `GET /{tenant}/v2.0/.well-known/openid-configuration` and POSTs the form `client_id`,
  `client_secret`, `grant_type=client_credentials` and
  `scope=https://api.botframework.com/.default` (HTTP Basic client auth is accepted too) to
  `/{tenant}/oauth2/v2.0/token`. A known app gets 200 `{"token_type": "Bearer", "expires_in":
  3599, "ext_expires_in": 3599, "access_token"}` (opaque here; a JWT in Entra ID); an unknown
  app 400 `unauthorized_client` (AADSTS700016), a wrong secret 401 `invalid_client`
  (AADSTS7000215), like Entra ID.
* Connector (msrest `ConnectorClient`, requests under the hood): paths are
  `{serviceUrl}v3/conversations/{conversationId}/activities[/{activityId}]` etc., with ids
  percent-encoded with `quote(safe="")` (":" "@" ";" "=" "/" all escaped); they are decoded
  here. The SDK accepts 200/201/202 for POST/PUT and only 200/202 for DELETE (a 204 would
  raise ErrorResponseException); this answers 201 `{"id": ...}` to POSTs (as Teams does),
  200 `{"id": <same id>}` to PUT, 200 with an empty body to DELETE. Errors are
  `{"error": {"code", "message"}}`. Retries: msrest's urllib3 policy (3 retries) applies to
  GET/PUT/DELETE but never POST (urllib3 2 ignores msrest's `method_whitelist`): 408/500/502/
  503/504 are retried after 0, 1.6 and 3.2 s, then msrest raises ClientRequestError (RetryError);
  413/429/503 carrying `Retry-After` are retried after that delay. So a failed send surfaces at
  once as ErrorResponseException, but `fail_next(status=500, method="PUT")` is absorbed by one
  silent retry: to fail an update script 4 failures, or a status never retried (400, 403, 404,
  412, or 429 without retry_after).
* Teams conversation ids: personal "a:personal-<user>", group chat "19:group-1@thread.v2",
  channel "19:general@thread.tacv2;messageid=<root post id>": Teams appends the thread's root
  post id, which for a new top-level post is the post's own activity id. Sending to the bare
  channel id makes a new top-level post. Activity ids are millisecond-timestamp-like strings
  ("1700000000001", increasing); event activities (conversationUpdate, invoke...) have
  "f:<guid>" ids.
* Attachments: inline images arrive as `{"contentType": "image/*", "contentUrl":
  "{serviceUrl}v3/attachments/<id>/views/original"}`, downloadable only with the bot's Bearer
  token; files as `application/vnd.microsoft.teams.file.download.info` with a pre-authenticated
  `downloadUrl` (no token; here `/files/<name>`). Messages that @mention the bot carry the
  `<at>bothub</at>` text, a `mention` entity and a `text/html` copy of the message.

Typical use::

    with FakeBotFramework() as fake, fake.issuer.patch_msal():
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.issuer.ca_path)
        fake.require_auth = True
        activity = fake.message("how do I reset my password?", scope="channel", mention_bot=True)
        response = await http.post(bot_url, json=activity, headers=fake.auth_headers(activity))
        [reply] = await fake.wait_for_async(1)
        assert reply["text"] == "..."
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import copy
import datetime
import functools
import html
import ipaddress
import itertools
import json
import os
import secrets
import shutil
import ssl
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Literal, Self, TypedDict, Unpack
from unittest import mock
from urllib.parse import quote, unquote, unquote_plus, urlsplit

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.fakes.background_server import BackgroundServer

__all__ = [
    "BOT_FRAMEWORK_ISSUER",
    "BOT_FRAMEWORK_SCOPE",
    "DEFAULT_APP_ID",
    "DEFAULT_APP_PASSWORD",
    "FILE_DOWNLOAD_INFO",
    "SIGNING_KEY_ID",
    "ConnectorCall",
    "Context",
    "FakeBotFramework",
    "FakeTokenIssuer",
    "Scope",
    "TokenRequest",
]

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
BOT_FRAMEWORK_SCOPE = "https://api.botframework.com/.default"
SIGNING_KEY_ID = "fake-signing-key"
ENDORSEMENTS = ("msteams", "emulator", "webchat")
DEFAULT_CHANNEL_AUTH_TENANT = "botframework.com"
DEFAULT_APP_ID = "11111111-2222-3333-4444-555555555555"
DEFAULT_APP_PASSWORD = "fake-app-password"
DEFAULT_BOT_NAME = "bothub"
DEFAULT_TENANT_ID = "tenant-1"
DEFAULT_USER_ID = "29:user-1"
DEFAULT_USER_NAME = "Ada Lovelace"
DEFAULT_TEAM_ID = "19:team@thread.tacv2"
DEFAULT_CHANNEL_ID = "19:general@thread.tacv2"
DEFAULT_GROUP_CHAT_ID = "19:group-1@thread.v2"
FILE_DOWNLOAD_INFO = "application/vnd.microsoft.teams.file.download.info"
TOKEN_LIFETIME = 3599

Scope = Literal["personal", "groupChat", "channel"]

_FIRST_ACTIVITY_ID = 1_700_000_000_001
_LOCAL_OFFSET = datetime.timedelta(hours=-7)  # clients report America/Los_Angeles (PDT)
_POLL_INTERVAL = 0.005
_WAIT_TIMEOUT = 10.0
_MENTION_ITEMTYPE = "http://schema.skype.com/Mention"
_CLIENT_INFO = {
    "locale": "en-US",
    "country": "US",
    "platform": "Web",
    "timezone": "America/Los_Angeles",
    "type": "clientInfo",
}
_ERROR_CODES = {
    400: "BadArgument",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    412: "PreconditionFailed",
    413: "MessageSizeTooBig",
    429: "Throttled",
    500: "ServiceError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


# -- keys and certificates ---------------------------------------------------------------------


@functools.cache
def _rsa_key(purpose: str) -> rsa.RSAPrivateKey:
    """One RSA-2048 key per purpose ("signing", "forged", "tls") per process; see the module
    docstring for why the signing key must outlive one issuer."""
    del purpose  # only the cache key
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _self_signed_certificate(key: rsa.RSAPrivateKey) -> x509.Certificate:
    """A certificate for 127.0.0.1/localhost that is its own CA (so it can be the CA bundle)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(key_id, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_id), critical=False
        )
        .sign(key, hashes.SHA256())
    )


def _remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _error_body(status: int, code: str | None = None, message: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "code": code or _ERROR_CODES.get(status, "ServiceError"),
            "message": message or f"The fake Bot Framework answered {status}.",
        }
    }


def _iso(moment: datetime.datetime) -> str:
    """Teams' timestamp format: 7 fractional digits (.NET ticks) and "Z" or an offset."""
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0"
    offset = moment.utcoffset()
    if not offset:
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _aad_object_id(user_id: str) -> str:
    """A stable Entra object id per user id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://teams.fake/users/{user_id}"))


def _base_conversation(conversation_id: str) -> str:
    """A channel thread's conversation id without its ";messageid=<root>" suffix."""
    return conversation_id.split(";messageid=", 1)[0]


# -- token issuer ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRequest:
    """One POST to the client-credentials token endpoint."""

    tenant: str
    client_id: str | None
    scope: str | None
    grant_type: str | None
    auth_method: str  # "client_secret_post", "client_secret_basic" or "none"
    status: int  # 200 when a token was issued
    at: float  # time.monotonic() when it arrived


class FakeTokenIssuer(BackgroundServer):
    """Bot Framework's OpenID metadata + JWKS and an Entra ID token endpoint, over HTTPS.

    See the module docstring. Public attributes may be changed at any time."""

    name = "fake Bot Framework token issuer"
    thread_name = "fake-botframework-issuer"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self._signing_key = _rsa_key("signing")
        self._forged_key = _rsa_key("forged")
        self._tls_key = _rsa_key("tls")
        self._certificate = _self_signed_certificate(self._tls_key)
        self._directory = ""
        self._cleanup: weakref.finalize[Any, Any] | None = None
        self._write_files()
        self._apps: dict[str, str] = {}
        self._issued: dict[str, str] = {}  # access token -> app id; survive reset()
        self._init_state()

    def _init_state(self) -> None:
        """Per-test state at its defaults (call with the lock held, or in init)."""
        self.token_requests: list[TokenRequest] = []
        self.discovery_requests = 0  # instance discovery (see patch_msal)
        self._metadata_fetches = 0
        self._jwks_fetches = 0

    # -- files and TLS -------------------------------------------------------------------------

    def _write_files(self) -> None:
        """Write the CA bundle and the server's key+certificate to a private temp directory."""
        if self._directory and os.path.isdir(self._directory):
            return
        self._directory = tempfile.mkdtemp(prefix="fake-botframework-")
        self._cleanup = weakref.finalize(self, _remove_tree, self._directory)
        cert_pem = self._certificate.public_bytes(serialization.Encoding.PEM)
        key_pem = self._tls_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with open(os.path.join(self._directory, "ca.pem"), "wb") as ca_file:
            ca_file.write(cert_pem)
        with open(os.path.join(self._directory, "server.pem"), "wb") as server_file:
            server_file.write(key_pem + cert_pem)

    @property
    def ca_path(self) -> str:
        """A PEM file with the issuer's self-signed certificate, for REQUESTS_CA_BUNDLE (or
        SSL_CERT_FILE, `ssl.create_default_context(cafile=...)`). Removed by stop()/close(); a
        restart writes it again, under a new path."""
        return os.path.join(self._directory, "ca.pem")

    def _ssl_context(self) -> ssl.SSLContext | None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(os.path.join(self._directory, "server.pem"))
        return context

    def start(self) -> Self:
        self._write_files()
        return super().start()

    def stop(self) -> None:
        super().stop()
        self.close()

    def close(self) -> None:
        """Remove the certificate files (stop() does it too)."""
        if self._cleanup is not None:
            self._cleanup()

    # -- URLs ----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """ "https://127.0.0.1:PORT"."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def openid_metadata_url(self) -> str:
        """For TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL (and the emulator's)."""
        return f"{self.base_url}/v1/.well-known/openidconfiguration"

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/v1/.well-known/keys"

    @property
    def login_url_prefix(self) -> str:
        """ "https://127.0.0.1:PORT/" - the Entra ID authority prefix."""
        return f"{self.base_url}/"

    def login_url(self, tenant: str = DEFAULT_CHANNEL_AUTH_TENANT) -> str:
        """The authority for TO_CHANNEL_FROM_BOT_LOGIN_URL: "https://127.0.0.1:PORT/<tenant>"."""
        return f"{self.base_url}/{tenant}"

    def token_url(self, tenant: str = DEFAULT_CHANNEL_AUTH_TENANT) -> str:
        return f"{self.base_url}/{tenant}/oauth2/v2.0/token"

    @property
    def instance_discovery_url(self) -> str:
        return f"{self.base_url}/common/discovery/instance"

    @contextlib.contextmanager
    def patch_msal(self) -> Iterator[None]:
        """Send msal's instance discovery (hard-wired to login.microsoftonline.com) here.

        Needed for the SDK's own MicrosoftAppCredentials, which cannot turn it off; an app that
        builds its ConfidentialClientApplication with `instance_discovery=False` (or
        `validate_authority=False`) needs no patch. Restores msal on exit."""
        endpoint = self.instance_discovery_url

        def discovery_endpoint(instance: str) -> str:
            del instance
            return endpoint

        with (
            mock.patch("msal.authority._get_instance_discovery_endpoint", discovery_endpoint),
            mock.patch("msal.application._get_instance_discovery_endpoint", discovery_endpoint),
        ):
            yield

    # -- apps and tokens -----------------------------------------------------------------------

    def register_app(self, app_id: str, password: str) -> None:
        """Make the token endpoint issue tokens to `app_id` for `password` (kept by reset())."""
        with self._lock:
            self._apps[app_id] = password

    @property
    def issued_tokens(self) -> frozenset[str]:
        """Every access token issued so far (they never expire here; reset() keeps them)."""
        with self._lock:
            return frozenset(self._issued)

    def token_owner(self, access_token: str) -> str | None:
        """The app id an access token was issued to, or None if this issuer never issued it."""
        with self._lock:
            return self._issued.get(access_token)

    def issue_token(self, app_id: str) -> str:
        """An access token for `app_id`, without the HTTP round trip."""
        token = "fake-bf-token-" + secrets.token_urlsafe(32)
        with self._lock:
            self._issued[token] = app_id
        return token

    @property
    def metadata_fetches(self) -> int:
        """GETs of the OpenID metadata document since the last reset()."""
        with self._lock:
            return self._metadata_fetches

    @property
    def jwks_fetches(self) -> int:
        with self._lock:
            return self._jwks_fetches

    def jwks(self) -> dict[str, Any]:
        numbers = self._signing_key.public_key().public_numbers()
        key = {
            "kty": "RSA",
            "use": "sig",
            "kid": SIGNING_KEY_ID,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
            "endorsements": list(ENDORSEMENTS),
        }
        return {"keys": [key]}

    def channel_token(
        self,
        *,
        app_id: str,
        service_url: str,
        issuer: str = BOT_FRAMEWORK_ISSUER,
        audience: str | None = None,
        expires_in: int = 3600,
        not_before_offset: int = -60,
        signed_with: Literal["issuer", "forged", "none"] = "issuer",
        kid: str = SIGNING_KEY_ID,
        extra_claims: dict[str, Any] | None = None,
    ) -> str:
        """A JWT like the one Bot Framework Service sends with an activity for `app_id`.

        Claims: serviceurl, nbf (now + not_before_offset), exp (now + expires_in), iss, aud
        (default app_id); `extra_claims` add or override claims, a None value removes one.
        "forged" signs with an unrelated key under the real kid; "none" makes an `alg: none`
        token (with the kid, so the SDK gets as far as its algorithm check). Mind the SDK's
        300 s leeway: an "expired" token needs expires_in < -300."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "serviceurl": service_url,
            "nbf": now + not_before_offset,
            "exp": now + expires_in,
            "iss": issuer,
            "aud": app_id if audience is None else audience,
        }
        for name, value in (extra_claims or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        headers = {"kid": kid, "x5t": kid}
        if signed_with == "none":
            return jwt.encode(claims, "", algorithm="none", headers=headers)
        key = self._signing_key if signed_with == "issuer" else self._forged_key
        return jwt.encode(claims, key, algorithm="RS256", headers=headers)

    def reset(self) -> None:
        """Forget recorded requests; registered apps and issued tokens stay valid."""
        with self._lock:
            self._init_state()

    # -- HTTP ----------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/.well-known/openidconfiguration", self._openid_configuration)
        app.router.add_get("/v1/.well-known/keys", self._keys)
        app.router.add_get("/common/discovery/instance", self._instance_discovery)
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self._tenant_config)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        return app

    async def _openid_configuration(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self._metadata_fetches += 1
        return web.json_response(
            {
                "issuer": BOT_FRAMEWORK_ISSUER,
                "authorization_endpoint": "https://invalid.botframework.com",
                "jwks_uri": self.jwks_url,
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            }
        )

    async def _keys(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self._jwks_fetches += 1
        return web.json_response(self.jwks())

    async def _instance_discovery(self, request: web.Request) -> web.StreamResponse:
        """Entra ID's instance discovery: where the authority's tenant discovery document is."""
        with self._lock:
            self.discovery_requests += 1
        endpoint = request.query.get("authorization_endpoint", "")
        segments = [s for s in urlsplit(endpoint).path.split("/") if s]
        tenant = segments[0] if segments else "common"
        return web.json_response(
            {
                "tenant_discovery_endpoint": (
                    f"{self.base_url}/{tenant}/v2.0/.well-known/openid-configuration"
                ),
                "api-version": "1.1",
                "metadata": [
                    {
                        "preferred_network": "127.0.0.1",
                        "preferred_cache": "127.0.0.1",
                        "aliases": ["127.0.0.1", "localhost"],
                    }
                ],
            }
        )

    async def _tenant_config(self, request: web.Request) -> web.StreamResponse:
        tenant = request.match_info["tenant"]
        base = f"{self.base_url}/{tenant}"
        return web.json_response(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "tenant_region_scope": "WW",
                "cloud_instance_name": "microsoftonline.com",
            }
        )

    async def _token(self, request: web.Request) -> web.StreamResponse:
        tenant = request.match_info["tenant"]
        form = {k: str(v) for k, v in (await request.post()).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth_method = "client_secret_post" if client_secret is not None else "none"
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Basic "):
            try:
                decoded = base64.b64decode(authorization[len("Basic ") :]).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                decoded = ":"
            basic_id, _, basic_secret = decoded.partition(":")  # each form-encoded (RFC 6749)
            client_id, client_secret = unquote_plus(basic_id), unquote_plus(basic_secret)
            auth_method = "client_secret_basic"
        grant_type, scope = form.get("grant_type"), form.get("scope")
        status, body = self._grant(client_id, client_secret, grant_type, scope)
        with self._lock:
            self.token_requests.append(
                TokenRequest(
                    tenant=tenant,
                    client_id=client_id,
                    scope=scope,
                    grant_type=grant_type,
                    auth_method=auth_method,
                    status=status,
                    at=time.monotonic(),
                )
            )
        return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})

    def _grant(
        self,
        client_id: str | None,
        client_secret: str | None,
        grant_type: str | None,
        scope: str | None,
    ) -> tuple[int, dict[str, Any]]:
        if grant_type != "client_credentials":
            return 400, self._aad_error(
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'.",
            )
        if not client_id:
            return 400, self._aad_error(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
        with self._lock:
            password = self._apps.get(client_id)
        if password is None:
            return 400, self._aad_error(
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was "
                "not found in the directory 'Bot Framework'.",
            )
        if client_secret != password:
            return 401, self._aad_error(
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret "
                f"being sent in the request is the client secret value, not the client secret "
                f"ID, for a secret added to app '{client_id}'.",
            )
        if not scope or not scope.endswith("/.default"):
            return 400, self._aad_error(
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. "
                "Client credential flows must have a scope value with /.default suffixed to "
                "the resource identifier (application ID URI).",
            )
        token = self.issue_token(client_id)
        return 200, {
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "ext_expires_in": TOKEN_LIFETIME,
            "access_token": token,
        }

    @staticmethod
    def _aad_error(error: str, code: int, description: str) -> dict[str, Any]:
        trace_id = str(uuid.uuid4())
        correlation_id = str(uuid.uuid4())
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return {
            "error": error,
            "error_description": (
                f"AADSTS{code}: {description} Trace ID: {trace_id} Correlation ID: "
                f"{correlation_id} Timestamp: {now}"
            ),
            "error_codes": [code],
            "timestamp": now,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        }


# -- connector ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectorCall:
    """One request to the connector as the fake saw it (ids decoded from the path)."""

    method: str
    path: str  # as received, percent-encoded
    conversation_id: str | None
    activity_id: str | None
    body: dict[str, Any] | None
    authorization: str | None
    at: float  # time.monotonic() when it arrived
    operation: str = ""  # the SDK operation, e.g. "reply_to_activity"; "" for unknown routes
    status: int = 200  # what the fake answered
    member_id: str | None = None


class Context(TypedDict, total=False):
    """Where an inbound activity happens and who sends it (see FakeBotFramework.message)."""

    scope: Scope
    conversation_id: str | None  # default: from scope (channel: <channel_id>;messageid=<root>)
    reply_chain: str | None  # channel thread root id (default: the activity's own id)
    user_id: str
    user_name: str
    aad_object_id: str | None  # default: a stable uuid derived from user_id
    team_id: str
    channel_id: str  # the Teams channel (not the activity's channelId, always "msteams")
    tenant_id: str | None  # default: the fake's tenant_id


@dataclass
class _Fault:
    status: int
    retry_after: float | None
    method: str | None
    code: str | None
    message: str | None


@dataclass
class _Delay:
    seconds: float
    method: str | None


@dataclass
class _Posted:
    """An activity the bot posted, as it is now."""

    conversation_id: str
    activity_id: str
    reply_to_id: str | None
    body: dict[str, Any]
    deleted: bool = False
    versions: list[dict[str, Any]] = field(default_factory=list)  # bodies before each update


class FakeBotFramework(BackgroundServer):
    """The Bot Framework connector for Teams, plus activity builders; see the module docstring.

    Starting/stopping it starts/stops its `issuer` too. Public attributes may be changed at
    any time (reset() restores them)."""

    name = "fake Bot Framework connector"
    thread_name = "fake-botframework"

    def __init__(
        self, *, app_id: str = DEFAULT_APP_ID, app_password: str = DEFAULT_APP_PASSWORD
    ) -> None:
        super().__init__()
        self._default_app = (app_id, app_password)
        self.issuer = FakeTokenIssuer()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # notified on every recorded call
        self._ids = itertools.count(_FIRST_ACTIVITY_ID)
        self._init_state()

    def _init_state(self) -> None:
        """Per-test state at its defaults (call with the lock held, or in init)."""
        self.app_id, self.app_password = self._default_app
        self.issuer.register_app(self.app_id, self.app_password)
        self.bot_name = DEFAULT_BOT_NAME
        self.tenant_id = DEFAULT_TENANT_ID
        self.require_auth = False
        self._calls: list[ConnectorCall] = []
        self._posted: list[_Posted] = []
        self._faults: collections.deque[_Fault] = collections.deque()
        self._delays: collections.deque[_Delay] = collections.deque()
        self._members: dict[str | None, dict[str, dict[str, Any]]] = {}
        self._attachments: dict[str, tuple[bytes, str, str]] = {}  # id -> data, type, name
        self._files: dict[str, tuple[bytes, str]] = {}
        self._created = 0
        self.add_member(DEFAULT_USER_ID, DEFAULT_USER_NAME)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the issuer, then the connector."""
        self.issuer.start()
        try:
            return super().start()
        except BaseException:
            self.issuer.stop()
            raise

    def stop(self) -> None:
        super().stop()
        self.issuer.stop()

    def reset(self) -> None:
        """Forget calls, posted activities, members, attachments and scripted faults and restore
        every default (the issuer's records too; its issued tokens stay valid)."""
        with self._lock:
            self._init_state()
            self._changed.notify_all()
        self.issuer.reset()

    @property
    def base_url(self) -> str:
        """ "http://127.0.0.1:PORT"."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def service_url(self) -> str:
        """The activities' serviceUrl: "http://127.0.0.1:PORT/" (trailing slash, as Teams)."""
        return f"{self.base_url}/"

    @property
    def bot_id(self) -> str:
        return f"28:{self.app_id}"

    def sdk_configuration(self, **overrides: Any) -> SimpleNamespace:
        """A configuration object for botbuilder's ConfigurationBotFrameworkAuthentication
        pointing every URL at this fake; keyword arguments override or add settings."""
        settings: dict[str, Any] = {
            "APP_ID": self.app_id,
            "APP_PASSWORD": self.app_password,
            "APP_TYPE": "MultiTenant",
            "TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL": self.issuer.openid_metadata_url,
            "TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL": self.issuer.openid_metadata_url,
            "TO_BOT_FROM_CHANNEL_TOKEN_ISSUER": BOT_FRAMEWORK_ISSUER,
            "TO_CHANNEL_FROM_BOT_OAUTH_SCOPE": BOT_FRAMEWORK_ISSUER,
            "TO_CHANNEL_FROM_BOT_LOGIN_URL": self.issuer.login_url(),
            "OAUTH_URL": BOT_FRAMEWORK_ISSUER,
            "VALIDATE_AUTHORITY": False,
        }
        settings.update(overrides)
        return SimpleNamespace(**settings)

    # -- scripting -----------------------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        retry_after: float | None = None,
        method: str | None = None,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        """The next `count` /v3 calls (of HTTP `method`, if given) answer `status` with
        `{"error": {"code", "message"}}` (and `Retry-After` when given) and change nothing.
        E.g. code="BotNotInConversationRoster", status=403 for an uninstalled bot.

        Teams sends Retry-After in whole seconds; a fractional retry_after (handy in fast tests)
        is sent as is, e.g. "0.2" - which urllib3, retrying GET/PUT/DELETE inside the SDK on
        413/429/503, rejects with InvalidHeader. See the module docstring for SDK retries."""
        with self._lock:
            for _ in range(count):
                upper = method.upper() if method else None
                self._faults.append(_Fault(status, retry_after, upper, code, message))

    def delay(self, seconds: float, count: int = 1, *, method: str | None = None) -> None:
        """The next `count` /v3 calls (of HTTP `method`, if given) are answered `seconds` late."""
        with self._lock:
            for _ in range(count):
                self._delays.append(_Delay(seconds, method.upper() if method else None))

    def add_member(
        self,
        user_id: str,
        name: str,
        *,
        conversation_id: str | None = None,
        aad_object_id: str | None = None,
        email: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Register a member (a TeamsChannelAccount) of one conversation (by default of every
        conversation) for GET .../members[/{id}]; the id or the aadObjectId finds it."""
        given, _, surname = name.partition(" ")
        email = email or f"{given.lower() or user_id}@example.com"
        member: dict[str, Any] = {
            "id": user_id,
            "name": name,
            "aadObjectId": aad_object_id or _aad_object_id(user_id),
            "givenName": given,
            "surname": surname or None,
            "email": email,
            "userPrincipalName": email,
            "tenantId": self.tenant_id,
            "userRole": "user",
        }
        member.update(extra)
        key = _base_conversation(conversation_id) if conversation_id else None
        with self._lock:
            self._members.setdefault(key, {})[user_id] = member
        return copy.deepcopy(member)

    def add_attachment(self, data: bytes, content_type: str, *, name: str = "image") -> str:
        """Host bytes like Teams hosts an inline image; return its contentUrl
        ("{serviceUrl}v3/attachments/<id>/views/original"). Needs the bot's token when
        require_auth is set."""
        with self._lock:
            attachment_id = f"0-wus-d{len(self._attachments) + 1}-{secrets.token_hex(16)}"
            self._attachments[attachment_id] = (data, content_type, name)
        return f"{self.service_url}v3/attachments/{attachment_id}/views/original"

    def add_file(self, name: str, data: bytes, content_type: str) -> str:
        """Host a file like SharePoint hosts a Teams file; return its pre-authenticated
        downloadUrl (no token needed, ever)."""
        with self._lock:
            self._files[name] = (data, content_type)
        return f"{self.base_url}/files/{quote(name, safe='')}"

    # -- inspection ----------------------------------------------------------------------------

    def calls(
        self, method: str | None = None, *, operation: str | None = None
    ) -> list[ConnectorCall]:
        """Every request so far (failed ones too, see `status`), in order."""
        with self._lock:
            return [
                call
                for call in self._calls
                if (method is None or call.method == method.upper())
                and (operation is None or call.operation == operation)
            ]

    def activities(
        self, conversation_id: str | None = None, type: str | None = None
    ) -> list[dict[str, Any]]:
        """Bodies of the activities the bot posted (send_to_conversation, reply_to_activity,
        create_conversation's activity) as they were sent, in order; conversation ids compare
        exactly."""
        with self._lock:
            return [
                copy.deepcopy(post.versions[0] if post.versions else post.body)
                for post in self._posted
                if (conversation_id is None or post.conversation_id == conversation_id)
                and (type is None or post.body.get("type") == type)
            ]

    def updates(
        self, conversation_id: str | None = None, activity_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Bodies of successful update_activity calls (PUT), in order."""
        with self._lock:
            return [
                copy.deepcopy(call.body or {})
                for call in self._calls
                if call.operation == "update_activity"
                and call.status < 300
                and (conversation_id is None or call.conversation_id == conversation_id)
                and (activity_id is None or call.activity_id == activity_id)
            ]

    def messages(self, conversation_id: str | None = None) -> list[dict[str, Any]]:
        """The bot's messages as they are now (after updates; deleted ones left out), in order,
        each its latest body plus the "id" the fake assigned, "conversation" {"id"} and, for
        replies, "replyToId". A bare channel id also matches its threads."""
        with self._lock:
            result = []
            for post in self._posted:
                if post.deleted or post.body.get("type", "message") != "message":
                    continue
                thread = post.conversation_id
                if conversation_id not in (None, thread, _base_conversation(thread)):
                    continue
                view = copy.deepcopy(post.body)
                view["id"] = post.activity_id
                view.setdefault("conversation", {})["id"] = post.conversation_id
                if post.reply_to_id is not None:
                    view["replyToId"] = post.reply_to_id
                result.append(view)
            return result

    def texts(self, conversation_id: str | None = None) -> list[str]:
        """The current text of each of the bot's messages (see messages())."""
        return [str(message.get("text") or "") for message in self.messages(conversation_id)]

    def deleted(self, conversation_id: str | None = None) -> list[str]:
        """Ids of the bot's activities deleted so far."""
        with self._lock:
            return [
                post.activity_id
                for post in self._posted
                if post.deleted
                and (conversation_id is None or post.conversation_id == conversation_id)
            ]

    def wait_for(
        self, condition: int | Callable[[], Any], *, timeout: float = _WAIT_TIMEOUT
    ) -> Any:
        """Block until `condition` holds; return its value. An int n waits for the bot to have
        posted n activities (returns activities()); a callable is polled until it returns
        something truthy (returned). For a bot in another thread or process: in an async test
        await wait_for_async() instead, so the bot on the test's loop can run."""
        check = self._condition(condition)
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (result := check()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(self._timeout_message(condition, timeout))
                self._changed.wait(min(remaining, 0.05))
            return result

    async def wait_for_async(
        self,
        condition: int | Callable[[], Any],
        *,
        timeout: float = _WAIT_TIMEOUT,  # noqa: ASYNC109 -- mirrors wait_for()
    ) -> Any:
        """wait_for() without blocking the calling event loop."""
        check = self._condition(condition)
        deadline = time.monotonic() + timeout
        while not (result := check()):
            if time.monotonic() >= deadline:
                raise TimeoutError(self._timeout_message(condition, timeout))
            await asyncio.sleep(_POLL_INTERVAL)
        return result

    def _condition(self, condition: int | Callable[[], Any]) -> Callable[[], Any]:
        if callable(condition):
            return condition
        count = condition

        def enough() -> list[dict[str, Any]] | None:
            activities = self.activities()
            return activities if len(activities) >= count else None

        return enough

    def _timeout_message(self, condition: int | Callable[[], Any], timeout: float) -> str:
        with self._lock:
            seen = [f"{c.method} {c.operation or c.path} -> {c.status}" for c in self._calls]
        wanted = f"{condition} posted activities" if isinstance(condition, int) else condition
        return f"waited {timeout} s for {wanted}; connector calls so far: {seen}"

    # -- auth helpers --------------------------------------------------------------------------

    def auth_headers(self, activity: dict[str, Any], **token_overrides: Any) -> dict[str, str]:
        """Headers Bot Framework Service sends with `activity` to the bot's endpoint;
        `token_overrides` go to issuer.channel_token() (e.g. signed_with="forged", or another
        service_url than the activity's)."""
        overrides: dict[str, Any] = {"app_id": self.app_id, "service_url": activity["serviceUrl"]}
        overrides.update(token_overrides)
        token = self.issuer.channel_token(**overrides)
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def _authorized(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        return self.issuer.token_owner(authorization[len("Bearer ") :]) is not None

    # -- activity builders ---------------------------------------------------------------------

    def next_activity_id(self) -> str:
        """A fresh message id ("1700000000001", "1700000000002"...), shared with the bot's posts."""
        with self._lock:
            return str(next(self._ids))

    def message(
        self,
        text: str,
        *,
        mention_bot: bool = False,
        attachments: list[dict[str, Any]] | None = None,
        activity_id: str | None = None,
        html_copy: bool | None = None,
        **context: Unpack[Context],
    ) -> dict[str, Any]:
        """A user's message as Teams sends it to the bot (see `Context` for where and who).

        With mention_bot the text starts with "<at>bothub</at> " and a mention entity is added;
        `html_copy` (default: when mentioning, as Teams does) appends the message's text/html
        attachment after `attachments`."""
        activity_id = activity_id or self.next_activity_id()
        activity = self._activity("message", activity_id, context, thread_root=activity_id)
        mention_text = f"<at>{self.bot_name}</at>"
        activity["textFormat"] = "plain"
        activity["text"] = f"{mention_text} {text}" if mention_bot else text
        all_attachments = copy.deepcopy(attachments or [])
        if html_copy if html_copy is not None else mention_bot:
            body = html.escape(text)
            if mention_bot:
                body = (
                    f'<span itemtype="{_MENTION_ITEMTYPE}" itemscope="" itemid="0">'
                    f"{html.escape(self.bot_name)}</span>&nbsp;{body}"
                )
            all_attachments.append(self.html_attachment(f"<p>{body}</p>"))
        if all_attachments:
            activity["attachments"] = all_attachments
        entities: list[dict[str, Any]] = []
        if mention_bot:
            entities.append(
                {
                    "type": "mention",
                    "text": mention_text,
                    "mentioned": {"id": self.bot_id, "name": self.bot_name},
                }
            )
        entities.append(dict(_CLIENT_INFO))
        activity["entities"] = entities
        return activity

    @staticmethod
    def image_attachment(url: str, content_type: str = "image/png") -> dict[str, Any]:
        """An inline (pasted) image: Teams says "image/*" whatever content_type the bytes have;
        the URL is typically an add_attachment() URL."""
        del content_type  # Teams does not tell; the download's Content-Type does
        return {"contentType": "image/*", "contentUrl": url}

    @staticmethod
    def file_download_attachment(
        name: str, download_url: str, file_type: str = "png"
    ) -> dict[str, Any]:
        """A file shared in a chat (personal scope), typically with an add_file() URL."""
        return {
            "contentType": FILE_DOWNLOAD_INFO,
            "contentUrl": f"https://contoso.sharepoint.com/personal/ada/Documents/{quote(name)}",
            "name": name,
            "content": {
                "downloadUrl": download_url,
                "uniqueId": str(uuid.uuid5(uuid.NAMESPACE_URL, download_url)).upper(),
                "fileType": file_type,
            },
        }

    @staticmethod
    def html_attachment(content: str) -> dict[str, Any]:
        return {"contentType": "text/html", "content": content}

    def conversation_update(
        self,
        *,
        members_added: list[dict[str, Any]] | None = None,
        members_removed: list[dict[str, Any]] | None = None,
        **context: Unpack[Context],
    ) -> dict[str, Any]:
        """Members joined or left (default: the bot was added). In channel scope the
        conversation is the team's channel itself and channelData has eventType
        "teamMemberAdded"/"teamMemberRemoved"."""
        if members_added is None and members_removed is None:
            members_added = [{"id": self.bot_id}]
        if context.get("scope", "personal") == "channel":
            context.setdefault("conversation_id", context.get("channel_id", DEFAULT_CHANNEL_ID))
        activity = self._activity("conversationUpdate", self._event_id(), context)
        if members_added is not None:
            activity["membersAdded"] = copy.deepcopy(members_added)
        if members_removed is not None:
            activity["membersRemoved"] = copy.deepcopy(members_removed)
        if context.get("scope", "personal") == "channel":
            event = "teamMemberAdded" if members_added else "teamMemberRemoved"
            activity["channelData"]["eventType"] = event
        return activity

    def installation_update(
        self, action: Literal["add", "remove"] = "add", **context: Unpack[Context]
    ) -> dict[str, Any]:
        """The app was installed ("add") or uninstalled ("remove") in the context's scope."""
        if context.get("scope", "personal") == "channel":
            context.setdefault("conversation_id", context.get("channel_id", DEFAULT_CHANNEL_ID))
        activity = self._activity("installationUpdate", self._event_id(), context)
        activity["action"] = action
        if context.get("scope", "personal") == "channel":
            channel = context.get("channel_id", DEFAULT_CHANNEL_ID)
            activity["channelData"]["settings"] = {"selectedChannel": {"id": channel}}
        activity["channelData"]["source"] = {"name": "message"}
        return activity

    def invoke_action(
        self,
        verb: str,
        data: dict[str, Any],
        *,
        reply_to_id: str | None = None,
        **context: Unpack[Context],
    ) -> dict[str, Any]:
        """A click on an Adaptive Card Action.Execute button: an `adaptiveCard/action` invoke,
        replyToId = the card message's id. The bot answers in the HTTP response, not through
        the connector."""
        activity = self._activity("invoke", self._event_id(), context, thread_root=reply_to_id)
        activity["name"] = "adaptiveCard/action"
        activity["value"] = {
            "action": {"type": "Action.Execute", "verb": verb, "data": copy.deepcopy(data)},
            "trigger": "manual",
        }
        if reply_to_id is not None:
            activity["replyToId"] = reply_to_id
        activity["channelData"]["source"] = {"name": "message"}
        activity["entities"] = [dict(_CLIENT_INFO)]
        return activity

    def message_reaction(
        self,
        reaction: str = "like",
        *,
        reply_to_id: str | None = None,
        added: bool = True,
        **context: Unpack[Context],
    ) -> dict[str, Any]:
        """A reaction ("like", "heart", "laugh", "surprised", "sad", "angry") put on (or taken
        off) message `reply_to_id` (default: the bot's latest message, else a fresh id)."""
        if reply_to_id is None:
            with self._lock:
                latest = [p.activity_id for p in self._posted if not p.deleted]
            reply_to_id = latest[-1] if latest else self.next_activity_id()
        activity = self._activity(
            "messageReaction", self._event_id(), context, thread_root=reply_to_id
        )
        activity["reactionsAdded" if added else "reactionsRemoved"] = [{"type": reaction}]
        activity["replyToId"] = reply_to_id
        return activity

    def typing(self, **context: Unpack[Context]) -> dict[str, Any]:
        """The user is typing (personal and group chats only, in Teams)."""
        activity = self._activity("typing", self.next_activity_id(), context)
        activity["entities"] = [dict(_CLIENT_INFO)]
        return activity

    def _event_id(self) -> str:
        return f"f:{uuid.uuid4()}"

    def _activity(
        self,
        activity_type: str,
        activity_id: str,
        context: Context,
        *,
        thread_root: str | None = None,
    ) -> dict[str, Any]:
        scope = context.get("scope", "personal")
        user_id = context.get("user_id", DEFAULT_USER_ID)
        tenant = context.get("tenant_id") or self.tenant_id
        team_id = context.get("team_id", DEFAULT_TEAM_ID)
        channel_id = context.get("channel_id", DEFAULT_CHANNEL_ID)
        conversation_id = context.get("conversation_id")
        conversation: dict[str, Any]
        if scope == "channel":
            if conversation_id is None:
                root = context.get("reply_chain") or thread_root
                conversation_id = f"{channel_id};messageid={root}" if root else channel_id
            conversation = {"isGroup": True, "conversationType": "channel"}
        elif scope == "groupChat":
            conversation = {"isGroup": True, "conversationType": "groupChat"}
            conversation_id = conversation_id or DEFAULT_GROUP_CHAT_ID
        else:
            conversation = {"conversationType": "personal"}
            conversation_id = conversation_id or f"a:personal-{user_id.removeprefix('29:')}"
        conversation["tenantId"] = tenant
        conversation["id"] = conversation_id
        channel_data: dict[str, Any] = {}
        if scope == "channel":
            channel_data.update(
                {
                    "teamsChannelId": channel_id,
                    "teamsTeamId": team_id,
                    "channel": {"id": channel_id},
                    "team": {"id": team_id},
                }
            )
        channel_data["tenant"] = {"id": tenant}
        now = datetime.datetime.now(datetime.UTC)
        local = now.astimezone(datetime.timezone(_LOCAL_OFFSET))
        return {
            "type": activity_type,
            "id": activity_id,
            "timestamp": _iso(now),
            "localTimestamp": _iso(local),
            "localTimezone": "America/Los_Angeles",
            "serviceUrl": self.service_url,
            "channelId": "msteams",
            "from": {
                "id": user_id,
                "name": context.get("user_name", DEFAULT_USER_NAME),
                "aadObjectId": context.get("aad_object_id") or _aad_object_id(user_id),
            },
            "conversation": conversation,
            "recipient": {"id": self.bot_id, "name": self.bot_name},
            "locale": "en-US",
            "channelData": channel_data,
        }

    # -- HTTP ----------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    @staticmethod
    def _route(method: str, segments: list[str]) -> tuple[str, dict[str, str]]:
        """(operation, path parameters) for a decoded path; ("", {}) when nothing matches."""
        n = len(segments)
        if n >= 2 and segments[0] == "files" and method == "GET":
            return "download_file", {"name": "/".join(segments[1:])}
        if n < 2 or segments[0] != "v3":
            return "", {}
        if segments[1] == "attachments" and method == "GET":
            if n == 3:
                return "get_attachment_info", {"attachment": segments[2]}
            if n == 5 and segments[3] == "views":
                return "get_attachment", {"attachment": segments[2], "view": segments[4]}
            return "", {}
        if segments[1] != "conversations":
            return "", {}
        if n == 2:
            return {"GET": "get_conversations", "POST": "create_conversation"}.get(method, ""), {}
        params = {"conversation": segments[2]}
        rest = segments[3:]
        table: dict[tuple[str, int, str], str] = {
            ("POST", 1, "activities"): "send_to_conversation",
            ("POST", 2, "activities"): "reply_to_activity",
            ("PUT", 2, "activities"): "update_activity",
            ("DELETE", 2, "activities"): "delete_activity",
            ("GET", 3, "activities"): "get_activity_members",
            ("GET", 1, "members"): "get_conversation_members",
            ("GET", 2, "members"): "get_conversation_member",
            ("GET", 1, "pagedmembers"): "get_conversation_paged_members",
        }
        operation = table.get((method, len(rest), rest[0] if rest else ""), "")
        if operation in ("get_activity_members",) and rest[2] != "members":
            return "", {}
        if len(rest) >= 2 and rest[0] == "activities":
            params["activity"] = rest[1]
        if len(rest) == 2 and rest[0] == "members":
            params["member"] = rest[1]
        return operation, params

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        raw_path = request.raw_path.split("?", 1)[0]
        segments = [unquote(segment) for segment in raw_path.strip("/").split("/")]
        method = request.method.upper()
        operation, params = self._route(method, segments)
        authorization = request.headers.get("Authorization")
        body: dict[str, Any] | None = None
        raw = await request.read()
        bad_body = False
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                body = parsed
            else:
                bad_body = True
        is_v3 = bool(segments) and segments[0] == "v3"

        delay = self._take_delay(method) if is_v3 else None
        if delay:
            await asyncio.sleep(delay)

        def record(status: int) -> None:
            call = ConnectorCall(
                method=method,
                path=raw_path,
                conversation_id=params.get("conversation"),
                activity_id=params.get("activity"),
                body=copy.deepcopy(body),
                authorization=authorization,
                at=arrived,
                operation=operation,
                status=status,
                member_id=params.get("member"),
            )
            self._calls.append(call)
            self._changed.notify_all()

        with self._lock:
            if is_v3 and self.require_auth and not self._authorized(authorization):
                record(401)
                message = "Authorization has been denied for this request."
                return web.json_response(_error_body(401, "Unauthorized", message), status=401)
            fault = self._take_fault(method) if is_v3 else None
            if fault is not None:
                record(fault.status)
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                return web.json_response(
                    _error_body(fault.status, fault.code, fault.message),
                    status=fault.status,
                    headers=headers,
                )
            if not operation:
                record(404)
                message = f"No route for {method} {raw_path}"
                return web.json_response(_error_body(404, "NotFound", message), status=404)
            if bad_body or (method in ("POST", "PUT") and body is None):
                record(400)
                message = "The request body must be a JSON object."
                return web.json_response(_error_body(400, "BadSyntax", message), status=400)
            status, response = self._dispatch(operation, params, body)
            record(status)
        return response

    def _take_fault(self, method: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method is None or fault.method == method:
                self._faults.remove(fault)
                return fault
        return None

    def _take_delay(self, method: str) -> float | None:
        with self._lock:
            for delay in self._delays:
                if delay.method is None or delay.method == method:
                    self._delays.remove(delay)
                    return delay.seconds
        return None

    # -- operations (called with the lock held) ------------------------------------------------

    def _dispatch(
        self, operation: str, params: dict[str, str], body: dict[str, Any] | None
    ) -> tuple[int, web.StreamResponse]:
        conversation = params.get("conversation", "")
        activity_id = params.get("activity", "")
        if operation in ("send_to_conversation", "reply_to_activity"):
            assert body is not None
            if not body.get("type"):
                return self._error(400, "BadArgument", "Activity type is required.")
            new_id = str(next(self._ids))
            reply_to = activity_id if operation == "reply_to_activity" else None
            self._posted.append(_Posted(conversation, new_id, reply_to, copy.deepcopy(body)))
            return 201, web.json_response({"id": new_id}, status=201)
        if operation == "update_activity":
            assert body is not None
            post = self._find_post(conversation, activity_id)
            if post is None:
                return self._error(404, "ActivityNotFound", "The activity was not found.")
            post.versions.append(post.body)
            post.body = copy.deepcopy(body)
            return 200, web.json_response({"id": activity_id})
        if operation == "delete_activity":
            post = self._find_post(conversation, activity_id)
            if post is None:
                return self._error(404, "ActivityNotFound", "The activity was not found.")
            post.deleted = True
            return 200, web.Response(status=200)
        if operation == "create_conversation":
            return self._create_conversation(body or {})
        if operation == "get_conversations":
            ids = list(dict.fromkeys(post.conversation_id for post in self._posted))
            conversations = [{"id": cid, "members": []} for cid in ids]
            return 200, web.json_response({"conversations": conversations})
        if operation in ("get_conversation_members", "get_activity_members"):
            return 200, web.json_response(self._members_of(conversation))
        if operation == "get_conversation_paged_members":
            return 200, web.json_response({"members": self._members_of(conversation)})
        if operation == "get_conversation_member":
            member = self._member(conversation, params.get("member", ""))
            if member is None:
                return self._error(404, "MemberNotFoundInConversation", "The member was not found.")
            return 200, web.json_response(member)
        if operation in ("get_attachment", "get_attachment_info"):
            entry = self._attachments.get(params.get("attachment", ""))
            if entry is None:
                return self._error(404, "NotFound", "The attachment was not found.")
            data, content_type, name = entry
            if operation == "get_attachment_info":
                views = [{"viewId": "original", "size": len(data)}]
                return 200, web.json_response({"name": name, "type": content_type, "views": views})
            if params.get("view") != "original":
                return self._error(404, "NotFound", "The attachment view was not found.")
            return 200, web.Response(body=data, content_type=content_type)
        if operation == "download_file":
            file_entry = self._files.get(params.get("name", ""))
            if file_entry is None:
                return 404, web.Response(status=404, text="Not Found", content_type="text/plain")
            data, content_type = file_entry
            return 200, web.Response(body=data, content_type=content_type)
        return self._error(404, "NotFound", f"{operation} is not implemented by the fake.")

    @staticmethod
    def _error(status: int, code: str, message: str) -> tuple[int, web.StreamResponse]:
        return status, web.json_response(_error_body(status, code, message), status=status)

    def _find_post(self, conversation_id: str, activity_id: str) -> _Posted | None:
        base = _base_conversation(conversation_id)
        for post in self._posted:
            if (
                post.activity_id == activity_id
                and not post.deleted
                and _base_conversation(post.conversation_id) == base
            ):
                return post
        return None

    def _members_of(self, conversation_id: str) -> list[dict[str, Any]]:
        merged = dict(self._members.get(None, {}))
        merged.update(self._members.get(_base_conversation(conversation_id), {}))
        return copy.deepcopy(list(merged.values()))

    def _member(self, conversation_id: str, member_id: str) -> dict[str, Any] | None:
        for member in self._members_of(conversation_id):
            if member_id in (member["id"], member.get("aadObjectId")):
                return member
        return None

    def _create_conversation(self, body: dict[str, Any]) -> tuple[int, web.StreamResponse]:
        """Teams: a channel post when channelData names a channel (the conversation is then
        "<channel>;messageid=<post id>"), else a 1:1 or group chat "a:new-N"."""
        activity = body.get("activity")
        channel_data = body.get("channelData") or {}
        channel = (channel_data.get("channel") or {}).get("id")
        if channel and not isinstance(activity, dict):
            return self._error(400, "BadArgument", "A channel conversation needs an activity.")
        activity_id = str(next(self._ids)) if isinstance(activity, dict) else None
        if channel:
            conversation_id = f"{channel};messageid={activity_id}"
        else:
            self._created += 1
            conversation_id = f"a:new-{self._created}"
        if isinstance(activity, dict) and activity_id is not None:
            self._posted.append(
                _Posted(conversation_id, activity_id, None, copy.deepcopy(activity))
            )
        response: dict[str, Any] = {"id": conversation_id, "serviceUrl": self.service_url}
        if activity_id is not None:
            response["activityId"] = activity_id
        return 201, web.json_response(response, status=201)
