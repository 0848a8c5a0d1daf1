"""Run every check side by side, each under its own timeout, and collect what they found.

Whatever a check does, the runner returns findings: a part that hangs becomes a timeout finding,
one that raises becomes a failed finding with the error's first line, and every finding is
scrubbed of the deployment's secrets before anyone sees it (a driver's error could quote a URL
with its password; an SDK's could echo a token).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.check import database, discord, escalation, knowledge, model, redis, slack, teams
from bot.check.context import Check, Context
from bot.check.findings import Finding, failed, first_line, ok
from bot.config import Behaviour, ConfigError, Settings, load_behaviour, load_settings
from bot.log_redaction import SecretScrubber, configured_secrets

DEFAULT_TIMEOUT = 10.0
CONFIG_PART = "configuration"
# In the order the table shows them: what the hub stands on first, then the platforms.
PARTS: tuple[Callable[[Context], list[Check]], ...] = (
    database.checks, knowledge.checks, redis.checks, model.checks, slack.checks,
    discord.checks, teams.checks, escalation.checks)


def load_configuration(settings_factory: Callable[[], Settings] = load_settings,
                       ) -> tuple[list[Finding], Settings | None, Behaviour]:
    """The settings and the YAML behaviour, with a finding that says whether they were read.
    Without settings there is nothing to check; a bad YAML file leaves the defaults in
    place so that the rest can still be checked."""
    try:
        settings = settings_factory()
    except ConfigError as exc:
        return [failed(CONFIG_PART, str(exc), "correct the variable(s) named above "
                                              "(environment or .env)")], None, Behaviour()
    try:
        behaviour = load_behaviour(settings.config_file)
    except ConfigError as exc:
        return [failed(CONFIG_PART, str(exc), "correct the file named above (BOTHUB_CONFIG); "
                                              "the other checks use the defaults")], \
            settings, Behaviour()
    source = f"behaviour from {settings.config_file}" if settings.config_file \
        else "default behaviour (no BOTHUB_CONFIG)"
    return [ok(CONFIG_PART, f"environment valid; {source}")], settings, behaviour


async def run_checks(settings: Settings, behaviour: Behaviour, *,
                     seconds: float = DEFAULT_TIMEOUT) -> list[Finding]:
    """Every check's findings, in the order of `PARTS`, secrets removed; each check may take
    `seconds`."""
    context = Context(settings, behaviour, seconds)
    scheduled = [check for part in PARTS for check in part(context)]
    results = await asyncio.gather(*(_guarded(check, context) for check in scheduled))
    scrub = _scrubber(settings, behaviour)
    return [scrub(finding) for found in results for finding in found]


async def check_everything(
        seconds: float = DEFAULT_TIMEOUT, *,
        settings_factory: Callable[[], Settings] = load_settings,
        on_loaded: Callable[[Settings, Behaviour], None] | None = None) -> list[Finding]:
    """`bothub check`: the configuration's finding, then every part's. `on_loaded` runs once
    the settings are read, before anything is reached (the CLI sets up logging there)."""
    found, settings, behaviour = load_configuration(settings_factory)
    if settings is None:
        return found
    if on_loaded is not None:
        on_loaded(settings, behaviour)
    scrub = _scrubber(settings, behaviour)
    return [scrub(f) for f in found] + await run_checks(settings, behaviour,
                                                        seconds=seconds)


async def _guarded(check: Check, context: Context) -> list[Finding]:
    try:
        async with asyncio.timeout(context.timeout):
            return await check.run(context)
    except TimeoutError:
        return [failed(check.part, f"no answer within {context.timeout:g} s",
                       check.hint or "see that the part is up and reachable")]
    except ConfigError as exc:  # its message names the variable
        return [failed(check.part, str(exc), "correct the setting named here")]
    except Exception as exc:  # a check's own bug or an SDK's surprise: still one line
        return [failed(check.part, f"{type(exc).__name__}: {first_line(exc)}",
                       check.hint or "see the detail")]


def _scrubber(settings: Settings, behaviour: Behaviour) -> Callable[[Finding], Finding]:
    scrubber = SecretScrubber()
    scrubber.register(configured_secrets(settings, behaviour))

    def scrub(finding: Finding) -> Finding:
        return Finding(finding.part, finding.state, scrubber.scrub_text(finding.detail),
                       scrubber.scrub_text(finding.fix))

    return scrub
