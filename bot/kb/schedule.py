"""The nightly knowledge-base sync inside `bothub serve`.

APScheduler keeps the job in our database (the `apscheduler_jobs` table), so a restart neither
loses nor duplicates it, and a run missed while the server was down happens once at start
(coalesced). Several workers may serve one database and each runs a scheduler: every one of
them fires, but the run is claimed in SQL by its fire time, so exactly one syncs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.engine import make_url

from bot.config import parse_cron
from bot.kb.catalog import SyncInProgress
from bot.kb.knowledge import KnowledgeBase

log = structlog.get_logger(__name__)

JOB_ID = "kb-nightly-sync"
MISFIRE_GRACE = timedelta(hours=12)  # a run missed by more than this waits for the next night
_WINDOWS = (timedelta(minutes=2), timedelta(hours=2), timedelta(days=2), timedelta(days=32),
            timedelta(days=400))

# APScheduler stores jobs as references to importable functions, so the running scheduler
# leaves the knowledge base where the job function can find it.
_running: dict[str, Any] = {}


def latest_fire_time(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The most recent fire time at or before `now`: the same on every worker, so it names
    the run they compete for."""
    for window in _WINDOWS:
        fire = trigger.get_next_fire_time(None, now - window)
        if fire is None or fire > now:
            continue
        while (following := trigger.get_next_fire_time(fire, fire + timedelta(
                microseconds=1))) is not None and following <= now:
            fire = following
        return fire
    return None


async def nightly_sync() -> None:
    knowledge: KnowledgeBase | None = _running.get("knowledge")
    trigger: CronTrigger | None = _running.get("trigger")
    if knowledge is None or trigger is None:
        log.warning("kb.schedule_not_ready")
        return
    fire = latest_fire_time(trigger, datetime.now(UTC))
    try:
        outcome = await knowledge.sync(trigger="schedule", scheduled_for=fire)
    except SyncInProgress as exc:
        log.info("kb.scheduled_sync_skipped", reason=str(exc), scheduled_for=fire)
        return
    if outcome is None:
        log.info("kb.scheduled_sync_claimed_elsewhere", scheduled_for=fire)


def sync_database_url(url: str) -> str:
    """The job store is synchronous: the same database through a synchronous driver."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    driver = "sqlite" if backend == "sqlite" else "postgresql+psycopg"
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


class KbScheduler:
    def __init__(self, knowledge: KnowledgeBase, *, cron: str | CronTrigger,
                 database_url: str) -> None:
        self._knowledge = knowledge
        self.trigger = parse_cron(cron) if isinstance(cron, str) else cron
        self._scheduler = AsyncIOScheduler(
            jobstores={"default": SQLAlchemyJobStore(url=sync_database_url(database_url)),
                       "memory": MemoryJobStore()},
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": int(MISFIRE_GRACE.total_seconds())},
            timezone=UTC)

    def start(self) -> None:
        _running.update(knowledge=self._knowledge, trigger=self.trigger)
        self._scheduler.start()
        # replace_existing: a changed BOTHUB_KB_SYNC_CRON takes effect on the next start,
        # while the stored next run time of an unchanged job survives restarts.
        existing = self._scheduler.get_job(JOB_ID)
        if existing is None or repr(existing.trigger) != repr(self.trigger):
            self._scheduler.add_job(nightly_sync, self.trigger, id=JOB_ID,
                                    name="knowledge base sync", replace_existing=True)
        job = self._scheduler.get_job(JOB_ID)
        log.info("kb.schedule", cron=str(self.trigger),
                 next_run=job.next_run_time.isoformat() if job and job.next_run_time else None)

    def every(self, seconds: float, func: Any, *, job_id: str) -> None:
        """A periodic job of this process only: what it works on is kept in SQL, and each
        worker runs its own copy (the work is claimed row by row)."""
        self._scheduler.add_job(func, "interval", seconds=seconds, id=job_id, jobstore="memory",
                                replace_existing=True, coalesce=True, max_instances=1,
                                misfire_grace_time=max(1, int(seconds)))

    @property
    def next_run_time(self) -> datetime | None:
        job = self._scheduler.get_job(JOB_ID)
        return job.next_run_time if job is not None else None

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        _running.clear()
