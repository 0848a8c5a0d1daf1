"""Markdown to Slack mrkdwn, splitting at Slack's limits, sources and feedback buttons."""

from __future__ import annotations

import pytest

from adapters.slack import render
from bot.model import Citation, Reply, ReplyMode


@pytest.mark.parametrize(("markdown", "mrkdwn"), [
    ("**bold** and *italic*", "*bold* and _italic_"),
    ("__bold__ ~~gone~~", "*bold* ~gone~"),
    ("# Title\n## Sub", "*Title*\n*Sub*"),
    ("- one\n- two\n  * nested", "• one\n• two\n  • nested"),
    ("See [the docs](https://x.example/a?b=1&c=2).", "See <https://x.example/a?b=1&c=2|the docs>."),
    ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
    ("<@U123> <!channel> <https://evil|x>", "&lt;@U123&gt; &lt;!channel&gt; &lt;https://evil|x&gt;"),
    ("[x](javascript:alert(1))", "[x](javascript:alert(1))"),
    ("```python\nif a < b:\n    **x**\n```", "```\nif a &lt; b:\n    **x**\n```"),
    ("2 * 3 * 4", "2 * 3 * 4"),
])
def test_markdown_becomes_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert render.to_mrkdwn(markdown) == mrkdwn


def test_long_text_splits_at_paragraphs_within_the_limit() -> None:
    text = "\n\n".join(f"Paragraph {n} " + "word " * 150 for n in range(12))
    parts = render.split(text, limit=3000)
    assert len(parts) > 1 and all(len(part) <= 3000 for part in parts)
    assert all(part.startswith("Paragraph") for part in parts)
    assert "".join(parts).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace(
        "\n", "")


def test_a_split_inside_a_code_block_keeps_both_halves_fenced() -> None:
    text = "Intro\n\n```\n" + "\n".join(f"line {n}" for n in range(800)) + "\n```"
    parts = render.split(text, limit=3000)
    assert len(parts) > 1
    assert all(part.count("```") % 2 == 0 for part in parts)
    assert all(len(part) <= 3000 + 4 for part in parts)


def test_a_single_huge_word_is_cut() -> None:
    assert [len(p) for p in render.split("x" * 7000, limit=3000)] == [3000, 3000, 1000]


def test_messages_put_sources_and_feedback_on_the_last_part() -> None:
    reply = Reply("Intro\n\n" + "text " * 1500, ReplyMode.MODEL,
                  (Citation(1, "Billing › Refunds", "https://help.example/billing"),
                   Citation(2, "Internal | notes", "")), ref="42")
    rendered = render.messages(reply)
    assert len(rendered) == 3
    assert [block["type"] for block in rendered[0][1]] == ["section"]
    last = rendered[-1][1]
    assert [block["type"] for block in last] == ["section", "context", "actions"]
    sources = last[1]["elements"][0]["text"]
    assert "<https://help.example/billing|[1] Billing › Refunds>" in sources
    assert "[2] Internal ¦ notes" in sources
    buttons = last[2]["elements"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        (render.FEEDBACK_UP, "42"), (render.FEEDBACK_DOWN, "42")]


def test_notices_have_no_feedback_and_retrieval_only_answers_are_marked() -> None:
    [(_, blocks)] = render.messages(Reply("Please shorten it.", ReplyMode.NOTICE))
    assert [block["type"] for block in blocks] == ["section"]
    [(text, _)] = render.messages(Reply("> quoted", ReplyMode.RETRIEVAL_ONLY, ref="7"))
    assert text.startswith("_From the knowledge base")
