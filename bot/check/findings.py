"""What one check of `bothub check` reports: a part, its state, what was seen, what to do."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


class State(enum.StrEnum):
    OK = "ok"
    WARNING = "warning"  # works, but something deserves a look; the exit code stays 0
    FAILED = "failed"
    SKIPPED = "not configured"


@dataclass(frozen=True, slots=True)
class Finding:
    part: str
    state: State
    detail: str
    fix: str = ""

    def as_json(self) -> dict[str, str]:
        return {"part": self.part, "state": self.state.value, "detail": self.detail,
                "fix": self.fix}


def ok(part: str, detail: str, fix: str = "") -> Finding:
    return Finding(part, State.OK, detail, fix)


def warning(part: str, detail: str, fix: str) -> Finding:
    return Finding(part, State.WARNING, detail, fix)


def failed(part: str, detail: str, fix: str) -> Finding:
    return Finding(part, State.FAILED, detail, fix)


def skipped(part: str, detail: str, fix: str = "") -> Finding:
    return Finding(part, State.SKIPPED, detail, fix)


def public_url(url: str) -> str:
    """A URL as it may be shown: without its password (Redis, proxies, odd base URLs)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return urlunsplit(parts._replace(netloc=user + host))
    except ValueError:
        return "<a malformed URL>"


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The gist of an SDK's error: its first line, short, never a traceback."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:limit]
