"""Discord: log in with discord.py's own HTTP client at DISCORD_API_URL (`GET /users/@me`, as
`Client.start` does), read the application's flags for the Message Content intent the adapter
asks for, and look up the escalation channel.

discord.py keeps its REST base as a class attribute (`Route.BASE`), as the adapter knows: it is
set for the check and put back afterwards. `bothub check` runs alone in its process, so nothing
else is using discord.py meanwhile.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import discord
from discord.http import HTTPClient, Route

from bot.check.context import Check, Context
from bot.check.findings import Finding, failed, first_line, ok, public_url, skipped

PART = "discord"
ESCALATION_PART = "discord escalation channel"
DEFAULT_API = "https://discord.com/api/v10"
TOKEN_FIX = ("copy the bot's token from the Discord Developer Portal (your application → Bot "
             "→ Reset Token) into DISCORD_BOT_TOKEN")
INTENT_FIX = ("turn on Message Content Intent in the Developer Portal (your application → "
              "Bot → Privileged Gateway Intents)")
# Application flags (https://discord.com/developers/docs/resources/application): the Message
# Content intent is on when either is set ("limited" for bots in fewer than 100 servers).
GATEWAY_MESSAGE_CONTENT = 1 << 18
GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 19


def checks(context: Context) -> list[Check]:
    return [Check(PART, check_discord, "check DISCORD_API_URL and the network path to Discord")]


def message_content_allowed(application_flags: int) -> bool:
    return bool(application_flags & (GATEWAY_MESSAGE_CONTENT | GATEWAY_MESSAGE_CONTENT_LIMITED))


async def check_discord(context: Context) -> list[Finding]:
    settings = context.settings
    if settings.discord_bot_token is None:
        return [skipped(PART, "not configured", "set DISCORD_BOT_TOKEN to answer in Discord")]
    api_url = settings.discord_api_url.rstrip("/")
    saved = Route.BASE
    Route.BASE = api_url
    http = HTTPClient(asyncio.get_running_loop())
    try:
        return await _log_in(http, settings.discord_bot_token.get_secret_value(),
                             settings.discord_escalation_channel)
    except discord.LoginFailure:
        return [failed(PART, "DISCORD_BOT_TOKEN is rejected (401 Unauthorized)", TOKEN_FIX)]
    except discord.HTTPException as exc:
        return [failed(PART, f"Discord answered {exc.status}: {first_line(exc)}", TOKEN_FIX)]
    except TimeoutError:  # an OSError too: the runner reports it, as for every part
        raise
    except (aiohttp.ClientError, OSError) as exc:
        return [failed(PART, f"cannot reach Discord at {public_url(api_url)} "
                             f"({type(exc).__name__}: {first_line(exc)})",
                       "check DISCORD_API_URL (unset it for Discord itself) and the network "
                       "path to discord.com")]
    finally:
        await http.close()
        Route.BASE = saved


async def _log_in(http: HTTPClient, token: str, escalation_channel: str | None) -> list[Finding]:
    user: Any = await http.static_login(token)
    name = user.get("username", "?")
    application: Any = await http.application_info()
    flags = int(application.get("flags") or 0)
    findings: list[Finding]
    if message_content_allowed(flags):
        findings = [ok(PART, f"logged in as {name} ({user.get('id')}); Message Content "
                             "intent on")]
    else:
        findings = [failed(PART, f"logged in as {name}, but the Message Content intent is off: "
                                 "Discord refuses the gateway connection bothub asks for",
                           INTENT_FIX)]
    if escalation_channel:
        findings.append(await _escalation_channel(http, escalation_channel))
    return findings


async def _escalation_channel(http: HTTPClient, channel_id: str) -> Finding:
    fix = ("set DISCORD_ESCALATION_CHANNEL to the agents' channel id (Developer Mode → right "
           "click the channel → Copy Channel ID) and let the bot see it")
    if not channel_id.isdigit():
        return failed(ESCALATION_PART, f"{channel_id!r} is not a channel id (a number)", fix)
    try:
        channel: Any = await http.get_channel(int(channel_id))
    except discord.HTTPException as exc:
        return failed(ESCALATION_PART, f"{channel_id}: {exc.status} {first_line(exc)}", fix)
    return ok(ESCALATION_PART, f"#{channel.get('name', '?')} ({channel_id})")
