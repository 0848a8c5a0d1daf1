"""Escalation in Slack end to end: a question goes to the human channel, an agent claims it by
@-mention, the bot stays silent while a person helps, and answers again after resolve."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.adapters.slack_world import send, slack_app, slack_settings, wait_for
from tests.conftest import LiveServer, running_server, write_config
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack

AGENTS = "C0AGENTS"


@pytest.fixture
def server(tmp_path: Path, fake_openai: FakeOpenAI,
           fake_slack: FakeSlack) -> Iterator[LiveServer]:
    fake_slack.add_channel(AGENTS, "support-agents")
    fake_slack.add_user("U0AGENT", "Grace Agent", "grace")
    fake_slack.add_user("U0MALLORY", "Mallory", "mallory")
    fake_slack.set_members(AGENTS, ["U0AGENT", fake_slack.bot_user_id])
    config = write_config(tmp_path, "escalation:\n  sla_minutes: 30\n")
    settings = slack_settings(tmp_path, fake_openai, fake_slack).model_copy(
        update={"slack_escalation_channel": AGENTS, "config_file": config})
    with running_server(settings, slack_app) as live:
        yield live


def bot_texts(fake: FakeSlack, channel: str, thread_ts: str) -> list[str]:
    return [m.get("text") or "" for m in fake.messages(channel, thread_ts)
            if m.get("user") == fake.bot_user_id or m.get("bot_id")]


def escalation_posts(fake: FakeSlack) -> list[dict[str, Any]]:
    return [m for m in fake.messages(AGENTS) if "Escalation #" in (m.get("text") or "")
            and m.get("thread_ts", m["ts"]) == m["ts"]]


def buttons(message: dict[str, Any]) -> dict[str, str]:
    return {element["action_id"]: element["value"] for block in message.get("blocks") or []
            if block.get("type") == "actions" for element in block["elements"]}


def test_claim_by_mention_silences_the_bot_until_resolved(
        server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    question = fake_slack.message_event("I want to talk to a human please", mention=True)
    send(server, fake_slack, fake_slack.event_envelope(question))
    thread = question["ts"]
    notice = wait_for(lambda: [t for t in bot_texts(fake_slack, "C0GENERAL", thread)
                               if "person from our support team" in t])
    assert "30 minutes" in notice[0]
    assert not fake_openai.chat_requests()  # went to people, not to the model

    [post] = wait_for(lambda: escalation_posts(fake_slack))
    assert "asked for a person" in post["text"]
    assert set(buttons(post)) == {"bothub_escalation_claim", "bothub_escalation_resolve",
                                  "bothub_escalation_resolve_save"}
    blocks_text = str(post["blocks"])
    assert "alice" in blocks_text.lower() and "I want to talk to a human please" in blocks_text
    assert "fake-workspace.slack.com/archives/C0GENERAL" in blocks_text  # link to the thread

    # A non-agent cannot claim.
    number = buttons(post)["bothub_escalation_claim"]
    click = fake_slack.block_action("bothub_escalation_claim", number, user="U0MALLORY",
                                    channel=AGENTS, message_ts=post["ts"])
    assert send(server, fake_slack, click).status_code == 200
    refusal = wait_for(lambda: fake_slack.ephemerals_for("U0MALLORY"))
    assert "Only support agents" in refusal[0]["text"]

    # The agent claims by @-mentioning the bot in the escalation's thread.
    claim = fake_slack.message_event("claim", mention=True, channel=AGENTS, user="U0AGENT",
                                     thread_ts=post["ts"])
    send(server, fake_slack, fake_slack.event_envelope(claim))
    wait_for(lambda: any("You've claimed escalation" in t
                         for t in bot_texts(fake_slack, AGENTS, post["ts"])))
    wait_for(lambda: any("grace" in t.lower() and "has joined" in t
                         for t in bot_texts(fake_slack, "C0GENERAL", thread)))
    updated = wait_for(lambda: next((m for m in escalation_posts(fake_slack)
                                     if "claimed by grace" in str(m["blocks"]).lower()), None))
    assert "bothub_escalation_claim" not in buttons(updated)
    assert "bothub_escalation_release" in buttons(updated)

    # While claimed: the user's follow-up and the agent's answer are not answered by the bot.
    before = len(bot_texts(fake_slack, "C0GENERAL", thread))
    for user, text in [("U0ALICE", "hello? my invoice is wrong"),
                       ("U0AGENT", "Hi Alice, I'm looking at your invoice now.")]:
        follow_up = fake_slack.message_event(text, user=user, thread_ts=thread)
        send(server, fake_slack, fake_slack.event_envelope(follow_up))
    wait_for(lambda: len(_stored(server)) >= 4)
    assert len(bot_texts(fake_slack, "C0GENERAL", thread)) == before
    assert not fake_openai.chat_requests()

    # Resolve with the button: the bot is back.
    resolve = fake_slack.block_action("bothub_escalation_resolve", number, user="U0AGENT",
                                      channel=AGENTS, message_ts=post["ts"])
    send(server, fake_slack, resolve)
    wait_for(lambda: any("resolved" in t.lower() for t in bot_texts(fake_slack, "C0GENERAL",
                                                                     thread)))
    assert "is resolved" in wait_for(lambda: fake_slack.ephemerals_for("U0AGENT"))[0]["text"]
    again = fake_slack.message_event("what plans do you offer?", thread_ts=thread)
    send(server, fake_slack, fake_slack.event_envelope(again))
    wait_for(lambda: any(t == "You said: what plans do you offer?"
                         for t in bot_texts(fake_slack, "C0GENERAL", thread)))
    prompt = str(fake_openai.chat_requests()[-1]["messages"])
    assert "looking at your invoice" in prompt  # the agent's words are in the bot's memory


def _stored(server: LiveServer) -> list[str]:
    async def texts() -> list[str]:
        from sqlalchemy import select

        from bot.store.tables import StoredMessage

        async with server.hub.database.connect() as connection:
            return list((await connection.execute(select(StoredMessage.text))).scalars())

    return server.run(texts())  # type: ignore[no-any-return]


def test_claim_by_number_from_the_channel_and_the_race_of_two_agents(
        server: LiveServer, fake_slack: FakeSlack) -> None:
    fake_slack.set_members(AGENTS, ["U0AGENT", "U0BOB"])
    question = fake_slack.message_event("can I speak to a real person?", mention=True)
    send(server, fake_slack, fake_slack.event_envelope(question))
    [post] = wait_for(lambda: escalation_posts(fake_slack))
    number = buttons(post)["bothub_escalation_claim"]
    for user in ("U0AGENT", "U0BOB"):
        claim = fake_slack.message_event(f"claim {number}", mention=True, channel=AGENTS,
                                         user=user)
        send(server, fake_slack, fake_slack.event_envelope(claim))
    def replies() -> list[str]:
        return [m.get("text") or "" for m in fake_slack.messages(AGENTS)
                if (m.get("text") or "").startswith(("You've claimed", "Escalation #"))
                and "Escalation #" + number + ":" not in (m.get("text") or "")]

    wait_for(lambda: len(replies()) >= 2)
    assert sum(r.startswith("You've claimed") for r in replies()) == 1
    assert sum("already claimed" in r for r in replies()) == 1

    unknown = fake_slack.message_event("resolve 4242", mention=True, channel=AGENTS,
                                       user="U0AGENT")
    send(server, fake_slack, fake_slack.event_envelope(unknown))
    wait_for(lambda: any("no escalation #4242" in (m.get("text") or "")
                         for m in fake_slack.messages(AGENTS)))


def test_an_unclaimed_escalation_is_reannounced_to_the_on_call_group(
        tmp_path: Path, fake_openai: FakeOpenAI, fake_slack: FakeSlack) -> None:
    fake_slack.add_channel(AGENTS, "support-agents")
    config = write_config(tmp_path, 'escalation:\n  sla_minutes: 5\n'
                                    '  on_call: {slack: "<!subteam^S0ONCALL>"}\n')
    settings = slack_settings(tmp_path, fake_openai, fake_slack).model_copy(
        update={"slack_escalation_channel": AGENTS, "config_file": config})
    with running_server(settings, slack_app) as live:
        question = fake_slack.message_event("put me through to an agent", mention=True)
        send(live, fake_slack, fake_slack.event_envelope(question))
        [post] = wait_for(lambda: escalation_posts(fake_slack))
        desk = live.hub.engine.desk
        assert desk is not None
        wait_for(lambda: live.run(desk.store.tickets())[0].posted)  # stored after the post
        live.run(desk.sweep())
        assert bot_texts(fake_slack, AGENTS, post["ts"]) == [post["text"]]  # not due yet

        async def six_minutes_pass() -> None:
            from sqlalchemy import update

            from bot.store.tables import Escalation

            [ticket] = await desk.store.tickets()
            async with live.hub.database.begin() as connection:
                await connection.execute(update(Escalation).values(
                    announced_at=ticket.created_at - timedelta(minutes=6)))

        live.run(six_minutes_pass())
        live.run(desk.sweep())
        reannounced = wait_for(lambda: [t for t in bot_texts(fake_slack, AGENTS, post["ts"])
                                        if t.startswith("<!subteam^S0ONCALL>")])
        assert "still waiting" in reannounced[0]
        wait_for(lambda: any("still finding someone" in t
                             for t in bot_texts(fake_slack, "C0GENERAL", question["ts"])))
        live.run(desk.sweep())  # announced again just now: nothing more
        assert len([t for t in bot_texts(fake_slack, AGENTS, post["ts"])
                    if t.startswith("<!subteam")]) == 1
