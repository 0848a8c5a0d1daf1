"""How `bothub check` shows its findings: a table for people, JSON for scripts."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bot.check.findings import Finding, State

STYLES = {State.OK: "green", State.WARNING: "yellow", State.FAILED: "bold red",
          State.SKIPPED: "dim"}


def exit_code(findings: Sequence[Finding]) -> int:
    """0 when nothing failed (warnings included), 1 otherwise."""
    return 1 if any(f.state is State.FAILED for f in findings) else 0


def as_json(findings: Sequence[Finding]) -> str:
    return json.dumps({"ok": exit_code(findings) == 0,
                       "findings": [f.as_json() for f in findings]}, indent=2,
                      ensure_ascii=False)


def table(findings: Sequence[Finding]) -> Table:
    # Text objects, not markup: a detail may quote an error with [brackets] in it.
    result = Table(title="bothub check", title_justify="left", show_lines=True)
    result.add_column("Part", no_wrap=True)
    result.add_column("State", no_wrap=True)
    result.add_column("Detail", ratio=3)
    result.add_column("To fix", ratio=2)
    for finding in findings:
        result.add_row(Text(finding.part), Text(finding.state.value,
                                                style=STYLES[finding.state]),
                       Text(finding.detail), Text(finding.fix))
    return result


def summary(findings: Sequence[Finding]) -> Text:
    counts = Counter(f.state for f in findings)
    parts = [f"{counts[state]} {state.value}" for state in State if counts[state]]
    verdict = ("Something needs fixing before the hub can work fully." if exit_code(findings)
               else "Everything configured is reachable.")
    return Text(f"{', '.join(parts)}. {verdict}",
                style="red" if exit_code(findings) else "green")


def print_report(findings: Sequence[Finding], console: Console) -> None:
    console.print(table(findings))
    console.print(summary(findings))
