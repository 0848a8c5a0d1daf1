"""Traces over OTLP to a fake collector, and the trace and conversation ids on every log line.

The real OTLP/HTTP exporter sends protobuf over a socket; the collector decodes it with the
protocol's own types. One question through the web chat must arrive as one trace holding a span
per pipeline step, and the JSON log lines written while answering must name that trace.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from bot.telemetry import tracing
from bot.telemetry.tracing import TraceExport, parse_headers
from tests.conftest import make_settings, running_server, wait_for
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.fakes.otlp_collector import FakeCollector
from tests.test_log_secrets import captured_log


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    fake = FakeCollector().start()
    try:
        yield fake
    finally:
        tracing.configure(None)  # later tests export nowhere again
        fake.stop()


def test_one_answer_is_one_trace_with_a_span_per_step_and_logs_carry_its_ids(
        tmp_path: Path, fake_openai: FakeOpenAI, collector: FakeCollector) -> None:
    settings = make_settings(tmp_path, fake_openai, log_format="json",
                             otel_exporter_otlp_endpoint=collector.url + "/",
                             otel_exporter_otlp_headers=SecretStr("x-collector-key=k3y-123"),
                             otel_service_name="bothub-test")
    tracing.configure_for(settings)
    fake_openai.queue(ScriptedReply(text="Open Settings, then Security [1].", chunk_delay=0.01))
    with captured_log(settings) as buffer, running_server(settings) as server:
        server.run(server.hub.knowledge.sync(trigger="manual"))
        response = httpx.post(f"{server.url}/api/chat",
                              json={"message": "How do I reset my password?"}, timeout=30)
        assert response.status_code == 200 and "event: done" in response.text
        assert tracing.flush()
        wait_for(lambda: collector.named("bothub.llm.chat"))
        lines = [json.loads(line) for line in buffer.getvalue().splitlines()
                 if line.startswith("{")]

    [respond] = collector.named("bothub.respond")
    trace_id = respond.trace_id
    in_trace = {span.name: span for span in collector.spans if span.trace_id == trace_id}
    # The HTTP request is the root; each step of the answer is under it.
    http = in_trace["POST /api/chat"]
    assert http.parent_span_id == ""
    assert http.attributes["http.route"] == "/api/chat"
    assert http.attributes["http.response.status_code"] == 200
    accept, retrieve, llm = (in_trace["bothub.accept"], in_trace["bothub.retrieve"],
                             in_trace["bothub.llm.chat"])
    assert accept.parent_span_id == http.span_id and respond.parent_span_id == http.span_id
    assert retrieve.parent_span_id == respond.span_id
    assert llm.parent_span_id == respond.span_id
    assert respond.attributes["bothub.platform"] == "web"
    assert respond.attributes["bothub.outcome"] == "answered"
    assert accept.attributes["bothub.outcome"] == "accepted"
    assert retrieve.attributes["bothub.found"] is True
    # The model call, in OpenTelemetry's generative-AI terms, with what it cost as stored.
    [request] = fake_openai.chat_requests()
    assert llm.attributes["gen_ai.request.model"] == "gpt-4o"
    assert llm.attributes["gen_ai.usage.input_tokens"] > 0
    assert llm.attributes["gen_ai.usage.output_tokens"] > 0
    assert llm.status_code != 2
    assert respond.resource["service.name"] == "bothub-test"
    [sync] = collector.named("bothub.kb.sync")
    assert sync.attributes["bothub.trigger"] == "manual"
    assert sync.attributes["bothub.status"] == "ok" and sync.trace_id != trace_id
    # The collector got the configured header; the header's value is never logged.
    assert collector.headers[0].get("x-collector-key") == "k3y-123"
    assert not any("k3y-123" in json.dumps(line) for line in lines)
    # Every line written while answering names the trace and the conversation.
    conversation = respond.attributes["bothub.conversation"]
    [handled] = [line for line in lines if line.get("event") == "engine.handled"]
    assert handled["trace_id"] == trace_id and handled["conversation"] == conversation
    assert handled["outcome"] == "answered" and handled["level"] == "info"
    assert request["model"] == "gpt-4o"  # the model was asked exactly once


def test_a_failed_model_call_is_a_failed_span(tmp_path: Path, fake_openai: FakeOpenAI,
                                              collector: FakeCollector) -> None:
    tracing.configure(TraceExport(endpoint=collector.url + "/v1/traces", headers={}))
    fake_openai.queue(ScriptedReply(status=400, text="This request is not allowed."))
    with running_server(make_settings(tmp_path, fake_openai)) as server:
        httpx.post(f"{server.url}/api/chat", json={"message": "Hello?"}, timeout=30)
        assert tracing.flush()
    [llm] = wait_for(lambda: collector.named("bothub.llm.chat"))
    assert llm.status_code == 2  # error
    [respond] = collector.named("bothub.respond")
    assert respond.attributes["bothub.outcome"] == "model_failed"


def test_without_an_endpoint_nothing_is_exported_yet_logs_still_get_trace_ids(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, fake_openai, log_format="json")
    tracing.configure_for(settings)
    fake_openai.queue(ScriptedReply(status=400, text="This request is not allowed."))
    with captured_log(settings) as buffer, running_server(settings) as server:
        httpx.post(f"{server.url}/api/chat", json={"message": "Hello?"}, timeout=30)
        lines = [json.loads(line) for line in buffer.getvalue().splitlines()
                 if line.startswith("{")]
    [failed] = [line for line in lines if line.get("event") == "llm.failed"]
    [handled] = [line for line in lines if line.get("event") == "engine.handled"]
    assert handled["outcome"] == "model_failed"
    assert len(failed["trace_id"]) == 32 and failed["trace_id"] == handled["trace_id"]
    assert failed["conversation"] == handled["conversation"]
    assert handled["conversation"].startswith("web:web:chat:")


@pytest.mark.parametrize(("base", "traces", "expected"), [
    (None, None, None),
    ("", None, None),
    ("http://collector:4318", None, "http://collector:4318/v1/traces"),
    ("http://collector:4318/", None, "http://collector:4318/v1/traces"),
    ("http://collector:4318", "https://traces.example/v1/t", "https://traces.example/v1/t"),
])
def test_where_traces_go(base: str | None, traces: str | None, expected: str | None) -> None:
    export = TraceExport.from_settings(base, traces, None)
    assert (export.endpoint if export else None) == expected


def test_malformed_collector_headers_are_skipped_not_fatal() -> None:
    assert parse_headers("a=1, b = two ,=x,novalue,,c=3=4") == {"a": "1", "b": "two", "c": "3=4"}


def test_timer_jobs_do_not_fill_the_log(tmp_path: Path) -> None:
    """The inbox tick runs every 10 seconds: APScheduler's two INFO lines per run stay out,
    its warnings (a missed or failed job) stay in."""
    import logging as std_logging

    from bot.logging import configure

    settings = make_settings(tmp_path, None, log_format="json")
    with captured_log(settings) as buffer:
        configure("INFO", "json", stream=buffer)
        executor = std_logging.getLogger("apscheduler.executors.default")
        executor.info('Running job "Redelivery.tick" (scheduled at ...)')
        executor.warning('Run time of job "Redelivery.tick" was missed by 0:00:05')
    lines = [json.loads(line)["event"] for line in buffer.getvalue().splitlines()]
    assert lines == ['Run time of job "Redelivery.tick" was missed by 0:00:05']
