"""The chat messages sent to the model for one answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.memory import History


def build_messages(system_prompt: str, history: History, user_text: str,
                   image_urls: Sequence[str] = ()) -> list[dict[str, Any]]:
    """System prompt, running summary, recent turns, then the question (with its images as
    `image_url` parts, which is how GPT-4o receives pictures)."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt}]
    if history.summary:
        messages.append({"role": "system",
                         "content": "Summary of the earlier conversation:\n" + history.summary})
    messages.extend({"role": turn.role, "content": turn.text} for turn in history.turns)
    if image_urls:
        parts: list[dict[str, Any]] = [{"type": "text", "text": user_text or
                                        "(The user sent only the image(s) below.)"}]
        parts.extend({"type": "image_url", "image_url": {"url": url, "detail": "auto"}}
                     for url in image_urls)
        messages.append({"role": "user", "content": parts})
    else:
        messages.append({"role": "user", "content": user_text})
    return messages
