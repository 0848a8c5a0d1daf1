"""`Reply` -> what Slack shows: mrkdwn text, split at Slack's limits, sources and feedback.

Slack's mrkdwn is not Markdown: bold is `*x*`, italics `_x_`, links `<url|text>`, no headings,
and `<`, `>` and `&` must be escaped or they become mentions and links.
"""

from __future__ import annotations

import re
from typing import Any

from adapters.text import split_text
from bot.model import Reply, ReplyMode

SECTION_LIMIT = 3000  # characters in one section block's text
FEEDBACK_UP = "bothub_feedback_up"
FEEDBACK_DOWN = "bothub_feedback_down"
HANDOFF = "bothub_handoff"

_FENCE = re.compile(r"```.*?(?:```|$)", re.S)
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+|mailto:[^)\s]+)\)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_ITALIC = re.compile(r"(?<![*\w])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![*\w])")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_BULLET = re.compile(r"^(\s*)[-*+]\s+", re.M)
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """Convert the model's Markdown; code blocks pass through untouched (but escaped)."""
    pieces: list[str] = []
    position = 0
    for fence in _FENCE.finditer(markdown):
        pieces.append(_inline(markdown[position:fence.start()]))
        code = fence.group(0)
        first_line_end = code.find("\n")
        if code.startswith("```") and first_line_end > 3:  # drop the language hint
            code = "```" + code[first_line_end:]
        pieces.append(escape(code))
        position = fence.end()
    pieces.append(_inline(markdown[position:]))
    return "".join(pieces)


def _inline(text: str) -> str:
    links: list[str] = []

    def keep_link(match: re.Match[str]) -> str:
        links.append(f"<{match.group(2)}|{escape(match.group(1)).replace('|', '¦')}>")
        return f"\x00{len(links) - 1}\x00"

    text = _LINK.sub(keep_link, text)
    text = escape(text)
    text = _HEADING.sub(lambda m: f"\x01{m.group(1)}\x01", text)
    text = _BOLD.sub(lambda m: f"\x01{m.group(1) or m.group(2)}\x01", text)
    text = _ITALIC.sub(lambda m: f"_{m.group(1)}_", text)
    text = _STRIKE.sub(lambda m: f"~{m.group(1)}~", text)
    text = _BULLET.sub(lambda m: f"{m.group(1)}• ", text)
    text = text.replace("\x01", "*")
    return re.sub(r"\x00(\d+)\x00", lambda m: links[int(m.group(1))], text)


def split(text: str, limit: int = SECTION_LIMIT) -> list[str]:
    return split_text(text, limit)


def sources_block(reply: Reply) -> dict[str, Any] | None:
    if not reply.citations:
        return None
    parts = []
    for citation in reply.citations:
        title = escape(citation.title).replace("|", "¦")
        parts.append(f"<{citation.url}|[{citation.index}] {title}>" if citation.url
                     else f"[{citation.index}] {title}")
    return {"type": "context", "elements": [
        {"type": "mrkdwn", "text": "*Sources:* " + " · ".join(parts)}]}


def feedback_block(reply: Reply) -> dict[str, Any] | None:
    if not reply.ref:
        return None
    return {"type": "actions", "block_id": "bothub_feedback", "elements": [
        {"type": "button", "action_id": FEEDBACK_UP, "value": reply.ref,
         "text": {"type": "plain_text", "text": "👍 Helpful", "emoji": True}},
        {"type": "button", "action_id": FEEDBACK_DOWN, "value": reply.ref,
         "text": {"type": "plain_text", "text": "👎 Not helpful", "emoji": True}},
    ] + ([{"type": "button", "action_id": HANDOFF, "value": reply.ref,
           "text": {"type": "plain_text", "text": "🙋 Talk to a person", "emoji": True}}]
         if reply.handoff else [])}


def messages(reply: Reply) -> list[tuple[str, list[dict[str, Any]]]]:
    """One or more (fallback text, blocks) messages; sources and feedback on the last."""
    text = to_mrkdwn(reply.text)
    if reply.mode is ReplyMode.RETRIEVAL_ONLY:
        text = "_From the knowledge base (no language model answered):_\n" + text
    parts = split(text)
    rendered = []
    for number, part in enumerate(parts, start=1):
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": part or " "}}]
        if number == len(parts):
            blocks.extend(block for block in (sources_block(reply), feedback_block(reply))
                          if block is not None)
        rendered.append((part[:3000] or " ", blocks))
    return rendered
