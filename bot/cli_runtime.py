"""What every `bothub` command shares: settings, one-line errors, running with a hub."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from bot.app import Hub
from bot.config import ConfigError, Settings, load_settings
from bot.logging import configure_for
from bot.store.repository import StorageUnavailable
from bot.telemetry import tracing

out = Console()
err = Console(stderr=True)
T = TypeVar("T")


def settings() -> Settings:
    try:
        loaded = load_settings()
    except ConfigError as exc:
        fail(str(exc))
    configure_for(loaded)
    tracing.configure_for(loaded)
    return loaded


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def run(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine, turning configuration and storage failures into one clear line."""
    try:
        return asyncio.run(work())
    except ConfigError as exc:
        fail(str(exc))
    except StorageUnavailable as exc:
        fail(f"the database is unavailable: {exc.reason}", code=1)
    except OSError as exc:
        fail(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", code=1)


def storage_failure(exc: Exception) -> StorageUnavailable:
    """The first line of a driver's error: enough to act on, without SQL or credentials."""
    first = str(exc).splitlines()[0][:200] if str(exc) else ""
    return StorageUnavailable(f"{type(exc).__name__}: {first}")


async def open_hub(loaded: Settings) -> Hub:
    try:
        return await Hub.create(loaded)
    except ConfigError:
        raise
    except Exception as exc:  # the database could not be opened or migrated
        raise storage_failure(exc) from exc


async def with_hub(loaded: Settings, work: Callable[[Hub], Awaitable[T]]) -> T:
    hub = await open_hub(loaded)
    try:
        return await work(hub)
    finally:
        await hub.close()


def run_with_hub(work: Callable[[Hub], Awaitable[T]]) -> T:
    loaded = settings()
    return run(lambda: with_hub(loaded, work))
