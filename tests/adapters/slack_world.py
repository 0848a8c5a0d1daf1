"""What Slack tests share: settings and an app wired to the fake, signed sends, waiting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from bot.server import create_app, platform_adapters
from tests.conftest import LiveServer, make_settings, wait_for

__all__ = ["wait_for"]  # re-exported: the Slack tests import it from here
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack


def slack_settings(tmp_path: Path, fake_openai: FakeOpenAI, fake_slack: FakeSlack) -> Any:
    return make_settings(tmp_path, fake_openai, slack_bot_token=fake_slack.bot_token,
                         slack_signing_secret=fake_slack.signing_secret,
                         slack_api_url=fake_slack.api_url)


def slack_app(hub: Any) -> Any:
    """Streaming by edits (the path for workspaces without Slack's chat streaming)."""
    return create_app(hub, services=False, adapters=platform_adapters(
        hub, slack_update_interval=0.05, slack_native_streaming=False))


def slack_app_native(hub: Any) -> Any:
    """The product default: Slack's chat streaming where the workspace offers it."""
    return create_app(hub, services=False,
                      adapters=platform_adapters(hub, slack_update_interval=0.05))


def send(server: LiveServer, fake: FakeSlack, payload: dict[str, Any],
         **header_options: Any) -> httpx.Response:
    body, headers = fake.signed_request(payload, **header_options)
    return httpx.post(f"{server.url}/slack/events", content=body, headers=headers, timeout=10)


def answers(fake: FakeSlack, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    """The bot's finished answers in a thread: messages that carry the feedback buttons."""
    return [m for m in fake.messages(channel, thread_ts)
            if any(b.get("type") == "actions" for b in m.get("blocks") or [])]
