"""The Slack check: auth.test, the app token and the escalation channel, on the fake Web API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.check import State
from bot.config import Settings
from tests.check.conftest import SilentServer, check_settings, findings_for, the
from tests.fakes.slack_server import FakeSlack


def slack_settings(tmp_path: Path, fake: FakeSlack, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"slack_bot_token": fake.bot_token,
                              "slack_signing_secret": fake.signing_secret,
                              "slack_api_url": fake.api_url}
    values.update(overrides)
    return check_settings(tmp_path, **values)


async def test_the_bot_token_works(tmp_path: Path, fake_slack: FakeSlack) -> None:
    found = the(await findings_for(slack_settings(tmp_path, fake_slack)), "slack")
    assert found.state is State.OK
    assert found.detail == ("workspace Test Workspace (T0TEST), bot @bothub (U0BOT); events over "
                            "HTTP at /slack/events (signing secret set)")
    assert [call.token for call in fake_slack.calls_to("auth.test")] == [fake_slack.bot_token]


async def test_a_rejected_bot_token_says_where_to_get_one(tmp_path: Path,
                                                          fake_slack: FakeSlack) -> None:
    findings = await findings_for(slack_settings(tmp_path, fake_slack,
                                                 slack_bot_token="xoxp-user-token-123456"))
    found = the(findings, "slack")
    assert found.state is State.FAILED
    assert found.detail == "SLACK_BOT_TOKEN is rejected (invalid_auth); it should start with xoxb-"
    assert "Bot User OAuth Token" in found.fix
    assert all("xoxp-user-token-123456" not in f.detail + f.fix for f in findings)


async def test_a_revoked_token(tmp_path: Path, fake_slack: FakeSlack) -> None:
    fake_slack.fail("auth.test", "token_revoked")
    found = the(await findings_for(slack_settings(tmp_path, fake_slack)), "slack")
    assert found.state is State.FAILED
    assert found.detail == "SLACK_BOT_TOKEN is rejected (token_revoked)"


async def test_socket_mode_checks_the_app_token(tmp_path: Path, fake_slack: FakeSlack) -> None:
    good = the(await findings_for(slack_settings(
        tmp_path, fake_slack, slack_signing_secret=None, slack_app_token=fake_slack.app_token)),
        "slack")
    assert good.state is State.OK and "Socket Mode (app token accepted)" in good.detail
    assert [c.token for c in fake_slack.calls_to("apps.connections.open")] == [
        fake_slack.app_token]

    wrong = the(await findings_for(slack_settings(
        tmp_path, fake_slack, slack_app_token="xapp-1-not-the-right-one")), "slack")
    assert wrong.state is State.FAILED
    assert wrong.detail == "the bot token works, but SLACK_APP_TOKEN is rejected (invalid_auth)"
    assert "connections:write" in wrong.fix

    shape = the(await findings_for(slack_settings(
        tmp_path, fake_slack, slack_app_token="xoxb-a-bot-token-again")), "slack")
    assert shape.state is State.FAILED
    assert "not an app-level token (those start with xapp-)" in shape.detail


async def test_the_escalation_channel_is_looked_up(tmp_path: Path, fake_slack: FakeSlack) -> None:
    fake_slack.add_channel("C0AGENTS", "support-agents")
    findings = await findings_for(slack_settings(tmp_path, fake_slack,
                                                 slack_escalation_channel="C0AGENTS"))
    assert the(findings, "slack").state is State.OK
    channel = the(findings, "slack escalation channel")
    assert channel.state is State.OK and channel.detail == "#support-agents (C0AGENTS)"
    assert the(findings, "escalation").state is State.OK

    fake_slack.fail("conversations.info", "channel_not_found")
    missing = the(await findings_for(slack_settings(tmp_path, fake_slack,
                                                    slack_escalation_channel="C0GONE")),
                  "slack escalation channel")
    assert missing.state is State.FAILED
    assert missing.detail == "C0GONE: channel_not_found"
    assert "SLACK_ESCALATION_CHANNEL" in missing.fix


async def test_the_oauth_install_names_its_secrets_not_their_values(
        tmp_path: Path, fake_slack: FakeSlack) -> None:
    findings = await findings_for(check_settings(
        tmp_path, slack_client_id="1234.5678", slack_client_secret="client-secret-value-1",
        slack_state_secret="state-secret-value-2", slack_signing_secret="signing-secret-3",
        slack_api_url=fake_slack.api_url))
    found = the(findings, "slack")
    assert found.state is State.OK
    assert ("SLACK_CLIENT_ID, SLACK_CLIENT_SECRET, SLACK_STATE_SECRET, SLACK_SIGNING_SECRET set"
            in found.detail)
    text = " ".join(f.detail + f.fix for f in findings)
    assert "client-secret-value-1" not in text and "state-secret-value-2" not in text
    assert not fake_slack.calls


async def test_slack_that_never_answers_times_out(tmp_path: Path, fake_slack: FakeSlack,
                                                  silent_server: SilentServer) -> None:
    findings = await findings_for(slack_settings(tmp_path, fake_slack,
                                                 slack_api_url=f"{silent_server.url}/api/"),
                                  seconds=1)
    found = the(findings, "slack")
    assert found.state is State.FAILED
    assert found.detail == "no answer within 1 s"
    assert "SLACK_API_URL" in found.fix


async def test_slack_unreachable(tmp_path: Path, fake_slack: FakeSlack, closed_port: int) -> None:
    found = the(await findings_for(slack_settings(
        tmp_path, fake_slack, slack_api_url=f"http://127.0.0.1:{closed_port}/api/")), "slack")
    assert found.state is State.FAILED
    assert found.detail.startswith(f"cannot reach Slack at http://127.0.0.1:{closed_port}/api/")
