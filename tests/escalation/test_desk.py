"""The escalation desk with the real engine, model SDK and database; the platform is a
recording outlet (the platforms' own tests drive their fakes end to end)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from adapters.base import DestinationUnavailable
from bot.app import Hub
from bot.engine import Outcome
from bot.escalation import desk as desk_module
from bot.escalation.store import Actor, State, Ticket
from bot.model import Author, ConversationKey, Message, Reply, ReplyMode
from tests.conftest import make_settings, write_config
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply, ScriptedToolCall
from tests.fakes.recording_channel import RecordingChannel


@dataclass
class RecordingOutlet:
    """Everything the desk asked the platform to do."""

    name: str = "slack"
    agents: set[str] = field(default_factory=lambda: {"U0AGENT"})
    told: list[tuple[ConversationKey, Reply]] = field(default_factory=list)
    posted: list[tuple[str, int, str]] = field(default_factory=list)  # destination, id, mention
    updated: list[tuple[int, State]] = field(default_factory=list)
    in_ticket: list[tuple[int, str]] = field(default_factory=list)
    refuse_posts: bool = False
    post_gone: bool = False

    async def tell(self, key: ConversationKey, reply: Reply) -> None:
        self.told.append((key, reply))

    async def post_ticket(self, destination: str, ticket: Ticket, *, link: str,
                          mention: str = "") -> tuple[str, str]:
        if self.refuse_posts:
            raise DestinationUnavailable("channel_not_found")
        self.posted.append((destination, ticket.id, mention))
        message = f"17000000{len(self.posted):02d}.000100"
        return message, message

    async def update_ticket(self, ticket: Ticket, *, link: str) -> None:
        if self.post_gone:
            self.post_gone = False
            raise DestinationUnavailable("message_not_found")
        self.updated.append((ticket.id, ticket.state))

    async def post_in_ticket(self, ticket: Ticket, text: str, *, mention: str = "") -> None:
        self.in_ticket.append((ticket.id, f"{mention} {text}".strip()))

    async def is_agent(self, user_id: str, destination: str, agents: Sequence[str]) -> bool:
        return user_id in (set(agents) or self.agents)

    async def link(self, key: ConversationKey) -> str:
        return f"https://example.slack.com/archives/{key.channel}/p{key.thread}"


CONFIG = """\
escalation:
  triggers: {nothing_found: false}   # the test hub's knowledge base is empty
  sla_minutes: 30
  on_call: {slack: "<!subteam^S0ONCALL>"}
  blocked_output: ["re:internal-only-\\\\w+"]
  rules:
    - channel: C0DOCS
      triggers: {nothing_found: true}
    - channel: C0QUIET
      triggers: {user_request: false, policy_topics: false, nothing_found: false,
                 model_uncertain: false, thumbs_down: 0}
"""


@pytest.fixture
async def world(tmp_path: Path, fake_openai: FakeOpenAI
                ) -> AsyncIterator[tuple[Hub, RecordingOutlet]]:
    settings = make_settings(tmp_path, fake_openai, slack_escalation_channel="C0AGENTS",
                             config_file=write_config(tmp_path, CONFIG))
    hub = await Hub.create(settings)
    outlet = RecordingOutlet()
    assert hub.engine.desk is not None
    hub.engine.desk.register(outlet)
    yield hub, outlet
    await hub.close()


def ask(text: str, *, channel: str = "C0GENERAL", thread: str = "1700000000.000100",
        user: str = "U0ALICE") -> Message:
    return Message(key=ConversationKey("slack", "T1", channel, thread), id=uuid.uuid4().hex,
                   author=Author(user, "Alice"), text=text, mentioned=True)


async def test_asking_for_a_person_goes_to_people_without_the_model(
        world: tuple[Hub, RecordingOutlet], fake_openai: FakeOpenAI) -> None:
    hub, outlet = world
    channel = RecordingChannel()
    result = await hub.engine.handle(ask("Can I talk to a human, please?"), channel)
    assert result.outcome is Outcome.ESCALATED
    [notice] = channel.shown
    assert "person from our support team" in notice.text and "30 minutes" in notice.text
    assert not fake_openai.chat_requests()
    [(destination, number, mention)] = outlet.posted
    assert destination == "C0AGENTS" and mention == ""
    ticket = await hub.engine.desk.store.get(number)  # type: ignore[union-attr]
    assert ticket is not None and ticket.reason == "user_request" and ticket.posted
    assert "Alice: Can I talk to a human, please?" in ticket.summary


async def test_a_policy_topic_gets_its_canned_reply(world: tuple[Hub, RecordingOutlet],
                                                    fake_openai: FakeOpenAI) -> None:
    hub, outlet = world
    channel = RecordingChannel()
    result = await hub.engine.handle(ask("I was charged twice this month"), channel)
    assert result.outcome is Outcome.ESCALATED
    assert "billing" in channel.shown[0].text.lower()
    assert not fake_openai.chat_requests()
    assert outlet.posted


async def test_triggers_can_be_turned_off_per_channel(world: tuple[Hub, RecordingOutlet],
                                                      fake_openai: FakeOpenAI) -> None:
    hub, outlet = world
    result = await hub.engine.handle(ask("talk to a human", channel="C0QUIET"),
                                     RecordingChannel())
    assert result.outcome is Outcome.ANSWERED and not outlet.posted
    tools = fake_openai.chat_requests()[-1].get("tools")
    assert not tools  # the hand-off tool is not offered where it may not be used


async def test_the_model_hands_off_through_its_tool(world: tuple[Hub, RecordingOutlet],
                                                    fake_openai: FakeOpenAI) -> None:
    hub, outlet = world
    fake_openai.queue(ScriptedReply(text="I am not sure about enterprise contracts.",
                                    tool_calls=[ScriptedToolCall(
                                        "hand_off_to_human",
                                        {"reason": "contract terms are not documented"})]))
    channel = RecordingChannel()
    result = await hub.engine.handle(ask("what are the enterprise contract terms?"), channel)
    assert result.outcome is Outcome.ANSWERED
    request = fake_openai.chat_requests()[-1]
    assert request["tools"][0]["function"]["name"] == "hand_off_to_human"
    answer, notice = channel.shown[-1], channel.posts[-1]
    assert answer.text == "I am not sure about enterprise contracts."
    assert "person from our support team" in notice.text
    ticket = await hub.engine.desk.store.get(outlet.posted[0][1])  # type: ignore[union-attr]
    assert ticket is not None and ticket.reason == "model_uncertain"
    assert ticket.detail == "contract terms are not documented"


async def test_nothing_found_in_the_knowledge_base_escalates(
        world: tuple[Hub, RecordingOutlet]) -> None:
    hub, outlet = world
    channel = RecordingChannel()
    await hub.engine.handle(ask("how do I configure the flux capacitor?", channel="C0DOCS"),
                            channel)
    assert channel.streams[0].final is not None  # answered first
    assert "person from our support team" in channel.posts[-1].text
    ticket = await hub.engine.desk.store.get(outlet.posted[0][1])  # type: ignore[union-attr]
    assert ticket is not None and ticket.reason == "nothing_found"


async def test_a_blocked_answer_is_withheld_and_escalated(
        world: tuple[Hub, RecordingOutlet], fake_openai: FakeOpenAI) -> None:
    hub, outlet = world
    fake_openai.queue(ScriptedReply(text="Use the internal-only-endpoint for that."))
    channel = RecordingChannel()
    await hub.engine.handle(ask("which endpoint?"), channel)
    final = channel.streams[0].final
    assert final is not None and "internal-only" not in final.text
    assert final.mode is ReplyMode.NOTICE
    ticket = await hub.engine.desk.store.get(outlet.posted[0][1])  # type: ignore[union-attr]
    assert ticket is not None and ticket.reason == "guardrail"


async def test_repeated_thumbs_down_escalates(world: tuple[Hub, RecordingOutlet]) -> None:
    hub, outlet = world
    refs = []
    for text in ("first question", "second question"):
        channel = RecordingChannel()
        await hub.engine.handle(ask(text), channel)
        refs.append(channel.shown[-1].ref)
        assert channel.shown[-1].handoff  # the "talk to a person" button is offered
    assert await hub.engine.record_feedback(refs[0], "U0ALICE", helpful=False)
    assert not outlet.posted
    assert await hub.engine.record_feedback(refs[1], "U0ALICE", helpful=False)
    assert outlet.posted
    assert "person from our support team" in outlet.told[-1][1].text


async def test_claimed_conversations_are_recorded_not_answered(
        world: tuple[Hub, RecordingOutlet], fake_openai: FakeOpenAI) -> None:
    hub, outlet = world
    desk = hub.engine.desk
    assert desk is not None
    await hub.engine.handle(ask("talk to a person"), RecordingChannel())
    number = outlet.posted[0][1]
    agent = Actor("U0AGENT", "Grace", "slack")
    assert "You've claimed" in await desk.act(number, "claim", agent)
    assert "has joined" in outlet.told[-1][1].text
    assert outlet.updated[-1] == (number, State.CLAIMED)
    channel = RecordingChannel()
    result = await hub.engine.handle(ask("are you there?"), channel)
    assert result.outcome is Outcome.HANDED_OFF and not channel.shown
    assert "already claimed by Grace" in await desk.act(number, "claim",
                                                        Actor("U0AGENT", "Eve", "slack"))
    assert "Only support agents" in await desk.act(number, "resolve",
                                                   Actor("U0MALLORY", "M", "slack"))
    assert "Only support agents" in await desk.act(number, "resolve",
                                                   Actor("U0AGENT", "Grace", "discord"))
    assert "resolved" in await desk.act(number, "resolve", agent)
    assert "I'm back" in outlet.told[-1][1].text
    result = await hub.engine.handle(ask("and now?"), RecordingChannel())
    assert result.outcome is Outcome.ANSWERED
    assert fake_openai.chat_requests()[-1]["messages"][-1]["content"] == "and now?"


async def test_commands_parse_and_explain(world: tuple[Hub, RecordingOutlet]) -> None:
    hub, outlet = world
    desk = hub.engine.desk
    assert desk is not None
    agent = Actor("U0AGENT", "Grace", "slack")
    def command(text: str, *, channel: str = "C0AGENTS", thread: str | None = None) -> Any:
        return desk.command(text, agent, channel=channel, thread=thread)

    assert await command("what is the weather?") is None
    assert await command("resolve", channel="C0GENERAL") is None  # a user's words elsewhere
    assert "Which escalation?" in (await command("claim") or "")
    assert "no escalation #77" in (await command("claim 77") or "")
    await hub.engine.handle(ask("human please"), RecordingChannel())
    number = outlet.posted[0][1]
    answer = await command("  CLAIM  ", thread="1700000001.000100")
    assert answer is not None and f"#{number}" in answer
    saved = await command(f"resolve #{number} save")
    assert saved is not None and "knowledge base" in saved
    entries = await hub.knowledge.catalog.entries("escalations")
    assert any("human please" in entry.body for entry in entries)


async def test_an_unreachable_human_channel_keeps_the_escalation_and_retries(
        world: tuple[Hub, RecordingOutlet], monkeypatch: pytest.MonkeyPatch) -> None:
    hub, outlet = world
    desk = hub.engine.desk
    assert desk is not None
    outlet.refuse_posts = True
    channel = RecordingChannel()
    result = await hub.engine.handle(ask("I need a real person"), channel)
    assert result.outcome is Outcome.ESCALATED and channel.shown  # never silence
    [ticket] = await desk.store.tickets()
    assert not ticket.posted
    assert [e["action"] for e in await desk.store.events(ticket.id)] == ["opened",
                                                                          "post_failed"]
    outlet.refuse_posts = False
    monkeypatch.setattr(desk_module, "RETRY_POST_AFTER", timedelta(0))
    await desk.sweep()
    [(_, number, _)] = outlet.posted
    assert number == ticket.id
    assert (await desk.store.get(ticket.id)).posted  # type: ignore[union-attr]


async def test_an_unclaimed_escalation_is_reannounced_after_its_sla_once(
        world: tuple[Hub, RecordingOutlet], tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    hub, outlet = world
    desk = hub.engine.desk
    assert desk is not None
    await hub.engine.handle(ask("human please"), RecordingChannel())
    [ticket] = await desk.store.tickets()
    await desk.sweep()
    assert not outlet.in_ticket  # not yet due
    # Time passes: the announcement is 31 minutes old. A second hub (a restart, or another
    # worker) sweeps at the same time: one re-announcement.
    async with hub.database.begin() as connection:
        from sqlalchemy import update

        from bot.store.tables import Escalation
        await connection.execute(update(Escalation).values(
            announced_at=ticket.created_at - timedelta(minutes=31)))
    other = await Hub.create(hub.settings)
    try:
        assert other.engine.desk is not None
        other_outlet = RecordingOutlet()
        other.engine.desk.register(other_outlet)
        import asyncio
        await asyncio.gather(desk.sweep(), other.engine.desk.sweep())
    finally:
        await other.close()
    reannouncements = outlet.in_ticket + other_outlet.in_ticket
    assert len(reannouncements) == 1
    assert reannouncements[0][1].startswith("<!subteam^S0ONCALL> Escalation #")
    told = [reply.text for _, reply in outlet.told + other_outlet.told]
    assert any("still finding someone" in text for text in told)
    refreshed = await desk.store.get(ticket.id)
    assert refreshed is not None and refreshed.announcements == 1


async def test_a_deleted_post_is_posted_again(world: tuple[Hub, RecordingOutlet]) -> None:
    hub, outlet = world
    desk = hub.engine.desk
    assert desk is not None
    await hub.engine.handle(ask("human please"), RecordingChannel())
    number = outlet.posted[0][1]
    outlet.post_gone = True
    await desk.act(number, "claim", Actor("U0AGENT", "Grace", "slack"))
    assert len(outlet.posted) == 2
    ticket = await desk.store.get(number)
    assert ticket is not None and ticket.destination_message == "1700000002.000100"


async def test_without_a_human_channel_nothing_is_promised(tmp_path: Path,
                                                           fake_openai: FakeOpenAI) -> None:
    hub = await Hub.create(make_settings(tmp_path, fake_openai))
    try:
        assert hub.engine.desk is not None
        hub.engine.desk.register(RecordingOutlet())
        channel = RecordingChannel()
        result = await hub.engine.handle(ask("talk to a human"), channel)
        assert result.outcome is Outcome.ANSWERED
        assert not channel.shown[-1].handoff
        assert "person from our support team" not in channel.shown[-1].text
    finally:
        await hub.close()


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_metrics_count_escalations_and_claims(world: tuple[Hub, RecordingOutlet]) -> None:
    hub, outlet = world
    desk = hub.engine.desk
    assert desk is not None
    opened = _sample("bothub_escalations_total", {"platform": "slack", "reason": "user_request"})
    claimed = _sample("bothub_escalation_transitions_total", {"action": "claim"})
    timed = _sample("bothub_escalation_time_to_claim_seconds_count")
    await hub.engine.handle(ask("human please"), RecordingChannel())
    await desk.act(outlet.posted[0][1], "claim", Actor("U0AGENT", "Grace", "slack"))
    assert _sample("bothub_escalations_total",
                   {"platform": "slack", "reason": "user_request"}) == opened + 1
    assert _sample("bothub_escalation_transitions_total", {"action": "claim"}) == claimed + 1
    assert _sample("bothub_escalation_time_to_claim_seconds_count") == timed + 1
    assert _sample("bothub_escalations_in_state", {"state": "claimed"}) == 1



async def test_serve_schedules_the_sweep(world: tuple[Hub, RecordingOutlet]) -> None:
    hub, _ = world
    await hub.start_services()
    assert hub._scheduler is not None
    job = hub._scheduler._scheduler.get_job("escalation-sweep")
    assert job is not None and job.trigger.interval.total_seconds() == 30


async def test_across_platforms_replies_are_relayed_until_resolved(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    config = write_config(tmp_path, 'escalation:\n  triggers: {nothing_found: false}\n'
                                    '  rules: [{platform: discord, to: "slack:C0AGENTS"}]\n')
    hub = await Hub.create(make_settings(tmp_path, fake_openai, config_file=config))
    desk = hub.engine.desk
    assert desk is not None
    users, agents = RecordingOutlet(name="discord"), RecordingOutlet(name="slack")
    desk.register(users)
    desk.register(agents)
    try:
        question = Message(key=ConversationKey("discord", "G1", "C1", "T1"), id="m1",
                           author=Author("1001", "Ada"), text="a human please")
        await hub.engine.handle(question, RecordingChannel())
        [(_, number, _)] = agents.posted
        grace = Actor("U0AGENT", "Grace", "slack")
        await desk.act(number, "claim", grace)
        thread = "1700000001.000100"
        assert await desk.agent_message(grace, "Hi Ada, I can help.", thread=thread)
        assert users.told[-1][1].text == "**Grace (support team):** Hi Ada, I can help."
        stranger = Actor("U0MALLORY", "Mallory", "slack")
        told = len(users.told)
        assert await desk.agent_message(stranger, "psst", thread=thread)
        assert len(users.told) == told  # only agents reach the user
        follow_up = Message(key=question.key, id="m2", author=Author("1001", "Ada"),
                            text="thanks, it's order 42")
        assert (await hub.engine.handle(follow_up, RecordingChannel())).outcome is \
            Outcome.HANDED_OFF
        assert agents.in_ticket[-1] == (number, "**Ada:** thanks, it's order 42")
        await desk.act(number, "resolve", grace)
        told = len(users.told)
        assert await desk.agent_message(grace, "one more thing", thread=thread)
        assert len(users.told) == told
        assert "resolved" in agents.in_ticket[-1][1]
        assert not await desk.agent_message(grace, "elsewhere", thread="9999.0001")
    finally:
        await hub.close()
