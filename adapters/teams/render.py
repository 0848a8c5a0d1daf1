"""`Reply` -> Teams message activities: Markdown text, sources, an Adaptive Card for feedback.

Teams renders a subset of Markdown in messages sent with `textFormat: markdown` (bold, italics,
lists, links, code), which is what the model writes. A message holds about 28 KB; long answers
are split well below that. Answers from the model carry Teams' "AI generated" label.
"""

from __future__ import annotations

from typing import Any

from adapters.text import sources_line, split_text
from bot.model import Reply, ReplyMode

MESSAGE_LIMIT = 12_000  # characters; Teams refuses activities over ~28 KB, cards included
FEEDBACK_VERB = "bothub.feedback"
HANDOFF_VERB = "bothub.handoff"
HANDOFF_TITLE = "🙋 Talk to a person"
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
AI_GENERATED = {"type": "https://schema.org/Message", "@type": "Message",
                "@context": "https://schema.org", "@id": "",
                "additionalType": ["AIGeneratedContent"]}


def text_parts(reply: Reply) -> list[str]:
    text = reply.text
    if reply.mode is ReplyMode.RETRIEVAL_ONLY:
        text = "*From the knowledge base (no language model answered):*\n\n" + text
    sources = sources_line(reply)
    if sources:
        text = f"{text}\n\n{sources}"
    return split_text(text, MESSAGE_LIMIT)


def feedback_card(ref: str, *, handoff: bool = False) -> dict[str, Any]:
    """👍/👎 (and, where the conversation can go to people, "talk to a person") as Universal
    Actions (`Action.Execute`): Teams sends an `adaptiveCard/action` invoke, answered at once;
    the ref survives restarts because the card carries it."""
    def action(title: str, vote: str) -> dict[str, Any]:
        return {"type": "Action.Execute", "title": title, "verb": FEEDBACK_VERB,
                "data": {"ref": ref, "vote": vote}}

    actions = [action("👍 Helpful", "up"), action("👎 Not helpful", "down")]
    if handoff:
        actions.append({"type": "Action.Execute", "title": HANDOFF_TITLE, "verb": HANDOFF_VERB,
                        "data": {"ref": ref}})
    return {"contentType": ADAPTIVE_CARD, "content": {
        "type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "body": [{"type": "TextBlock", "text": "Was this answer helpful?", "size": "Small",
                  "isSubtle": True, "wrap": True}],
        "actions": actions}}


def messages(reply: Reply) -> list[dict[str, Any]]:
    """The activities for a complete reply; the last one carries the feedback card."""
    parts = text_parts(reply)
    activities: list[dict[str, Any]] = []
    for number, part in enumerate(parts, start=1):
        activity: dict[str, Any] = {"type": "message", "text": part, "textFormat": "markdown"}
        if reply.mode is ReplyMode.MODEL:
            activity["entities"] = [dict(AI_GENERATED)]
        if number == len(parts) and reply.ref:
            activity["attachments"] = [feedback_card(reply.ref, handoff=reply.handoff)]
        activities.append(activity)
    return activities


def plain(text: str) -> dict[str, Any]:
    return {"type": "message", "text": text, "textFormat": "markdown"}


def notice_card(text: str) -> dict[str, Any]:
    """The card that replaces a clicked card for the person who clicked."""
    return {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": "1.4", "body": [{"type": "TextBlock", "text": text, "wrap": True}]}
