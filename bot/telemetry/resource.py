"""Who emits the telemetry: one OpenTelemetry resource for metrics and traces alike."""

from __future__ import annotations

import os
import socket
from importlib.metadata import PackageNotFoundError, version

from opentelemetry.sdk.resources import Resource

SERVICE_NAME = "bothub"


def bothub_version() -> str:
    try:
        return version("bothub")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def service_resource(service_name: str | None = None) -> Resource:
    """service.name (OTEL_SERVICE_NAME wins, as collectors expect), version and instance: a
    trace backend tells workers apart by `service.instance.id`."""
    name = service_name or os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME
    return Resource.create({
        "service.name": name,
        "service.version": bothub_version(),
        "service.instance.id": f"{socket.gethostname()}:{os.getpid()}",
    })
