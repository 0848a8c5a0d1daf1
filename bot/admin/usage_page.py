"""/admin/usage: what the answers cost, over the last 7, 30 or 90 days.

Charts of cost, tokens and answers per UTC day (and tokens per model) above tables of totals
by platform, workspace and model. Every figure comes from `bot.usage.UsageStore`, the same
reports as `bothub usage`, so the page and the CLI cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from bot.admin.auth import ADMIN_PREFIX, AdminSession, require_admin
from bot.admin.charts import Box, Series, bar_chart, dollars, hbar_chart, plain
from bot.admin.layout import (
    Html,
    card,
    error_page,
    filters,
    heading,
    html,
    join,
    render,
    stats,
    table,
)
from bot.admin.params import parse_id
from bot.app import Hub
from bot.store.repository import StorageUnavailable
from bot.usage import UsageReport, UsageRow, UsageStore

log = structlog.get_logger(__name__)

PATH = f"{ADMIN_PREFIX}/usage"
PERIODS = (7, 30, 90)
DEFAULT_PERIOD = 30
WIDE = Box(width=900, height=240, left=64)  # a chart across the page
HALF = Box(width=440, height=240, left=52)  # one of two side by side
MAX_PLATFORM_SERIES = 6  # platforms past this are summed as "other" in the answers chart
Admin = Annotated[AdminSession, Depends(require_admin)]


class BadPeriod(ValueError):
    pass


def parse_period(raw: str | None) -> int:
    """`?days=` as one of `PERIODS`; absent means the default. Anything else is refused with a
    sentence that names the choices."""
    if raw is None or raw == "":
        return DEFAULT_PERIOD
    days = parse_id(raw.strip())  # ASCII digits only, bounded: "²" and 5,000 digits are None
    if days in PERIODS:
        return days
    raise BadPeriod(f"The period must be one of {', '.join(map(str, PERIODS))} days.")


@dataclass(frozen=True, slots=True)
class UsageOverview:
    """Everything the page shows for one period, read in a handful of grouped queries."""

    days: list[date]
    by_day: dict[str, UsageRow]
    platform_days: dict[str, dict[str, UsageRow]]  # platform -> day -> totals
    by_platform: UsageReport
    by_workspace: UsageReport
    by_model: UsageReport

    @property
    def total(self) -> UsageRow:
        return self.by_platform.total


async def load_overview(store: UsageStore, days: int, *, now: datetime) -> UsageOverview:
    """The last `days` UTC days, today included (as `bothub usage --days`)."""
    first = now.date() - timedelta(days=days - 1)
    since = datetime.combine(first, time(), tzinfo=UTC)
    by_day = await store.report(by="day", since=since, until=now)
    by_platform = await store.report(by="platform", since=since, until=now)
    platform_days = {}
    # The busiest platforms, in name order: each keeps its colour whatever the period.
    for name in sorted(row.group["platform"] for row in by_platform.rows[:MAX_PLATFORM_SERIES]):
        report = await store.report(by="day", platform=name, since=since, until=now)
        platform_days[name] = {r.group["day"]: r for r in report.rows}
    return UsageOverview(
        days=[first + timedelta(days=n) for n in range(days)],
        by_day={r.group["day"]: r for r in by_day.rows}, platform_days=platform_days,
        by_platform=by_platform,
        by_workspace=await store.report(by="workspace", since=since, until=now),
        by_model=await store.report(by="model", since=since, until=now))


def router(hub: Hub) -> APIRouter:
    store = UsageStore(hub.database)
    routes = APIRouter()  # included under admin_router's /admin

    @routes.get("/usage")
    async def usage(request: Request, admin: Admin) -> Response:
        try:
            days = parse_period(request.query_params.get("days"))
        except BadPeriod as exc:
            return error_page(request, admin, 400, "Unknown period", str(exc), active="usage")
        try:
            overview = await load_overview(store, days, now=datetime.now(UTC))
        except StorageUnavailable as exc:
            log.error("admin.usage_unavailable", reason=exc.reason)
            return error_page(request, admin, 503, "Usage unavailable",
                              "The database cannot be reached right now; try again shortly.",
                              active="usage")
        return render(request, "Usage & cost", usage_body(overview, days), session=admin,
                      active="usage", extra_css=CSS)

    return routes


CSS = """
figure.chart{margin:0}
figure.chart svg{display:block;height:auto;max-width:100%}
figure.chart figcaption{color:var(--muted);font-size:.84rem;margin-top:.35rem}
.legend{display:flex;flex-wrap:wrap;gap:.4rem 1rem;font-size:.84rem;margin-top:.4rem}
.legend .key{display:inline-flex;align-items:center;gap:.35rem}
"""


def usage_body(overview: UsageOverview, days: int) -> Html:
    total = overview.total
    per_answer = total.cost_usd / total.answers if total.answers else Decimal(0)
    period = filters([(f"{n} days", f"{PATH}?days={n}", n == days) for n in PERIODS])
    return join([
        heading("Usage & cost", subtitle=f"The last {days} days, UTC, today included."),
        period,
        stats([
            ("Cost", dollars(float(total.cost_usd)), f"{dollars(float(per_answer))} per answer"),
            ("Answers", plain(total.answers), f"{plain(total.answers / days)} a day on average"),
            ("Tokens in", plain(total.tokens_in), "prompts, history and passages"),
            ("Tokens out", plain(total.tokens_out), "the answers themselves"),
        ]),
        card(cost_chart(overview), title="Cost per day"),
        html('<div class="grid2">'),
        card(answers_chart(overview), title="Answers per day by platform"),
        card(tokens_chart(overview), title="Tokens per day"),
        html("</div>"),
        card(model_chart(overview.by_model), title="Tokens by model"),
        card(totals_table(overview.by_platform, ["Platform"]), title="By platform", flush=True),
        card(totals_table(overview.by_workspace, ["Platform", "Workspace"]),
             title="By workspace", flush=True),
        card(totals_table(overview.by_model, ["Model"]), title="By model", flush=True),
    ])


def day_labels(days: Sequence[date]) -> list[str]:
    return [f"{d:%b} {d.day}" for d in days]


def cost_chart(overview: UsageOverview) -> Html:
    values = [float(_day(overview.by_day, d).cost_usd) for d in overview.days]
    return html(bar_chart(title="Cost per day", labels=day_labels(overview.days),
                          series=[Series("Cost", values)], y_label="US dollars",
                          x_label="Day (UTC)", value_format=dollars, axis_format=dollars,
                          box=WIDE, noun="day"))


def tokens_chart(overview: UsageOverview) -> Html:
    rows = [_day(overview.by_day, d) for d in overview.days]
    return html(bar_chart(title="Tokens per day", labels=day_labels(overview.days),
                          series=[Series("Tokens in", [float(r.tokens_in) for r in rows]),
                                  Series("Tokens out", [float(r.tokens_out) for r in rows])],
                          y_label="Tokens", x_label="Day (UTC)", box=HALF, noun="day"))


def answers_chart(overview: UsageOverview) -> Html:
    series = [Series(name, [float(_day(by_day, d).answers) for d in overview.days])
              for name, by_day in overview.platform_days.items()]
    shown = {name for name in overview.platform_days}
    if any(row.group["platform"] not in shown for row in overview.by_platform.rows):
        other = [float(_day(overview.by_day, d).answers) - sum(s.values[i] for s in series)
                 for i, d in enumerate(overview.days)]
        series.append(Series("other", [max(0.0, v) for v in other]))
    if not series:
        series = [Series("Answers", [0.0] * len(overview.days))]
    return html(bar_chart(title="Answers per day by platform", labels=day_labels(overview.days),
                          series=series, y_label="Answers", x_label="Day (UTC)", box=HALF,
                          noun="day", whole=True))


def model_chart(report: UsageReport) -> Html:
    rows = [row for row in report.rows if row.tokens_in or row.tokens_out]
    if not rows:
        return html('<p class="muted">No model was used in this period: answers came from the '
                    "knowledge base alone, or there were none.</p>")
    return html(hbar_chart(title="Tokens by model", labels=[r.group["model"] for r in rows],
                           series=[Series("Tokens in", [float(r.tokens_in) for r in rows]),
                                   Series("Tokens out", [float(r.tokens_out) for r in rows])],
                           x_label="Tokens", width=WIDE.width, noun="model"))


def totals_table(report: UsageReport, headers: list[str]) -> Html:
    rows: list[list[object]] = [
        [*row.group.values(), plain(row.answers), plain(row.tokens_in), plain(row.tokens_out),
         dollars(float(row.cost_usd))] for row in report.rows]
    if rows:
        total = report.total
        rows.append([html("<strong>Total</strong>"), *[""] * (len(headers) - 1),
                     plain(total.answers), plain(total.tokens_in), plain(total.tokens_out),
                     html(f"<strong>{dollars(float(total.cost_usd))}</strong>")])
    n = len(headers)
    return table([*headers, "Answers", "Tokens in", "Tokens out", "Cost"], rows,
                 numeric=range(n, n + 4), empty="No answers in this period.")


def _day(by_day: dict[str, UsageRow], day: date) -> UsageRow:
    return by_day.get(day.isoformat()) or UsageRow(group={"day": day.isoformat()}, answers=0,
                                                    tokens_in=0, tokens_out=0,
                                                    cost_usd=Decimal(0))
