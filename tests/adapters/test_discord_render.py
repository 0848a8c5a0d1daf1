"""Discord rendering: 2000-character messages, masked-link sources, thread names."""

from __future__ import annotations

from adapters.discord import render
from adapters.discord.app import intents, thread_name
from bot.model import Citation, Reply, ReplyMode


def test_long_answers_continue_in_further_messages_within_the_limit() -> None:
    reply = Reply("\n\n".join(f"Step {n}: " + "do the thing " * 40 for n in range(12)))
    parts = render.messages(reply)
    assert len(parts) > 1 and all(len(part) <= 2000 for part in parts)


def test_sources_are_masked_links_without_previews() -> None:
    reply = Reply("See [1].", citations=(Citation(1, "Billing › Refunds [EU]",
                                                  "https://help.example/refunds"),
                                         Citation(2, "Internal notes", "")))
    [text] = render.messages(reply)
    assert text.endswith("**Sources:** [1] [Billing › Refunds (EU)](<https://help.example/"
                         "refunds>) · [2] Internal notes")


def test_retrieval_only_answers_are_marked() -> None:
    [text] = render.messages(Reply("> quoted", ReplyMode.RETRIEVAL_ONLY))
    assert text.startswith("*From the knowledge base")


def test_thread_names_fit_discord() -> None:
    assert thread_name("  how   do I\nreset? ") == "how do I reset?"
    assert len(thread_name("x " * 200)) == 90 and thread_name("") == "Question"


def test_only_the_message_content_privileged_intent_is_asked_for() -> None:
    wanted = intents()
    assert wanted.message_content and wanted.guild_messages and wanted.dm_messages
    assert not wanted.members and not wanted.presences
