"""Budgets: the configuration, the decision for the next answer, and alerts that reach operators
once per workspace and period however many workers see the budget trip."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import budgets
from bot.budgets import BudgetAction, BudgetAlerts, BudgetDecision, BudgetGuard, current_periods
from bot.config import Behaviour, BudgetConfig, ConfigError, load_behaviour
from bot.model import ConversationKey
from bot.store import migrate
from bot.store.database import create_engine
from bot.store.tables import BudgetAlert
from bot.usage import UsageStore
from tests.test_ratelimit import FakeClock, RecordingLog
from tests.usage_data import record_answer

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
T1 = ConversationKey("slack", "T1", "C1", "thread-1")
T2 = ConversationKey("slack", "T2", "C1", "thread-2")


def config(**values: Any) -> BudgetConfig:
    return BudgetConfig.model_validate(values)


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> RecordingLog:
    recorder = RecordingLog()
    monkeypatch.setattr(budgets, "log", recorder)
    return recorder


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


GuardFactory = Callable[..., BudgetGuard]


@pytest.fixture
def make_guard(database: AsyncEngine, clock: FakeClock) -> GuardFactory:
    def make(budget: BudgetConfig, *, now: datetime = NOW,
             engine: AsyncEngine | None = None) -> BudgetGuard:
        engine = engine or database
        return BudgetGuard(budget, UsageStore(engine), BudgetAlerts(engine), clock=clock,
                           now=lambda: now)
    return make


async def spend(database: AsyncEngine, cost: str, *, at: datetime = NOW,
                key: ConversationKey = T1) -> None:
    await record_answer(database, key, cost=cost, at=at - timedelta(minutes=1))


# --- configuration ---------------------------------------------------------------------------


def test_no_budget_by_default() -> None:
    behaviour = Behaviour()
    assert behaviour.budgets.default.daily_usd is None
    assert behaviour.budgets.default.monthly_usd is None
    assert behaviour.cache.enabled and behaviour.cache.ttl_seconds == 86_400


def test_a_workspace_inherits_what_it_does_not_set(tmp_path: Path) -> None:
    path = tmp_path / "bothub.yaml"
    path.write_text("""
budgets:
  timezone: Europe/Berlin
  default: {daily_usd: 20, monthly_usd: 300, action: cheaper_model, cheaper_model: gpt-4.1-mini}
  workspaces:
    "slack:T0123ABC": {monthly_usd: 1000}
    "discord:81234": {daily_usd: 0.5, action: retrieval_only, warn_at_percent: null}
cache: {enabled: false, ttl_seconds: 3600}
""", encoding="utf-8")
    budget = load_behaviour(path).budgets
    assert budget.zone == ZoneInfo("Europe/Berlin")
    slack = budget.for_workspace("slack", "T0123ABC")
    assert (slack.daily_usd, slack.monthly_usd, slack.cheaper_model) == (
        Decimal(20), Decimal(1000), "gpt-4.1-mini")
    discord = budget.for_workspace("discord", "81234")
    assert (discord.daily_usd, discord.monthly_usd, discord.action,
            discord.warn_at_percent) == (Decimal("0.5"), Decimal(300), "retrieval_only", None)
    assert budget.for_workspace("slack", "T-other") == budget.default


@pytest.mark.parametrize(("text", "expected"), [
    ("budgets:\n  default: {daily_usd: -5}\n",
     "budgets.default.daily_usd: Input should be greater than 0"),
    ("budgets:\n  default: {monthly_usd: lots}\n", "budgets.default.monthly_usd:"),
    ("budgets:\n  default: {action: stop}\n",
     "budgets.default.action: Input should be 'cheaper_model' or 'retrieval_only'"),
    ("budgets:\n  default: {daily: 5}\n", "budgets.default.daily: is not a known setting"),
    ("budgets:\n  workspaces: {T123: {daily_usd: 5}}\n",
     "budgets.workspaces: keys are 'platform:workspace', like 'slack:T0123ABC', not 'T123'"),
    ("budgets:\n  workspaces: {'slack:T1': {daily_usd: 0}}\n",
     "budgets.workspaces.slack:T1.daily_usd: Input should be greater than 0"),
    ("budgets:\n  timezone: Mars/Olympus\n", "budgets.timezone: unknown time zone 'Mars/Olympus'"),
    ("budgets:\n  default: {warn_at_percent: 100}\n", "budgets.default.warn_at_percent:"),
    ("budgets:\n  default: {cheaper_model: ''}\n", "budgets.default.cheaper_model:"),
    ("cache: {ttl_seconds: 0}\n", "cache.ttl_seconds: Input should be greater than or equal"),
    ("cache: {enable: true}\n", "cache.enable: is not a known setting"),
])
def test_malformed_budgets_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bothub.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_behaviour(path)
    assert str(path) in str(error.value)
    assert expected in str(error.value)


def test_periods_start_at_midnight_in_the_budgets_zone() -> None:
    late = datetime(2026, 3, 31, 22, 30, tzinfo=UTC)  # already April 1st in Berlin
    berlin = current_periods(late, ZoneInfo("Europe/Berlin"))
    assert berlin["day"].first_day == date(2026, 4, 1)
    assert berlin["day"].starts_at == datetime(2026, 3, 31, 22, 0, tzinfo=UTC)
    assert berlin["month"].label == "2026-04"
    assert berlin["month"].ends_at == datetime(2026, 4, 30, 22, 0, tzinfo=UTC)
    utc = current_periods(late, ZoneInfo("UTC"))
    assert (utc["day"].label, utc["month"].label) == ("2026-03-31", "2026-03")
    assert utc["month"].ends_at == datetime(2026, 4, 1, tzinfo=UTC)


# --- decisions ---------------------------------------------------------------------------------


async def test_without_budgets_nothing_is_read(make_guard: GuardFactory) -> None:
    class Unreadable(UsageStore):
        async def spent(self, **_: Any) -> Decimal:
            raise AssertionError("no budget: spent must not be read")

    guard = make_guard(config())
    guard._usage = Unreadable(guard._usage._engine)
    assert not guard.enabled
    assert await guard.decide("slack", "T1") == BudgetDecision()


async def test_under_budget_answers_normally(make_guard: GuardFactory,
                                             database: AsyncEngine) -> None:
    await spend(database, "0.50")
    guard = make_guard(config(default={"daily_usd": 10, "monthly_usd": 100}))
    assert guard.enabled
    decision = await guard.decide("slack", "T1")
    assert decision == BudgetDecision() and not decision.over_budget


def exceeded(platform: str, action: str) -> float:
    """bothub_budget_exceeded_total as /metrics shows it."""
    return REGISTRY.get_sample_value("bothub_budget_exceeded_total",
                                     {"platform": platform, "action": action}) or 0.0


async def test_over_the_daily_budget_a_cheaper_model_and_one_alert(
        make_guard: GuardFactory, database: AsyncEngine, events: RecordingLog) -> None:
    await spend(database, "6.00")
    await spend(database, "5.00")
    await spend(database, "50.00", key=T2)  # another workspace's spending is its own
    before = exceeded("slack", "cheaper_model")
    guard = make_guard(config(default={"daily_usd": 10, "monthly_usd": 1000}))

    first = await guard.decide("slack", "T1")
    assert first.action is BudgetAction.CHEAPER_MODEL and first.over_budget
    assert (first.model, first.period) == ("gpt-4o-mini", "day")
    assert (first.spent_usd, first.limit_usd) == (Decimal("11.000000"), Decimal(10))
    assert first.resets_at == datetime(2026, 3, 16, tzinfo=UTC)
    assert first.alert == ("Budget exceeded: slack:T1 has spent $11.00 of its $10.00 daily "
                           "budget (day 2026-03-15, UTC); answers use gpt-4o-mini until "
                           "2026-03-16 00:00 UTC.")
    second = await guard.decide("slack", "T1")
    assert second.action is BudgetAction.CHEAPER_MODEL and second.alert is None
    # Another worker (its own guard, its own memory) sees the breach but does not re-alert.
    other = await make_guard(config(default={"daily_usd": 10})).decide("slack", "T1")
    assert other.over_budget and other.alert is None

    assert exceeded("slack", "cheaper_model") == before + 3
    logged = events.named("budget.exceeded")
    assert [e["announced"] for e in logged] == [True, False]
    assert logged[0] | {"announced": None} == {
        "platform": "slack", "workspace": "T1", "period": "2026-03-15", "spent_usd": "11.000000",
        "limit_usd": "10", "action": "cheaper_model", "announced": None}
    assert (await guard.decide("slack", "T2")).over_budget  # T2 spent 50 today


async def test_over_the_monthly_budget_only(make_guard: GuardFactory,
                                            database: AsyncEngine) -> None:
    await spend(database, "30.00", at=NOW - timedelta(days=10))  # earlier this month
    await spend(database, "1.00")
    await spend(database, "500.00", at=datetime(2026, 2, 27, tzinfo=UTC))  # last month
    guard = make_guard(config(default={"daily_usd": 10, "monthly_usd": 25,
                                       "action": "retrieval_only"}))
    decision = await guard.decide("slack", "T1")
    assert decision.action is BudgetAction.RETRIEVAL_ONLY and decision.model is None
    assert (decision.period, decision.spent_usd) == ("month", Decimal("31.000000"))
    assert decision.resets_at == datetime(2026, 4, 1, tzinfo=UTC)
    assert decision.alert is not None
    assert "monthly budget (month 2026-03, UTC)" in decision.alert
    assert "answers come from the knowledge base only, without a model" in decision.alert


async def test_both_budgets_exceeded_the_month_decides_and_both_alert(
        make_guard: GuardFactory, database: AsyncEngine) -> None:
    await spend(database, "40.00")
    guard = make_guard(config(default={"daily_usd": 10, "monthly_usd": 25}))
    decision = await guard.decide("slack", "T1")
    assert decision.period == "month"
    assert decision.resets_at == datetime(2026, 4, 1, tzinfo=UTC)
    assert decision.alert is not None
    daily, monthly = decision.alert.splitlines()
    assert "of its $10.00 daily budget" in daily and "of its $25.00 monthly budget" in monthly


async def test_workspace_override_retrieval_only(make_guard: GuardFactory,
                                                 database: AsyncEngine) -> None:
    await spend(database, "3.00")
    await spend(database, "3.00", key=T2)
    guard = make_guard(config(default={"daily_usd": 5},
                              workspaces={"slack:T1": {"daily_usd": 2,
                                                       "action": "retrieval_only"}}))
    assert (await guard.decide("slack", "T1")).action is BudgetAction.RETRIEVAL_ONLY
    assert (await guard.decide("slack", "T2")).action is BudgetAction.NORMAL


async def test_a_warning_once_at_the_threshold(make_guard: GuardFactory,
                                               database: AsyncEngine) -> None:
    await spend(database, "8.50")
    guard = make_guard(config(default={"daily_usd": 10}))
    decision = await guard.decide("slack", "T1")
    assert decision.action is BudgetAction.NORMAL
    assert decision.alert == ("Budget warning: slack:T1 has spent $8.50 (85%) of its $10.00 "
                              "daily budget (day 2026-03-15, UTC).")
    assert (await guard.decide("slack", "T1")).alert is None
    quiet = make_guard(config(default={"daily_usd": 10, "warn_at_percent": None}),
                       now=NOW + timedelta(days=1))
    await spend(database, "9.00", at=NOW + timedelta(days=1))
    assert await quiet.decide("slack", "T1") == BudgetDecision()


async def test_the_spent_figure_is_cached_briefly(make_guard: GuardFactory,
                                                  database: AsyncEngine,
                                                  clock: FakeClock) -> None:
    guard = make_guard(config(default={"daily_usd": 1, "warn_at_percent": None}))
    assert not (await guard.decide("slack", "T1")).over_budget
    await spend(database, "2.00")
    assert not (await guard.decide("slack", "T1")).over_budget  # still the cached figure
    clock.advance(budgets.SPENT_CACHE_SECONDS)
    assert (await guard.decide("slack", "T1")).over_budget


async def test_a_new_day_starts_afresh(make_guard: GuardFactory, database: AsyncEngine) -> None:
    await spend(database, "2.00")
    budget = config(default={"daily_usd": 1})
    assert (await make_guard(budget).decide("slack", "T1")).over_budget
    tomorrow = make_guard(budget, now=NOW + timedelta(days=1))
    assert await tomorrow.decide("slack", "T1") == BudgetDecision()
    await spend(database, "1.50", at=NOW + timedelta(days=1))
    tomorrow._spent.clear()
    assert (await tomorrow.decide("slack", "T1")).alert is not None  # a new day, a new alert


@pytest.mark.postgres
async def test_two_workers_racing_alert_exactly_once(postgres_url: str,
                                                     clock: FakeClock) -> None:
    engines = [create_engine(postgres_url) for _ in range(2)]
    try:
        await migrate.upgrade(engines[0])
        await spend(engines[0], "12.00")
        budget = config(default={"daily_usd": 10})
        guards = [BudgetGuard(budget, UsageStore(e), BudgetAlerts(e), clock=clock,
                              now=lambda: NOW) for e in engines]
        decisions: list[BudgetDecision] = []
        for _ in range(3):  # start from cold caches each round: every call races to insert
            for guard in guards:
                guard._spent.clear()
                guard._announced.clear()
            decisions += await asyncio.gather(
                *(guards[n % 2].decide("slack", "T1") for n in range(12)))
        assert all(d.action is BudgetAction.CHEAPER_MODEL for d in decisions)
        assert sum(d.alert is not None for d in decisions) == 1
        async with engines[1].connect() as connection:
            rows = await connection.scalar(select(func.count()).select_from(BudgetAlert))
        assert rows == 1
    finally:
        for engine in engines:
            await engine.dispose()


async def test_alerts_are_announced_once_even_by_concurrent_calls(
        make_guard: GuardFactory, database: AsyncEngine) -> None:
    await spend(database, "12.00")
    guards = [make_guard(config(default={"daily_usd": 10})) for _ in range(3)]
    decisions = await asyncio.gather(*(guards[n % 3].decide("slack", "T1") for n in range(9)))
    assert sum(d.alert is not None for d in decisions) == 1


async def test_an_unreadable_database_lets_answers_through(
        make_guard: GuardFactory, events: RecordingLog) -> None:
    dead = create_engine("postgresql://nobody@127.0.0.1:9/none")
    try:
        guard = make_guard(config(default={"daily_usd": 1}), engine=dead)
        assert await guard.decide("slack", "T1") == BudgetDecision()
        assert await guard.decide("slack", "T1") == BudgetDecision()
    finally:
        await dead.dispose()
    assert len(events.named("budget.storage_unavailable")) == 1  # once, not per answer
