"""/admin/knowledge: the knowledge base's sources, what is indexed, and its sync history, with
"Sync now" (all sources, or one).

A sync runs in the background (`SyncLauncher`); while any run is in progress the page asks the
browser to reload it every few seconds (a `Refresh` header: the admin pages run no script), so
the admin sees the run start and finish without doing anything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response

from bot.admin.auth import ADMIN_PREFIX, AdminSession, require_admin
from bot.admin.forms import read_form
from bot.admin.layout import (
    Html,
    Tone,
    badge,
    card,
    error_page,
    esc,
    heading,
    html,
    join,
    link,
    post_button,
    redirect_with_notice,
    render,
    stats,
    table,
    when,
)
from bot.admin.sync_launcher import SyncLauncher
from bot.app import Hub
from bot.config import SourceConfig
from bot.kb.catalog import RunRecord
from bot.store.repository import StorageUnavailable

log = structlog.get_logger(__name__)

PATH = f"{ADMIN_PREFIX}/knowledge"
HISTORY = 20  # runs shown
REFRESH_SECONDS = 3
MAX_PROBLEMS_SHOWN = 10
RUN_TONES: dict[str, Tone] = {"ok": "ok", "partial": "warn", "failed": "bad",
                              "running": "info", "interrupted": "warn"}
Admin = Annotated[AdminSession, Depends(require_admin)]


def router(hub: Hub) -> APIRouter:
    """GET /admin/knowledge and POST /admin/knowledge/sync. The router's lifespan stops a
    sync started here when the server shuts down."""
    launcher = SyncLauncher(hub.knowledge)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await launcher.close()

    routes = APIRouter(lifespan=lifespan)  # under admin_router's /admin

    @routes.get("/knowledge")
    async def knowledge(request: Request, admin: Admin) -> Response:
        try:
            counts = await hub.knowledge.catalog.document_counts()
            runs = await hub.knowledge.catalog.runs(limit=HISTORY)
        except StorageUnavailable as exc:
            log.error("admin.knowledge_unavailable", reason=exc.reason)
            return error_page(request, admin, 503, "Knowledge base unavailable",
                              "The database cannot be reached right now; try again shortly.",
                              active="knowledge")
        try:
            chunks: int | None = await hub.knowledge.index.count()
        except Exception as exc:  # the index (LanceDB, maybe remote) is down or missing
            log.warning("admin.index_unavailable", error=type(exc).__name__)
            chunks = None
        embedder = hub.knowledge.embedder
        running = any(run.status == "running" for run in runs)
        body = join([
            heading("Knowledge base",
                    subtitle="What the bot answers from, and how each sync went.",
                    actions=[post_button(f"{PATH}/sync", "Sync now", csrf=admin.csrf,
                                         title="Index what is new, re-embed what changed, "
                                               "drop what vanished")]),
            stats([
                ("Sources", len(hub.knowledge.sources), "configured"),
                ("Documents", f"{sum(d for d, _ in counts.values()):,}", "indexed"),
                ("Chunks", "–" if chunks is None else f"{chunks:,}",
                 "in the search index" if chunks is not None else "index unavailable"),
                ("Retrieval", "Hybrid" if embedder else "Full-text",
                 f"embeddings: {embedder.name}" if embedder else "no embedding model set"),
            ]),
            card(sources_table(hub.knowledge.sources, counts, admin.csrf, running=running),
                 title="Sources", flush=True),
            card(history_table(runs, now=datetime.now(UTC)), title="Sync history", flush=True),
            problems_card(runs),
            html(f'<p class="muted">Refreshing every {REFRESH_SECONDS} s while a sync runs.'
                 "</p>") if running else html(""),
        ])
        response = render(request, "Knowledge base", body, session=admin, active="knowledge",
                          extra_css=CSS)
        if running:  # drop the one-time notice from the URL on the way
            response.headers["Refresh"] = f"{REFRESH_SECONDS}; url={PATH}"
        return response

    @routes.post("/knowledge/sync")
    async def sync_now(request: Request, admin: Admin) -> Response:
        source = (await read_form(request)).get("source", "").strip() or None
        names = [s.name for s in hub.knowledge.sources]
        if source is not None and source not in names:
            return error_page(request, admin, 400, "Unknown source",
                              f"There is no knowledge source named {source[:100]!r}; the "
                              f"sources are: {', '.join(names)}.", active="knowledge")
        launch = await launcher.start(source)
        log.info("admin.kb_sync", who=admin.who, source=source, started=launch.started)
        return redirect_with_notice(request, PATH, launch.text, launch.tone)

    return routes


CSS = """
td time{white-space:nowrap}
#problems td{overflow-wrap:anywhere}
"""


def location(config: SourceConfig) -> str:
    """Where a source's documents come from, in words."""
    if config.kind == "folder":
        return str(config.path or "")
    if config.kind == "web":
        return ", ".join(config.urls + config.sitemaps)
    return "Answers of resolved escalations"


def scope(config: SourceConfig) -> str:
    return "Everywhere" if config.scope == ["*"] else ", ".join(config.scope)


def sources_table(sources: Sequence[SourceConfig], counts: dict[str, tuple[int, int]],
                  csrf: str, *, running: bool) -> Html:
    rows: list[list[Any]] = []
    for config in sources:
        documents, chunks = counts.get(config.name, (0, 0))
        rows.append([html(f"<strong>{esc(config.name)}</strong>"), badge(config.kind, "info"),
                     html(f'<span class="mono">{esc(location(config))}</span>')
                     if config.kind != "escalations" else location(config),
                     scope(config), f"{documents:,}", f"{chunks:,}",
                     html("") if running else post_button(
                         f"{PATH}/sync", "Sync", csrf=csrf, fields={"source": config.name},
                         tone="secondary", small=True, title=f"Sync only {config.name}")])
    return table(["Source", "Kind", "Location", "Visible in", "Documents", "Chunks", ""],
                 rows, numeric=(4, 5), actions_column=True,
                 empty="No knowledge sources are configured.")


def history_table(runs: Sequence[RunRecord], *, now: datetime) -> Html:
    shown = _with_problems(runs)
    rows = []
    for run in runs:
        report = run.report
        if run.status == "running":
            took = f"running {duration(int((now - run.started_at).total_seconds() * 1000))}"
        else:
            took = duration(run.duration_ms)
        rows.append([f"#{run.id}", run.trigger, run.source or "all",
                     badge(run.status, RUN_TONES.get(run.status, "muted")),
                     when(run.started_at), took, f"{report.added:,}", f"{report.updated:,}",
                     f"{report.deleted:,}", failed(run, linked=run is shown)])
    return table(["Run", "Trigger", "Source", "Status", "Started", "Took", "Added", "Changed",
                  "Deleted", "Problems"], rows, numeric=(6, 7, 8, 9),
                 empty="No sync has run yet. “Sync now” indexes the sources above.")


def failed(run: RunRecord, *, linked: bool) -> Html:
    """How many documents the run skipped or failed; in the newest such run the number links
    to the list of them below the history."""
    count = f"{run.report.failed + run.report.skipped:,}"
    return link("#problems", count) if linked and run.report.errors else esc(count)


def problems_card(runs: Sequence[RunRecord]) -> Html:
    """What went wrong in the newest run that had problems: each document and why."""
    run = _with_problems(runs)
    if run is None:
        return html("")
    errors = run.report.errors
    rows = [[e.get("source", ""), html(f'<span class="mono">'
                                       f"{esc(e.get('doc_id') or '(the source itself)')}</span>"),
             e.get("reason", "")] for e in errors[:MAX_PROBLEMS_SHOWN]]
    more = len(errors) - MAX_PROBLEMS_SHOWN
    caption = f"The first {MAX_PROBLEMS_SHOWN}; {more} more." if more > 0 else ""
    return html('<div id="problems">') + card(
        table(["Source", "Document", "Reason"], rows, caption=caption),
        title=f"Problems in run #{run.id} ({run.status})", flush=True) + html("</div>")


def _with_problems(runs: Sequence[RunRecord]) -> RunRecord | None:
    return next((run for run in runs if run.report.errors), None)


def duration(milliseconds: int | None) -> str:
    """1234 -> "1.2 s", 95000 -> "1 min 35 s"."""
    if milliseconds is None:
        return "–"
    seconds = milliseconds / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"
