"""Optional moderation: OpenAI's moderation endpoint as one more guardrail.

Off unless the YAML's `moderation.enabled` is true and OPENAI_API_KEY is set; off, it makes no
request at all. A check that cannot be made (the endpoint down, slow, refusing the key, or
answering garbage) lets the text through with a warning in the log and in the metrics: the
moderation endpoint is a second line behind the model's own safety and the escalation policy,
and is never a reason for the bot to stop answering.

Only text that has been through the secret redaction is sent (the engine moderates what it
stores and shows to the model), and nothing of the text is logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from openai import AsyncOpenAI

from bot import metrics
from bot.config import Behaviour, ModerationConfig, Settings

log = structlog.get_logger(__name__)

Direction = Literal["input", "output"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """`categories` are the API's names of what was flagged ("harassment", "self-harm/intent"),
    for logs and records, not for the user. `checked` is False when no check was made (off,
    nothing to check, or the endpoint failed and the text was let through)."""

    flagged: bool = False
    categories: list[str] = field(default_factory=list)
    checked: bool = False


NOT_CHECKED = Verdict()


class Moderator:
    def __init__(self, client: AsyncOpenAI | None, config: ModerationConfig) -> None:
        self._client = client
        self._config = config

    @classmethod
    def from_settings(cls, settings: Settings, behaviour: Behaviour) -> Moderator:
        """A moderator that checks when enabled and a key is set, else one that never calls."""
        config = behaviour.moderation
        if not config.enabled or settings.openai_api_key is None:
            return cls(None, config)
        # One quick retry (a 5xx, a dropped connection), all within `timeout_seconds`.
        client = AsyncOpenAI(api_key=settings.openai_api_key.get_secret_value(),
                             base_url=settings.openai_base_url or None,
                             timeout=config.timeout_seconds, max_retries=1)
        return cls(client, config)

    @property
    def enabled(self) -> bool:
        return self._client is not None

    @property
    def checks_output(self) -> bool:
        return self._client is not None and self._config.check_output

    async def check_input(self, text: str, images: Sequence[str] = ()) -> Verdict:
        """The user's (redacted) message, with its images' URLs (data: URLs work)."""
        return await self._check("input", text, images)

    async def check_output(self, text: str) -> Verdict:
        """An answer, when `check_output` is on; otherwise no request."""
        if not self._config.check_output:
            return NOT_CHECKED
        return await self._check("output", text, ())

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def _check(self, direction: Direction, text: str, images: Sequence[str]) -> Verdict:
        if self._client is None or not (text.strip() or images):
            return NOT_CHECKED
        payload: Any = text
        if images:
            payload = [{"type": "text", "text": text}] if text.strip() else []
            payload += [{"type": "image_url", "image_url": {"url": url}} for url in images]
        try:
            async with asyncio.timeout(self._config.timeout_seconds):
                response = await self._client.moderations.create(model=self._config.model,
                                                                 input=payload)
            results = response.results
            if not results:
                raise ValueError("the response has no results")
            flagged = any(result.flagged for result in results)
            categories = sorted({name for result in results
                                 for name, hit in result.categories.to_dict().items() if hit})
        except Exception as exc:
            metrics.MODERATION_CHECKS.add(1, {"direction": direction, "result": "failed"})
            detail = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.warning("moderation.failed_open", direction=direction, detail=detail)
            return NOT_CHECKED
        metrics.MODERATION_CHECKS.add(
            1, {"direction": direction, "result": "flagged" if flagged else "clean"})
        if flagged:
            log.info("moderation.flagged", direction=direction, categories=categories)
        return Verdict(flagged=flagged, categories=categories, checked=True)
