"""/admin/health and the "adapters" part of /healthz, against a live bothub whose adapters talk
to the fake Slack, Discord and Bot Framework servers over real sockets: a connected gateway, a
Socket Mode link, events arriving, rejected tokens and an unreachable platform."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import APIRouter

from bot.app import Hub
from bot.server import create_app, platform_adapters
from tests.adapters.slack_world import send
from tests.admin.world import TOKEN, admin_world, text_of
from tests.browser.conftest import INTERNALS
from tests.conftest import (
    POSTGRES_ADMIN_URL,
    LiveServer,
    make_settings,
    running_server,
    wait_for,
)
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack

BEARER = {"Authorization": f"Bearer {TOKEN}"}


def healthz(server: LiveServer) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/healthz", timeout=10)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def health_page(url: str) -> str:
    response = httpx.get(f"{url}/admin/health", headers=BEARER, timeout=10)
    assert response.status_code == 200
    return text_of(response.text)


def row(text: str, name: str, following: str) -> str:
    """The text of a table row (after the page's nav) from its first cell up to the next
    row's first cell."""
    start = text.index(f" {name} ", text.index("Component State Details"))
    return text[start + 1:text.index(f" {following} ", start)]


def all_adapters(hub: Hub) -> Any:
    return create_app(hub, services=False, adapters=platform_adapters(hub))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_without_platforms_each_component_is_described_and_web_chat_is_up(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    with admin_world(tmp_path, fake_openai) as world:
        report = healthz(world.server)
        assert report["adapters"] == {
            "slack": {"state": "not_configured", "detail": "not configured"},
            "discord": {"state": "not_configured", "detail": "not configured"},
            "teams": {"state": "not_configured", "detail": "not configured"},
            "web": {"state": "ok", "detail": "web chat at / and POST /api/chat"}}
        text = health_page(world.url)
        assert "Overall OK the database answers" in text
        assert "Platforms up 1 of 1 of those configured" in text
        assert row(text, "Database", "Chat model").startswith("Database ok answered in ")
        assert row(text, "Chat model", "Knowledge base") == "Chat model configured model gpt-4o"
        assert row(text, "Knowledge base", "Rate limits") == (
            "Knowledge base empty 0 chunks · hybrid retrieval · never synced")
        assert row(text, "Rate limits", "Platforms") == (
            "Rate limits ok kept in this process (no REDIS_URL)")
        assert row(text, "Slack", "Discord") == (
            "Slack not configured Set SLACK_BOT_TOKEN with SLACK_SIGNING_SECRET (HTTP) or "
            "SLACK_APP_TOKEN (Socket Mode). – none")
        assert row(text, "Discord", "Microsoft Teams").startswith(
            "Discord not configured Set DISCORD_BOT_TOKEN.")
        assert row(text, "Web chat", "Machine-readable:") == (
            "Web chat ok web chat at / and POST /api/chat – none")


def test_a_synced_knowledge_base_shows_its_last_run(tmp_path: Path,
                                                    fake_openai: FakeOpenAI) -> None:
    with admin_world(tmp_path, fake_openai) as world:
        world.server.run(world.server.hub.knowledge.sync(trigger="cli"))
        text = health_page(world.url)
        knowledge = row(text, "Knowledge base", "Rate limits")
        assert knowledge.startswith("Knowledge base ok ")
        assert " chunks · hybrid retrieval · last sync ok " in knowledge
        assert knowledge.endswith("(cli)")


def connected_server(tmp_path: Path, fake_openai: FakeOpenAI, fake_slack: FakeSlack,
                     fake_discord: FakeDiscord, **extra: Any) -> Any:
    settings = make_settings(
        tmp_path, fake_openai, admin_token=TOKEN, slack_bot_token=fake_slack.bot_token,
        slack_signing_secret=fake_slack.signing_secret, slack_api_url=fake_slack.api_url,
        discord_bot_token=fake_discord.bot_token, discord_api_url=fake_discord.api_url,
        **extra)
    return running_server(settings, all_adapters)


def test_connected_platforms_report_their_links_and_last_events(
        tmp_path: Path, fake_openai: FakeOpenAI, fake_slack: FakeSlack,
        fake_discord: FakeDiscord) -> None:
    with connected_server(tmp_path, fake_openai, fake_slack, fake_discord) as server:
        wait_for(lambda: healthz(server)["adapters"]["discord"]["state"] == "ok", timeout=15)
        adapters = healthz(server)["adapters"]
        discord = adapters["discord"]
        assert discord["detail"] == "connected to the gateway" and discord["mode"] == "gateway"
        assert discord["latency_ms"] is None or discord["latency_ms"] >= 0
        slack = adapters["slack"]
        assert (slack["state"], slack["mode"], slack["workspaces"]) == (
            "ok", "http", "one workspace")
        assert slack["last_event_at"] is None and slack["last_error"] is None
        teams = adapters["teams"]
        assert (teams["state"], teams["auth"]) == ("not_configured", "off")
        assert "Emulator" in str(teams["detail"])

        event = fake_slack.message_event("anyone there?", mention=True)
        assert send(server, fake_slack, fake_slack.event_envelope(event)).status_code == 200
        wait_for(lambda: healthz(server)["adapters"]["slack"]["last_event_at"])
        fake_discord.dispatch_message("hello", channel_id=fake_discord.general_channel_id)
        wait_for(lambda: healthz(server)["adapters"]["discord"]["last_event_at"])

        text = health_page(server.url)
        assert "Platforms up 3 of 3 of those configured" in text  # with web chat
        slack_row = row(text, "Slack", "Discord")
        assert slack_row.startswith("Slack ok receiving events on POST /slack/events "
                                    "mode: http · serves: one workspace 20")
        assert slack_row.endswith(" none")
        assert row(text, "Discord", "Microsoft Teams").startswith(
            "Discord ok connected to the gateway mode: gateway")
        assert row(text, "Microsoft Teams", "Web chat").startswith(
            "Microsoft Teams not configured no MICROSOFT_APP_ID: only a local Bot Framework "
            "Emulator can connect Set MICROSOFT_APP_ID and MICROSOFT_APP_PASSWORD. "
            "mode: http · auth: off")


def test_socket_mode_is_ok_while_connected(tmp_path: Path, fake_openai: FakeOpenAI,
                                           fake_slack: FakeSlack) -> None:
    settings = make_settings(tmp_path, fake_openai, admin_token=TOKEN,
                             slack_bot_token=fake_slack.bot_token,
                             slack_app_token=fake_slack.app_token,
                             slack_api_url=fake_slack.api_url)
    with running_server(settings, all_adapters) as server:
        wait_for(lambda: fake_slack.connected_sockets == 1)
        slack = healthz(server)["adapters"]["slack"]
        assert (slack["state"], slack["mode"], slack["detail"]) == (
            "ok", "socket", "connected over Socket Mode")


def test_rejected_tokens_and_an_unreachable_platform_are_down_with_the_reason(
        tmp_path: Path, fake_openai: FakeOpenAI, fake_slack: FakeSlack) -> None:
    fake_slack.fail("auth.test", "invalid_auth")  # as Slack answers a revoked token
    settings = make_settings(tmp_path, fake_openai, admin_token=TOKEN,
                             slack_bot_token="xoxb-" + "rejected",
                             slack_signing_secret=fake_slack.signing_secret,
                             slack_api_url=fake_slack.api_url,
                             discord_bot_token="discord-" + "token",
                             discord_api_url=f"http://127.0.0.1:{free_port()}/api/v10")
    with running_server(settings, all_adapters) as server:
        report = healthz(server)
        assert report["status"] == "ok"  # the hub still serves
        slack, discord = report["adapters"]["slack"], report["adapters"]["discord"]
        assert (slack["state"], slack["last_error"]) == ("down",
                                                         "bot token rejected (invalid_auth)")
        assert slack["last_error_at"] is not None
        assert (discord["state"], discord["last_error"]) == (
            "down", "gateway URL unavailable (ConnectError)")
        text = health_page(server.url)
        assert "Needs attention 2 slack, discord" in text
        assert row(text, "Slack", "Discord").startswith(
            "Slack down Slack rejected the bot token at start")
        assert "bot token rejected (invalid_auth) 20" in row(text, "Slack", "Discord")
        assert "xoxb-rejected" not in str(report) and "xoxb-rejected" not in text


def test_an_adapter_whose_health_check_fails_is_unknown_and_healthz_still_answers(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    class BrokenAdapter:
        name = "discord"

        async def start(self) -> None:
            return None

        async def stop(self) -> None:
            return None

        def router(self) -> APIRouter:
            return APIRouter()

        async def health(self) -> dict[str, object]:
            raise RuntimeError("cannot tell")

    def build(hub: Hub) -> Any:
        return create_app(hub, services=False, adapters=[BrokenAdapter()])

    settings = make_settings(tmp_path, fake_openai, admin_token=TOKEN)
    with running_server(settings, build) as server:
        discord = healthz(server)["adapters"]["discord"]
        assert discord == {"state": "unknown", "detail": "its health check failed",
                           "last_error": "RuntimeError"}
        assert row(health_page(server.url), "Discord", "Microsoft Teams").startswith(
            "Discord unknown its health check failed")


def test_the_health_page_needs_an_admin(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    with admin_world(tmp_path, fake_openai) as world:
        anonymous = httpx.get(f"{world.url}/admin/health")
        assert anonymous.status_code == 303
        assert anonymous.headers["location"] == "/admin/login"
        assert httpx.get(f"{world.url}/admin/health",
                         headers={"Authorization": "Bearer nope"}).status_code == 401


@pytest.mark.postgres
def test_with_the_database_gone_the_pages_say_so_instead_of_failing(
        tmp_path: Path, fake_openai: FakeOpenAI, postgres_url: str) -> None:
    name = postgres_url.rsplit("/", 1)[1]
    with admin_world(tmp_path, fake_openai, database_url=postgres_url) as world:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s", (name,))
        try:
            with httpx.Client(base_url=world.url, headers=BEARER, timeout=30) as client:
                for path, title in (("/admin/usage", "Usage unavailable"),
                                    ("/admin/knowledge", "Knowledge base unavailable")):
                    page = client.get(path)
                    assert page.status_code == 503, path
                    assert f"{title} The database cannot be reached right now" in \
                        text_of(page.text)
                    assert not INTERNALS.search(text_of(page.text))
                refused = client.post("/admin/knowledge/sync")
                assert refused.status_code == 303
                assert client.get(refused.headers["location"]).status_code == 503
                text = health_page(world.url)
                assert "Overall Degraded the database is not answering" in text
                assert row(text, "Database", "Chat model").startswith("Database down error:")
        finally:
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
