"""/admin/usage over HTTP against a live bothub: figures, charts and tables for 7, 30 and 90
days from answers stored on SQLite and PostgreSQL; bad periods, hostile names, refusals."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.model import ConversationKey
from tests.admin.world import TOKEN, AdminWorld, admin_world, text_of
from tests.fakes.openai_server import FakeOpenAI
from tests.usage_data import record_answer

BEARER = {"Authorization": f"Bearer {TOKEN}"}
SVG = "{http://www.w3.org/2000/svg}"


def today_at_midday_or_earlier() -> datetime:
    """A moment today (UTC) that has already passed, whatever the time now."""
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + (now - midnight) / 2


def label(day: date) -> str:
    return f"{day:%b} {day.day}"


def answer(world: AdminWorld, platform: str, workspace: str, *, cost: str, days_ago: int,
           model: str = "gpt-4o", tokens: tuple[int, int] = (100, 20)) -> None:
    at = today_at_midday_or_earlier() - timedelta(days=days_ago)
    key = ConversationKey(platform, workspace, "C1", f"t{days_ago}-{cost}-{model}")
    world.server.run(record_answer(world.server.hub.database, key, cost=cost, at=at,
                                   model=model, tokens_in=tokens[0], tokens_out=tokens[1]))


def charts(page: str) -> dict[str, ET.Element]:
    """Each chart's <svg>, by its title, parsed as XML."""
    found = {}
    for figure in re.findall(r'<figure class="chart">.*?</figure>', page, re.S):
        svg = ET.fromstring(figure).find(f"{SVG}svg")
        assert svg is not None
        found[svg.findtext(f"{SVG}title") or ""] = svg
    return found


def bars(svg: ET.Element) -> list[str]:
    return [rect.findtext(f"{SVG}title") or "" for rect in svg.iter(f"{SVG}rect")]


def section(page: str, title: str) -> str:
    """The text of the card headed `title`."""
    start = page.index(f"<h2>{title}</h2>")
    return text_of("<body>" + page[start:page.index("</section>", start)])


def get(world: AdminWorld, path: str) -> httpx.Response:
    return httpx.get(world.url + path, headers=BEARER, timeout=30)


def test_figures_charts_and_tables_follow_the_period(
        tmp_path: Path, fake_openai: FakeOpenAI, database_url: str) -> None:
    with admin_world(tmp_path, fake_openai, database_url=database_url) as world:
        answer(world, "slack", "T1", cost="0.25", days_ago=0, tokens=(1000, 200))
        answer(world, "discord", "G1", cost="0.05", days_ago=2, model="gpt-4o-mini",
               tokens=(500, 100))
        answer(world, "web", "web", cost="1.00", days_ago=10, tokens=(2000, 400))
        answer(world, "slack", "T2", cost="5.00", days_ago=40, tokens=(9000, 900))
        today = today_at_midday_or_earlier().date()

        week = get(world, "/admin/usage?days=7")
        assert week.status_code == 200
        text = text_of(week.text)
        assert "The last 7 days, UTC, today included." in text
        assert "Cost $0.30 $0.15 per answer" in text
        assert "Answers 2 " in text and "Tokens in 1,500 " in text and "Tokens out 300 " in text
        found = charts(week.text)
        assert set(found) == {"Cost per day", "Answers per day by platform", "Tokens per day",
                              "Tokens by model"}
        assert bars(found["Cost per day"]) == [f"{label(today - timedelta(days=2))}: $0.05",
                                               f"{label(today)}: $0.25"]
        assert found["Cost per day"].findtext(f"{SVG}desc") == (
            f"Cost per day: $0.30 in total over 7 days; highest $0.25 ({label(today)}).")
        assert sorted(bars(found["Answers per day by platform"])) == sorted([
            f"{label(today)} · slack: 1", f"{label(today - timedelta(days=2))} · discord: 1"])
        assert bars(found["Tokens by model"]) == [
            "gpt-4o · Tokens in: 1,000", "gpt-4o · Tokens out: 200",
            "gpt-4o-mini · Tokens in: 500", "gpt-4o-mini · Tokens out: 100"]
        assert section(week.text, "By platform") == (
            "By platform Platform Answers Tokens in Tokens out Cost "
            "slack 1 1,000 200 $0.25 discord 1 500 100 $0.05 Total 2 1,500 300 $0.30")
        assert section(week.text, "By workspace").startswith(
            "By workspace Platform Workspace Answers Tokens in Tokens out Cost slack T1 1 ")
        assert 'aria-current="true">7 days</a>' in week.text  # the chosen period is marked

        month = text_of(get(world, "/admin/usage").text)  # 30 days by default
        assert "The last 30 days" in month and "Cost $1.30 " in month and "Answers 3 " in month
        quarter = get(world, "/admin/usage?days=90")
        assert "Cost $6.30 " in text_of(quarter.text)
        assert len(bars(charts(quarter.text)["Cost per day"])) == 4


@pytest.mark.parametrize("period", ["abc", "0", "-7", "365", "7.5", "1e3", "9" * 400,
                                    "%00", "<script>"])
def test_a_bad_period_gets_a_clear_400(tmp_path: Path, fake_openai: FakeOpenAI,
                                       period: str) -> None:
    with admin_world(tmp_path, fake_openai) as world:
        refused = httpx.get(f"{world.url}/admin/usage", params={"days": period},
                            headers=BEARER)
        assert refused.status_code == 400
        assert "The period must be one of 7, 30, 90 days." in text_of(refused.text)
        assert "<script>" not in refused.text.split("<body>", 1)[1]


def test_an_empty_period_shows_empty_charts_and_tables(tmp_path: Path,
                                                       fake_openai: FakeOpenAI) -> None:
    with admin_world(tmp_path, fake_openai) as world:
        page = get(world, "/admin/usage?days=7")
        assert page.status_code == 200
        found = charts(page.text)
        assert all(bars(svg) == [] for svg in found.values())
        assert found["Cost per day"].findtext(f"{SVG}desc") == (
            "Cost per day: nothing in this period.")
        text = text_of(page.text)
        assert "Cost $0 $0 per answer" in text
        assert "No model was used in this period" in text
        assert text.count("No answers in this period.") == 3


def test_hostile_names_are_shown_as_text(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    evil = '<img src=x onerror="alert(1)">'
    with admin_world(tmp_path, fake_openai) as world:
        answer(world, "slack", evil, cost="0.10", days_ago=1, model=evil)
        page = get(world, "/admin/usage?days=7")
        assert page.status_code == 200
        assert "<img" not in page.text.split("<body>", 1)[1]
        assert f"slack {evil} 1 100 20 $0.10" in section(page.text, "By workspace")
        assert bars(charts(page.text)["Tokens by model"])[0] == f"{evil} · Tokens in: 100"


def test_usage_needs_an_admin(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    with admin_world(tmp_path, fake_openai) as world:
        anonymous = httpx.get(f"{world.url}/admin/usage")
        assert anonymous.status_code == 303
        assert anonymous.headers["location"] == "/admin/login"
        wrong: dict[str, Any] = {"Authorization": "Bearer not-the-token"}
        assert httpx.get(f"{world.url}/admin/usage", headers=wrong).status_code == 401


def test_platforms_past_six_are_summed_as_other_in_the_answers_chart(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    with admin_world(tmp_path, fake_openai) as world:
        for n, platform in enumerate(["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8"]):
            answer(world, platform, "w", cost=f"0.{n + 1}0", days_ago=0)
        page = get(world, "/admin/usage?days=7")
        chart = charts(page.text)["Answers per day by platform"]
        today = label(today_at_midday_or_earlier().date())
        # The six costliest in name order, then the two cheapest together.
        assert bars(chart) == [f"{today} · p{n}: 1" for n in range(3, 9)] + [
            f"{today} · other: 2"]
        assert "Answers per day by platform: 8 in total over 7 days" in text_of(page.text)
