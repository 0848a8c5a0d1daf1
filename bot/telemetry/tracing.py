"""Traces of the pipeline: one span per step of DESIGN.md's flow, exported over OTLP/HTTP when
an endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT), kept in-process otherwise.

Spans are made either way, because their ids are what ties the log lines of one answer
together (`bot.logging` adds `trace_id` to each line); without an exporter they cost a few
microseconds and go nowhere. The provider is bothub's own (not the process-global one, which
may be set only once): `configure` replaces it, so a command, a server and a test each get the
export they ask for.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, Status, StatusCode

from bot.telemetry.resource import service_resource

if TYPE_CHECKING:
    from bot.config import Settings

log = structlog.get_logger(__name__)

AttributeValue = str | bool | int | float


@dataclass(frozen=True, slots=True)
class TraceExport:
    """Where spans go: the OTLP/HTTP traces URL (`.../v1/traces`) and its headers."""

    endpoint: str
    headers: Mapping[str, str]

    @classmethod
    def from_settings(cls, base: str | None, traces: str | None,
                      headers: str | None) -> TraceExport | None:
        """OTLP's own rules: the traces URL is used as given; the base URL gets `/v1/traces`
        appended. Neither: no export."""
        endpoint = traces or (base.rstrip("/") + "/v1/traces" if base else None)
        if not endpoint:
            return None
        return cls(endpoint=endpoint, headers=parse_headers(headers or ""))


def parse_headers(text: str) -> dict[str, str]:
    """`key=value,key2=value2` (OTEL_EXPORTER_OTLP_HEADERS' format); malformed pairs are
    skipped rather than fatal: telemetry never stops the hub."""
    headers: dict[str, str] = {}
    for pair in text.split(","):
        name, sep, value = pair.partition("=")
        if sep and name.strip():
            headers[name.strip()] = value.strip()
    return headers


class _Tracing:
    def __init__(self) -> None:
        self.provider = TracerProvider(resource=service_resource(), shutdown_on_exit=False)
        self.tracer = self.provider.get_tracer("bothub")
        self.export: TraceExport | None = None


_state = _Tracing()


def configure(export: TraceExport | None, *, processor: SpanProcessor | None = None,
              service_name: str | None = None) -> None:
    """Start a new provider that exports to `export` (or to `processor`, for tests); the old
    provider's pending spans are flushed first."""
    old = _state.provider
    provider = TracerProvider(resource=service_resource(service_name), shutdown_on_exit=False)
    if export is not None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=export.endpoint, headers=dict(export.headers),
                             timeout=10)))
        log.info("telemetry.traces_exported", endpoint=export.endpoint)
    if processor is not None:
        provider.add_span_processor(processor)
    _state.provider, _state.tracer, _state.export = provider, provider.get_tracer("bothub"), \
        export
    old.shutdown()


def configure_for(settings: Settings) -> None:
    """`configure` from the settings: what every command calls once, after logging."""
    headers = settings.otel_exporter_otlp_headers
    configure(TraceExport.from_settings(
        settings.otel_exporter_otlp_endpoint, settings.otel_exporter_otlp_traces_endpoint,
        headers.get_secret_value() if headers else None),
        service_name=settings.otel_service_name)


def flush(timeout_millis: int = 5_000) -> bool:
    """Send what is pending now (the end of a command, a test)."""
    return _state.provider.force_flush(timeout_millis)


def shutdown() -> None:
    _state.provider.shutdown()


atexit.register(lambda: flush(2_000))


@contextmanager
def span(name: str, **attributes: AttributeValue | None) -> Iterator[Span]:
    """A span around one step, current for what runs inside it (log lines included). An
    exception marks it failed and propagates; `None` attributes are left out."""
    with _state.tracer.start_as_current_span(
            name, attributes={k: v for k, v in attributes.items() if v is not None},
            record_exception=True, set_status_on_exception=True) as current:
        yield current


def start_span(name: str, **attributes: AttributeValue | None) -> Span:
    """A span under the current one that is NOT made current: for work that spans the `yield`s
    of an async generator, where a current span would be detached in another context. The
    caller ends it."""
    return _state.tracer.start_span(
        name, attributes={k: v for k, v in attributes.items() if v is not None})


def annotate(**attributes: AttributeValue | None) -> None:
    """Add attributes to the current span (what is known only later: the outcome, tokens)."""
    current = trace.get_current_span()
    for key, value in attributes.items():
        if value is not None:
            current.set_attribute(key, value)


def fail(description: str) -> None:
    """Mark the current span failed without an exception (a refused model, a lost lease)."""
    trace.get_current_span().set_status(Status(StatusCode.ERROR, description[:200]))


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in the hex form trace backends show, or None outside a span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


def add_trace_ids(_logger: Any, _method: str,
                  event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the current trace and span ids on every log line, so that a log
    search for one answer and its trace are one click apart."""
    ids = current_ids()
    if ids is not None:
        event.setdefault("trace_id", ids[0])
        event.setdefault("span_id", ids[1])
    return event
