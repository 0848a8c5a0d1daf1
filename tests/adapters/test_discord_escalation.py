"""Escalation in Discord end to end: the real discord.py over the fake gateway and REST (and the
real slack-bolt over the fake Slack where the human channel, or the user, is in Slack).

A question goes to the human channel as a post with buttons and a thread; agents claim by button
or by mention; the bot stays silent while a person helps and answers again after resolve. Across
platforms the agent's words are relayed to the user and the user's to the agent. A channel that
does not exist or refuses keeps the escalation, and a later sweep posts it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.escalation.store import Ticket
from bot.model import ConversationKey
from bot.server import create_app, platform_adapters
from tests.adapters.slack_world import send
from tests.conftest import LiveServer, make_settings, running_server, wait_for, write_config
from tests.fakes.discord_server import ALICE_ID, BOB_ID, BOT_ROLE_ID, FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack

AGENTS = "1190000000000000500"  # the Discord escalation channel
SLACK_AGENTS = "C0AGENTS"
GRACE = "1003"  # a Discord agent
VIEW_CHANNEL = str(1 << 10)
SEND = "POST /channels/{channel_id}/messages"
# An empty knowledge base would escalate every answer ("nothing found"): not here.
ESCALATION = "escalation:\n  triggers: {nothing_found: false}\n"
EDIT_ORIGINAL = "PATCH /webhooks/{application_id}/{interaction_token}/messages/{message_id}"


def app(hub: Any) -> Any:
    return create_app(hub, services=False, adapters=platform_adapters(
        hub, discord_update_interval=0.05, slack_update_interval=0.05,
        slack_native_streaming=False))


def add_agents_channel(fake: FakeDiscord, channel_id: str = AGENTS) -> None:
    """#support-agents: only Grace (and the bot) can see it."""
    fake.add_channel("support-agents", channel_id=channel_id, permission_overwrites=[
        {"id": fake.guild_id, "type": 0, "deny": VIEW_CHANNEL},
        {"id": GRACE, "type": 1, "allow": VIEW_CHANNEL},
        {"id": BOT_ROLE_ID, "type": 0, "allow": VIEW_CHANNEL}])


@pytest.fixture(autouse=True)
def grace(fake_discord: FakeDiscord) -> None:
    fake_discord.add_user(GRACE, "grace", "Grace")


@contextmanager
def serving(tmp_path: Path, fake_openai: FakeOpenAI, fake_discord: FakeDiscord, *,
            config: str = ESCALATION + "  sla_minutes: 30\n",
            **settings: Any) -> Iterator[LiveServer]:
    values: dict[str, Any] = {"discord_escalation_channel": AGENTS, **settings}
    with running_server(make_settings(
            tmp_path, fake_openai, discord_bot_token=fake_discord.bot_token,
            discord_api_url=fake_discord.api_url, config_file=write_config(tmp_path, config),
            **values), app) as live:
        wait_for(lambda: fake_discord.events_named("GUILD_CREATE"), timeout=15)
        yield live


def bot_texts(fake: FakeDiscord, channel_id: str) -> list[str]:
    return [m["content"] for m in fake.messages(channel_id, author_id=fake.bot_user_id)]


def said(fake: FakeDiscord, channel_id: str, *pieces: str) -> str:
    """Wait for the bot's message in the channel that contains every piece."""
    return str(wait_for(lambda: next((t for t in bot_texts(fake, channel_id)
                                      if all(p in t for p in pieces)), None)))


def escalation_post(fake: FakeDiscord, server: LiveServer,
                    channel_id: str = AGENTS) -> dict[str, Any]:
    """The escalation's post, once the desk has stored it as posted (an agent could not act
    on it sooner)."""
    post = wait_for(lambda: next((m for m in fake.messages(channel_id, author_id=fake.bot_user_id)
                                  if m["content"].startswith("**Escalation #")
                                  or " **Escalation #" in m["content"]), None))
    wait_for(lambda: any(t.destination_message == post["id"] for t in tickets(server)))
    return post


def buttons(message: dict[str, Any]) -> list[str]:
    return [c["custom_id"] for row in message.get("components") or [] for c in row["components"]]


def current(fake: FakeDiscord, message: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in fake.messages(message["channel_id"]) if m["id"] == message["id"])


def click(fake: FakeDiscord, custom_id: str, message: dict[str, Any], user: str) -> str:
    """Click a button as `user`; the private answer's text (sent at once, or after deferring)."""
    before = len(fake.interaction_responses)
    payload = fake.interaction_button(custom_id, message_id=message["id"],
                                      channel_id=message["channel_id"], user_id=user)
    fake.dispatch("INTERACTION_CREATE", payload)
    response = wait_for(lambda: fake.interaction_responses[before:])[0]
    assert response["data"]["flags"] & 64  # ephemeral: only the clicker sees it
    if response["type"] == 5:  # deferred ("thinking…"), then the answer edited in
        edit = wait_for(lambda: [c for c in fake.calls_to(EDIT_ORIGINAL)
                                 if payload["token"] in c.path])[0]
        return str(edit.json["content"])
    return str(response["data"]["content"])


def tickets(server: LiveServer) -> list[Ticket]:
    desk = server.hub.engine.desk
    assert desk is not None
    return server.run(desk.store.tickets(states=("open", "claimed", "resolved")))  # type: ignore[no-any-return]


def stored_texts(server: LiveServer, key: ConversationKey) -> list[str]:
    async def texts() -> list[str]:
        conversation = await server.hub.store.find(key)
        if conversation is None:
            return []
        return [m.text for m in await server.hub.store.messages(conversation.id)]

    return server.run(texts())  # type: ignore[no-any-return]


def thread_key(fake: FakeDiscord, thread: str) -> ConversationKey:
    return ConversationKey("discord", fake.guild_id, fake.general_channel_id, thread)


# -- Discord to Discord -----------------------------------------------------------------------


def test_a_discord_agent_claims_the_bot_steps_aside_and_returns_after_resolve(
        tmp_path: Path, fake_openai: FakeOpenAI, fake_discord: FakeDiscord) -> None:
    add_agents_channel(fake_discord)
    with serving(tmp_path, fake_openai, fake_discord) as server:
        question = fake_discord.dispatch_message("I want to talk to a human please",
                                                 mentions_bot=True,
                                                 channel_id=fake_discord.general_channel_id)
        thread = question["id"]
        assert "30 minutes" in said(fake_discord, thread, "person from our support team")
        assert not fake_openai.chat_requests()  # went to people, not to the model

        post = escalation_post(fake_discord, server)
        [embed] = post["embeds"]
        assert embed["title"] == "Escalation #1: asked for a person"
        link = f"https://discord.com/channels/{fake_discord.guild_id}/{thread}"
        assert embed["url"] == link and link in str(embed["fields"])
        assert "Alice" in str(embed["fields"]) and "I want to talk to a human" in embed[
            "description"]
        assert buttons(post) == ["bothub:esc:claim:1", "bothub:esc:resolve:1",
                                 "bothub:esc:resolve_save:1"]
        [post_call] = [c for c in fake_discord.calls_to(SEND) if c.path.endswith(AGENTS +
                                                                                  "/messages")]
        assert post_call.json["allowed_mentions"] == {"parse": []}
        escalation_thread = wait_for(lambda: fake_discord.threads.get(post["id"]))
        assert escalation_thread["parent_id"] == AGENTS
        assert escalation_thread["name"] == "Escalation #1: asked for a person"

        # Bob cannot see the escalation channel: not an agent.
        assert "Only support agents" in click(fake_discord, "bothub:esc:claim:1", post, BOB_ID)
        assert "You've claimed escalation #1" in click(fake_discord, "bothub:esc:claim:1", post,
                                                       GRACE)
        said(fake_discord, thread, "Grace from our support team has joined")
        claimed = wait_for(lambda: (m := current(fake_discord, post))["embeds"][0]["fields"][2][
            "value"].startswith("🟢 Claimed by Grace") and m)
        assert buttons(claimed) == ["bothub:esc:resolve:1", "bothub:esc:resolve_save:1",
                                    "bothub:esc:release:1"]

        # While claimed, nobody in the user's thread gets an answer from the bot; what Grace
        # writes among the agents stays there.
        before = bot_texts(fake_discord, thread)
        fake_discord.dispatch_message("hello? my invoice is wrong", channel_id=thread)
        fake_discord.dispatch_message("Hi Alice, I'm looking at your invoice now.",
                                      channel_id=thread, author_id=GRACE)
        fake_discord.dispatch_message("taking this one", channel_id=post["id"], author_id=GRACE)
        wait_for(lambda: len(stored_texts(server, thread_key(fake_discord, thread))) >= 4)
        time.sleep(0.2)
        assert bot_texts(fake_discord, thread) == before
        assert bot_texts(fake_discord, post["id"]) == []
        assert not fake_openai.chat_requests()

        # Resolve by mentioning the bot in the escalation's thread: the bot is back.
        fake_discord.dispatch_message("resolve", mentions_bot=True, channel_id=post["id"],
                                      author_id=GRACE)
        said(fake_discord, post["id"], "Escalation #1 is resolved.")
        said(fake_discord, thread, "marked this conversation as resolved")
        wait_for(lambda: buttons(current(fake_discord, post)) == [])
        fake_discord.dispatch_message("what plans do you offer?", channel_id=thread)
        said(fake_discord, thread, "You said: what plans do you offer?")
        prompt = str(fake_openai.chat_requests()[-1]["messages"])
        assert "looking at your invoice" in prompt  # the agent's words are in the bot's memory


def test_the_talk_to_a_person_button_role_agents_and_the_on_call_ping(
        tmp_path: Path, fake_openai: FakeOpenAI, fake_discord: FakeDiscord,
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_discord.add_channel("support-agents", channel_id=AGENTS)  # everyone can see it
    role = fake_discord.add_role("Support", members=[GRACE])
    config = (ESCALATION + f"  sla_minutes: 0.001\n  agents: {{discord: ['{role['id']}']}}\n"
              f"  on_call: {{discord: '<@&{role['id']}>'}}\n")
    monkeypatch.setattr("adapters.discord.app.DEFER_AFTER", 0.0)  # every click is deferred
    with serving(tmp_path, fake_openai, fake_discord, config=config) as server:
        question = fake_discord.dispatch_message("how do I export my data?", mentions_bot=True,
                                                 channel_id=fake_discord.general_channel_id)
        thread = question["id"]
        said(fake_discord, thread, "You said: how do I export my data?")
        answer = wait_for(lambda: next((m for m in fake_discord.messages(thread)
                                        if any(b.startswith("bothub:handoff:")
                                               for b in buttons(m))), None))
        handoff = next(b for b in buttons(answer) if b.startswith("bothub:handoff:"))
        assert "a person from our support team will join" in click(fake_discord, handoff,
                                                                   answer, ALICE_ID)
        assert fake_discord.interaction_responses[0]["type"] == 5  # deferred: "thinking…"
        said(fake_discord, thread, "I've asked a person from our support team")
        post = escalation_post(fake_discord, server)
        assert "asked for a person" in post["embeds"][0]["title"]

        # Unclaimed past its SLA: the on-call role is pinged in the escalation's thread.
        desk = server.hub.engine.desk
        assert desk is not None
        time.sleep(0.1)
        server.run(desk.sweep())
        ping = wait_for(lambda: next((c for c in fake_discord.calls_to(SEND)
                                      if c.path.endswith(f"/{post['id']}/messages")), None))
        assert ping.json["content"].startswith(f"<@&{role['id']}> Escalation #1 is still")
        assert [str(r) for r in ping.json["allowed_mentions"]["roles"]] == [role["id"]]
        assert not ping.json["allowed_mentions"]["parse"]
        said(fake_discord, thread, "still finding someone")

        # Agents are the role's members: Bob is refused, Grace may claim.
        answers = [click(fake_discord, "bothub:esc:claim:1", post, user)
                   for user in (BOB_ID, GRACE)]
        assert "Only support agents" in answers[0] and "You've claimed" in answers[1]


# -- across platforms --------------------------------------------------------------------------


@pytest.fixture
def both(tmp_path: Path, fake_openai: FakeOpenAI, fake_discord: FakeDiscord,
         fake_slack: FakeSlack) -> dict[str, Any]:
    fake_slack.add_channel(SLACK_AGENTS, "support-agents")
    fake_slack.add_user("U0AGENT", "Grace Agent", "grace")
    fake_slack.set_members(SLACK_AGENTS, ["U0AGENT", fake_slack.bot_user_id])
    return {"slack_bot_token": fake_slack.bot_token,
            "slack_signing_secret": fake_slack.signing_secret,
            "slack_api_url": fake_slack.api_url}


def slack_thread(fake: FakeSlack, channel: str, ts: str) -> list[str]:
    return [m.get("text") or "" for m in fake.messages(channel, ts)]


def test_a_discord_question_escalated_to_slack_is_answered_by_a_person_there(
        tmp_path: Path, fake_openai: FakeOpenAI, fake_discord: FakeDiscord,
        fake_slack: FakeSlack, both: dict[str, Any]) -> None:
    config = ESCALATION + f"  rules: [{{platform: discord, to: 'slack:{SLACK_AGENTS}'}}]\n"
    with serving(tmp_path, fake_openai, fake_discord, config=config,
                 discord_escalation_channel=None, **both) as server:
        question = fake_discord.dispatch_message("can I talk to a human?", mentions_bot=True,
                                                 channel_id=fake_discord.general_channel_id)
        thread = question["id"]
        said(fake_discord, thread, "I've asked a person from our support team")
        post = wait_for(lambda: next((m for m in fake_slack.messages(SLACK_AGENTS)
                                      if "Escalation #1" in (m.get("text") or "")), None))
        assert f"https://discord.com/channels/{fake_discord.guild_id}/{thread}" in str(
            post["blocks"])
        wait_for(lambda: any(t.destination_message == post["ts"] for t in tickets(server)))

        # The Slack agent claims with the button; the Discord user is told.
        claim = fake_slack.block_action("bothub_escalation_claim", "1", user="U0AGENT",
                                        channel=SLACK_AGENTS, message_ts=post["ts"])
        assert send(server, fake_slack, claim).status_code == 200
        said(fake_discord, thread, "from our support team has joined")

        # What the agent writes in the Slack thread reaches the Discord thread, as a person's.
        reply = fake_slack.message_event("Hi! I'm checking your account now.",
                                         channel=SLACK_AGENTS, user="U0AGENT",
                                         thread_ts=post["ts"])
        send(server, fake_slack, fake_slack.event_envelope(reply))
        relayed = said(fake_discord, thread, "I'm checking your account now.")
        assert relayed.startswith("**") and "(support team):** Hi!" in relayed

        # The Discord user's follow-up reaches the Slack thread; the bot itself stays silent.
        fake_discord.dispatch_message("thanks, my order is 1234", channel_id=thread)
        wait_for(lambda: any("thanks, my order is 1234" in t and "Alice" in t
                             for t in slack_thread(fake_slack, SLACK_AGENTS, post["ts"])))
        time.sleep(0.2)
        assert not any(t.startswith("You said") for t in bot_texts(fake_discord, thread))
        assert not fake_openai.chat_requests()

        # Resolved from Slack by mention: the Discord user is told and the bot is back.
        resolve = fake_slack.message_event("resolve", mention=True, channel=SLACK_AGENTS,
                                           user="U0AGENT", thread_ts=post["ts"])
        send(server, fake_slack, fake_slack.event_envelope(resolve))
        said(fake_discord, thread, "marked this conversation as resolved")
        fake_discord.dispatch_message("what plans do you offer?", channel_id=thread)
        said(fake_discord, thread, "You said: what plans do you offer?")
        [ticket] = tickets(server)
        assert ticket.destination_platform == "slack" and ticket.state == "resolved"


def test_a_slack_question_escalated_to_discord_is_answered_from_the_discord_thread(
        tmp_path: Path, fake_openai: FakeOpenAI, fake_discord: FakeDiscord,
        fake_slack: FakeSlack, both: dict[str, Any]) -> None:
    add_agents_channel(fake_discord)
    config = ESCALATION + f"  rules: [{{platform: slack, to: 'discord:{AGENTS}'}}]\n"
    with serving(tmp_path, fake_openai, fake_discord, config=config, **both) as server:
        question = fake_slack.message_event("I want to talk to a human", mention=True)
        send(server, fake_slack, fake_slack.event_envelope(question))
        post = escalation_post(fake_discord, server)
        assert "fake-workspace.slack.com/archives/C0GENERAL" in str(post["embeds"])
        escalation = wait_for(lambda: fake_discord.threads.get(post["id"]))["id"]

        fake_discord.dispatch_message("claim", mentions_bot=True, channel_id=escalation,
                                      author_id=GRACE)
        said(fake_discord, escalation, "You've claimed escalation #1")
        wait_for(lambda: any("Grace from our support team has joined" in t
                             for t in slack_thread(fake_slack, "C0GENERAL", question["ts"])))

        fake_discord.dispatch_message("Hello from Discord, let me check.",
                                      channel_id=escalation, author_id=GRACE)
        wait_for(lambda: any("Grace (support team)" in t and "let me check" in t
                             for t in slack_thread(fake_slack, "C0GENERAL", question["ts"])))
        follow_up = fake_slack.message_event("it's order 1234", thread_ts=question["ts"])
        send(server, fake_slack, fake_slack.event_envelope(follow_up))
        said(fake_discord, escalation, "it's order 1234")
        # A non-agent's words in the escalation thread are not relayed.
        fake_discord.dispatch_message("psst, not an agent", channel_id=escalation,
                                      author_id=BOB_ID)

        fake_discord.dispatch_message("resolve", mentions_bot=True, channel_id=escalation,
                                      author_id=GRACE)
        wait_for(lambda: any("marked this conversation as resolved" in t
                             for t in slack_thread(fake_slack, "C0GENERAL", question["ts"])))
        assert not any("psst" in t for t in slack_thread(fake_slack, "C0GENERAL",
                                                          question["ts"]))
        assert not any(t.startswith("You said") for t in bot_texts(fake_discord, escalation))
        assert tickets(server)[0].state == "resolved"


# -- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["missing", "forbidden"])
def test_an_unreachable_escalation_channel_keeps_the_escalation_for_a_later_sweep(
        tmp_path: Path, fake_openai: FakeOpenAI, fake_discord: FakeDiscord,
        monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    if fault == "forbidden":
        add_agents_channel(fake_discord)
    with serving(tmp_path, fake_openai, fake_discord) as server:
        if fault == "forbidden":
            fake_discord.fail(SEND, 403, 50013, "Missing Permissions")  # the post, not the notice
        question = fake_discord.dispatch_message("I need a human", mentions_bot=True,
                                                 channel_id=fake_discord.general_channel_id)
        said(fake_discord, question["id"], "I've asked a person from our support team")
        [ticket] = tickets(server)
        assert not ticket.posted and ticket.state == "open"
        desk = server.hub.engine.desk
        assert desk is not None
        events = server.run(desk.store.events(ticket.id))
        failed = [e for e in events if e["action"] == "post_failed"]
        assert failed and ("403" if fault == "forbidden" else "404") in failed[0]["detail"][
            "error"]
        if fault == "forbidden":
            assert fake_discord.messages(AGENTS) == []

        if fault == "missing":
            add_agents_channel(fake_discord)
        monkeypatch.setattr("bot.escalation.desk.RETRY_POST_AFTER", timedelta(0))
        server.run(desk.sweep())
        post = escalation_post(fake_discord, server)
        assert post["embeds"][0]["title"] == "Escalation #1: asked for a person"
        [ticket] = tickets(server)
        assert ticket.posted and ticket.destination_message == post["id"]
        assert wait_for(lambda: fake_discord.threads.get(post["id"]))


def test_without_thread_permission_notes_reply_to_the_post_and_dm_users_are_told(
        tmp_path: Path, fake_openai: FakeOpenAI, fake_discord: FakeDiscord) -> None:
    add_agents_channel(fake_discord)
    with serving(tmp_path, fake_openai, fake_discord,
                 config=ESCALATION + "  sla_minutes: 0.001\n") as server:
        fake_discord.fail("POST /channels/{channel_id}/messages/{message_id}/threads", 403,
                          50013, "Missing Permissions")
        dm = fake_discord.open_dm("1001")
        fake_discord.dispatch_message("can I speak to a real person?", channel_id=dm["id"],
                                      guild=False)
        said(fake_discord, dm["id"], "I've asked a person from our support team")
        post = escalation_post(fake_discord, server)
        assert post["id"] not in fake_discord.threads
        assert "/@me/" in post["embeds"][0]["url"]

        desk = server.hub.engine.desk
        assert desk is not None
        time.sleep(0.1)
        server.run(desk.sweep())  # past the SLA: re-announced under the post, in the channel
        note = wait_for(lambda: next((m for m in fake_discord.messages(AGENTS)
                                      if "is still waiting" in m["content"]), None))
        assert note["message_reference"]["message_id"] == post["id"]
        said(fake_discord, dm["id"], "still finding someone")

        fake_discord.dispatch_message("claim 1", mentions_bot=True, channel_id=AGENTS,
                                      author_id=GRACE)
        said(fake_discord, AGENTS, "You've claimed escalation #1")
        said(fake_discord, dm["id"], "Grace from our support team has joined")
