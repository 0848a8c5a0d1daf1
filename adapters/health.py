"""What an adapter knows about its link to its platform, for /healthz and the admin Health page.

Each adapter keeps one `LinkHealth`, notes every event it receives (which also counts it in
`bothub_events_total`: one call per event, for both) and every failure to reach its platform,
and answers `health()` with `LinkHealth.report`: a JSON-ready dict the core reads
without knowing the adapter (`bot.server.health_report` only calls `health()`). Errors are short
descriptions (an error code, an exception's type), never a token or a payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from bot.metrics import event_in

# ok: works; connecting: not (yet or again) connected; down: failed, see last_error;
# not_configured: present only in a reduced form (Teams without an app id: the Emulator only).
LinkState = Literal["ok", "connecting", "down", "not_configured"]
MAX_ERROR_CHARS = 200


@dataclass
class LinkHealth:
    platform: str
    last_event_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None

    def event(self, kind: str) -> None:
        """An event of `kind` (message, mention, interaction, ...) arrived from the platform,
        before any filtering."""
        self.last_event_at = datetime.now(UTC)
        event_in(self.platform, kind)

    def error(self, description: str) -> None:
        self.last_error = description[:MAX_ERROR_CHARS]
        self.last_error_at = datetime.now(UTC)

    def report(self, state: LinkState, detail: str, **facts: object) -> dict[str, object]:
        """The adapter's health: its state, a sentence for people, and `facts` (mode,
        latency ...), with the times as ISO 8601 text."""
        return {"state": state, "detail": detail, **facts,
                "last_event_at": _iso(self.last_event_at), "last_error": self.last_error,
                "last_error_at": _iso(self.last_error_at)}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment is not None else None
