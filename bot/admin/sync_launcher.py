"""Knowledge-base syncs started from the admin page: in the background, one at a time, held.

A sync can take minutes, longer than a browser should wait for a POST, so the page starts it
as a task and redirects back; the run's row in the sync history then shows its progress. The
task is held here (asyncio keeps only weak references to tasks) and cancelled at shutdown,
which `KnowledgeBase.sync` records as an interrupted run that the next sync resumes.

"Only one" holds across workers too: the catalog refuses a second running sync
(`SyncInProgress`), whoever started the first (another worker, the nightly schedule, the CLI).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import structlog

from bot.admin.layout import Tone
from bot.kb.catalog import SyncInProgress
from bot.kb.knowledge import KnowledgeBase, SyncOutcome

log = structlog.get_logger(__name__)

# How long the POST waits for the sync: long enough to hear that another sync is running, or
# to report a small knowledge base's sync as done; short enough for a click.
START_WAIT_SECONDS = 1.0
TRIGGER = "admin"


@dataclass(frozen=True, slots=True)
class Launch:
    """What the admin is told after clicking "Sync now"."""

    text: str
    tone: Tone
    started: bool


class SyncLauncher:
    def __init__(self, knowledge: KnowledgeBase, *,
                 start_wait: float = START_WAIT_SECONDS) -> None:
        self._knowledge = knowledge
        self._start_wait = start_wait
        self._task: asyncio.Task[SyncOutcome | Exception] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self, source: str | None = None) -> Launch:
        """Start a sync of every source (or of `source`, which must be configured) unless one
        is already running, and say what happened."""
        if self.running:
            return Launch("A sync started here is still running; its progress is shown below.",
                          "warn", started=False)
        task = asyncio.create_task(self._run(source))
        self._task = task
        await asyncio.wait({task}, timeout=self._start_wait)  # never cancels the task
        what = f"of {source}" if source else "of all sources"
        if not task.done():
            return Launch(f"Sync {what} started; the page follows its progress.", "info",
                          started=True)
        result = task.result()
        if isinstance(result, SyncInProgress):
            return Launch(f"Not started: another sync is already running ({result}). Its "
                          "progress is shown below.", "warn", started=False)
        if not isinstance(result, SyncOutcome):
            return Launch(f"The sync {what} failed ({type(result).__name__}); the server log "
                          "says more.", "bad", started=True)
        report = result.report
        tones: dict[str, Tone] = {"ok": "ok", "partial": "warn"}
        tone = tones.get(result.status, "bad")
        return Launch(f"Sync {what} finished ({result.status}): {report.added} added, "
                      f"{report.updated} changed, {report.deleted} deleted, "
                      f"{report.failed} failed.", tone, started=True)

    async def _run(self, source: str | None) -> SyncOutcome | Exception:
        """The sync's outcome, or what stopped it as a value: nobody may be awaiting this task
        when it ends, so nothing it raises should go unseen."""
        try:
            outcome = await self._knowledge.sync(source=source, trigger=TRIGGER)
        except SyncInProgress as exc:
            log.info("kb.admin_sync_refused", reason=str(exc))
            return exc
        except Exception as exc:
            # `KnowledgeBase.sync` has recorded the run as failed and logged the crash.
            log.warning("kb.admin_sync_failed", source=source, error=type(exc).__name__)
            return exc
        if outcome is None:  # only a scheduled fire time can be claimed twice; never ours
            return RuntimeError("the sync run was not recorded")
        return outcome

    async def close(self) -> None:
        """At shutdown: stop a running sync (recorded as interrupted) and wait for it."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
