"""The escalation routing check: configuration only."""

from __future__ import annotations

from pathlib import Path

from bot.check import Finding, State
from bot.config import Behaviour, EscalationConfig, EscalationRule
from tests.check.conftest import check_settings, findings_for
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_server import FakeSlack


def escalation(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.part == "escalation"]


async def test_a_platform_without_a_destination_is_a_warning(
        tmp_path: Path, fake_slack: FakeSlack) -> None:
    found = escalation(await findings_for(check_settings(
        tmp_path, slack_bot_token=fake_slack.bot_token, slack_signing_secret="s" * 16,
        slack_api_url=fake_slack.api_url)))
    assert [f.state for f in found] == [State.WARNING]
    assert found[0].detail == "Slack is on, but its escalations have nowhere to go"
    assert "SLACK_ESCALATION_CHANNEL" in found[0].fix


async def test_a_rule_may_route_across_platforms(tmp_path: Path, fake_slack: FakeSlack,
                                                 fake_discord: FakeDiscord) -> None:
    behaviour = Behaviour(escalation=EscalationConfig(rules=[
        EscalationRule(platform="discord", to="slack:C0AGENTS")]))
    found = escalation(await findings_for(check_settings(
        tmp_path, slack_bot_token=fake_slack.bot_token, slack_signing_secret="s" * 16,
        slack_api_url=fake_slack.api_url, slack_escalation_channel="C0AGENTS",
        discord_bot_token=fake_discord.bot_token, discord_api_url=fake_discord.api_url),
        behaviour))
    assert [f.state for f in found] == [State.OK]
    assert found[0].detail == "Slack → slack:C0AGENTS; Discord → slack:C0AGENTS"


async def test_a_rule_to_a_platform_that_is_off(tmp_path: Path, fake_slack: FakeSlack) -> None:
    behaviour = Behaviour(escalation=EscalationConfig(rules=[
        EscalationRule(to="discord:123456789012345678")]))
    found = escalation(await findings_for(check_settings(
        tmp_path, slack_bot_token=fake_slack.bot_token, slack_signing_secret="s" * 16,
        slack_api_url=fake_slack.api_url), behaviour))
    assert [f.state for f in found] == [State.WARNING]
    assert found[0].detail == ("a rule sends escalations to discord:123456789012345678, but "
                               "Discord is not configured")


async def test_no_platform_no_escalation(tmp_path: Path) -> None:
    found = escalation(await findings_for(check_settings(tmp_path)))
    assert [(f.state, f.detail) for f in found] == [(State.SKIPPED,
                                                     "no chat platform configured")]
