"""Prometheus series for `/metrics`, in one place so names stay consistent across adapters."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter("bothub_messages_total", "Messages handled, by platform and outcome",
                   ["platform", "outcome"])
LLM_LATENCY = Histogram("bothub_llm_latency_seconds", "Model call duration, first byte to last",
                        ["model", "kind"],
                        buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120))
LLM_FIRST_TOKEN = Histogram("bothub_llm_first_token_seconds", "Time to the model's first token",
                            ["model"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30))
LLM_ERRORS = Counter("bothub_llm_errors_total", "Failed model calls, by reason",
                     ["model", "reason"])
TOKENS = Counter("bothub_llm_tokens_total", "Tokens used, by model and direction",
                 ["model", "direction"])
COST = Counter("bothub_llm_cost_usd_total", "Model cost in US dollars", ["model"])
HTTP_REQUESTS = Counter("bothub_http_requests_total", "HTTP requests, by route and status",
                        ["route", "status"])
FEEDBACK = Counter("bothub_feedback_total", "Feedback on answers", ["value"])
ESCALATIONS = Counter("bothub_escalations_total", "Escalations opened, by platform and reason",
                      ["platform", "reason"])
ESCALATION_TRANSITIONS = Counter("bothub_escalation_transitions_total",
                                 "Escalations claimed, released, resolved or re-announced",
                                 ["action"])
ESCALATIONS_BY_STATE = Gauge("bothub_escalations_in_state",
                             "Escalations by state (from the database)",
                             ["state"])
TIME_TO_CLAIM = Histogram("bothub_escalation_time_to_claim_seconds",
                          "From an escalation's opening to its claim",
                          buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 86400))
RATE_LIMITED = Counter("bothub_rate_limited_total", "Questions not answered: too many too fast",
                       ["platform", "scope"])
REDACTED = Counter("bothub_redacted_total", "Secrets and personal data removed", ["direction"])
INJECTION_ATTEMPTS = Counter("bothub_injection_attempts_total",
                             "Messages that look like prompt injection (answered as data)")
INBOX_TAKEN_OVER = Counter("bothub_inbox_taken_over_total",
                           "Answers taken over from the inbox: a dead worker's (resumed) or "
                           "owed after a model outage (follow_up)", ["platform", "kind"])
BUDGET_EXCEEDED = Counter("bothub_budget_exceeded_total",
                          "Answers given while their workspace was over budget, by platform and "
                          "what was done instead (cheaper_model or retrieval_only)",
                          ["platform", "action"])
ANSWER_CACHE = Counter("bothub_answer_cache_total",
                       "Answer cache lookups, by result (hit, miss, error)", ["result"])
