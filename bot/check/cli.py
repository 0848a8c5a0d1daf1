"""`bothub check` behind the typer command: load, check, report, and the exit code.

Unlike the other commands it does not stop at a configuration error: that is a finding too,
printed in the same table (or JSON) with exit code 1.
"""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from bot.check.report import as_json as findings_json
from bot.check.report import exit_code, print_report
from bot.check.runner import check_everything
from bot.config import Behaviour, Settings
from bot.log_redaction import configured_secrets
from bot.logging import configure


def check_command(*, as_json: bool, timeout: float, console: Console) -> int:
    findings = asyncio.run(check_everything(timeout, on_loaded=_quiet_logging))
    if as_json:
        typer.echo(findings_json(findings))
    else:
        print_report(findings, console)
    return exit_code(findings)


def _quiet_logging(settings: Settings, behaviour: Behaviour) -> None:
    """The SDKs' own log lines (on stderr, scrubbed) only when they warn: the table says the
    rest. BOTHUB_LOG_LEVEL=DEBUG shows everything, for a closer look."""
    level = "DEBUG" if settings.log_level.upper() == "DEBUG" else "WARNING"
    configure(level, settings.log_format, secrets=configured_secrets(settings, behaviour))
