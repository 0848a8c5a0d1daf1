"""The admin dashboard in a real headless Chromium against a live bothub: sign in through the
form, claim and resolve an escalation from the queue, read the conversation it came from, and
look at feedback. Screenshots of each page go to test-artifacts/ (admin-*.png)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, ViewportSize, expect

from bot.escalation.store import State
from tests.admin.world import TOKEN, AdminWorld, admin_world
from tests.browser.conftest import ARTIFACTS, INTERNALS, TIMEOUT_MS
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

pytestmark = pytest.mark.browser
LAPTOP: ViewportSize = {"width": 1280, "height": 800}
ANSWER = ("To reset your password, open **Settings → Security** and choose *Reset "
          "password*; a link arrives by email within a minute. See "
          "[Resetting your password](https://docs.example.com/account/password) for details.")


@pytest.fixture
def world(tmp_path: Path, fake_openai: FakeOpenAI) -> Iterator[AdminWorld]:
    with admin_world(tmp_path, fake_openai) as built:
        yield built


@pytest.fixture
def laptop(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """A 1280x800 tab, and the errors it logs (a style refused by the CSP shows up there)."""
    context = browser.new_context(viewport=LAPTOP)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))

    def console(message: ConsoleMessage) -> None:
        # A refused login is a 401 and the browser's favicon request a 404: both expected.
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.append(message.text)

    page.on("console", console)
    try:
        yield page, problems
    finally:
        context.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"admin-{name}.png"), full_page=True)


def seen(page: Page) -> str:
    text = page.locator("body").inner_text()
    assert not INTERNALS.search(text), text
    return " ".join(text.split())


def populate(world: AdminWorld) -> int:
    """A day at the help desk: answered questions with votes, and three escalations; the
    number of the one the test works on."""
    world.openai.queue(ScriptedReply(text=ANSWER))
    answered, _ = world.ask("How do I reset my password?", user="Grace")
    world.vote(answered, user="UGRACE", helpful=True)
    world.openai.queue(ScriptedReply(text="Exports run nightly at 02:00 UTC and land in "
                                          "your workspace's Files tab."))
    export, _ = world.ask("When do exports run?", user="Linus")
    world.vote(export, user="ULINUS", helpful=False)
    number = world.escalate(user="Alice", text="I want to talk to a human about my invoice")
    world.escalate(user="Barbara", text="Can a person call me back? I need a human")
    world.escalate(user="Edsger", text="Please let me talk to a human, the bot keeps looping")
    return number


def test_an_admin_signs_in_claims_and_resolves_an_escalation(
        world: AdminWorld, laptop: tuple[Page, list[str]]) -> None:
    page, problems = laptop
    number = populate(world)

    page.goto(world.url + "/admin")
    expect(page).to_have_url(world.url + "/admin/login")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(page, "login")
    page.get_by_label("Your name").fill("Ada Lovelace")
    page.get_by_label("Admin token").fill("not the token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That is not the admin token.")
    expect(page.get_by_label("Your name")).to_have_value("Ada Lovelace")
    page.get_by_label("Admin token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator(".top")).to_contain_text("Signed in as Ada Lovelace")
    expect(page.locator(".stat", has_text="Waiting for a person").locator(".value")) \
        .to_have_text("3")
    shot(page, "overview")

    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Escalations").click()
    expect(page.get_by_role("heading", name="Escalations")).to_be_visible()
    row = page.locator("tbody tr", has_text=f"#{number}")
    expect(row).to_contain_text("open")
    expect(row).to_contain_text("Alice")
    row.get_by_role("button", name="Claim").click()
    expect(page.get_by_role("status")).to_have_text(
        f"You've claimed escalation #{number}. I'll stay quiet in that thread.")
    row = page.locator("tbody tr", has_text=f"#{number}")
    expect(row).to_contain_text("claimed")
    expect(row).to_contain_text("Ada Lovelace")
    shot(page, "escalations")
    assert world.ticket(number).state is State.CLAIMED
    assert world.outlet.told[-1][1].startswith("Ada Lovelace from our support team has joined")

    row.get_by_role("link", name=f"#{number}").click()
    expect(page.get_by_role("heading", name=f"Escalation #{number}")).to_be_visible()
    expect(page.locator(".timeline")).to_contain_text("Claimed by Ada Lovelace via admin")
    expect(page.locator(".turns")).to_contain_text("I want to talk to a human about my invoice")
    shot(page, "escalation")
    page.locator(".head").get_by_role("button", name="Resolve", exact=True).click()
    expect(page.get_by_role("status")).to_have_text(f"Escalation #{number} is resolved.")
    expect(page.locator("dl.facts")).to_contain_text("resolved")
    expect(page.locator(".timeline")).to_contain_text("Resolved by Ada Lovelace via admin")
    assert world.ticket(number).state is State.RESOLVED
    page.goto(world.url + "/admin/escalations")
    expect(page.locator("tbody")).not_to_contain_text(f"#{number} ")
    page.get_by_role("link", name="Resolved (1)").click()
    expect(page.locator("tbody tr", has_text=f"#{number}")).to_contain_text("resolved")

    page.get_by_role("navigation", name="Admin").get_by_role("link",
                                                             name="Conversations").click()
    expect(page.get_by_role("heading", name="Conversations")).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(5)
    shot(page, "conversations")
    page.get_by_role("searchbox", name="Search").fill("password")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    page.locator("tbody tr").get_by_role("link").first.click()
    expect(page.locator(".turn.bot")).to_contain_text("Settings → Security")
    expect(page.locator(".turn.bot")).to_contain_text("1 helpful")
    expect(page.locator(".turn.bot .text strong")).to_have_text("Settings → Security")
    sources = page.locator(".turn.bot footer li")  # the answer's links, listed as its sources
    expect(sources).to_have_count(1)
    expect(sources.get_by_role("link", name="Resetting your password")) \
        .to_have_attribute("href", "https://docs.example.com/account/password")
    shot(page, "conversation")

    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Feedback").click()
    expect(page.get_by_role("heading", name="Feedback")).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(2)
    expect(page.locator("tbody tr", has_text="When do exports run?")).to_contain_text(
        "unhelpful")
    shot(page, "feedback")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto(world.url + "/admin/escalations")
    expect(page).to_have_url(world.url + "/admin/login")
    assert not problems, problems


def test_pages_fit_a_narrow_laptop_window(world: AdminWorld, browser: Browser) -> None:
    """At 1000 px nothing needs a horizontal scrollbar: the nav, the tables and their buttons
    fit."""
    populate(world)
    context = browser.new_context(viewport=ViewportSize(width=1000, height=700))
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto(world.url + "/admin/login")
        page.get_by_label("Your name").fill("Ada")
        page.get_by_label("Admin token").fill(TOKEN)
        page.get_by_role("button", name="Sign in").click()
        for path in ("/admin", "/admin/escalations", "/admin/conversations",
                     "/admin/feedback"):
            page.goto(world.url + path)
            overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
            assert overflow <= 0, f"{path} is {overflow}px wider than the window"
            clipped = page.evaluate("[...document.querySelectorAll('.card')]"
                                    ".filter(c => c.scrollWidth > c.clientWidth).length")
            assert clipped == 0, f"{path}: {clipped} box(es) need a horizontal scrollbar"
        page.goto(world.url + "/admin/escalations")
        shot(page, "escalations-1000px")
    finally:
        context.close()
