"""/metrics after scripted conversations: the series an operator graphs, with the right counts.

Each test scrapes before and after its script and compares the difference, because the series
are process-wide and other tests in the same worker add to them too.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot.escalation.store import Actor
from bot.store.tables import StoredMessage
from tests.adapters.slack_world import answers, send, slack_app, slack_settings, wait_for
from tests.conftest import LiveServer, make_settings, running_server, write_config
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.fakes.slack_server import FakeSlack
from tests.telemetry.scrape import Scrape

AGENTS = "C0AGENTS"


@pytest.fixture
def slack_server(tmp_path: Path, fake_openai: FakeOpenAI,
                 fake_slack: FakeSlack) -> Iterator[LiveServer]:
    fake_slack.add_channel(AGENTS, "support-agents")
    fake_slack.add_user("U0AGENT", "Grace Agent", "grace")
    fake_slack.set_members(AGENTS, ["U0AGENT", fake_slack.bot_user_id])
    settings = slack_settings(tmp_path, fake_openai, fake_slack).model_copy(
        update={"slack_escalation_channel": AGENTS})
    with running_server(settings, slack_app) as live:
        yield live


def stored_usage(server: LiveServer) -> tuple[int, int, Decimal]:
    """Tokens in, out and cost of every answer the database holds."""
    async def totals() -> tuple[int, int, Decimal]:
        async with server.hub.database.connect() as connection:
            rows = (await connection.execute(
                select(StoredMessage.tokens_in, StoredMessage.tokens_out,
                       StoredMessage.cost_usd))).all()
        return (sum(r[0] or 0 for r in rows), sum(r[1] or 0 for r in rows),
                sum((Decimal(str(r[2] or 0)) for r in rows), Decimal(0)))
    result: tuple[int, int, Decimal] = server.run(totals())
    return result


def test_a_slack_conversation_with_an_escalation_shows_in_metrics(
        slack_server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    server = slack_server
    server.run(server.hub.knowledge.sync())  # the shipped sample documents
    before = Scrape.of(server.url)

    # Two questions answered in one thread: a mention, then a follow-up without one.
    question = fake_slack.message_event("How do I reset my password?", mention=True)
    thread = question["ts"]
    assert send(server, fake_slack, fake_slack.event_envelope(question)).status_code == 200
    wait_for(lambda: len(answers(fake_slack, "C0GENERAL", thread)) == 1)
    follow_up = fake_slack.message_event("And on the mobile app?", thread_ts=thread)
    envelope = fake_slack.event_envelope(follow_up)
    assert send(server, fake_slack, envelope).status_code == 200
    wait_for(lambda: len(answers(fake_slack, "C0GENERAL", thread)) == 2)
    # Slack delivers the follow-up again (a retry): counted as an event, answered once.
    assert send(server, fake_slack, envelope, retry_num=1).status_code == 200
    # Then the user asks for a person: escalated, not answered by the model.
    human = fake_slack.message_event("I want to talk to a human please", thread_ts=thread)
    assert send(server, fake_slack, fake_slack.event_envelope(human)).status_code == 200
    wait_for(lambda: any("Escalation #" in (m.get("text") or "")
                         for m in fake_slack.messages(AGENTS)))
    desk = server.hub.engine.desk
    assert desk is not None
    [ticket] = server.run(desk.store.tickets())
    middle = Scrape.of(server.url)
    agent = Actor("U0AGENT", "Grace Agent", "slack")
    assert "claimed" in server.run(desk.act(ticket.id, "claim", agent))
    after = Scrape.of(server.url)

    assert len(answers(fake_slack, "C0GENERAL", thread)) == 2  # the retry was not answered
    assert len(fake_openai.chat_requests()) == 2

    # Events in, by platform and kind: every delivery, before anything is filtered out.
    assert after.since(before, "bothub_events_total", platform="slack", kind="mention") == 1
    assert after.since(before, "bothub_events_total", platform="slack", kind="message") == 3
    assert after.since(before, "bothub_http_requests_total", route="/slack/events",
                       status="200") == 4
    # What became of each message.
    assert after.since(before, "bothub_messages_total", platform="slack",
                       outcome="answered") == 2
    assert after.since(before, "bothub_messages_total", platform="slack",
                       outcome="escalated") == 1
    assert after.since(before, "bothub_answer_seconds_count", platform="slack",
                       outcome="answered") == 2
    # Time to first token: the two answers and the escalation notice were each seen once.
    assert after.since(before, "bothub_time_to_first_token_seconds_count",
                       platform="slack") == 3
    # The model: two streamed calls, their tokens and cost exactly as stored per answer.
    assert after.since(before, "bothub_llm_latency_seconds_count", model="gpt-4o",
                       kind="chat") == 2
    assert after.since(before, "bothub_llm_first_token_seconds_count", model="gpt-4o") == 2
    tokens_in, tokens_out, cost = stored_usage(server)
    assert tokens_in > 0 and tokens_out > 0 and cost > 0
    assert after.since(before, "bothub_llm_tokens_total", model="gpt-4o",
                       direction="in") == tokens_in
    assert after.since(before, "bothub_llm_tokens_total", model="gpt-4o",
                       direction="out") == tokens_out
    assert after.since(before, "bothub_llm_cost_usd_total", model="gpt-4o") == \
        pytest.approx(float(cost), abs=1e-6)
    # Retrieval for each model answer; the password question finds the sample docs.
    assert after.since(before, "bothub_retrieval_seconds_count") == 2
    assert after.since(before, "bothub_retrieval_passages_count") == 2
    # Escalations by reason, their state as the database has it, and the claim.
    assert after.since(before, "bothub_escalations_total", platform="slack",
                       reason="user_request") == 1
    assert middle.value("bothub_escalations_in_state", state="open") == 1
    assert after.value("bothub_escalations_in_state", state="open") == 0
    assert after.value("bothub_escalations_in_state", state="claimed") == 1
    assert after.since(before, "bothub_escalation_transitions_total", action="claim") == 1
    assert after.since(before, "bothub_escalation_time_to_claim_seconds_count") == 1


@pytest.fixture
def web_server(tmp_path: Path, fake_openai: FakeOpenAI) -> Iterator[LiveServer]:
    config = write_config(tmp_path, "limits:\n  rate:\n    user: {per_minute: 1, burst: 2}\n")
    with running_server(make_settings(tmp_path, fake_openai, config_file=config)) as live:
        yield live


def chat(server: LiveServer, message: str, conversation: str | None = None) -> str:
    """Ask through the web chat; returns the conversation id."""
    payload: dict[str, Any] = {"message": message}
    if conversation:
        payload["conversation_id"] = conversation
    response = httpx.post(f"{server.url}/api/chat", json=payload, timeout=30)
    assert response.status_code == 200
    first = response.text.split("\n\n", 1)[0]
    assert first.startswith("event: conversation")
    return str(httpx.Response(200, content=first.split("data: ", 1)[1]).json()[
        "conversation_id"])


def test_failures_rate_limits_and_a_sync_show_in_metrics(
        web_server: LiveServer, fake_openai: FakeOpenAI) -> None:
    server = web_server
    before = Scrape.of(server.url)
    conversation = chat(server, "What plans are there?")
    fake_openai.queue(ScriptedReply(status=400, text="This request is not allowed."))
    chat(server, "Tell me about billing", conversation)  # the model refuses it
    chat(server, "And refunds?", conversation)  # past this user's burst of 2
    outcome = server.run(server.hub.knowledge.sync(trigger="manual"))
    assert outcome is not None
    after = Scrape.of(server.url)

    assert after.since(before, "bothub_events_total", platform="web", kind="message") == 3
    assert after.since(before, "bothub_messages_total", platform="web", outcome="answered") == 1
    assert after.since(before, "bothub_messages_total", platform="web",
                       outcome="model_failed") == 1
    assert after.since(before, "bothub_messages_total", platform="web",
                       outcome="rate_limited") == 1
    assert after.since(before, "bothub_llm_errors_total", model="gpt-4o",
                       reason="rejected") == 1
    assert after.since(before, "bothub_rate_limited_total", platform="web", scope="user") == 1
    assert after.since(before, "bothub_http_requests_total", route="/api/chat",
                       status="200") == 3
    assert after.since(before, "bothub_kb_sync_runs_total", status=outcome.status,
                       trigger="manual") == 1
    assert after.since(before, "bothub_kb_sync_seconds_count", status=outcome.status,
                       trigger="manual") == 1
    # Scraping is counted too, by its route; an unknown path is one series, not one per path.
    httpx.get(f"{server.url}/no/such/page/{'x' * 40}")
    httpx.get(f"{server.url}/another/missing/page")
    last = Scrape.of(server.url)
    assert last.since(after, "bothub_http_requests_total", route="unmatched", status="404") == 2
    assert not any(name == "bothub_http_requests_total" and ("route", "/no/such/page") in labels
                   for name, labels in last.samples)
