"""What the answers cost: reports by day, platform, workspace, channel, conversation or model,
and the spent figure that budgets are checked against.

Both read the stored answers (`messages` with role 'assistant', which carry their model, tokens
and cost) joined to their conversations (which carry platform, workspace and channel), so no
second ledger can drift from what was recorded. Days are UTC days in reports; budgets choose
their own time zone and pass the start of their period to `spent`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, get_args

from sqlalchemy import Date, cast, func, literal_column, select
from sqlalchemy.sql.elements import ColumnElement

from bot.store.repository import Repository
from bot.store.tables import Conversation, StoredMessage

GroupBy = Literal["day", "platform", "workspace", "channel", "conversation", "model"]
GROUPINGS: tuple[str, ...] = get_args(GroupBy)
DEFAULT_DAYS = 30
COST_PRECISION = Decimal("0.000001")  # as stored: Numeric(14, 6)
# Literal, not a bound parameter: a partial index on answers is used only when the query names
# its condition as written (SQLite and PostgreSQL's generic plans cannot see through `role = ?`).
_IS_ANSWER = StoredMessage.role == literal_column("'assistant'")


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One group's totals; `group` maps each grouping column to its value (for a grouping by
    channel: platform, workspace and channel)."""

    group: dict[str, str]
    answers: int
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal

    @property
    def label(self) -> str:
        return ":".join(self.group.values())

    def as_json(self) -> dict[str, Any]:
        return {**self.group, "answers": self.answers, "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out, "cost_usd": float(self.cost_usd)}


@dataclass(frozen=True, slots=True)
class UsageReport:
    by: GroupBy
    since: datetime
    until: datetime
    rows: list[UsageRow] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return _COLUMNS[self.by]

    @property
    def total(self) -> UsageRow:
        return UsageRow(group={"total": "total"}, answers=sum(r.answers for r in self.rows),
                        tokens_in=sum(r.tokens_in for r in self.rows),
                        tokens_out=sum(r.tokens_out for r in self.rows),
                        cost_usd=sum((r.cost_usd for r in self.rows), Decimal(0)))

    def as_json(self) -> dict[str, Any]:
        return {"by": self.by, "since": self.since.isoformat(), "until": self.until.isoformat(),
                "rows": [row.as_json() for row in self.rows], "total": {
                    key: value for key, value in self.total.as_json().items() if key != "total"}}


_COLUMNS: dict[str, list[str]] = {
    "day": ["day"],
    "platform": ["platform"],
    "workspace": ["platform", "workspace"],
    "channel": ["platform", "workspace", "channel"],
    "conversation": ["conversation", "platform", "workspace", "channel", "thread"],
    "model": ["model"],
}


class UsageStore(Repository):
    async def report(self, *, by: GroupBy = "day", since: datetime | None = None,
                     until: datetime | None = None, platform: str | None = None,
                     workspace: str | None = None) -> UsageReport:
        """Totals of answers, tokens and cost per group for answers stored in [since, until)
        (default: the last 30 days up to now). Days come in order; every other grouping
        comes most expensive first."""
        if by not in GROUPINGS:
            raise ValueError(f"cannot group by {by!r}; choose one of {', '.join(GROUPINGS)}")
        until = _utc(until) if until else datetime.now(UTC)
        since = _utc(since) if since else until - timedelta(days=DEFAULT_DAYS)
        keys = self._group_columns(by)
        cost = func.coalesce(func.sum(StoredMessage.cost_usd), 0)
        query = (select(*keys, func.count().label("answers"),
                        func.coalesce(func.sum(StoredMessage.tokens_in), 0).label("tokens_in"),
                        func.coalesce(func.sum(StoredMessage.tokens_out), 0).label("tokens_out"),
                        cost.label("cost_usd"))
                 .join(Conversation, Conversation.id == StoredMessage.conversation_id)
                 .where(_IS_ANSWER, StoredMessage.created_at >= since,
                        StoredMessage.created_at < until)
                 .group_by(*keys))
        if platform is not None:
            query = query.where(Conversation.platform == platform)
        if workspace is not None:
            query = query.where(Conversation.workspace == workspace)
        query = query.order_by(*keys) if by == "day" else query.order_by(cost.desc(), *keys)
        async with self._session() as session:
            rows = (await session.execute(query)).all()
        return UsageReport(by=by, since=since, until=until, rows=[
            UsageRow(group={name: _text(value) for name, value in
                            zip(_COLUMNS[by], row[:len(keys)], strict=True)},
                     answers=int(row.answers), tokens_in=int(row.tokens_in),
                     tokens_out=int(row.tokens_out), cost_usd=_money(row.cost_usd))
            for row in rows])

    async def spent(self, *, platform: str, workspace: str, since: datetime) -> Decimal:
        """US dollars spent on this workspace's answers since `since`. One indexed query
        (`ix_messages_answers_by_time`: the workspace's conversations, then their answers
        from `since` on), cheap enough for a budget check; callers still cache it briefly."""
        query = (select(func.coalesce(func.sum(StoredMessage.cost_usd), 0))
                 .join(Conversation, Conversation.id == StoredMessage.conversation_id)
                 .where(Conversation.platform == platform, Conversation.workspace == workspace,
                        _IS_ANSWER, StoredMessage.created_at >= _utc(since)))
        async with self._session() as session:
            return _money(await session.scalar(query))

    def _group_columns(self, by: str) -> Sequence[ColumnElement[Any]]:
        if by == "day":
            return [self._day(StoredMessage.created_at).label("day")]
        if by == "model":
            return [StoredMessage.model.label("model")]
        if by == "conversation":
            return [Conversation.id.label("conversation"),
                    *(getattr(Conversation, name).label(name) for name in _COLUMNS[by][1:])]
        return [getattr(Conversation, name).label(name) for name in _COLUMNS[by]]

    def _day(self, moment: Any) -> ColumnElement[Any]:
        """The UTC calendar day of a stored time. SQLite keeps UTC wall-clock text, whose
        first ten characters are the day; PostgreSQL keeps an instant, shown in the session's
        time zone unless converted to UTC first."""
        if self._engine.dialect.name == "postgresql":
            return cast(func.timezone("UTC", moment), Date)
        return func.substr(moment, 1, 10)


def _utc(moment: datetime) -> datetime:
    """Aware and in UTC: SQLite compares stored times as text, so a bound value in another
    zone (or naive local time) would compare as the wrong instant."""
    if moment.tzinfo is None:
        raise ValueError("usage periods need time-zone-aware datetimes")
    return moment.astimezone(UTC)


def _money(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(COST_PRECISION)


def _text(value: Any) -> str:
    if isinstance(value, date):
        return value.isoformat()
    if value == "":
        return "(none)"  # answers that used no model: from the knowledge base, or notices
    return str(value)
