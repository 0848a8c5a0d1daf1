"""`bothub`: serve, ask, chat and migrate.

Every command that touches the database applies pending migrations first, and every
configuration problem ends in one readable message and exit code 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import uuid
from pathlib import Path
from typing import Annotated

import typer

from adapters.console import ConsoleReplyChannel
from bot.app import Hub
from bot.cli_runtime import err, open_hub, out, run, settings, storage_failure, with_hub
from bot.engine import Outcome
from bot.escalation_cli import escalations
from bot.kb_cli import kb
from bot.model import Author, ConversationKey, Message
from bot.store import migrate as migrations
from bot.store.database import create_engine
from bot.usage_cli import usage

app = typer.Typer(help="bothub: a support assistant for Slack, Discord, Teams and the web.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(kb, name="kb")
app.add_typer(escalations, name="escalations")
app.command("usage")(usage)
FAILED = {Outcome.MODEL_FAILED, Outcome.STORAGE_FAILED}


@app.command()
def serve(host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000) -> None:
    """Run the hub: HTTP server (web chat, health, metrics) and the configured adapters."""
    import uvicorn

    from bot.peer import behind_proxies
    from bot.server import create_app

    loaded = settings()

    async def main() -> None:
        hub = await open_hub(loaded)
        # The app's lifespan closes the hub: uvicorn re-raises the stop signal once it has shut
        # down, and anything still to do after `serve()` would be cancelled by it.
        # Proxy headers are applied by `behind_proxies`, which keeps the connecting address.
        config = uvicorn.Config(behind_proxies(create_app(hub)), host=host, port=port,
                                log_config=None, proxy_headers=False)
        freezing = asyncio.create_task(_freeze_when_ready(hub))
        out.print(f"bothub is listening on [bold]http://{host}:{port}/[/bold] "
                  f"(web chat at /, health at /healthz)")
        try:
            await uvicorn.Server(config).serve()
        finally:
            freezing.cancel()

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C, after a graceful shutdown
        run(main)


async def _freeze_when_ready(hub: Hub) -> None:
    """Once the hub is up and its knowledge base read, what exists (modules, settings, the
    hub, the adapters, the index) lives as long as the process: frozen, the garbage collector
    no longer walks it in every full collection, which paused every answer in progress for
    up to 217 ms under load (145 ms frozen before the first sync, about 80 after it)."""
    await hub.knowledge_ready.wait()
    gc.collect()
    gc.freeze()


async def _hint_if_unsynced(hub: Hub) -> None:
    if await hub.knowledge.needs_sync():
        err.print("[dim]note: the knowledge base is not indexed for the current settings; "
                  "run `bothub kb sync` (bothub serve does it on start).[/dim]")


@app.command()
def ask(question: Annotated[str, typer.Argument(help="The question to ask.")]) -> None:
    """Ask one question through the whole engine; prints the answer, then its sources."""
    loaded = settings()

    async def main(hub: Hub) -> Outcome:
        await _hint_if_unsynced(hub)
        message = Message(key=ConversationKey("console", "local", "ask", uuid.uuid4().hex),
                          id=uuid.uuid4().hex, author=Author(id="console"), text=question,
                          direct=True, channel_name="the command line")
        result = await hub.engine.handle(message, ConsoleReplyChannel(out))
        return result.outcome

    outcome = run(lambda: with_hub(loaded, main))
    if outcome in FAILED:
        raise typer.Exit(1)


@app.command()
def chat() -> None:
    """A conversation in the terminal; the thread is remembered until you quit (Ctrl-D)."""
    loaded = settings()
    thread = uuid.uuid4().hex

    async def main(hub: Hub) -> None:
        await _hint_if_unsynced(hub)
        channel = ConsoleReplyChannel(out)
        out.print("[dim]Type a question; Ctrl-D or /quit to leave.[/dim]")
        while True:
            try:
                text = await asyncio.to_thread(out.input, "[bold cyan]you>[/bold cyan] ")
            except (EOFError, KeyboardInterrupt):
                out.print()
                return
            if text.strip() in {"/quit", "/exit"}:
                return
            out.print("[bold green]bot>[/bold green] ", end="")
            await hub.engine.handle(
                Message(key=ConversationKey("console", "local", "chat", thread),
                        id=uuid.uuid4().hex, author=Author(id="console"), text=text,
                        direct=True, channel_name="the terminal"), channel)

    run(lambda: with_hub(loaded, main))


@app.command()
def migrate() -> None:
    """Apply pending database migrations."""
    loaded = settings()

    async def main() -> tuple[str | None, str | None]:
        database = create_engine(loaded.resolved_database_url)
        try:
            return await migrations.upgrade(database)
        except Exception as exc:
            raise storage_failure(exc) from exc
        finally:
            await database.dispose()

    before, after = run(main)
    if before == after:
        out.print(f"The database is up to date (revision {after}).")
    else:
        out.print(f"Migrated the database from {before or 'empty'} to {after}.")


@app.command()
def check(
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    timeout: Annotated[float, typer.Option(min=0.5, max=300,
                                           help="Seconds each part may take.")] = 10.0,
) -> None:
    """Reach each configured part (database, knowledge base, Redis, models, Slack, Discord,
    Teams) and show what works and what to fix; exit code 1 when something failed."""
    from bot.check.cli import check_command

    raise typer.Exit(check_command(as_json=as_json, timeout=timeout, console=out))


@app.command("config-reference")
def config_reference(
        output: Annotated[Path | None, typer.Option(
            help="Write the reference to this file instead of printing it.")] = None) -> None:
    """Print every environment variable and behaviour key, as Markdown (docs/configuration.md)."""
    from bot.config_reference import render

    text = render()
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        err.print(f"Cannot write {output}: {exc.strerror or exc}", style="red", markup=False)
        raise typer.Exit(1) from None
    out.print(f"Wrote the configuration reference to {output}.", markup=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
