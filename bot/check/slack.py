"""Slack: the bot token through `auth.test`, the app-level token through
`apps.connections.open` (Socket Mode), the escalation channel through `conversations.info`,
all with slack_sdk's AsyncWebClient at SLACK_API_URL, as the adapter calls them.

For the multi-workspace OAuth install there is no token to try: each workspace's comes with its
install. The check then says which secrets are present (never their values).
"""

from __future__ import annotations

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.check.context import Check, Context
from bot.check.findings import Finding, failed, first_line, ok, public_url, skipped

PART = "slack"
ESCALATION_PART = "slack escalation channel"
TOKEN_REJECTED = {"invalid_auth", "not_authed", "token_revoked", "token_expired",
                  "account_inactive", "not_allowed_token_type"}
BOT_TOKEN_FIX = ("copy the Bot User OAuth Token (xoxb-…) from your Slack app's OAuth & "
                 "Permissions page into SLACK_BOT_TOKEN (reinstall the app if it was revoked)")
APP_TOKEN_FIX = ("create an app-level token with the connections:write scope (Basic "
                 "Information → App-Level Tokens) and turn on Socket Mode; put it in "
                 "SLACK_APP_TOKEN")


def checks(context: Context) -> list[Check]:
    return [Check(PART, check_slack, "check SLACK_API_URL and the network path to Slack")]


async def check_slack(context: Context) -> list[Finding]:
    settings = context.settings
    if settings.slack_oauth:
        return [_oauth_finding(context)]
    if settings.slack_bot_token is None:
        return [skipped(PART, "not configured", "set SLACK_BOT_TOKEN (and SLACK_SIGNING_SECRET "
                                                "or SLACK_APP_TOKEN) to answer in Slack")]
    token = settings.slack_bot_token.get_secret_value()
    client = AsyncWebClient(token=token, base_url=settings.slack_api_url,
                            timeout=max(1, round(context.timeout)))
    try:
        response = await client.auth_test()
    except SlackApiError as exc:
        error = str(exc.response.get("error", "")) if exc.response is not None else ""
        if error in TOKEN_REJECTED:
            shape = "" if token.startswith("xoxb-") else "; it should start with xoxb-"
            return [failed(PART, f"SLACK_BOT_TOKEN is rejected ({error}){shape}",
                           BOT_TOKEN_FIX)]
        return [failed(PART, f"auth.test failed: {error or first_line(exc)}", BOT_TOKEN_FIX)]
    except TimeoutError:  # an OSError too: the runner reports it, as for every part
        raise
    except (SlackClientError, OSError) as exc:
        return [_unreachable(context, exc)]
    findings = [ok(PART, f"workspace {response.get('team')} ({response.get('team_id')}), "
                         f"bot @{response.get('user')} ({response.get('user_id')}); "
                         f"{_mode(context)}")]
    if settings.slack_app_token is not None:
        app_token = await _app_token_finding(client, context)
        if app_token is not None:
            findings = [app_token]
    if settings.slack_escalation_channel:
        findings.append(await _escalation_channel(client, settings.slack_escalation_channel))
    return findings


def _mode(context: Context) -> str:
    settings = context.settings
    if settings.slack_app_token is not None:
        return "events over Socket Mode (app token accepted)"
    return "events over HTTP at /slack/events (signing secret set)"


async def _app_token_finding(client: AsyncWebClient, context: Context) -> Finding | None:
    """None when the app token works; else the finding that says why it does not."""
    assert context.settings.slack_app_token is not None
    app_token = context.settings.slack_app_token.get_secret_value()
    if not app_token.startswith("xapp-"):
        return failed(PART, "SLACK_APP_TOKEN is not an app-level token (those start with xapp-)",
                      APP_TOKEN_FIX)
    try:
        await client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        error = str(exc.response.get("error", "")) if exc.response is not None else ""
        return failed(PART, f"the bot token works, but SLACK_APP_TOKEN is rejected "
                            f"({error or first_line(exc)})", APP_TOKEN_FIX)
    except TimeoutError:  # an OSError too: the runner reports it, as for every part
        raise
    except (SlackClientError, OSError) as exc:
        return _unreachable(context, exc)
    return None


async def _escalation_channel(client: AsyncWebClient, channel: str) -> Finding:
    try:
        response = await client.conversations_info(channel=channel)
    except SlackApiError as exc:
        error = str(exc.response.get("error", "")) if exc.response is not None else ""
        return failed(ESCALATION_PART, f"{channel}: {error or first_line(exc)}",
                      "set SLACK_ESCALATION_CHANNEL to the agents' channel id (C…, from the "
                      "channel's details) and invite the bot there")
    except TimeoutError:  # an OSError too: the runner reports it, as for every part
        raise
    except (SlackClientError, OSError) as exc:
        return failed(ESCALATION_PART, f"{channel}: {first_line(exc)}", "")
    info = response.get("channel") or {}
    name = info.get("name") if isinstance(info, dict) else None
    return ok(ESCALATION_PART, f"#{name} ({channel})" if name else channel)


def _oauth_finding(context: Context) -> Finding:
    settings = context.settings
    present = [name for name, value in (("SLACK_CLIENT_ID", settings.slack_client_id),
                                        ("SLACK_CLIENT_SECRET", settings.slack_client_secret),
                                        ("SLACK_STATE_SECRET", settings.slack_state_secret),
                                        ("SLACK_SIGNING_SECRET", settings.slack_signing_secret))
               if value is not None]
    return ok(PART, f"multi-workspace OAuth install: {', '.join(present)} set; each "
                    "workspace's token comes with its install (/slack/install)")


def _unreachable(context: Context, exc: BaseException) -> Finding:
    return failed(PART, f"cannot reach Slack at {public_url(context.settings.slack_api_url)} "
                        f"({type(exc).__name__}: {first_line(exc)})",
                  "check SLACK_API_URL (unset it for https://slack.com/api/) and the network "
                  "path to Slack")
