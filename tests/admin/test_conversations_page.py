"""Conversations, transcripts, feedback and the overview in the dashboard, over HTTP against a
live bothub, on SQLite and PostgreSQL: questions go through the real engine and model SDK (to
the fake OpenAI server), so the pages show what was really stored."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.admin.world import TOKEN, AdminWorld, admin_world, signed_in, text_of
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

BEARER = {"Authorization": f"Bearer {TOKEN}"}
ANSWER = ("Open **Settings → Security** and choose *Reset password*. See "
          "[Resetting your password](https://docs.example.com/password) or "
          "https://docs.example.com/faq.")


@pytest.fixture
def world(tmp_path: Path, fake_openai: FakeOpenAI, database_url: str) -> Iterator[AdminWorld]:
    with admin_world(tmp_path, fake_openai, database_url=database_url) as built:
        yield built


@pytest.fixture
def ada(world: AdminWorld) -> Iterator[httpx.Client]:
    with signed_in(world, "Ada") as client:
        yield client


def conversation_ids(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<a href="/admin/conversations/(\d+)">', page)]


def test_a_transcript_shows_both_sides_with_costs_sources_and_votes(
        world: AdminWorld, ada: httpx.Client) -> None:
    world.openai.queue(ScriptedReply(text=ANSWER))
    answered, _ = world.ask("How do I reset my password?", user="Grace")
    world.vote(answered, user="UGRACE", helpful=True)
    world.vote(answered, user="UOTHER", helpful=False)
    [number] = conversation_ids(ada.get("/admin/conversations").text)
    page = ada.get(f"/admin/conversations/{number}")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "Grace" in text and "How do I reset my password?" in text
    assert "Open Settings → Security and choose Reset password" in text
    assert "<strong>Settings → Security</strong>" in page.text and "<em>Reset password</em>" \
        in page.text
    assert "model answer · gpt-4o" in text and "tokens" in text and "$0." in text
    assert "1 helpful" in text and "1 unhelpful" in text
    sources = re.findall(r'<li><a href="([^"]+)">([^<]+)</a></li>', page.text)
    assert sources == [("https://docs.example.com/password", "Resetting your password"),
                       ("https://docs.example.com/faq", "https://docs.example.com/faq")]
    api = httpx.get(f"{world.url}/admin/api/conversations/{number}", headers=BEARER).json()
    [question, answer] = api["messages"]
    assert question["role"] == "user" and question["author"] == "Grace"
    assert answer["role"] == "assistant" and answer["text"] == ANSWER
    assert answer["helpful"] == 1 and answer["unhelpful"] == 1 and answer["tokens_out"] > 0
    assert answer["sources"][0]["url"] == "https://docs.example.com/password"


def test_a_transcript_lists_the_sources_the_answer_cited(
        world: AdminWorld, ada: httpx.Client) -> None:
    assert world.server.run(world.server.hub.knowledge.sync()) is not None  # the sample docs
    world.openai.queue(ScriptedReply(text="Use Settings, then Security [1]."))
    answered, _ = world.ask("How do I reset my password?")
    cited = answered.reply.citations
    assert cited, "the sample knowledge base has a page about passwords"
    [number] = conversation_ids(ada.get("/admin/conversations").text)
    page = ada.get(f"/admin/conversations/{number}").text
    footer = page.split("<strong>Sources</strong>", 1)[1].split("</footer>", 1)[0]
    shown = [text_of(item) for item in re.findall(r"<li>(.*?)</li>", footer)]
    assert all(item.startswith(c.title) for item, c in zip(shown, cited, strict=True))
    api = httpx.get(f"{world.url}/admin/api/conversations/{number}", headers=BEARER).json()
    answer = api["messages"][-1]
    assert [(s["title"], s["url"]) for s in answer["sources"]] == \
        [(c.title or c.url, c.url) for c in cited]


def test_hostile_text_is_shown_as_text(world: AdminWorld, ada: httpx.Client) -> None:
    world.openai.queue(ScriptedReply(text="[click](javascript:alert(1)) **<img src=x "
                                          "onerror=alert(2)>**"))
    world.ask("<script>alert('q')</script> \"quoted\" & more", user="<b>Mallory</b>")
    listing = ada.get("/admin/conversations").text
    assert "<b>Mallory</b>" not in listing and "&lt;b&gt;Mallory&lt;/b&gt;" in listing
    [number] = conversation_ids(listing)
    page = ada.get(f"/admin/conversations/{number}").text
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<img" not in page and 'href="javascript:' not in page
    assert "default-src 'none'" in ada.get(f"/admin/conversations/{number}") \
        .headers["content-security-policy"]


def test_the_list_is_newest_first_searchable_and_paged(world: AdminWorld,
                                                       ada: httpx.Client) -> None:
    for n in range(27):
        world.ask(f"question number {n} about {'invoices' if n % 9 == 0 else 'exports'}",
                  user=f"user{n}")
    first = ada.get("/admin/conversations")
    ids = conversation_ids(first.text)
    assert len(ids) == 25 and ids == sorted(ids, reverse=True)
    assert "Page 1 · 25 shown" in text_of(first.text) and "Older →" in text_of(first.text)
    second = ada.get("/admin/conversations?page=2")
    assert len(conversation_ids(second.text)) == 2 and "← Newer" in text_of(second.text)
    found = ada.get("/admin/conversations", params={"q": "INVOICES"})
    assert len(conversation_ids(found.text)) == 3  # case does not matter
    none = ada.get("/admin/conversations", params={"q": "100%_off"})
    assert conversation_ids(none.text) == []  # wildcards are searched for, not expanded
    assert "No conversation mentions “100%_off”." in text_of(none.text)
    api = httpx.get(f"{world.url}/admin/api/conversations?page=2", headers=BEARER).json()
    assert api["page"] == 2 and len(api["conversations"]) == 2 and api["more"] is False


def test_escalated_conversations_can_be_listed_alone(world: AdminWorld,
                                                     ada: httpx.Client) -> None:
    world.ask("When do exports run?")
    number = world.escalate()
    escalated = ada.get("/admin/conversations?escalated=1").text
    [only] = conversation_ids(escalated)
    assert only == world.ticket(number).conversation_id
    assert "open" in text_of(escalated)
    transcript = ada.get(f"/admin/conversations/{only}").text
    assert f'href="/admin/escalations/{number}"' in transcript


@pytest.mark.parametrize("query", [
    "?page=-1", "?page=abc", "?page=99999999999", "?q=" + "x" * 8000, "?escalated=maybe",
    "?q=%00%ff", "?page=1&page=2&q=a&q=b",
])
def test_junk_in_the_query_string_still_gets_a_page(ada: httpx.Client, query: str) -> None:
    for path in ("/admin/conversations", "/admin/feedback", "/admin/escalations"):
        response = ada.get(path + query)
        assert response.status_code == 200, (path, query)
        assert "Traceback" not in response.text


@pytest.mark.parametrize("number", ["0", "abc", "1.5", "99999", "9" * 30, "%C2%B2"])
def test_an_unknown_conversation_is_a_clear_404(ada: httpx.Client, number: str) -> None:
    page = ada.get(f"/admin/conversations/{number}")
    assert page.status_code == 404 and "Conversation not found" in page.text
    api = ada.get(f"/admin/api/conversations/{number}")
    assert api.status_code == 404 and "no conversation" in api.json()["error"]


def test_feedback_lists_votes_with_their_question_and_counts(world: AdminWorld,
                                                             ada: httpx.Client) -> None:
    world.openai.queue(ScriptedReply(text=ANSWER),
                       ScriptedReply(text="Exports run nightly at 02:00 UTC."))
    good, _ = world.ask("How do I reset my password?")
    bad, _ = world.ask("When do exports run?")
    world.vote(good, user="U1", helpful=True)
    world.vote(good, user="U2", helpful=True)
    world.vote(bad, user="U1", helpful=False)
    page = ada.get("/admin/feedback")
    text = text_of(page.text)
    assert "Helpful 2 all time" in text and "Unhelpful 1 all time" in text
    assert "67 %" in text
    assert "When do exports run?" in text and "Exports run nightly at 02:00 UTC." in text
    assert "Open Settings → Security" in text  # the preview drops markdown marks
    only_bad = text_of(ada.get("/admin/feedback?value=down").text)
    assert "When do exports run?" in only_bad and "reset my password" not in only_bad
    assert re.search(r'href="/admin/conversations/\d+#m\d+"', page.text)
    api = httpx.get(f"{world.url}/admin/api/feedback", headers=BEARER).json()
    assert api["helpful"] == 2 and api["unhelpful"] == 1 and len(api["feedback"]) == 3


def test_the_overview_counts_today(world: AdminWorld, ada: httpx.Client) -> None:
    world.openai.queue(ScriptedReply(text=ANSWER))
    answered, _ = world.ask("How do I reset my password?")
    world.vote(answered, user="U1", helpful=False)
    number = world.escalate(user="Barbara")
    page = ada.get("/admin")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "Waiting for a person 1" in text and "Answers today 2" in text
    assert "Feedback today 0 / 1" in text
    assert f'href="/admin/escalations/{number}"' in page.text and "Barbara" in text
    assert "database ok" in text
