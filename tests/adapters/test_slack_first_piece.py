"""The first piece of an answer is shown as soon as it exists, not an edit interval later.

With a 5-second edit interval and an answer that streams for under a second, the old throttle
(counted from the placeholder) showed nothing until the final answer; now the first piece goes
out at once and the rest waits for the final write."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.server import create_app, platform_adapters
from tests.adapters.slack_world import answers, send, slack_settings, wait_for
from tests.conftest import LiveServer, running_server
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.fakes.slack_server import FakeSlack

INTERVAL = 5.0


@pytest.fixture(params=[False, True], ids=["edits", "native"])
def server(request: pytest.FixtureRequest, tmp_path: Path, fake_openai: FakeOpenAI,
           fake_slack: FakeSlack) -> Iterator[LiveServer]:
    native: bool = request.param

    def build(hub: Any) -> Any:
        return create_app(hub, services=False, adapters=platform_adapters(
            hub, slack_update_interval=INTERVAL, slack_native_streaming=native))

    with running_server(slack_settings(tmp_path, fake_openai, fake_slack), build) as live:
        yield live


def test_the_first_piece_is_shown_at_once_then_edits_wait(
        server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="First words, then the rest of a short answer.",
                                    chunk_delay=0.05))
    question = fake_slack.message_event("How do I reset my password?", mention=True)
    send(server, fake_slack, fake_slack.event_envelope(question))
    wait_for(lambda: answers(fake_slack, "C0GENERAL", question["ts"]))

    writes = [call for call in fake_slack.calls
              if call.method in {"chat.update", "chat.appendStream", "chat.stopStream"}]
    partial = [call for call in writes
               if call.method == "chat.appendStream" or
               (call.method == "chat.update" and not call.args.get("blocks"))]
    assert partial, [call.method for call in writes]  # a piece was shown before the end
    first = partial[0]
    shown = str(first.args.get("text") or first.args.get("markdown_text") or "")
    assert shown and "First" in shown and "short answer." not in shown
    # Within the interval, nothing else was written before the final answer.
    assert len(partial) == 1, [(c.method, c.args.get("text")) for c in partial]
    final = writes[-1]
    assert final.at - first.at < INTERVAL
