"""The nightly sync: scheduled, persisted in the database, run once across workers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from apscheduler.triggers.cron import CronTrigger

from bot.app import Hub
from bot.config import parse_cron
from bot.kb.schedule import JOB_ID, KbScheduler, latest_fire_time
from tests.conftest import make_settings


def test_latest_fire_time_is_the_same_for_every_worker() -> None:
    nightly = parse_cron("0 2 * * *")
    assert latest_fire_time(nightly, datetime(2026, 11, 25, 2, 0, 3, tzinfo=UTC)) == datetime(
        2026, 11, 25, 2, 0, tzinfo=UTC)
    assert latest_fire_time(nightly, datetime(2026, 11, 25, 1, 59, tzinfo=UTC)) == datetime(
        2026, 11, 24, 2, 0, tzinfo=UTC)
    monthly = parse_cron("TZ=Europe/Berlin 0 3 1 * *")
    fire = latest_fire_time(monthly, datetime(2026, 11, 20, tzinfo=UTC))
    assert fire is not None and fire.isoformat() == "2026-11-01T03:00:00+01:00"
    every_second = CronTrigger(second="*", timezone=UTC)
    assert latest_fire_time(every_second, datetime(2026, 1, 1, 0, 0, 5, 400_000,
                                                   tzinfo=UTC)) == datetime(
        2026, 1, 1, 0, 0, 5, tzinfo=UTC)


async def test_the_job_is_persisted_and_survives_a_restart(tmp_path: Path,
                                                           database_url: str) -> None:
    hub = await Hub.create(make_settings(tmp_path, None, database_url=database_url,
                                         kb_sync_cron="TZ=Europe/Paris 30 2 * * *"))
    try:
        first = KbScheduler(hub.knowledge, cron=hub.settings.kb_sync_cron,
                            database_url=database_url)
        first.start()
        planned = first.next_run_time
        first.stop()
        assert planned is not None and (planned.hour, planned.minute) == (2, 30)
        assert str(planned.tzinfo) == "Europe/Paris"

        again = KbScheduler(hub.knowledge, cron=hub.settings.kb_sync_cron,
                            database_url=database_url)
        again.start()
        assert again.next_run_time == planned
        again.stop()
        async with hub.database.connect() as connection:
            from sqlalchemy import text

            rows = (await connection.execute(text("SELECT id FROM apscheduler_jobs"))).all()
        assert [row.id for row in rows] == [JOB_ID]
    finally:
        await hub.close()


WORKER = textwrap.dedent("""
    import asyncio, sys
    from datetime import UTC
    from apscheduler.triggers.cron import CronTrigger
    from bot.app import Hub
    from bot.config import load_settings
    from bot.kb.schedule import KbScheduler

    async def main():
        settings = load_settings()
        hub = await Hub.create(settings)
        scheduler = KbScheduler(hub.knowledge, cron=CronTrigger(second="*/2", timezone=UTC),
                                database_url=settings.resolved_database_url)
        scheduler.start()
        print("ready", flush=True)
        await asyncio.sleep(float(sys.argv[1]))
        scheduler.stop()
        await hub.close()

    asyncio.run(main())
""")


@pytest.mark.postgres
def test_two_workers_on_one_postgres_database_sync_once_per_fire_time(
        tmp_path: Path, postgres_url: str) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# A\n\nAlpha.\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BOTHUB_"))}
    env.update(DATABASE_URL=postgres_url, BOTHUB_KB_DIR=str(kb),
               LANCEDB_URI=str(tmp_path / "lancedb"), BOTHUB_LOG_LEVEL="WARNING",
               BOTHUB_DATA_DIR=str(tmp_path / "data"))
    subprocess.run([sys.executable, "-m", "bot.cli", "migrate"], env=env, check=True,
                   capture_output=True)
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, "7"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [worker.communicate(timeout=60) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr

    with psycopg.connect(postgres_url) as connection:
        runs = connection.execute(
            "SELECT scheduled_for, status FROM kb_sync_runs WHERE trigger = 'schedule' "
            "ORDER BY scheduled_for").fetchall()
    fire_times = [row[0] for row in runs]
    assert len(fire_times) >= 2, runs
    assert len(set(fire_times)) == len(fire_times)  # never two runs for one fire time
    # A worker stopping mid-sync leaves its run interrupted (the next one resumes it).
    assert all(row[1] in {"ok", "running", "interrupted"} for row in runs)
    assert all(t.second % 2 == 0 and t.microsecond == 0 for t in fire_times)


async def test_runs_missed_during_downtime_happen_once_at_start(tmp_path: Path) -> None:
    import asyncio
    from datetime import timedelta

    hub = await Hub.create(make_settings(tmp_path, None, kb_sync_cron="*/5 * * * *"))
    try:
        url = hub.settings.resolved_database_url
        first = KbScheduler(hub.knowledge, cron=hub.settings.kb_sync_cron, database_url=url)
        first.start()
        await asyncio.sleep(0)  # APScheduler's first wakeup must run before a shutdown
        # The server then was down for an hour: twelve fire times were missed.
        first._scheduler.pause()
        first._scheduler.modify_job(JOB_ID, next_run_time=datetime.now(UTC) - timedelta(hours=1))
        first.stop()
        again = KbScheduler(hub.knowledge, cron=hub.settings.kb_sync_cron, database_url=url)
        again.start()
        try:
            for _ in range(100):
                runs = await hub.knowledge.catalog.runs()
                if runs and runs[0].status != "running":
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # room for a second run, which must not come
            runs = await hub.knowledge.catalog.runs()
            assert [(r.trigger, r.status) for r in runs] == [("schedule", "ok")]
            assert again.next_run_time is not None
            assert again.next_run_time > datetime.now(UTC)
        finally:
            again.stop()
    finally:
        await hub.close()
