"""Escalation in Teams end to end, through the real botbuilder and the fake connector: a 1:1
question goes to the agents' channel as an Adaptive Card, agents act with its `Action.Execute`
buttons or by @-mentioning the bot, the bot stays silent while a person helps and answers again
once the escalation is resolved."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.teams import escalations
from adapters.teams.render import HANDOFF_VERB
from bot.escalation.store import State, Ticket
from tests.adapters.test_teams_events import (
    TeamsServer,
    _stored_texts,
    answer,
    post,
    teams_server,
    teams_settings,
)
from tests.conftest import wait_for, write_config
from tests.fakes.botframework_server import FakeBotFramework
from tests.fakes.openai_server import FakeOpenAI

AGENTS = "19:agents@thread.tacv2"
AGENT, AGENT_NAME = "29:agent-grace", "Grace Agent"
MALLORY = "29:mallory"
USER_CHAT = "a:personal-user-1"  # the fake's default user's 1:1 chat with the bot
# Without a knowledge base every answer would also escalate ("nothing found"): off here.
CONFIG = "escalation:\n  sla_minutes: 30\n  triggers:\n    nothing_found: false\n"


def escalation_settings(tmp_path: Path, fake_openai: FakeOpenAI, fake: FakeBotFramework, *,
                        auth: bool, config: str = CONFIG, **overrides: Any) -> Any:
    return teams_settings(tmp_path, fake_openai, fake, auth=auth,
                          teams_escalation_conversation=AGENTS,
                          config_file=write_config(tmp_path, config), **overrides)


@pytest.fixture
def secure(tmp_path: Path, fake_openai: FakeOpenAI, fake_teams: FakeBotFramework,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[TeamsServer]:
    """Authentication on; Grace is a member of the agents' channel, Mallory of nothing."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake_teams.issuer.ca_path)
    fake_teams.require_auth = True
    fake_teams.add_member(AGENT, AGENT_NAME, conversation_id=AGENTS)
    with teams_server(escalation_settings(tmp_path, fake_openai, fake_teams,
                                          auth=True)) as live:
        live.sign = fake_teams.auth_headers
        yield live


@pytest.fixture
def emulator(tmp_path: Path, fake_openai: FakeOpenAI,
             fake_teams: FakeBotFramework) -> Iterator[TeamsServer]:
    fake_teams.add_member(AGENT, AGENT_NAME, conversation_id=AGENTS)
    with teams_server(escalation_settings(tmp_path, fake_openai, fake_teams,
                                          auth=False)) as live:
        yield live


# -- helpers ----------------------------------------------------------------------------------

def add_bot_to_agents_channel(server: TeamsServer, fake: FakeBotFramework) -> None:
    post(server, fake.conversation_update(scope="channel", channel_id=AGENTS))
    wait_for(lambda: fake.messages(AGENTS))  # the welcome: the channel's reference is kept


def card_of(message: dict[str, Any]) -> dict[str, Any]:
    return dict(message["attachments"][0]["content"])


def escalation_posts(fake: FakeBotFramework) -> list[dict[str, Any]]:
    """The escalation cards in the agents' channel, as they are now."""
    return [m for m in fake.messages(AGENTS) if m.get("attachments")
            and "Escalation #" in json.dumps(m["attachments"])]


def verbs(card: dict[str, Any]) -> dict[str, Any]:
    return {a["verb"]: a["data"] for a in card.get("actions") or []
            if a["type"] == "Action.Execute"}


def card_text(card: dict[str, Any]) -> str:
    return json.dumps(card, ensure_ascii=False)


def click(server: TeamsServer, fake: FakeBotFramework, verb: str, data: dict[str, Any],
          message_id: str, *, user_id: str = AGENT,
          user_name: str = AGENT_NAME) -> dict[str, Any]:
    """An agent presses a button on the escalation's card; the card Teams gets back."""
    activity = fake.invoke_action(verb, data, reply_to_id=message_id, scope="channel",
                                  channel_id=AGENTS, user_id=user_id, user_name=user_name)
    response = post(server, activity)
    assert response.status_code == 200
    body = response.json()
    assert body["statusCode"] == 200 and body["type"] == "application/vnd.microsoft.card.adaptive"
    return dict(body["value"])


def bot_texts(fake: FakeBotFramework, conversation: str) -> list[str]:
    """The bot's messages in a chat or one reply chain, as they are now."""
    return fake.texts(conversation)


def chain_texts(fake: FakeBotFramework, root: str) -> list[str]:
    return bot_texts(fake, f"{AGENTS};messageid={root}")


def tickets(server: TeamsServer) -> list[Ticket]:
    tickets: list[Ticket] = server.run(server.hub.engine.desk.store.tickets(
        states=("open", "claimed", "resolved")))
    return tickets


def ask_for_a_person(server: TeamsServer, fake: FakeBotFramework) -> dict[str, Any]:
    """The default user asks for a person in their 1:1 chat; the escalation's post."""
    post(server, fake.message("I want to talk to a human please"))
    wait_for(lambda: any("person from our support team" in t
                         for t in bot_texts(fake, USER_CHAT)))
    [card] = wait_for(lambda: escalation_posts(fake))
    return card


# -- the "Done when" --------------------------------------------------------------------

def test_claim_and_resolve_with_the_cards_buttons(
        secure: TeamsServer, fake_teams: FakeBotFramework, fake_openai: FakeOpenAI) -> None:
    add_bot_to_agents_channel(secure, fake_teams)
    question = fake_teams.message("I want to talk to a human please")
    assert post(secure, question).status_code == 200
    notice = wait_for(lambda: [t for t in bot_texts(fake_teams, USER_CHAT)
                               if "person from our support team" in t])
    assert "30 minutes" in notice[0]
    assert not fake_openai.chat_requests()  # went to people, not to the model

    [post_] = wait_for(lambda: escalation_posts(fake_teams))
    card = card_of(post_)
    assert set(verbs(card)) == {escalations.CLAIM, escalations.RESOLVE,
                                escalations.RESOLVE_SAVE}
    shown = card_text(card)
    assert "asked for a person" in shown and "Ada Lovelace" in shown
    assert "I want to talk to a human please" in shown  # the summary
    assert "Waiting for an agent" in shown
    assert post_["summary"].startswith("Escalation #")  # what notifications show
    number = verbs(card)[escalations.CLAIM]
    assert number == {"id": tickets(secure)[0].id}
    calls = fake_teams.calls()
    assert calls and all(c.authorization and c.authorization.split(" ", 1)[1]
                         in fake_teams.issuer.issued_tokens for c in calls)

    # Someone who is not in the agents' channel is refused; the post does not change.
    refused = click(secure, fake_teams, escalations.CLAIM, number, post_["id"],
                    user_id=MALLORY, user_name="Mallory")
    assert "Only support agents" in card_text(refused)
    assert not fake_teams.updates()

    # Grace (a member of the channel) claims.
    claimed = click(secure, fake_teams, escalations.CLAIM, number, post_["id"])
    assert "You've claimed escalation" in card_text(claimed)
    assert "Claimed by Grace Agent" in card_text(claimed)
    assert set(verbs(claimed)) == {escalations.RESOLVE, escalations.RESOLVE_SAVE,
                                   escalations.RELEASE}
    [update] = fake_teams.updates(activity_id=post_["id"])
    assert "Claimed by Grace Agent" in card_text(update["attachments"][0]["content"])
    assert "You've claimed" not in card_text(update)  # the clicker's line is theirs alone
    wait_for(lambda: any("Grace Agent from our support team has joined" in t
                         for t in bot_texts(fake_teams, USER_CHAT)))

    # While claimed the bot is silent in the 1:1 chat.
    before = len(bot_texts(fake_teams, USER_CHAT))
    post(secure, fake_teams.message("hello? my invoice is wrong"))
    wait_for(lambda: "hello? my invoice is wrong" in secure.run(_stored_texts(secure)))
    time.sleep(0.2)
    assert len(bot_texts(fake_teams, USER_CHAT)) == before
    assert not fake_openai.chat_requests()

    # Resolve with the card: the user is told, and the bot answers again.
    resolved = click(secure, fake_teams, escalations.RESOLVE, number, post_["id"])
    assert "is resolved" in card_text(resolved) and "actions" not in resolved
    wait_for(lambda: any("marked this conversation as resolved" in t
                         for t in bot_texts(fake_teams, USER_CHAT)))
    final = fake_teams.updates(activity_id=post_["id"])[-1]["attachments"][0]["content"]
    assert "Resolved" in card_text(final) and "actions" not in final
    post(secure, fake_teams.message("what plans do you offer?"))
    wait_for(lambda: "You said: what plans do you offer?" in bot_texts(fake_teams, USER_CHAT))
    [ticket] = tickets(secure)
    assert ticket.state is State.RESOLVED and ticket.claimed_by_name == AGENT_NAME


def test_agents_act_by_mentioning_the_bot_in_the_channel(
        emulator: TeamsServer, fake_teams: FakeBotFramework, fake_openai: FakeOpenAI) -> None:
    add_bot_to_agents_channel(emulator, fake_teams)
    post_ = ask_for_a_person(emulator, fake_teams)
    number = verbs(card_of(post_))[escalations.CLAIM]["id"]

    # `@bot claim <n>` in a new post of the channel: answered in that post's reply chain.
    command = fake_teams.message(f"claim {number}", scope="channel", mention_bot=True,
                                 channel_id=AGENTS, user_id=AGENT, user_name=AGENT_NAME)
    post(emulator, command)
    wait_for(lambda: any(f"You've claimed escalation #{number}" in t
                         for t in chain_texts(fake_teams, command["id"])))
    wait_for(lambda: any("has joined" in t for t in bot_texts(fake_teams, USER_CHAT)))
    wait_for(lambda: "Claimed by Grace Agent" in card_text(card_of(escalation_posts(
        fake_teams)[0])))

    # Talking in the escalation's reply chain, bot mentioned or not, is not a question.
    for text, mention in [("thanks, I'll call the customer", True),
                          ("looking at the invoice now", False)]:
        post(emulator, fake_teams.message(text, scope="channel", mention_bot=mention,
                                          channel_id=AGENTS, reply_chain=post_["id"],
                                          user_id=AGENT, user_name=AGENT_NAME))
    time.sleep(0.3)
    assert not fake_openai.chat_requests()
    assert not chain_texts(fake_teams, post_["id"])

    # `@bot resolve` in the escalation's reply chain needs no number.
    post(emulator, fake_teams.message("resolve", scope="channel", mention_bot=True,
                                      channel_id=AGENTS, reply_chain=post_["id"],
                                      user_id=AGENT, user_name=AGENT_NAME))
    wait_for(lambda: any(f"Escalation #{number} is resolved" in t
                         for t in chain_texts(fake_teams, post_["id"])))
    wait_for(lambda: any("resolved" in t for t in bot_texts(fake_teams, USER_CHAT)))

    # Elsewhere a number is needed, and an unknown one is said so.
    for text, expected in [("release", "Which escalation?"),
                           ("resolve 4242", "no escalation #4242")]:
        asked = fake_teams.message(text, scope="channel", mention_bot=True, channel_id=AGENTS,
                                   user_id=AGENT, user_name=AGENT_NAME)
        post(emulator, asked)
        wait_for(lambda a=asked, e=expected: any(e in t for t in chain_texts(fake_teams,
                                                                             a["id"])))
    # An ordinary question to the bot in the channel is still answered.
    question = fake_teams.message("where are the invoices?", scope="channel", mention_bot=True,
                                  channel_id=AGENTS)
    post(emulator, question)
    assert answer(fake_teams, question["conversation"]["id"])["text"] == \
        "You said: where are the invoices?"


def test_configured_agents_are_recognised_by_either_teams_id(
        tmp_path: Path, fake_openai: FakeOpenAI, fake_teams: FakeBotFramework) -> None:
    """`escalation.agents.teams` lists who may act; channel membership then does not count
    (the fake's default user is a member of every conversation)."""
    config = CONFIG + f"  agents:\n    teams: ['{AGENT}']\n"
    settings = escalation_settings(tmp_path, fake_openai, fake_teams, auth=False, config=config)
    with teams_server(settings) as server:
        add_bot_to_agents_channel(server, fake_teams)
        post_ = ask_for_a_person(server, fake_teams)
        number = verbs(card_of(post_))[escalations.CLAIM]
        member = click(server, fake_teams, escalations.CLAIM, number, post_["id"],
                       user_id="29:user-1", user_name="Ada Lovelace")
        assert "Only support agents" in card_text(member)
        # Grace is in no conversation's member list: her Teams id is matched to the Entra
        # object id her click carries.
        claimed = click(server, fake_teams, escalations.CLAIM, number, post_["id"])
        assert "You've claimed" in card_text(claimed)


def test_talk_to_a_person_on_an_answer(
        emulator: TeamsServer, fake_teams: FakeBotFramework) -> None:
    add_bot_to_agents_channel(emulator, fake_teams)
    question = fake_teams.message("how do I export my data?")
    post(emulator, question)
    card = card_of(answer(fake_teams, USER_CHAT))
    [handoff] = [a for a in card["actions"] if a["verb"] == HANDOFF_VERB]
    assert handoff["type"] == "Action.Execute" and "Talk to a person" in handoff["title"]

    response = post(emulator, fake_teams.invoke_action(handoff["verb"], handoff["data"],
                                                       conversation_id=USER_CHAT))
    assert response.status_code == 200
    assert "a person from our support team will join" in json.dumps(response.json()["value"])
    [post_] = wait_for(lambda: escalation_posts(fake_teams))
    assert "asked for a person" in card_text(card_of(post_))
    wait_for(lambda: any("I've asked a person" in t for t in bot_texts(fake_teams, USER_CHAT)))


# -- faults ---------------------------------------------------------------------------------------

def test_an_unreachable_escalation_channel_keeps_the_escalation_and_answers_the_user(
        emulator: TeamsServer, fake_teams: FakeBotFramework) -> None:
    """The bot was never added to the agents' channel and TEAMS_SERVICE_URL is unset."""
    post(emulator, fake_teams.message("I want to talk to a human please"))
    wait_for(lambda: any("person from our support team" in t
                         for t in bot_texts(fake_teams, USER_CHAT)))
    [ticket] = wait_for(lambda: tickets(emulator))
    assert ticket.state is State.OPEN and not ticket.posted  # kept; the sweep posts it later
    assert not fake_teams.messages(AGENTS)


def test_a_service_url_from_settings_reaches_a_channel_never_seen(
        tmp_path: Path, fake_openai: FakeOpenAI, fake_teams: FakeBotFramework) -> None:
    fake_teams.add_member(AGENT, AGENT_NAME, conversation_id=AGENTS)
    settings = escalation_settings(tmp_path, fake_openai, fake_teams, auth=False,
                                   teams_service_url=fake_teams.service_url)
    with teams_server(settings) as server:
        post_ = ask_for_a_person(server, fake_teams)
        number = verbs(card_of(post_))[escalations.CLAIM]
        assert "You've claimed" in card_text(click(server, fake_teams, escalations.CLAIM,
                                                   number, post_["id"]))
        assert fake_teams.updates(activity_id=post_["id"])


def test_a_deleted_post_is_posted_anew(
        emulator: TeamsServer, fake_teams: FakeBotFramework) -> None:
    add_bot_to_agents_channel(emulator, fake_teams)
    first = ask_for_a_person(emulator, fake_teams)
    number = verbs(card_of(first))[escalations.CLAIM]
    fake_teams.fail_next(1, status=404, method="PUT", code="ActivityNotFound")
    claimed = click(emulator, fake_teams, escalations.CLAIM, number, first["id"])
    assert "You've claimed" in card_text(claimed)
    posts = wait_for(lambda: len(escalation_posts(fake_teams)) == 2 and
                     escalation_posts(fake_teams))
    assert "Claimed by Grace Agent" in card_text(card_of(posts[1]))
    [ticket] = tickets(emulator)
    assert ticket.destination_message == posts[1]["id"]

    # The new post is the one agents now act on (and its reply chain the escalation's).
    post(emulator, fake_teams.message("resolve", scope="channel", mention_bot=True,
                                      channel_id=AGENTS, reply_chain=posts[1]["id"],
                                      user_id=AGENT, user_name=AGENT_NAME))
    wait_for(lambda: any("is resolved" in t for t in chain_texts(fake_teams, posts[1]["id"])))


def test_clicks_on_unknown_escalations_are_answered(
        emulator: TeamsServer, fake_teams: FakeBotFramework) -> None:
    for data, expected in [({"id": 4242}, "no escalation #4242"), ({"id": "nope"}, "not known"),
                           ({}, "not known"), ({"id": True}, "not known")]:
        assert expected in card_text(click(emulator, fake_teams, escalations.CLAIM, data,
                                           "1700000000001"))
    assert not fake_teams.calls()


def test_an_unclaimed_escalation_is_re_announced_in_its_reply_chain(
        tmp_path: Path, fake_openai: FakeOpenAI, fake_teams: FakeBotFramework) -> None:
    on_call = '<at id="29:oncall" type="tag">On call</at>, please look:'
    config = CONFIG.replace("sla_minutes: 30", "sla_minutes: 0.002") + \
        f"  on_call:\n    teams: '{on_call}'\n"
    settings = escalation_settings(tmp_path, fake_openai, fake_teams, auth=False, config=config)
    with teams_server(settings) as server:
        add_bot_to_agents_channel(server, fake_teams)
        post_ = ask_for_a_person(server, fake_teams)
        time.sleep(0.2)  # past the SLA
        server.run(server.hub.engine.desk.sweep())
        [reminder] = fake_teams.messages(f"{AGENTS};messageid={post_['id']}")
        assert reminder["text"].startswith(f"<at>On call</at>, please look: Escalation "
                                           f"#{tickets(server)[0].id} is still waiting")
        assert reminder["entities"] == [{"type": "mention", "text": "<at>On call</at>",
                                         "mentioned": {"id": "29:oncall", "name": "On call",
                                                       "type": "tag"}}]
        assert any("still finding someone" in t for t in bot_texts(fake_teams, USER_CHAT))
        # A post that carries the mention (the card) mentions the same way.
        card = escalations.ticket_card(tickets(server)[0], link="", mention=on_call)
        assert card["body"][0]["text"] == "<at>On call</at>, please look:"
        assert card["msteams"]["entities"] == reminder["entities"]
