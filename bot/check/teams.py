"""Teams: get the bot's own token from Microsoft Entra ID with MICROSOFT_APP_ID and
MICROSOFT_APP_PASSWORD, as the hub does before it answers (msal's client-credentials flow at the
login URL `adapters.teams.wiring.BotCredentials` works out: TEAMS_LOGIN_URL or Microsoft's).

msal is synchronous, so the request runs in a worker thread, bounded by msal's own timeout: a
thread cannot be cancelled, and one left hanging would hold up the end of the command.
"""

from __future__ import annotations

import asyncio

import requests

from adapters.teams.wiring import BotCredentials, client_credentials_token
from bot.check.context import Check, Context
from bot.check.findings import Finding, failed, first_line, ok, public_url, warning

PART = "teams"
CREDENTIALS_FIX = ("check MICROSOFT_APP_ID and MICROSOFT_APP_PASSWORD (the client secret of the "
                   "bot's Entra app registration; secrets expire) and, for a single-tenant "
                   "bot, MICROSOFT_APP_TENANT_ID")
LOGIN_FIX = ("check TEAMS_LOGIN_URL (unset it for Microsoft's) and the network path to "
             "login.microsoftonline.com")


def checks(context: Context) -> list[Check]:
    return [Check(PART, check_teams, LOGIN_FIX)]


def credentials_of(context: Context) -> BotCredentials:
    settings = context.settings
    password = settings.microsoft_app_password
    return BotCredentials(app_id=settings.microsoft_app_id,
                          password=password.get_secret_value() if password else None,
                          tenant_id=settings.microsoft_app_tenant_id,
                          openid_metadata_url=settings.teams_openid_metadata_url,
                          login_url=settings.teams_login_url)


async def check_teams(context: Context) -> list[Finding]:
    credentials = credentials_of(context)
    if not credentials.app_id:
        return [warning(PART, "auth off (emulator only): /api/messages accepts activities "
                              "without a token",
                        "set MICROSOFT_APP_ID and MICROSOFT_APP_PASSWORD to serve Teams; "
                        "leave them unset only for a local Bot Framework Emulator")]
    authority = public_url(credentials.authority)
    try:
        result = await asyncio.to_thread(client_credentials_token, credentials, context.timeout)
    except requests.Timeout:
        return [failed(PART, f"no answer within {context.timeout:g} s", LOGIN_FIX)]
    except TimeoutError:  # an OSError too: the runner reports it, as for every part
        raise
    except (requests.RequestException, OSError) as exc:
        return [failed(PART, f"cannot reach {authority} ({type(exc).__name__}: "
                             f"{first_line(exc, 160)})",
                       LOGIN_FIX)]
    except ValueError as exc:  # msal: the authority's metadata could not be read
        return [failed(PART, f"{authority} is not a usable login authority "
                             f"({first_line(exc, 160)})",
                       "check TEAMS_LOGIN_URL and MICROSOFT_APP_TENANT_ID")]
    if "access_token" in result:
        return [ok(PART, f"app {credentials.app_id} got a token from {authority}")]
    error = str(result.get("error") or "no token")
    said = str(result.get("error_description") or "").strip().splitlines()
    description = said[0][:160] if said else "no description"
    return [failed(PART, f"credentials rejected ({error}: {description})", CREDENTIALS_FIX)]
