"""/admin/knowledge over HTTP against a live bothub: sources and counts, "Sync now" in the
background with the page following the run, one sync at a time, per-source sync, refusals, and
a sync cut short by shutdown recorded as interrupted. Storage: SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bot.kb.catalog import KbCatalog, RunRecord, RunReport
from bot.store.database import create_engine
from tests.admin.kb_sites import SlowSite, kb_config, slow_site
from tests.admin.world import (
    TOKEN,
    AdminWorld,
    admin_world,
    csrf_of,
    notice_of,
    signed_in,
    text_of,
)
from tests.conftest import make_settings, running_server, wait_for
from tests.fakes.openai_server import FakeOpenAI

BEARER = {"Authorization": f"Bearer {TOKEN}"}
PAGE = "/admin/knowledge"
SYNC = "/admin/knowledge/sync"


@contextmanager
def kb_world(tmp_path: Path, openai: FakeOpenAI, site: SlowSite | None = None,
             **settings: Any) -> Iterator[AdminWorld]:
    with admin_world(tmp_path, openai, config_file=kb_config(tmp_path, site),
                     **settings) as world:
        yield world


def runs(world: AdminWorld) -> list[RunRecord]:
    return list(world.server.run(world.server.hub.knowledge.catalog.runs()))


def history_row(page: str, run_id: int) -> str:
    """The text of one run's row in the sync history."""
    text = text_of("<body>" + page.split("Sync history", 1)[1].split("</section>", 1)[0])
    start = text.index(f"#{run_id} ")
    following = text.find(" #", start + 2)
    return text[start:following if following != -1 else None]


def sync_now(client: httpx.Client, **fields: str) -> httpx.Response:
    csrf = csrf_of(client.get(PAGE).text)
    return client.post(SYNC, data={"csrf_token": csrf, **fields})


def test_the_page_lists_sources_retrieval_and_an_empty_history(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    with slow_site() as site, kb_world(tmp_path, fake_openai, site) as world, \
            signed_in(world, "Grace") as client:
        page = client.get(PAGE)
        assert page.status_code == 200
        assert "refresh" not in page.headers  # nothing is running
        text = text_of(page.text)
        assert "docs folder" in text and str(tmp_path / "docs") in text
        assert f"site web {site.url}/slow, {site.url}/broken slack:*" in text
        assert "Everywhere" in text  # docs' scope
        assert "Retrieval Hybrid embeddings: openai:text-embedding-3-small" in text
        assert "No sync has run yet" in text
        assert 'content="' not in page.text.split("<body>", 1)[1]  # no meta refresh needed


def test_sync_now_runs_in_the_background_and_the_page_follows_it_to_its_end(
        tmp_path: Path, fake_openai: FakeOpenAI, database_url: str) -> None:
    with slow_site() as site, \
            kb_world(tmp_path, fake_openai, site, database_url=database_url) as world, \
            signed_in(world, "Grace") as client:
        started = sync_now(client)
        assert started.status_code == 303 and started.headers["location"].startswith(PAGE)
        page = client.get(started.headers["location"])
        assert notice_of(page.text) == \
            "info: Sync of all sources started; the page follows its progress."
        assert page.headers["refresh"] == f"3; url={PAGE}"
        [run] = runs(world)
        assert (run.trigger, run.status, run.source) == ("admin", "running", None)
        row = history_row(page.text, run.id)
        assert row.startswith(f"#{run.id} admin all running") and "running " in row
        assert "Refreshing every 3 s while a sync runs." in text_of(page.text)

        again = sync_now(client)  # a second click while the first runs
        assert notice_of(client.get(again.headers["location"]).text) == (
            "warn: A sync started here is still running; its progress is shown below.")
        assert len(runs(world)) == 1

        site.release()
        wait_for(lambda: runs(world)[0].status != "running", timeout=20)
        done = client.get(PAGE)
        assert "refresh" not in done.headers
        [run] = runs(world)
        assert run.status == "partial"  # /broken answers 500
        assert (run.report.added, run.report.failed + run.report.skipped) == (3, 1)
        row = history_row(done.text, run.id)
        assert row.startswith(f"#{run.id} admin all partial")
        assert row.endswith(" 3 0 0 1")  # added, changed, deleted, problems
        assert '<a href="#problems">1</a>' in done.text
        text = text_of(done.text)
        assert (f"Problems in run #{run.id} (partial) Source Document Reason "
                f"site {site.url}/broken HTTP 500") in text
        assert "docs folder" in text and "Documents 3 indexed" in text


def test_a_sync_running_elsewhere_is_reported_not_started_twice(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    with kb_world(tmp_path, fake_openai) as world:
        catalog = world.server.hub.knowledge.catalog
        other = world.server.run(catalog.start_run(trigger="nightly", source=None))
        with httpx.Client(base_url=world.url, headers=BEARER) as client:
            refused = client.post(SYNC)  # a bearer token needs no CSRF token
            assert refused.status_code == 303
            page = client.get(refused.headers["location"])
        assert notice_of(page.text) == (
            f"warn: Not started: another sync is already running (sync run {other} is still "
            "running). Its progress is shown below.")
        assert page.headers["refresh"].startswith("3;")
        assert [r.id for r in runs(world)] == [other]
        assert history_row(page.text, other).startswith(f"#{other} nightly all running")
        world.server.run(catalog.finish_run(other, "ok", RunReport(), 10))


def test_one_source_can_be_synced_and_an_unknown_source_is_refused(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    with kb_world(tmp_path, fake_openai) as world, signed_in(world, "Grace") as client:
        done = sync_now(client, source="docs")
        page = client.get(done.headers["location"])
        assert notice_of(page.text) == ("ok: Sync of docs finished (ok): 2 added, 0 changed, "
                                        "0 deleted, 0 failed.")
        [run] = runs(world)
        assert (run.source, run.status, run.report.added) == ("docs", "ok", 2)
        assert history_row(page.text, run.id).startswith(f"#{run.id} admin docs ok")

        for hostile in ("nope", "<script>alert(1)</script>", "x" * 5000):
            refused = sync_now(client, source=hostile)
            assert refused.status_code == 400
            assert "There is no knowledge source named" in text_of(refused.text)
            assert "the sources are: docs." in text_of(refused.text)
            assert "<script>alert" not in refused.text
        assert len(runs(world)) == 1


def test_the_page_needs_an_admin_and_its_form_a_csrf_token(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    with kb_world(tmp_path, fake_openai) as world:
        with httpx.Client(base_url=world.url) as anonymous:
            page = anonymous.get(PAGE)
            assert page.status_code == 303 and page.headers["location"] == "/admin/login"
            assert anonymous.post(SYNC).status_code == 303
            wrong = anonymous.post(SYNC, headers={"Authorization": "Bearer wrong"})
            assert wrong.status_code == 401
        with signed_in(world, "Grace") as client:
            forged = client.post(SYNC, data={"csrf_token": "forged"})
            assert forged.status_code == 403
            assert "CSRF" in text_of(forged.text)
            assert client.post(SYNC).status_code == 403
        assert runs(world) == []


def test_shutdown_interrupts_a_running_sync_and_records_it(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    with slow_site() as site:
        with kb_world(tmp_path, fake_openai, site) as world, signed_in(world, "Grace") as client:
            sync_now(client)
            url = world.server.hub.settings.resolved_database_url
            assert runs(world)[0].status == "running"
        # The server has stopped while the sync waited on /slow.

        async def recorded() -> list[RunRecord]:
            database = create_engine(url)
            try:
                return await KbCatalog(database).runs()
            finally:
                await database.dispose()

        [run] = asyncio.run(recorded())
        assert (run.trigger, run.status) == ("admin", "interrupted")
        assert run.finished_at is not None


def test_without_an_embedding_model_retrieval_is_full_text(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, None, admin_token=TOKEN,
                             config_file=kb_config(tmp_path, None))
    with running_server(settings) as server:
        page = httpx.get(server.url + PAGE, headers=BEARER)
        assert page.status_code == 200
        assert "Retrieval Full-text no embedding model set" in text_of(page.text)
