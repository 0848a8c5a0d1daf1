"""Budgets: what a workspace may spend on the model per day and per month, and what its answers
do once it has (a cheaper model, or the knowledge base without any model).

`BudgetGuard.decide` runs before every answer, so it must be cheap: what a workspace spent is
read with one indexed query (`UsageStore.spent`) and kept for `SPENT_CACHE_SECONDS` in this
process. A budget can therefore be overshot by the answers of those few seconds; that is the
price of not querying on every message. When the database cannot be read the guard lets the
answer through: a budget protects the bill, it must not be why the bot stops answering.

Operators hear of a warning (`warn_at_percent`) or a breach once per workspace and period, not
once per worker: the worker whose insert into `budget_alerts` wins gets the alert text on its
decision; the others' inserts do nothing (INSERT … ON CONFLICT DO NOTHING).
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import metrics
from bot.config import Budget, BudgetConfig
from bot.store.repository import Repository, StorageUnavailable
from bot.store.tables import BudgetAlert
from bot.usage import UsageStore

log = structlog.get_logger(__name__)

SPENT_CACHE_SECONDS = 5.0
MAX_REMEMBERED = 10_000  # cached spent figures and announced alerts kept per process
EXCEEDED = 100  # the threshold, in percent, of a breach (warnings are below it)


class BudgetAction(enum.StrEnum):
    NORMAL = "normal"
    CHEAPER_MODEL = "cheaper_model"  # answer with `BudgetDecision.model`
    RETRIEVAL_ONLY = "retrieval_only"  # quote the knowledge base; no model call


@dataclass(frozen=True, slots=True)
class BudgetDecision:
    """What to do for the next answer. `period`, `spent_usd`, `limit_usd` and `resets_at`
    describe the exceeded budget (the month's when both are). `alert` is a message for
    operators, set on exactly one decision per workspace, period and threshold across every
    worker: whoever receives it delivers it."""

    action: BudgetAction = BudgetAction.NORMAL
    model: str | None = None
    period: str | None = None  # day | month
    spent_usd: Decimal | None = None
    limit_usd: Decimal | None = None
    resets_at: datetime | None = None
    alert: str | None = None

    @property
    def over_budget(self) -> bool:
        return self.action is not BudgetAction.NORMAL


NORMAL = BudgetDecision()


@dataclass(frozen=True, slots=True)
class Period:
    """A budget's day or month: its local first day, and its bounds as UTC instants."""

    kind: str  # day | month
    first_day: date
    starts_at: datetime
    ends_at: datetime

    @property
    def label(self) -> str:
        return self.first_day.isoformat() if self.kind == "day" else f"{self.first_day:%Y-%m}"


def current_periods(now: datetime, zone: ZoneInfo) -> dict[str, Period]:
    """The day and the month that `now` falls in, with midnight taken in `zone`."""
    today = now.astimezone(zone).date()
    first = today.replace(day=1)
    next_month = (first + timedelta(days=32)).replace(day=1)

    def midnight(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)

    return {"day": Period("day", today, midnight(today), midnight(today + timedelta(days=1))),
            "month": Period("month", first, midnight(first), midnight(next_month))}


class BudgetAlerts(Repository):
    async def claim(self, *, platform: str, workspace: str, period: Period, threshold: int,
                    spent_usd: Decimal, limit_usd: Decimal) -> bool:
        """Record that this alert is announced; True for exactly one caller, whichever worker
        it runs in (the unique constraint decides, even for inserts at the same instant)."""
        async with self._session() as session:
            result = await session.execute(
                self._insert(BudgetAlert)
                .values(platform=platform, workspace=workspace, period_kind=period.kind,
                        period_start=period.first_day, threshold=threshold,
                        spent_usd=spent_usd, limit_usd=limit_usd,
                        created_at=datetime.now(UTC))
                .on_conflict_do_nothing(index_elements=["platform", "workspace", "period_kind",
                                                        "period_start", "threshold"])
                .returning(BudgetAlert.id))
            return result.scalar_one_or_none() is not None


class BudgetGuard:
    """Decides, per answer, whether a workspace is within its budgets (see the module doc).

    `clock` (monotonic seconds) ages the cached spent figures; `now` says which day and month
    it is. Tests inject both."""

    def __init__(self, config: BudgetConfig, usage: UsageStore, alerts: BudgetAlerts, *,
                 cache_seconds: float = SPENT_CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._config = config
        self._usage = usage
        self._alerts = alerts
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._now = now
        self._spent: OrderedDict[tuple[str, str, datetime], tuple[float, Decimal]] = \
            OrderedDict()
        self._announced: OrderedDict[tuple[str, str, str, date, int], None] = OrderedDict()
        self._storage_error: str | None = None

    @classmethod
    def from_database(cls, config: BudgetConfig, database: AsyncEngine) -> BudgetGuard:
        return cls(config, UsageStore(database), BudgetAlerts(database))

    @property
    def enabled(self) -> bool:
        """Whether any workspace has a budget at all (if not, `decide` never reads)."""
        return any(_has_limit(b) for b in (self._config.default,
                                           *self._config.workspaces.values()))

    async def decide(self, platform: str, workspace: str) -> BudgetDecision:
        """What the next answer in this workspace should do; never raises for storage."""
        budget = self._config.for_workspace(platform, workspace)
        limits = {"day": budget.daily_usd, "month": budget.monthly_usd}
        if not _has_limit(budget):
            return NORMAL
        periods = current_periods(self._now(), self._config.zone)
        alerts: list[str] = []
        exceeded: list[tuple[Period, Decimal, Decimal]] = []
        try:
            for kind, limit in limits.items():
                if limit is None:
                    continue
                period = periods[kind]
                spent = await self._spent_since(platform, workspace, period.starts_at)
                threshold = _threshold(spent, limit, budget.warn_at_percent)
                if threshold == EXCEEDED:
                    exceeded.append((period, spent, limit))
                if threshold is not None:
                    alert = await self._announce(platform, workspace, budget, period, threshold,
                                                 spent, limit)
                    if alert:
                        alerts.append(alert)
        except StorageUnavailable as exc:
            self._storage_failed(exc)  # fail open, but keep an alert already won
            return BudgetDecision(alert="\n".join(alerts) or None)
        self._storage_ok()
        alert = "\n".join(alerts) or None
        if not exceeded:
            return BudgetDecision(alert=alert)
        period, spent, limit = exceeded[-1]  # the month outlasts the day
        action = BudgetAction(budget.action)
        metrics.BUDGET_EXCEEDED.add(1, {"platform": platform, "action": action.value})
        return BudgetDecision(
            action=action, model=budget.cheaper_model if action is BudgetAction.CHEAPER_MODEL
            else None, period=period.kind, spent_usd=spent, limit_usd=limit,
            resets_at=max(p.ends_at for p, _, _ in exceeded), alert=alert)

    async def _spent_since(self, platform: str, workspace: str, since: datetime) -> Decimal:
        key = (platform, workspace, since)
        now = self._clock()
        cached = self._spent.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        spent = await self._usage.spent(platform=platform, workspace=workspace, since=since)
        self._spent[key] = (now + self._cache_seconds, spent)
        self._spent.move_to_end(key)
        _trim(self._spent)
        return spent

    async def _announce(self, platform: str, workspace: str, budget: Budget, period: Period,
                        threshold: int, spent: Decimal, limit: Decimal) -> str | None:
        """The alert text if this worker is the one to announce it, else None. Each worker
        asks the database once per alert; it logs what it saw either way."""
        key = (platform, workspace, period.kind, period.first_day, threshold)
        if key in self._announced:
            return None
        won = await self._alerts.claim(platform=platform, workspace=workspace, period=period,
                                       threshold=threshold, spent_usd=spent, limit_usd=limit)
        self._announced[key] = None
        _trim(self._announced)
        fields = {"platform": platform, "workspace": workspace, "period": period.label,
                  "spent_usd": str(spent), "limit_usd": str(limit), "announced": won}
        if threshold == EXCEEDED:
            log.warning("budget.exceeded", action=budget.action, **fields)
        else:
            log.info("budget.warning", percent=threshold, **fields)
        if not won:
            return None
        return _alert_text(f"{platform}:{workspace}", budget, period, threshold, spent, limit,
                           self._config.timezone)

    def _storage_failed(self, exc: StorageUnavailable) -> None:
        if self._storage_error is None:
            log.warning("budget.storage_unavailable", error=exc.reason,
                        effect="answers are not held to their budgets until it is back")
        self._storage_error = exc.reason

    def _storage_ok(self) -> None:
        if self._storage_error is not None:
            log.info("budget.storage_recovered", after=self._storage_error)
            self._storage_error = None


def _has_limit(budget: Budget) -> bool:
    return budget.daily_usd is not None or budget.monthly_usd is not None


def _threshold(spent: Decimal, limit: Decimal, warn_at_percent: int | None) -> int | None:
    if spent >= limit:
        return EXCEEDED
    if warn_at_percent is not None and spent * 100 >= limit * warn_at_percent:
        return warn_at_percent
    return None


def _trim(remembered: OrderedDict[Any, Any]) -> None:
    while len(remembered) > MAX_REMEMBERED:
        remembered.popitem(last=False)


def _alert_text(who: str, budget: Budget, period: Period, threshold: int, spent: Decimal,
                limit: Decimal, zone: str) -> str:
    kind = "daily" if period.kind == "day" else "monthly"
    where = f"{period.kind} {period.label}, {zone}"
    if threshold != EXCEEDED:
        percent = int(spent * 100 / limit)
        return (f"Budget warning: {who} has spent {_usd(spent)} ({percent}%) of its "
                f"{_usd(limit)} {kind} budget ({where}).")
    if budget.action == "cheaper_model":
        instead = f"answers use {budget.cheaper_model}"
    else:
        instead = "answers come from the knowledge base only, without a model"
    until = period.ends_at.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")
    return (f"Budget exceeded: {who} has spent {_usd(spent)} of its {_usd(limit)} {kind} "
            f"budget ({where}); {instead} until {until} {zone}.")


def _usd(amount: Decimal) -> str:
    return f"${amount:,.2f}" if amount >= 1 else f"${amount:.4f}"
