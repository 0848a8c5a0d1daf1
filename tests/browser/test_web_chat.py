"""The web chat page in a real headless Chromium, against a live bothub and the fake OpenAI.

Playwright's sync API is used from plain `def` tests so that nothing runs inside an event loop.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, Route

from tests.browser.conftest import ARTIFACTS, INTERNALS
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

pytestmark = pytest.mark.browser


def open_chat(page: Page, url: str) -> None:
    page.goto(url + "/")
    page.wait_for_function("document.documentElement.classList.contains('ready')")


def ask(page: Page, text: str) -> None:
    box = page.get_by_label("Your question")
    box.fill(text)
    box.press("Enter")


def last_answer(page: Page) -> Locator:
    return page.locator("#log .msg-assistant").last


def wait_finished(page: Page, count: int) -> Locator:
    """Wait until the `count`-th answer is complete (or failed) and the page takes questions."""
    answers = page.locator("#log .msg-assistant")
    page.wait_for_function(
        """n => {
          const all = document.querySelectorAll('#log .msg-assistant');
          const last = all[all.length - 1];
          return all.length >= n && last && ['done', 'error'].includes(last.dataset.state)
            && !document.getElementById('send').disabled;
        }""",
        arg=count)
    assert answers.count() == count
    return answers.nth(count - 1)


def squash(text: str) -> str:
    return " ".join(text.split())


def body_text(answer: Locator) -> str:
    return squash(answer.locator(".msg-body").text_content() or "")


def transcript(request: dict[str, Any]) -> str:
    """Everything the model was sent in one chat request, as one string."""
    return "\n".join(json.dumps(m.get("content"), ensure_ascii=False)
                     for m in request.get("messages", []))


def test_streamed_answer_appears_progressively_and_renders_markdown(
        page: Page, live_server: Any, fake_openai: FakeOpenAI) -> None:
    answer = ("Sure, here is what to do. Open **Settings**, then:\n\n"
              "- choose *Security*\n- press `Reset password`")
    fake_openai.queue(ScriptedReply(text=answer, chunk_delay=0.1))
    open_chat(page, live_server.url)
    assert page.get_by_role("heading", name="bothub").is_visible()
    assert page.locator("#log").get_attribute("aria-live") == "polite"

    box = page.get_by_label("Your question")
    box.fill("How do I reset")
    box.press("Shift+Enter")  # a new line, not a question
    box.press_sequentially("my password?")
    assert box.input_value() == "How do I reset\nmy password?"
    assert page.locator("#log .msg").count() == 0
    box.press("Enter")
    assert box.input_value() == ""
    user = page.locator("#log .msg-user").last
    assert user.locator(".msg-text").inner_text() == "How do I reset\nmy password?"

    # The first visible piece of the answer, caught while the stream is still running.
    partial = squash(page.wait_for_function(
        """() => {
          const a = document.querySelector('#log .msg-assistant:last-child');
          if (!a || a.dataset.state !== 'streaming') return null;
          return a.querySelector('.msg-body').textContent.trim() || null;
        }""").json_value())
    assert page.locator("#send").is_disabled(), "Send stays disabled while answering"

    done = wait_finished(page, 1)
    final = body_text(done)
    assert final == ("Sure, here is what to do. Open Settings, then:"
                     "choose Securitypress Reset password")
    assert partial and final.startswith(partial) and len(partial) < len(final), partial
    assert done.locator(".msg-body strong").inner_text() == "Settings"
    assert done.locator(".msg-body li").all_inner_texts() == ["choose Security",
                                                              "press Reset password"]
    assert done.locator(".msg-body li em").inner_text() == "Security"
    assert done.locator(".msg-body li code").inner_text() == "Reset password"
    assert "is-notice" not in (done.get_attribute("class") or "")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-chat.png"), animations="disabled")


def test_conversation_continues_across_questions_and_a_reload(
        page: Page, live_server: Any, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="Refunds are accepted within 30 days."),
                      ScriptedReply(text="Digital goods can be refunded within 14 days."),
                      ScriptedReply(text="Yes, gift cards too."),
                      ScriptedReply(text="Hello again."))
    open_chat(page, live_server.url)

    ask(page, "What is the refund window?")
    wait_finished(page, 1)
    ask(page, "And for digital goods?")
    assert body_text(wait_finished(page, 2)) == "Digital goods can be refunded within 14 days."
    second = transcript(fake_openai.chat_requests()[-1])
    for earlier in ("What is the refund window?", "Refunds are accepted within 30 days.",
                    "And for digital goods?"):
        assert earlier in second
    conversation = page.evaluate("sessionStorage.getItem('bothub.conversationId')")
    assert conversation

    page.reload()
    page.wait_for_function("document.documentElement.classList.contains('ready')")
    assert page.evaluate("sessionStorage.getItem('bothub.conversationId')") == conversation
    assert page.locator("#log .msg").count() == 4, "the tab shows its conversation again"
    ask(page, "Does that include gift cards?")
    assert body_text(wait_finished(page, 3)) == "Yes, gift cards too."
    third = transcript(fake_openai.chat_requests()[-1])
    for earlier in ("What is the refund window?", "Refunds are accepted within 30 days.",
                    "And for digital goods?", "Digital goods can be refunded within 14 days."):
        assert earlier in third

    page.get_by_role("button", name="New conversation").click()
    assert page.locator("#log .msg").count() == 0
    assert page.evaluate("sessionStorage.getItem('bothub.conversationId')") is None
    ask(page, "Hi")
    wait_finished(page, 1)
    assert "refund" not in transcript(fake_openai.chat_requests()[-1])
    assert page.evaluate("sessionStorage.getItem('bothub.conversationId')") != conversation


def test_model_failure_shows_a_polite_error_and_the_page_stays_usable(
        page: Page, live_server: Any, fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(3, status=500)  # the first try and both SDK retries
    open_chat(page, live_server.url)

    ask(page, "Is the service up?")
    failed = wait_finished(page, 1)
    assert failed.get_attribute("data-state") == "error"
    assert "is-error" in (failed.get_attribute("class") or "")
    shown = body_text(failed)
    assert shown.startswith("Sorry"), shown
    assert not INTERNALS.search(page.locator("body").inner_text())

    fake_openai.queue(ScriptedReply(text="Yes, everything is running."))
    ask(page, "Is it up now?")
    recovered = wait_finished(page, 2)
    assert body_text(recovered) == "Yes, everything is running."
    assert recovered.get_attribute("data-state") == "done"


def test_markdown_from_the_model_cannot_inject_html_or_script_links(
        page: Page, live_server: Any, fake_openai: FakeOpenAI) -> None:
    evil = ('Look: <img src=x onerror="window.__xss=1"> and [click](javascript:alert(1)) '
            '<script>window.__xss=2</script> [ok](https://example.com/docs)')
    fake_openai.queue(ScriptedReply(text=evil))
    open_chat(page, live_server.url)

    ask(page, '<b onmouseover="window.__xss=3">bold?</b>')
    answer = wait_finished(page, 1)
    text = answer.locator(".msg-body").inner_text()
    assert '<img src=x onerror="window.__xss=1">' in text
    assert "[click](javascript:alert(1))" in text
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator('a[href^="javascript"]').count() == 0
    assert page.locator("#log img, #log script, #log b").count() == 0
    link = answer.locator(".msg-body a")
    assert link.count() == 1
    assert link.get_attribute("href") == "https://example.com/docs"
    assert link.get_attribute("rel") == "noopener noreferrer"
    assert link.get_attribute("target") == "_blank"

    rendered = page.evaluate(
        """() => [
          '[a](JavaScript:alert(1))', '[a](data:text/html,x)', '[a](vbscript:x)',
          '[a](/relative)', 'https://ok.example/x?a=1&b=2', '```\\n<i>x</i>\\n```',
        ].map(window.bothubMarkdown)""")
    for html in rendered[:4]:
        assert "<a" not in html, html
    assert '<a href="https://ok.example/x?a=1&amp;b=2"' in rendered[4]
    assert rendered[5] == "<pre><code>&lt;i&gt;x&lt;/i&gt;</code></pre>"


def test_notices_sources_and_transport_failures(page: Page, live_server: Any) -> None:
    """The rest of the protocol, with /api/chat answered by the test itself."""
    replies: list[dict[str, Any]] = []
    sent: list[dict[str, Any]] = []

    def sse(*events: tuple[str, dict[str, Any]]) -> dict[str, Any]:
        body = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
        return {"status": 200, "content_type": "text/event-stream", "body": body}

    def handle(route: Route) -> None:
        sent.append(json.loads(route.request.post_data or "{}"))
        reply = replies.pop(0)
        if reply.get("abort"):
            route.abort("connectionrefused")
        else:
            route.fulfill(**reply)

    page.route("**/api/chat", handle)
    open_chat(page, live_server.url)

    replies.append(sse(("conversation", {"conversation_id": "c0nversation1"}),
                       ("message", {"text": "See the *install* guide.", "mode": "retrieval_only"}),
                       ("sources", {"sources": [
                           {"index": 1, "title": "Install guide", "url": "https://docs.example/i"},
                           {"index": 2, "title": "Internal notes", "url": None},
                           {"index": 3, "title": "Bad", "url": "javascript:alert(1)"}]}),
                       ("done", {"outcome": "answered"})))
    ask(page, "How do I install it?")
    answer = wait_finished(page, 1)
    assert answer.locator(".badge").inner_text() == "From the knowledge base"
    links = answer.locator(".sources a")
    assert links.count() == 1
    assert links.get_attribute("href") == "https://docs.example/i"
    assert links.get_attribute("rel") == "noopener noreferrer"
    assert answer.locator(".sources li").all_inner_texts() == ["Install guide", "Internal notes",
                                                               "Bad"]

    replies.append(sse(("message", {"text": "No language model is configured.",
                                    "mode": "notice"}),
                       ("sources", {"sources": []}), ("done", {"outcome": "no_model"})))
    ask(page, "Hello?")
    notice = wait_finished(page, 2)
    assert "is-notice" in (notice.get_attribute("class") or "")
    assert notice.locator(".sources").count() == 0

    replies.append({"status": 422, "content_type": "application/json",
                    "body": json.dumps({"error": "message: too long"})})
    ask(page, "x" * 20)
    rejected = wait_finished(page, 3)
    assert body_text(rejected) == "message: too long"
    assert page.get_by_label("Your question").input_value() == "x" * 20

    page.get_by_label("Your question").fill("")
    replies.append({"abort": True})
    ask(page, "Are you there?")
    offline = wait_finished(page, 4)
    assert "is-error" in (offline.get_attribute("class") or "")
    assert body_text(offline).startswith("Sorry, I couldn't reach")
    assert page.get_by_label("Your question").input_value() == "Are you there?"

    replies.append(sse(("message", {"text": "Yes, I am.", "mode": "model"}),
                       ("done", {"outcome": "answered"})))
    offline.get_by_role("button", name="Try again").click()
    retried = wait_finished(page, 4)
    assert body_text(retried) == "Yes, I am."
    assert page.get_by_label("Your question").input_value() == ""
    assert "conversation_id" not in sent[0]
    assert {r.get("conversation_id") for r in sent[1:]} == {"c0nversation1"}
    assert sent[-1]["message_id"] == sent[-2]["message_id"], "a retry is the same message"
    assert len({r["message_id"] for r in sent}) == len(sent) - 1
    for r in sent:
        assert re.fullmatch(r"[A-Za-z0-9_-]{8,64}", r["message_id"])
