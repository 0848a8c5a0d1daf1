"""The Discord check: discord.py's HTTP client logs in at the fake's REST API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import discord.http

from bot.check import State
from bot.check.discord import message_content_allowed
from bot.config import Settings
from tests.check.conftest import SilentServer, check_settings, findings_for, the
from tests.fakes.discord_server import FakeDiscord


def discord_settings(tmp_path: Path, fake: FakeDiscord, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"discord_bot_token": fake.bot_token,
                              "discord_api_url": fake.api_url}
    values.update(overrides)
    return check_settings(tmp_path, **values)


async def test_the_bot_logs_in(tmp_path: Path, fake_discord: FakeDiscord) -> None:
    base = discord.http.Route.BASE
    found = the(await findings_for(discord_settings(tmp_path, fake_discord)), "discord")
    assert found.state is State.OK
    assert found.detail == (f"logged in as bothub ({fake_discord.bot_user_id}); Message Content "
                            "intent on")
    assert fake_discord.calls_to("GET /users/@me")
    assert fake_discord.calls_to("GET /oauth2/applications/@me")
    assert base == discord.http.Route.BASE  # put back for whatever runs next


async def test_a_wrong_token_says_where_to_get_one(tmp_path: Path,
                                                   fake_discord: FakeDiscord) -> None:
    token = "MTIzNDU2Nzg5.wrong.token-value"
    findings = await findings_for(discord_settings(tmp_path, fake_discord,
                                                   discord_bot_token=token))
    found = the(findings, "discord")
    assert found.state is State.FAILED
    assert found.detail == "DISCORD_BOT_TOKEN is rejected (401 Unauthorized)"
    assert "Reset Token" in found.fix
    assert all(token not in f.detail + f.fix for f in findings)


def test_the_message_content_intent_is_read_from_the_application_flags() -> None:
    assert message_content_allowed(1 << 18)  # verified bots
    assert message_content_allowed(1 << 19)  # fewer than 100 servers
    assert not message_content_allowed((1 << 13) | (1 << 15))  # members and presences only


async def test_the_escalation_channel_is_looked_up(tmp_path: Path,
                                                   fake_discord: FakeDiscord) -> None:
    findings = await findings_for(discord_settings(
        tmp_path, fake_discord, discord_escalation_channel=fake_discord.general_channel_id))
    found = the(findings, "discord escalation channel")
    assert found.state is State.OK
    assert found.detail == f"#general ({fake_discord.general_channel_id})"

    missing = the(await findings_for(discord_settings(
        tmp_path, fake_discord, discord_escalation_channel="123456789012345678")),
        "discord escalation channel")
    assert missing.state is State.FAILED
    assert missing.detail.startswith("123456789012345678: 404")
    assert "DISCORD_ESCALATION_CHANNEL" in missing.fix

    named = the(await findings_for(discord_settings(
        tmp_path, fake_discord, discord_escalation_channel="#agents")),
        "discord escalation channel")
    assert named.state is State.FAILED and "is not a channel id" in named.detail


async def test_discord_that_never_answers_times_out(tmp_path: Path, fake_discord: FakeDiscord,
                                                    silent_server: SilentServer) -> None:
    base = discord.http.Route.BASE
    findings = await findings_for(discord_settings(
        tmp_path, fake_discord, discord_api_url=f"{silent_server.url}/api/v10"), seconds=1)
    found = the(findings, "discord")
    assert found.state is State.FAILED
    assert found.detail == "no answer within 1 s"
    assert "DISCORD_API_URL" in found.fix
    assert base == discord.http.Route.BASE


async def test_discord_unreachable(tmp_path: Path, fake_discord: FakeDiscord,
                                   closed_port: int) -> None:
    found = the(await findings_for(discord_settings(
        tmp_path, fake_discord, discord_api_url=f"http://127.0.0.1:{closed_port}/api/v10")),
        "discord")
    assert found.state is State.FAILED
    assert found.detail.startswith(f"cannot reach Discord at http://127.0.0.1:{closed_port}")
