"""`bothub usage` through typer's CliRunner, on a temporary SQLite database."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.model import ConversationKey
from bot.store import migrate
from bot.store.database import create_engine
from bot.usage import GroupBy
from bot.usage_cli import Grouping
from tests.usage_data import record_answer

runner = CliRunner()


@pytest.fixture
def database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Settings from this test's environment only: its own data dir and database."""
    for name in ("DATABASE_URL", "BOTHUB_CONFIG", "REDIS_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("BOTHUB_DATA_DIR", str(tmp_path / "data"))
    url = f"sqlite:///{tmp_path / 'usage.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    return url


def seed(url: str) -> None:
    async def main() -> None:
        engine = create_engine(url)
        try:
            await migrate.upgrade(engine)
            now = datetime.now(UTC)
            slack = ConversationKey("slack", "T1", "C1", "1.1")
            await record_answer(engine, slack, cost="0.012345", at=now, tokens_in=1200)
            await record_answer(engine, slack, cost="0.000100", at=now, model="gpt-4o-mini")
            await record_answer(engine, ConversationKey("discord", "G1", "D1", "D1"),
                                cost="0.5", at=now - timedelta(days=2), tokens_out=300)
            await record_answer(engine, slack, cost="9", at=now - timedelta(days=45))
        finally:
            await engine.dispose()

    asyncio.run(main())


def test_groupings_match_the_report() -> None:
    assert [g.value for g in Grouping] == list(get_args(GroupBy))


def test_an_empty_database_says_so(database_url: str) -> None:
    result = runner.invoke(app, ["usage"])
    assert result.exit_code == 0, result.output
    assert "No usage recorded yet in the last 30 days." in result.output
    as_json = runner.invoke(app, ["usage", "--json"])
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout)["rows"] == []


def test_a_table_by_platform_with_a_total(database_url: str) -> None:
    seed(database_url)
    result = runner.invoke(app, ["usage", "--by", "platform"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "│" in line or "┃" in line]
    cells = [[cell.strip() for cell in line.strip("│┃ ").split("│" if "│" in line else "┃")]
             for line in lines]
    assert cells[0] == ["Platform", "Answers", "Tokens in", "Tokens out", "Cost (USD)"]
    assert cells[1:] == [["discord", "1", "100", "300", "0.5000"],
                         ["slack", "2", "1,300", "40", "0.0124"],
                         ["Total", "3", "1,400", "340", "0.5124"]]


def test_json_filtered_by_platform_and_period(database_url: str) -> None:
    seed(database_url)
    result = runner.invoke(app, ["usage", "--by", "model", "--platform", "slack", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["by"] == "model"
    assert report["rows"] == [
        {"model": "gpt-4o", "answers": 1, "tokens_in": 1200, "tokens_out": 20,
         "cost_usd": 0.012345},
        {"model": "gpt-4o-mini", "answers": 1, "tokens_in": 100, "tokens_out": 20,
         "cost_usd": 0.0001}]
    today = json.loads(runner.invoke(app, ["usage", "--days", "1", "--json"]).stdout)
    assert today["total"]["answers"] == 2
    longer = json.loads(runner.invoke(app, ["usage", "--days", "60", "--json"]).stdout)
    assert longer["total"]["cost_usd"] == pytest.approx(9.512445)


def test_by_day_lists_each_day(database_url: str) -> None:
    seed(database_url)
    result = runner.invoke(app, ["usage", "--by", "day", "--days", "7"],
                           env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    today = datetime.now(UTC).date()
    assert str(today) in result.stdout and str(today - timedelta(days=2)) in result.stdout
    assert "Usage by day, last 7 days" in result.stdout


def test_bad_options_are_usage_errors(database_url: str) -> None:
    assert runner.invoke(app, ["usage", "--by", "user"]).exit_code == 2
    assert runner.invoke(app, ["usage", "--days", "0"]).exit_code == 2


def test_a_bad_database_url_is_one_clear_line(database_url: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://x@localhost/db")
    result = runner.invoke(app, ["usage"])
    assert result.exit_code == 2
    assert "'mysql' is not supported" in result.output
