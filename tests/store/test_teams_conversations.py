"""Teams conversation references on SQLite and PostgreSQL: kept, replaced, found by channel."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.teams.references import TeamsConversations
from bot.store import migrate
from bot.store.database import create_engine


@pytest.fixture
async def conversations(database_url: str) -> AsyncIterator[TeamsConversations]:
    engine: AsyncEngine = create_engine(database_url)
    await migrate.upgrade(engine)
    yield TeamsConversations(engine)
    await engine.dispose()


def reference(conversation_id: str, service_url: str = "https://smba.trafficmanager.net/emea/",
              activity_id: str = "1") -> dict[str, object]:
    return {"activityId": activity_id, "bot": {"id": "28:bot"}, "channelId": "msteams",
            "conversation": {"id": conversation_id, "conversationType": "channel"},
            "serviceUrl": service_url, "user": {"id": "29:u"}}


async def test_a_reply_chain_is_found_by_its_id_and_by_its_channel(
        conversations: TeamsConversations) -> None:
    chain = "19:c@thread.tacv2;messageid=1699"
    await conversations.remember(reference(chain), kind="channel", tenant_id="t1")
    assert (await conversations.find(chain))["conversation"]["id"] == chain  # type: ignore[index]
    channel = await conversations.find("19:c@thread.tacv2")
    assert channel is not None
    assert channel["conversation"]["id"] == "19:c@thread.tacv2" and channel["activityId"] is None
    assert await conversations.find("19:other@thread.tacv2") is None


async def test_the_latest_reference_wins(conversations: TeamsConversations) -> None:
    await conversations.remember(reference("a:1", "https://smba.trafficmanager.net/emea/"),
                                 kind="personal", tenant_id="t1")
    await conversations.remember(reference("a:1", "https://smba.trafficmanager.net/amer/"),
                                 kind="personal", tenant_id="t1")
    found = await conversations.find("a:1")
    assert found is not None and found["serviceUrl"] == "https://smba.trafficmanager.net/amer/"


async def test_incomplete_or_oversized_references_are_not_kept(
        conversations: TeamsConversations) -> None:
    await conversations.remember({"conversation": {"id": "a:2"}}, kind="personal", tenant_id="")
    await conversations.remember(reference("x" * 500), kind="personal", tenant_id="")
    assert await conversations.find("a:2") is None
    assert await conversations.find("x" * 500) is None


async def test_an_unchanged_reference_is_not_written_again(
        conversations: TeamsConversations) -> None:
    await conversations.remember(reference("a:3", activity_id="1"), kind="personal",
                                 tenant_id="t1")
    await conversations.remember(reference("a:3", activity_id="2"), kind="personal",
                                 tenant_id="t1")
    found = await conversations.find("a:3")
    assert found is not None and found["activityId"] == "1"  # no second write
    await conversations.remember(reference("a:3", "https://smba.trafficmanager.net/amer/"),
                                 kind="personal", tenant_id="t1")
    found = await conversations.find("a:3")
    assert found is not None and found["serviceUrl"].endswith("/amer/")  # a change is written
