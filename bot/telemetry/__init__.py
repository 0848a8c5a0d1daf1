"""Telemetry: OpenTelemetry metrics (read by Prometheus at /metrics, see `bot.metrics`), traces
of each pipeline step (exported over OTLP when an endpoint is configured, see `tracing`), and the
trace ids that every log line carries (see `bot.logging`)."""
