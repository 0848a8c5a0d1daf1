"""The series of `/metrics`, in one place so that names stay consistent across adapters.

They are OpenTelemetry instruments. The meter provider is bothub's own, built at import with
a `PrometheusMetricReader` as its only reader: that reader feeds prometheus_client's default
registry, which `GET /metrics` renders. A private provider (rather than the process-global one)
works the same in every process, command and test, without the global's set-once rule.

Names keep their Prometheus spelling: a counter is named with its `_total` (the exporter adds
none), a histogram of durations ends in `_seconds` with the unit "s" (which maps to the same
suffix). Scope labels are switched off so that each series carries only the labels named here.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import Counter, Histogram, UpDownCounter, _Gauge
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource

from bot.telemetry.resource import service_resource

__all__ = ["event_in", "meter_provider"]


def _provider(resource: Resource) -> MeterProvider:
    # Collected on each scrape; flushed by nothing else, so no exit hook is needed.
    reader = PrometheusMetricReader(scope_info_enabled=False)
    return MeterProvider(metric_readers=[reader], resource=resource, shutdown_on_exit=False)


meter_provider = _provider(service_resource())
_meter = meter_provider.get_meter("bothub")


def _counter(name: str, description: str) -> Counter:
    return _meter.create_counter(name, description=description)


def _seconds(name: str, description: str, buckets: Sequence[float]) -> Histogram:
    return _meter.create_histogram(name, unit="s", description=description,
                                   explicit_bucket_boundaries_advisory=list(buckets))


def _histogram(name: str, description: str, buckets: Sequence[float]) -> Histogram:
    return _meter.create_histogram(name, description=description,
                                   explicit_bucket_boundaries_advisory=list(buckets))


QUICK = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
SLOW = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)

# -- inbound -----------------------------------------------------------------------------------
EVENTS = _counter("bothub_events_total",
                  "Platform events received, by platform and kind (message, mention, command, "
                  "interaction, ...), before any is filtered out")
MESSAGES = _counter("bothub_messages_total", "Messages handled, by platform and outcome")
FIRST_PIECE = _seconds("bothub_time_to_first_token_seconds",
                       "From a message's acceptance to the first piece of its answer handed to "
                       "the platform, by platform", QUICK)
ANSWER_LATENCY = _seconds("bothub_answer_seconds",
                          "From a message's acceptance to the end of its answer, by platform "
                          "and outcome", SLOW)
ANSWERS_WAITING: UpDownCounter = _meter.create_up_down_counter(
    "bothub_answers_waiting",
    description="Accepted questions waiting for one of the worker's max_concurrent_answers: "
                "above zero for long, the worker is overloaded")
RATE_LIMITED = _counter("bothub_rate_limited_total",
                        "Questions not answered: too many too fast, by platform and scope")
HTTP_REQUESTS = _counter("bothub_http_requests_total", "HTTP requests, by route and status")
FEEDBACK = _counter("bothub_feedback_total", "Feedback on answers, by value (up, down)")

# -- guardrails --------------------------------------------------------------------------------
REDACTED = _counter("bothub_redacted_total",
                    "Secrets and personal data removed, by direction (input, output)")
INJECTION_ATTEMPTS = _counter("bothub_injection_attempts_total",
                              "Messages that look like prompt injection (answered as data)")
MODERATION_CHECKS = _counter("bothub_moderation_checks_total",
                             "Moderation checks, by direction (input, output) and result "
                             "(flagged, clean, failed: let through)")

# -- retrieval ---------------------------------------------------------------------------------
RETRIEVAL_LATENCY = _seconds("bothub_retrieval_seconds",
                             "Knowledge base searches for a question, embedding included",
                             (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))
RETRIEVAL_PASSAGES = _histogram("bothub_retrieval_passages",
                                "Relevant passages found for a question",
                                (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 12.0, 20.0))
RETRIEVAL_TOP_SCORE = _histogram("bothub_retrieval_top_score",
                                 "The best passage's score, by kind (similarity: cosine 0-1; "
                                 "bm25: full-text, unbounded)",
                                 (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
                                  2.0, 5.0, 10.0, 20.0, 50.0))

# -- the model ---------------------------------------------------------------------------------
LLM_LATENCY = _seconds("bothub_llm_latency_seconds",
                       "Model call duration, request to last byte, by model and kind", SLOW)
LLM_FIRST_TOKEN = _seconds("bothub_llm_first_token_seconds",
                           "From the model request to its first token, by model", QUICK)
LLM_ERRORS = _counter("bothub_llm_errors_total", "Failed model calls, by model and reason")
TOKENS = _counter("bothub_llm_tokens_total", "Tokens used, by model and direction (in, out)")
COST = _counter("bothub_llm_cost_usd_total", "Model cost in US dollars, by model")
BUDGET_EXCEEDED = _counter("bothub_budget_exceeded_total",
                           "Answers given while their workspace was over budget, by platform "
                           "and what was done instead (cheaper_model or retrieval_only)")
ANSWER_CACHE = _counter("bothub_answer_cache_total",
                        "Answer cache lookups, by result (hit, miss, error)")
INBOX_TAKEN_OVER = _counter("bothub_inbox_taken_over_total",
                            "Answers taken over from the inbox: a dead worker's (resumed) or "
                            "owed after a model outage (follow_up), by platform and kind")

# -- escalations -------------------------------------------------------------------------------
ESCALATIONS = _counter("bothub_escalations_total",
                       "Escalations opened, by platform and reason")
ESCALATION_TRANSITIONS = _counter("bothub_escalation_transitions_total",
                                  "Escalations claimed, released, resolved or re-announced, "
                                  "by action")
ESCALATIONS_BY_STATE: _Gauge = _meter.create_gauge(
    "bothub_escalations_in_state", description="Escalations by state (from the database)")
TIME_TO_CLAIM = _seconds("bothub_escalation_time_to_claim_seconds",
                         "From an escalation's opening to its claim",
                         (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
                          14400.0, 86400.0))

# -- knowledge base sync -----------------------------------------------------------------------
KB_SYNC_RUNS = _counter("bothub_kb_sync_runs_total",
                        "Knowledge base syncs finished, by status (ok, partial, failed, "
                        "interrupted) and trigger (manual, scheduled, first, ...)")
KB_SYNC_DURATION = _seconds("bothub_kb_sync_seconds",
                            "Knowledge base sync duration, by status and trigger",
                            (0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0))

# Event kinds a platform may report; anything else is counted as "other", so that a hostile
# payload cannot create series at will.
EVENT_KINDS = frozenset({"message", "mention", "command", "interaction", "invoke",
                         "conversationUpdate", "installationUpdate"})


def event_in(platform: str, kind: str) -> None:
    """Count one event at an adapter's inbound entry (the one line each adapter calls)."""
    EVENTS.add(1, {"platform": platform, "kind": kind if kind in EVENT_KINDS else "other"})
