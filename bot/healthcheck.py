"""`python -m bot.healthcheck [URL]`: the container's health probe; exit 0 when bothub is healthy.

The image's HEALTHCHECK and compose.yaml run it inside the container: python:slim has no curl,
and a module can be tested where a `python -c` one-liner cannot. It uses only the standard
library and one blocking request, so it starts fast and imports nothing of the hub.

Healthy means `GET /healthz` answered 200 with `"status": "ok"`. "degraded" (the database is
unreachable), any other answer, a body that is not that JSON, or no answer within the timeout
is unhealthy. One line on stdout says which, and Docker keeps it (`docker inspect`).
"""

from __future__ import annotations

import http.client
import json
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8000/healthz"
TIMEOUT_SECONDS = 4.0  # below the HEALTHCHECK's --timeout, so the probe reports, not Docker
MAX_BODY_BYTES = 1 << 20


def probe(url: str = DEFAULT_URL, timeout: float = TIMEOUT_SECONDS) -> tuple[bool, str]:
    """(healthy, one line saying why)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status, body = response.status, response.read(MAX_BODY_BYTES)
    except urllib.error.HTTPError as exc:
        return False, f"unhealthy: {url} answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        return False, f"unhealthy: no answer from {url} ({reason})"
    except ValueError:  # not an http(s) URL
        return False, f"unhealthy: {url!r} is not a URL to probe"
    if status != 200:
        return False, f"unhealthy: {url} answered HTTP {status}"
    try:
        report = json.loads(body)
    except ValueError:
        return False, f"unhealthy: {url} did not answer JSON"
    state = report.get("status") if isinstance(report, dict) else None
    if state != "ok":
        down = _down_components(report)
        detail = f" ({', '.join(down)} down)" if down else ""
        return False, f"unhealthy: status {state!r}{detail}"
    return True, "healthy"


def _down_components(report: object) -> list[str]:
    components = report.get("components") if isinstance(report, dict) else None
    if not isinstance(components, dict):
        return []
    return sorted(name for name, part in components.items()
                  if isinstance(part, dict) and part.get("state") == "down")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1:
        print("usage: python -m bot.healthcheck [URL]")
        return 2
    healthy, line = probe(args[0] if args else DEFAULT_URL)
    print(line)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
