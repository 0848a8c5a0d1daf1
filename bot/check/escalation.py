"""Escalation routing: every chat platform that is on has somewhere to send its escalations,
and every destination a rule names is a platform that is on. Configuration only; whether the
channels exist is asked of each platform by its own check."""

from __future__ import annotations

from fnmatch import fnmatchcase

from bot.check.context import Check, Context
from bot.check.findings import Finding, ok, skipped, warning

PART = "escalation"
VARIABLES = {"slack": "SLACK_ESCALATION_CHANNEL", "discord": "DISCORD_ESCALATION_CHANNEL",
             "teams": "TEAMS_ESCALATION_CONVERSATION"}
NAMES = {"slack": "Slack", "discord": "Discord", "teams": "Teams"}


def checks(context: Context) -> list[Check]:
    return [Check(PART, check_escalation)]


def platforms_on(context: Context) -> list[str]:
    """The platforms the hub will answer on (Teams counts once it has an app id: without
    one it serves only a local emulator)."""
    settings = context.settings
    on = {"slack": settings.slack_bot_token is not None or settings.slack_oauth,
          "discord": settings.discord_bot_token is not None,
          "teams": settings.microsoft_app_id is not None}
    return [platform for platform, enabled in on.items() if enabled]


async def check_escalation(context: Context) -> list[Finding]:
    settings = context.settings
    channels = {"slack": settings.slack_escalation_channel,
                "discord": settings.discord_escalation_channel,
                "teams": settings.teams_escalation_conversation}
    rules = [rule for rule in context.behaviour.escalation.rules if rule.to is not None]
    enabled = platforms_on(context)
    if not enabled:
        return [skipped(PART, "no chat platform configured")]
    findings: list[Finding] = []
    routes: list[str] = []
    for platform in enabled:
        destinations = [f"{platform}:{channels[platform]}"] if channels[platform] else []
        destinations += [str(rule.to) for rule in rules if fnmatchcase(platform, rule.platform)]
        if destinations:
            routes.append(f"{NAMES[platform]} → {', '.join(dict.fromkeys(destinations))}")
        else:
            findings.append(warning(
                PART, f"{NAMES[platform]} is on, but its escalations have nowhere to go",
                f"set {VARIABLES[platform]} to the agents' channel (or add an escalation rule "
                "with `to:` in BOTHUB_CONFIG)"))
    for rule in rules:
        target = str(rule.to).partition(":")[0]
        if target not in enabled:
            findings.append(warning(
                PART, f"a rule sends escalations to {rule.to}, but {NAMES[target]} is not "
                      "configured", f"configure {NAMES[target]} or change the rule's `to:`"))
    if not findings:
        findings.append(ok(PART, "; ".join(routes)))
    return findings
