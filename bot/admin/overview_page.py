"""The admin home: what needs a person now (the escalations waiting longest), today's answers,
cost and feedback, and each component's health, with links to the pages behind them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response

from bot.admin.auth import AdminSession
from bot.admin.conversations_page import money
from bot.admin.layout import (
    age,
    badge,
    card,
    heading,
    html,
    join,
    link,
    render,
    stats,
    table,
)
from bot.admin.records import AdminRecords
from bot.escalation.desk import describe

if TYPE_CHECKING:
    from bot.app import Hub

WAITING_SHOWN = 5


def _detail(component: Mapping[str, Any]) -> str:
    parts = [f"{key.replace('_', ' ')}: {value}" for key, value in component.items()
             if key != "state" and isinstance(value, (str, int, float)) and value != ""]
    return ", ".join(parts)[:160]


async def overview(request: Request, admin: AdminSession, hub: Hub,
                   health: Mapping[str, Any]) -> Response:
    records = AdminRecords(hub.database)
    today = await records.today()
    waiting = await records.escalations(states=("open",), limit=WAITING_SHOWN)
    open_count = today.by_state.get("open", 0)
    claimed = today.by_state.get("claimed", 0)
    components: Mapping[str, Any] = health.get("components", {})
    rows = [(name, badge(str(c.get("state", "unknown")) if isinstance(c, Mapping) else "?"),
             _detail(c) if isinstance(c, Mapping) else "")
            for name, c in components.items()]
    status = str(health.get("status", "unknown"))
    queue = table(["#", "User", "Reason", "Waiting"],
                  [(link(f"/admin/escalations/{t.id}", f"#{t.id}"),
                    t.user_name or t.user_id or "–", describe(t.reason), age(t.created_at))
                   for t in waiting], empty="Nobody is waiting for a person.")
    more = (html(f'<p class="muted">…and {open_count - len(waiting)} more in the '
                 f'{link("/admin/escalations?state=open", "queue")}.</p>')
            if open_count > len(waiting) else html(""))
    body = join([
        heading("Overview", subtitle="Today so far (UTC) and what needs a person."),
        stats([("Waiting for a person", open_count, f"{claimed} claimed, being helped"),
               ("Answers today", f"{today.answers:,}",
                f"in {today.conversations:,} conversations"),
               ("Cost today", money(today.cost_usd), "of today's answers"),
               ("Feedback today", f"{today.helpful} / {today.unhelpful}",
                "helpful / unhelpful")]),
        html('<div class="grid2">'),
        card(join([queue, more]), title="Waiting longest"),
        card(join([html(f"<p>Overall: {badge(status)} · {link('/admin/api/health', 'JSON')}"
                        f" · {link('/healthz', '/healthz')} (public) · "
                        f"{link('/metrics', 'metrics')}</p>"),
                   table(["Component", "State", "Detail"], rows, empty="No components.")]),
             title="Health"),
        html("</div>")])
    return render(request, "Overview", body, session=admin, active="overview")
