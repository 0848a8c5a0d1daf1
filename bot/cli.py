"""`bothub`: serve, ask, chat and migrate.

Every command that touches the database applies pending migrations first, and every
configuration problem ends in one readable message and exit code 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, TypeVar

import structlog
import typer
from rich.console import Console

from adapters.console import ConsoleReplyChannel
from bot.app import Hub
from bot.config import ConfigError, Settings, load_settings
from bot.engine import Outcome
from bot.logging import configure as configure_logging
from bot.model import Author, ConversationKey, Message
from bot.store import migrate as migrations
from bot.store.conversations import StorageUnavailable
from bot.store.database import create_engine

app = typer.Typer(help="bothub: a support assistant for Slack, Discord, Teams and the web.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True)
log = structlog.get_logger(__name__)

T = TypeVar("T")
FAILED = {Outcome.MODEL_FAILED, Outcome.STORAGE_FAILED}


def _settings() -> Settings:
    try:
        settings = load_settings()
    except ConfigError as exc:
        _fail(str(exc))
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def _run(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine, turning configuration and storage failures into one clear line."""
    try:
        return asyncio.run(work())
    except ConfigError as exc:
        _fail(str(exc))
    except StorageUnavailable as exc:
        _fail(f"the database is unavailable: {exc.reason}", code=1)
    except OSError as exc:
        _fail(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", code=1)
    raise AssertionError("unreachable")


def _storage_failure(exc: Exception) -> StorageUnavailable:
    """The first line of a driver's error: enough to act on, without SQL or credentials."""
    first = str(exc).splitlines()[0][:200] if str(exc) else ""
    return StorageUnavailable(f"{type(exc).__name__}: {first}")


async def _open_hub(settings: Settings) -> Hub:
    try:
        return await Hub.create(settings)
    except ConfigError:
        raise
    except Exception as exc:  # the database could not be opened or migrated
        raise _storage_failure(exc) from exc


async def _with_hub(settings: Settings, work: Callable[[Hub], Awaitable[T]]) -> T:
    hub = await _open_hub(settings)
    try:
        return await work(hub)
    finally:
        await hub.close()


@app.command()
def serve(host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000) -> None:
    """Run the hub: HTTP server (web chat, health, metrics) and the configured adapters."""
    import uvicorn

    from bot.server import create_app

    settings = _settings()

    async def main() -> None:
        hub = await _open_hub(settings)
        # The app's lifespan closes the hub: uvicorn re-raises the stop signal once it has shut
        # down, and anything still to do after `serve()` would be cancelled by it.
        config = uvicorn.Config(create_app(hub), host=host, port=port, log_config=None,
                                proxy_headers=True)
        out.print(f"bothub is listening on [bold]http://{host}:{port}/[/bold] "
                  f"(web chat at /, health at /healthz)")
        await uvicorn.Server(config).serve()

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C, after a graceful shutdown
        _run(main)


@app.command()
def ask(question: Annotated[str, typer.Argument(help="The question to ask.")]) -> None:
    """Ask one question through the whole engine; prints the answer, then its sources."""
    settings = _settings()

    async def main(hub: Hub) -> Outcome:
        message = Message(key=ConversationKey("console", "local", "ask", uuid.uuid4().hex),
                          id=uuid.uuid4().hex, author=Author(id="console"), text=question,
                          direct=True, channel_name="the command line")
        result = await hub.engine.handle(message, ConsoleReplyChannel(out))
        return result.outcome

    outcome = _run(lambda: _with_hub(settings, main))
    if outcome in FAILED:
        raise typer.Exit(1)


@app.command()
def chat() -> None:
    """A conversation in the terminal; the thread is remembered until you quit (Ctrl-D)."""
    settings = _settings()
    thread = uuid.uuid4().hex

    async def main(hub: Hub) -> None:
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

    _run(lambda: _with_hub(settings, main))


@app.command()
def migrate() -> None:
    """Apply pending database migrations."""
    settings = _settings()

    async def main() -> tuple[str | None, str | None]:
        database = create_engine(settings.resolved_database_url)
        try:
            return await migrations.upgrade(database)
        except Exception as exc:
            raise _storage_failure(exc) from exc
        finally:
            await database.dispose()

    before, after = _run(main)
    if before == after:
        out.print(f"The database is up to date (revision {after}).")
    else:
        out.print(f"Migrated the database from {before or 'empty'} to {after}.")


def main() -> None:
    app()
