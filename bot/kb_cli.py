"""`bothub kb sync | status | search`: the knowledge base from the command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from bot.app import Hub
from bot.citations import label
from bot.cli_runtime import out, run_with_hub
from bot.kb.catalog import SyncInProgress
from bot.kb.sync import Progress as SyncProgress
from bot.model import ConversationKey

kb = typer.Typer(help="The knowledge base: sync, status and search.", no_args_is_help=True)


@kb.command()
def sync(source: Annotated[str | None, typer.Option(help="Sync only this source.")] = None
         ) -> None:
    """Index what is new, re-embed what changed, drop what vanished."""

    async def work(hub: Hub) -> int:
        names = [s.name for s in hub.knowledge.sources]
        if source is not None and source not in names:
            out.print(f"[red]error:[/red] no source named {source!r}; sources: "
                      f"{', '.join(names)}")
            return 2
        bars: dict[str, TaskID] = {}
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=out, transient=False) as progress:

            def show(event: SyncProgress) -> None:
                if event.source not in bars:
                    bars[event.source] = progress.add_task(event.source, total=event.total)
                progress.update(bars[event.source], completed=event.done, total=event.total)

            try:
                outcome = await hub.knowledge.sync(source=source, progress=show)
            except SyncInProgress as exc:
                out.print(f"[yellow]Not started:[/yellow] {exc}.")
                return 1
        assert outcome is not None
        report = outcome.report
        colour = {"ok": "green", "partial": "yellow"}.get(outcome.status, "red")
        out.print(f"[{colour}]Sync {outcome.status}[/{colour}]: {report.added} added, "
                  f"{report.updated} updated, {report.unchanged} unchanged, "
                  f"{report.deleted} deleted, {report.skipped} skipped, {report.failed} failed; "
                  f"{report.chunks_embedded} chunks embedded.")
        for error in report.errors[:20]:
            out.print(f"  [dim]{error['source']}[/dim] {error['doc_id']}: {error['reason']}",
                      highlight=False)
        if len(report.errors) > 20:
            out.print(f"  … and {len(report.errors) - 20} more (see `bothub kb status`).")
        return 0 if outcome.status in {"ok", "partial"} else 1

    raise typer.Exit(run_with_hub(work))


@kb.command()
def status() -> None:
    """Sources, document and chunk counts, and the last runs."""

    async def work(hub: Hub) -> int:
        sources, runs = await hub.knowledge.status()
        table = Table(title="Knowledge sources")
        for column in ("source", "kind", "location", "visible in", "documents", "chunks"):
            table.add_column(column)
        for item in sources:
            config = item.config
            location = str(config.path or "") if config.kind == "folder" else (
                ", ".join(config.urls + config.sitemaps) if config.kind == "web"
                else "resolved escalations")
            table.add_row(config.name, config.kind, location, ", ".join(config.scope),
                          str(item.documents), str(item.chunks))
        out.print(table)
        embedder = hub.knowledge.embedder
        mode = (f"hybrid (embeddings: {embedder.name})" if embedder
                else "full-text only (no embedding model)")
        chunks = await hub.knowledge.index.count()
        out.print(f"Retrieval: {mode}; index at {hub.knowledge.index.uri} ({chunks} chunks).")
        if not runs:
            out.print("No sync has run yet: `bothub kb sync`.")
            return 0
        history = Table(title="Last syncs")
        for column in ("run", "trigger", "status", "started", "took", "added", "updated",
                       "unchanged", "deleted", "skipped", "failed"):
            history.add_column(column)
        for run in runs:
            r = run.report
            took = f"{run.duration_ms / 1000:.1f} s" if run.duration_ms is not None else "…"
            history.add_row(str(run.id), run.trigger, run.status,
                            run.started_at.strftime("%Y-%m-%d %H:%M"), took, str(r.added),
                            str(r.updated), str(r.unchanged), str(r.deleted), str(r.skipped),
                            str(r.failed))
        out.print(history)
        return 0

    raise typer.Exit(run_with_hub(work))


@kb.command()
def search(query: Annotated[str, typer.Argument(help="What to look for.")],
           channel: Annotated[str | None, typer.Option(
               help="Search as this channel sees it: platform:workspace:channel.")] = None,
           limit: Annotated[int, typer.Option(min=1, max=50)] = 5) -> None:
    """The top passages for a query, with their scores."""

    async def work(hub: Hub) -> int:
        sources = None
        if channel is not None:
            parts = channel.split(":")
            if len(parts) != 3:
                out.print("[red]error:[/red] --channel takes platform:workspace:channel")
                return 2
            platform, workspace, name = parts
            sources = hub.knowledge.visible_sources(
                ConversationKey(platform, workspace, name, thread=""))
        hits = await hub.knowledge.search(query, sources, limit=limit)
        if not hits:
            out.print("No passage matches.")
            return 0
        for number, hit in enumerate(hits, start=1):
            scores = [f"score {hit.score:.3f}"]
            if hit.similarity is not None:
                scores.append(f"similarity {hit.similarity:.2f}")
            if hit.bm25 is not None:
                scores.append(f"bm25 {hit.bm25:.2f}")
            out.print(f"[bold][{number}] {label(hit)}[/bold]  [dim]{hit.chunk.source}:"
                      f"{hit.chunk.doc_id} · {', '.join(scores)}[/dim]", highlight=False)
            text = " ".join(hit.chunk.text.split())
            out.print(f"    {text[:300]}{' …' if len(text) > 300 else ''}", highlight=False,
                      markup=False)
        return 0

    raise typer.Exit(run_with_hub(work))
