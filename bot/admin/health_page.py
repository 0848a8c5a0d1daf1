"""/admin/health: each part of the hub and each platform's link, as /healthz reports them.

The page reads the very report /healthz answers (`bot.server.health_report`, handed in as
`health`), so what an operator sees here is what a load balancer or monitor sees; it only puts
it into words. Nothing here probes on its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from bot.admin.auth import AdminSession, require_admin
from bot.admin.layout import (
    Html,
    Tone,
    badge,
    card,
    esc,
    heading,
    html,
    join,
    link,
    render,
    stats,
    table,
    when,
)

log = structlog.get_logger(__name__)

HealthReport = Callable[[], Awaitable[Mapping[str, Any]]]
Admin = Annotated[AdminSession, Depends(require_admin)]

COMPONENT_NAMES = {"database": "Database", "model": "Chat model", "knowledge": "Knowledge base",
                   "limits": "Rate limits"}
PLATFORM_NAMES = {"slack": "Slack", "discord": "Discord", "teams": "Microsoft Teams",
                  "web": "Web chat"}
STATE_TONES: dict[str, Tone] = {"ok": "ok", "configured": "ok", "empty": "warn",
                                "degraded": "warn", "connecting": "warn", "down": "bad",
                                "not_configured": "muted", "unknown": "warn"}
HINTS = {"slack": "Set SLACK_BOT_TOKEN with SLACK_SIGNING_SECRET (HTTP) or SLACK_APP_TOKEN "
                  "(Socket Mode).",
         "discord": "Set DISCORD_BOT_TOKEN.",
         "teams": "Set MICROSOFT_APP_ID and MICROSOFT_APP_PASSWORD.",
         "model": "set OPENAI_API_KEY"}
STATUS_NAMES = {"ok": "OK", "degraded": "Degraded"}


def router(health: HealthReport) -> APIRouter:
    routes = APIRouter()  # included under admin_router's /admin

    @routes.get("/health")
    async def health_page(request: Request, admin: Admin) -> Response:
        report = await health()
        return render(request, "Health", health_body(report, checked=datetime.now(UTC)),
                      session=admin, active="health")

    return routes


def state_badge(state: object) -> Html:
    text = str(state or "unknown")
    return badge(text.replace("_", " "), STATE_TONES.get(text, "muted"))


def health_body(report: Mapping[str, Any], *, checked: datetime) -> Html:
    components = _mapping(report.get("components"))
    platforms = _mapping(report.get("adapters"))
    status = str(report.get("status", "unknown"))
    configured = [_mapping(p).get("state") for p in platforms.values()
                  if _mapping(p).get("state") != "not_configured"]
    problems = [name for name, part in {**components, **platforms}.items()
                if _mapping(part).get("state") in {"down", "degraded", "unknown", "connecting"}]
    return join([
        heading("Health", subtitle="The same report as /healthz, checked when this page "
                                   "loaded."),
        stats([("Overall", STATUS_NAMES.get(status, status),
                "the database answers" if status == "ok" else "the database is not answering"),
               ("Needs attention", len(problems),
                ", ".join(problems) if problems else "nothing"),
               ("Platforms up", f"{configured.count('ok')} of {len(configured)}",
                "of those configured"),
               ("Checked", checked.strftime("%H:%M:%S"), "UTC")]),
        card(components_table(components), title="Components", flush=True),
        card(platforms_table(platforms), title="Platforms", flush=True),
        html('<p class="muted">Machine-readable: ') + link("/healthz", "/healthz")
        + html(" (public, for load balancers) and ") + link("/metrics", "/metrics")
        + html(" (Prometheus).</p>"),
    ])


def components_table(components: Mapping[str, Any]) -> Html:
    rows = []
    for name, raw in components.items():
        part = _mapping(raw)
        rows.append([html(f"<strong>{esc(COMPONENT_NAMES.get(name, name))}</strong>"),
                     state_badge(part.get("state")), component_details(name, part)])
    return table(["Component", "State", "Details"], rows, empty="No components reported.")


def component_details(name: str, part: Mapping[str, Any]) -> Html:
    """A component's facts in words; what is not known here is shown as key: value."""
    facts: list[object] = []
    rest = {k: v for k, v in part.items() if k != "state"}
    if name == "database" and "latency_ms" in rest:
        facts.append(f"answered in {rest.pop('latency_ms')} ms")
    if name == "model":
        if rest.get("model"):
            facts.append(html("model <code>") + str(rest.pop("model")) + html("</code>"))
        elif part.get("state") == "not_configured":
            facts.append(f"answers come from the knowledge base alone ({HINTS['model']})")
    if name == "knowledge":
        if "chunks" in rest:
            facts.append(f"{rest.pop('chunks'):,} chunks" if isinstance(rest["chunks"], int)
                         else f"{rest.pop('chunks')} chunks")
        if rest.get("retrieval"):
            facts.append(f"{rest.pop('retrieval')} retrieval")
        last = rest.pop("last_sync", None)
        if isinstance(last, Mapping):
            started = _parse_time(last.get("started_at"))
            facts.append(html("last sync ") + state_badge(last.get("status"))
                         + html(" ") + when(started) + f" ({last.get('trigger', '?')})")
        elif "last_sync" in part:
            facts.append("never synced")
    if name == "limits" and rest.get("backend"):
        backend = rest.pop("backend")
        facts.append("shared through Redis" if backend == "redis"
                     else "kept in this process (no REDIS_URL)")
    if rest.get("error"):
        facts.append(html('<span class="muted">error:</span> ') + str(rest.pop("error")))
    facts.extend(f"{key.replace('_', ' ')}: {value}" for key, value in rest.items())
    return join(facts, " · ") if facts else html('<span class="muted">–</span>')


def platforms_table(platforms: Mapping[str, Any]) -> Html:
    rows = []
    for name, raw in platforms.items():
        part = _mapping(raw)
        state = str(part.get("state", "unknown"))
        detail: list[object] = [str(part.get("detail", ""))]
        if state == "not_configured" and name in HINTS:
            detail = [HINTS[name]] if detail == ["not configured"] else [
                *detail, html('<span class="sub">') + HINTS[name] + html("</span>")]
        extras = [f"{label}: {part[key]}" for key, label in (
            ("mode", "mode"), ("workspaces", "serves"), ("auth", "auth"),
            ("latency_ms", "latency ms")) if part.get(key) not in (None, "")]
        if extras:
            detail.append(html('<span class="sub">') + " · ".join(extras) + html("</span>"))
        error: Html = html('<span class="muted">none</span>')
        if part.get("last_error"):
            error = esc(str(part["last_error"])) + html(" ") + when(
                _parse_time(part.get("last_error_at")))
        rows.append([html(f"<strong>{esc(PLATFORM_NAMES.get(name, name))}</strong>"),
                     state_badge(state), join(detail),
                     when(_parse_time(part.get("last_event_at"))), error])
    return table(["Platform", "State", "Details", "Last event", "Last error"], rows,
                 empty="No platforms reported.")


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
