"""The operations pages of the admin dashboard in a real headless Chromium: sign in, sync the
knowledge base from the page and watch the run finish, read the usage charts, check health.
Each page is saved as a screenshot in test-artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from bot.app import Hub
from bot.model import ConversationKey
from bot.server import create_app, teams_adapter
from tests.admin.kb_sites import SlowSite, kb_config, slow_site
from tests.browser.conftest import ARTIFACTS, INTERNALS
from tests.conftest import LiveServer, make_settings, running_server
from tests.fakes.openai_server import FakeOpenAI
from tests.usage_data import record_answer

pytestmark = pytest.mark.browser

TOKEN = "adm-" + "Bq7wT3nY8kL2pZ5xR9mC4vJ6"
SYNC_TIMEOUT_MS = 30_000
LAPTOP_WIDTH = 1280


@pytest.fixture
def site() -> Iterator[SlowSite]:
    with slow_site() as served:
        yield served


@pytest.fixture
def admin_server(tmp_path: Path, fake_openai: FakeOpenAI,
                 site: SlowSite) -> Iterator[LiveServer]:
    def build(hub: Hub) -> Any:  # with Teams, which runs without credentials (Emulator only)
        return create_app(hub, services=False, adapters=[teams_adapter(hub)])

    settings = make_settings(tmp_path, fake_openai, admin_token=TOKEN,
                             config_file=kb_config(tmp_path, site))
    with running_server(settings, build) as server:
        yield server


def screenshot(page: Page, name: str) -> None:
    """The whole page on a laptop-sized screen, the window as tall as the page so that the
    side bar (as tall as the window) reaches the bottom as it does while scrolling."""
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": LAPTOP_WIDTH, "height": max(int(height), 800)})
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    page.set_viewport_size({"width": LAPTOP_WIDTH, "height": 800})


def seed_usage(server: LiveServer) -> None:
    """A month of answers on three platforms and two models, cheaper at the weekends."""
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    now = midnight + (now - midnight) / 2  # today, and already past
    places = [(ConversationKey("slack", "T01ACME", "C042", "t"), "gpt-4o"),
              (ConversationKey("discord", "9001", "77", "t"), "gpt-4o"),
              (ConversationKey("web", "web", "chat", "t"), "gpt-4o-mini")]
    for day in range(28):
        at = now - timedelta(days=day)
        for n, (key, model) in enumerate(places):
            for repeat in range(1 + (day * 7 + n * 3) % 4):
                thread = f"d{day}-{repeat}"
                server.run(record_answer(
                    server.hub.database, ConversationKey(key.platform, key.workspace,
                                                         key.channel, thread),
                    cost=f"{0.004 + 0.003 * ((day + n) % 5):.4f}", at=at, model=model,
                    tokens_in=900 + 40 * ((day * 3 + n) % 9), tokens_out=120 + 15 * (day % 6)))


def sign_in(page: Page, url: str) -> None:
    page.goto(url + "/admin/knowledge")
    expect(page).to_have_url(re.compile(r"/admin/login$"))  # not signed in: to the login form
    page.get_by_label("Your name").fill("Grace")
    page.get_by_label("Admin token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as")).to_contain_text("Grace")


def test_sync_from_the_knowledge_page_then_usage_and_health(
        page: Page, admin_server: LiveServer, site: SlowSite) -> None:
    seed_usage(admin_server)
    page.set_viewport_size({"width": LAPTOP_WIDTH, "height": 800})
    sign_in(page, admin_server.url)

    page.get_by_role("navigation", name="Admin").get_by_role("link",
                                                             name="Knowledge base").click()
    expect(page.get_by_role("heading", name="Knowledge base", level=1)).to_be_visible()
    sources = page.locator("section", has=page.get_by_role("heading", name="Sources"))
    expect(sources.get_by_role("row", name=re.compile(r"^docs"))).to_be_visible()
    expect(sources.get_by_role("row", name=re.compile(r"^site"))).to_contain_text("slack:*")
    history = page.locator("section", has=page.get_by_role("heading", name="Sync history"))
    expect(history).to_contain_text("No sync has run yet")

    page.get_by_role("button", name="Sync now").click()
    expect(page.get_by_role("status")).to_have_text(
        "Sync of all sources started; the page follows its progress.")
    run = history.locator("tbody tr").first
    expect(run).to_contain_text("#1")
    expect(run.locator("td").nth(1)).to_have_text("admin")  # the trigger
    expect(run.locator(".badge")).to_have_text("running")
    expect(page.get_by_text("Refreshing every 3 s while a sync runs.")).to_be_visible()

    site.release()  # the slow page is served: the sync can finish
    # The page reloads itself (a Refresh header; no script) until it shows how the run ended.
    expect(run.locator(".badge")).to_have_text("partial", timeout=SYNC_TIMEOUT_MS)
    expect(page.get_by_text("Refreshing every")).to_have_count(0)
    expect(page.get_by_role("status")).to_have_count(0)  # the one-time notice is gone
    expect(run.locator("td").nth(6)).to_have_text("3")  # added
    run.get_by_role("link", name="1").click()  # the failed count leads to the problems
    expect(page).to_have_url(re.compile("#problems$"))
    problems = page.locator("#problems")
    expect(problems.get_by_role("heading")).to_have_text("Problems in run #1 (partial)")
    expect(problems.locator("tbody tr")).to_have_text([re.compile(
        rf"^site\s*{re.escape(site.url)}/broken\s*HTTP 500")])
    docs = sources.get_by_role("row", name=re.compile(r"^docs"))
    expect(docs.locator("td").nth(4)).to_have_text("2")  # documents indexed
    assert not INTERNALS.search(page.content())
    screenshot(page, "admin-knowledge.png")

    page.get_by_role("link", name="Usage & cost").click()
    expect(page.get_by_role("heading", name="Usage & cost", level=1)).to_be_visible()
    cost = page.get_by_role("img", name=re.compile("^Cost per day"))
    expect(cost).to_be_visible()
    assert cost.locator("rect").count() >= 28  # a bar for each day with answers
    bar = cost.locator("rect title").last.text_content() or ""
    assert re.fullmatch(r"\w{3} \d{1,2}: \$\d+\.\d+", bar), bar  # the exact value on hover
    expect(page.get_by_role("img", name=re.compile("^Answers per day by platform"))
           ).to_be_visible()
    expect(page.locator(".legend")).to_contain_text(["slack"])
    by_platform = page.locator("section", has=page.get_by_role("heading", name="By platform"))
    expect(by_platform.locator("tbody tr")).to_have_count(4)  # three platforms and the total
    page.get_by_role("link", name="7 days").click()
    expect(page).to_have_url(re.compile(r"days=7"))
    expect(page.get_by_text("The last 7 days")).to_be_visible()
    page.get_by_role("link", name="30 days").click()
    screenshot(page, "admin-usage.png")

    page.get_by_role("link", name="Health").click()
    expect(page.get_by_role("heading", name="Health", level=1)).to_be_visible()
    components = page.locator("section", has=page.get_by_role("heading", name="Components"))
    expect(components.get_by_role("row", name=re.compile("^Database"))).to_contain_text("ok")
    expect(components.get_by_role("row", name=re.compile("^Knowledge base"))
           ).to_contain_text("last sync")
    platforms = page.locator("section", has=page.get_by_role("heading", name="Platforms"))
    expect(platforms.get_by_role("row", name=re.compile("^Slack"))
           ).to_contain_text("SLACK_BOT_TOKEN")
    expect(platforms.get_by_role("row", name=re.compile("^Web chat"))).to_contain_text("ok")
    expect(platforms.get_by_role("row", name=re.compile("^Microsoft Teams"))
           ).to_contain_text("Emulator")
    screenshot(page, "admin-health.png")
