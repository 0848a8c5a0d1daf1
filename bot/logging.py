"""structlog set-up: readable lines in a terminal, JSON lines (BOTHUB_LOG_FORMAT=json) for
collectors. Each line carries the conversation it is about (bound by the engine) and the trace
and span ids of the step it was written in (`add_trace_ids`). Standard-library loggers
(uvicorn, alembic, the SDKs) go through the same renderer, and every line, from either side,
is scrubbed of secrets just before it is rendered (`bot.log_redaction`): the formatter is the
one place both kinds of record pass through."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, TextIO

import structlog

from bot.log_redaction import configured_secrets, register_secrets, scrubber
from bot.telemetry.tracing import add_trace_ids

if TYPE_CHECKING:
    from bot.config import Settings

__all__ = ["configure", "configure_for", "configured_secrets", "register_secrets"]

# Chatty at DEBUG, or at INFO on a timer (APScheduler's executor logs two lines per run of the
# 10-second inbox tick); kept at WARNING unless the root level is stricter still.
NOISY_LOGGERS = ("httpx", "httpcore", "openai._base_client", "alembic.runtime.migration",
                 "apscheduler.executors.default")


def configure(level: str = "INFO", fmt: str = "console", *,
              secrets: Iterable[str | None] = (), stream: TextIO | None = None) -> None:
    """Route structlog and the standard library to one handler on `stream` (stderr).

    `secrets` are registered with the scrubber before the first line is written; prefer
    `configure_for(settings)`, which passes every secret the settings hold.
    """
    register_secrets(secrets)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=(stream or sys.stderr).isatty()))
    # Loggers cached on first use keep a reference to the processor list itself, so a second
    # `configure` (a test, a command run in-process) refills that list instead of replacing it.
    processors = structlog.get_config()["processors"]
    if not isinstance(processors, list):  # someone configured a tuple: nothing to refill
        processors = []
    processors[:] = [*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter]
    structlog.configure(
        processors=processors,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        # format_exc_info turns exceptions into text first, so the scrubber sees tracebacks
        # (and the console renderer cannot print frame locals, which it would not scrub).
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, scrubber, renderer]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def configure_for(settings: Settings, *, stream: TextIO | None = None) -> None:
    """`configure` with the settings' level, format and secrets: what every command calls
    before it does anything that could log."""
    configure(settings.log_level, settings.log_format, secrets=configured_secrets(settings),
              stream=stream)
