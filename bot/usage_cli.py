"""`bothub usage`: tokens and cost of the stored answers, grouped, as a table or JSON.

Reads the database only (no model, no knowledge base), after applying pending migrations like
every command that touches it.
"""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, cast

import typer
from rich.table import Column, Table
from rich.text import Text

from bot.cli_runtime import out, run, settings, storage_failure
from bot.store import migrate
from bot.store.database import create_engine
from bot.usage import DEFAULT_DAYS, GroupBy, UsageReport, UsageRow, UsageStore

FIGURES = ("Answers", "Tokens in", "Tokens out", "Cost (USD)")


class Grouping(enum.StrEnum):
    DAY = "day"
    PLATFORM = "platform"
    WORKSPACE = "workspace"
    CHANNEL = "channel"
    CONVERSATION = "conversation"
    MODEL = "model"


def usage(
    by: Annotated[Grouping, typer.Option("--by", help="What to total by.")] = Grouping.DAY,
    days: Annotated[int, typer.Option(
        "--days", min=1, max=3660, help="The last N days, today included (UTC).")] = DEFAULT_DAYS,
    platform: Annotated[str | None, typer.Option(help="Only this platform.")] = None,
    workspace: Annotated[str | None, typer.Option(help="Only this workspace id.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")
                       ] = False,
) -> None:
    """Answers, tokens and model cost (USD) of the last N days, with a total."""
    loaded = settings()
    now = datetime.now(UTC)
    since = datetime.combine(now.date() - timedelta(days=days - 1), time(), tzinfo=UTC)

    async def main() -> UsageReport:
        database = create_engine(loaded.resolved_database_url)
        try:
            try:
                await migrate.upgrade(database)
            except Exception as exc:
                raise storage_failure(exc) from exc
            return await UsageStore(database).report(
                by=cast(GroupBy, by.value),
                since=since, until=now, platform=platform, workspace=workspace)
        finally:
            await database.dispose()

    report = run(main)
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))  # for scripts: no markup, no wrap
        return
    if not report.rows:
        where = "".join(f" {name} {value}" for name, value in
                        (("on", platform), ("in workspace", workspace)) if value)
        out.print(f"No usage recorded yet{where} in the last {days} day"
                  f"{'s' if days != 1 else ''}.", markup=False, highlight=False)
        return
    out.print(_table(report, days))


def _table(report: UsageReport, days: int) -> Table:
    """Group columns, then the figures; figures are never cut short in a narrow terminal (the
    group columns give way instead)."""
    figures = [_figures(row) for row in [*report.rows, report.total]]
    table = Table(*(name.capitalize() for name in report.columns),
                  *(Column(header, justify="right", no_wrap=True,
                           min_width=max(len(row[n]) for row in figures))
                    for n, header in enumerate(FIGURES)),
                  title=f"Usage by {report.by}, last {days} day{'s' if days != 1 else ''} "
                        f"(since {report.since:%Y-%m-%d} UTC)")
    for row, numbers in zip(report.rows, figures, strict=False):
        table.add_row(*(Text(value) for value in row.group.values()), *numbers)  # no markup
    table.add_section()
    table.add_row("Total", *[""] * (len(report.columns) - 1), *figures[-1], style="bold")
    return table


def _figures(row: UsageRow) -> list[str]:
    return [f"{row.answers:,}", f"{row.tokens_in:,}", f"{row.tokens_out:,}",
            f"{row.cost_usd:,.4f}"]
