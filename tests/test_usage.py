"""Usage reports and the spent figure, on SQLite and PostgreSQL, from answers stored through the
ConversationStore."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.model import ConversationKey
from bot.store import migrate
from bot.store.database import create_engine
from bot.usage import UsageReport, UsageStore
from tests.usage_data import record_answer

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
SLACK_A = ConversationKey("slack", "T1", "C1", "1700000000.1")
SLACK_B = ConversationKey("slack", "T1", "C2", "1700000000.2")
SLACK_OTHER = ConversationKey("slack", "T2", "C9", "1700000000.3")
DISCORD = ConversationKey("discord", "G1", "D1", "D1")


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[AsyncEngine]:
    # On PostgreSQL the session runs in Tokyo time: days must still be UTC days.
    url = database_url + ("?options=-c%20timezone%3DAsia/Tokyo"
                          if database_url.startswith("postgresql") else "")
    engine = create_engine(url)
    await migrate.upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def usage(database: AsyncEngine) -> UsageStore:
    day = timedelta(days=1)
    answers = [
        (SLACK_A, "0.010000", NOW - timedelta(hours=1), "gpt-4o"),
        (SLACK_A, "0.020000", NOW - timedelta(hours=2), "gpt-4o"),
        (SLACK_B, "0.001000", NOW - day, "gpt-4o-mini"),
        # 23:30 UTC on the 13th: the 14th in Tokyo, still the 13th in the report.
        (SLACK_OTHER, "0.100000", datetime(2026, 3, 13, 23, 30, tzinfo=UTC), "gpt-4o"),
        (DISCORD, "0", NOW - timedelta(minutes=5), ""),  # from the knowledge base: no model
        (SLACK_A, "5.000000", NOW - 40 * day, "gpt-4o"),  # before the period
    ]
    for key, cost, at, model in answers:
        await record_answer(database, key, cost=cost, at=at, model=model)
    return UsageStore(database)


def rows(report: UsageReport) -> list[tuple[str, int, int, int, Decimal]]:
    return [(row.label, row.answers, row.tokens_in, row.tokens_out, row.cost_usd)
            for row in report.rows]


async def test_by_day_in_utc_days_oldest_first(usage: UsageStore) -> None:
    report = await usage.report(by="day", until=NOW)
    assert report.since == NOW - timedelta(days=30)
    assert rows(report) == [
        ("2026-03-13", 1, 100, 20, Decimal("0.100000")),
        ("2026-03-14", 1, 100, 20, Decimal("0.001000")),
        ("2026-03-15", 3, 300, 60, Decimal("0.030000")),
    ]
    total = report.total
    assert (total.answers, total.tokens_in, total.tokens_out, total.cost_usd) == (
        5, 500, 100, Decimal("0.131000"))


@pytest.mark.parametrize(("by", "expected"), [
    ("platform", [("slack", 4, Decimal("0.131000")), ("discord", 1, Decimal(0))]),
    ("workspace", [("slack:T2", 1, Decimal("0.100000")), ("slack:T1", 3, Decimal("0.031000")),
                   ("discord:G1", 1, Decimal(0))]),
    ("channel", [("slack:T2:C9", 1, Decimal("0.100000")),
                 ("slack:T1:C1", 2, Decimal("0.030000")),
                 ("slack:T1:C2", 1, Decimal("0.001000")),
                 ("discord:G1:D1", 1, Decimal(0))]),
    ("model", [("gpt-4o", 3, Decimal("0.130000")), ("gpt-4o-mini", 1, Decimal("0.001000")),
               ("(none)", 1, Decimal(0))]),
])
async def test_groupings_most_expensive_first(usage: UsageStore, by: str,
                                              expected: list[tuple[str, int, Decimal]]) -> None:
    report = await usage.report(by=by, until=NOW)  # type: ignore[arg-type]
    assert [(row.label, row.answers, row.cost_usd) for row in report.rows] == expected


async def test_by_conversation_names_each_thread(usage: UsageStore) -> None:
    report = await usage.report(by="conversation", until=NOW, platform="slack", workspace="T1")
    assert report.columns == ["conversation", "platform", "workspace", "channel", "thread"]
    first, second = report.rows
    assert list(first.group.values())[1:] == ["slack", "T1", "C1", SLACK_A.thread]
    assert first.group["conversation"].isdigit()
    assert (first.answers, first.cost_usd) == (2, Decimal("0.030000"))
    assert list(second.group.values())[1:] == ["slack", "T1", "C2", SLACK_B.thread]


async def test_period_and_filters(usage: UsageStore) -> None:
    everything = await usage.report(by="platform", since=NOW - timedelta(days=60), until=NOW)
    assert everything.total.cost_usd == Decimal("5.131000")
    today = await usage.report(by="platform", since=NOW.replace(hour=0), until=NOW)
    assert rows(today) == [("slack", 2, 200, 40, Decimal("0.030000")),
                           ("discord", 1, 100, 20, Decimal(0))]
    discord = await usage.report(by="workspace", until=NOW, platform="discord")
    assert [row.label for row in discord.rows] == ["discord:G1"]
    nothing = await usage.report(by="day", until=NOW, platform="teams")
    assert nothing.rows == [] and nothing.total.cost_usd == 0
    assert nothing.as_json()["total"] == {"answers": 0, "tokens_in": 0, "tokens_out": 0,
                                          "cost_usd": 0.0}


async def test_json_shape(usage: UsageStore) -> None:
    report = (await usage.report(by="channel", until=NOW, workspace="T1")).as_json()
    assert report["by"] == "channel"
    assert report["rows"][0] == {"platform": "slack", "workspace": "T1", "channel": "C1",
                                 "answers": 2, "tokens_in": 200, "tokens_out": 40,
                                 "cost_usd": 0.03}
    assert report["total"]["cost_usd"] == pytest.approx(0.031)


async def test_spent_counts_one_workspace_from_a_moment_on(usage: UsageStore) -> None:
    assert await usage.spent(platform="slack", workspace="T1",
                             since=NOW.replace(hour=0)) == Decimal("0.030000")
    assert await usage.spent(platform="slack", workspace="T1",
                             since=NOW - timedelta(days=60)) == Decimal("5.031000")
    assert await usage.spent(platform="discord", workspace="T1", since=NOW) == 0
    # Another zone's midnight is the same instant as UTC's 15:00 the day before.
    tokyo_midnight = datetime(2026, 3, 15, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert await usage.spent(platform="slack", workspace="T1",
                             since=tokyo_midnight) == Decimal("0.030000")
    with pytest.raises(ValueError, match="time-zone-aware"):
        await usage.spent(platform="slack", workspace="T1", since=NOW.replace(tzinfo=None))


async def test_unknown_grouping_is_refused(usage: UsageStore) -> None:
    with pytest.raises(ValueError, match="cannot group by 'user'"):
        await usage.report(by="user")  # type: ignore[arg-type]


async def test_spent_uses_the_answers_index(usage: UsageStore, database: AsyncEngine) -> None:
    """The budget check's own query, as sent, can read the workspace's answers through the
    partial index (its `role = 'assistant'` is a literal, not a parameter)."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(database.sync_engine, "before_cursor_execute", capture)
    try:
        await usage.spent(platform="slack", workspace="T1", since=NOW.replace(hour=0))
    finally:
        event.remove(database.sync_engine, "before_cursor_execute", capture)
    statement, parameters = sent[-1]
    assert "'assistant'" in statement
    postgres = database.dialect.name == "postgresql"
    async with database.connect() as connection:
        if postgres:  # a handful of rows: without this any table is read whole
            await connection.exec_driver_sql("SET enable_seqscan = off")
        plan = await connection.exec_driver_sql(
            ("EXPLAIN " if postgres else "EXPLAIN QUERY PLAN ") + statement, parameters)
        lines = " ".join(str(row[-1]) for row in plan)
    assert "ix_messages_answers_by_time" in lines
