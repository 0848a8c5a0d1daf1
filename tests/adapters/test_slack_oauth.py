"""Multi-workspace Slack: the OAuth install flow, installations in our database, uninstalls."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from adapters.slack.oauth import SignedStateStore
from tests.adapters.slack_world import answers, send, slack_app, wait_for
from tests.conftest import LiveServer, make_settings, running_server
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack


@pytest.fixture
def oauth_server(tmp_path: Path, fake_openai: FakeOpenAI,
                 fake_slack: FakeSlack) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path, fake_openai, slack_client_id="111.222",
                             slack_client_secret="client-secret", slack_state_secret="s3cret",
                             slack_signing_secret=fake_slack.signing_secret,
                             slack_api_url=fake_slack.api_url)
    with running_server(settings, slack_app) as live:
        yield live


def install(server: LiveServer, fake: FakeSlack, team: str) -> httpx.Response:
    with httpx.Client(base_url=server.url) as browser:
        page = browser.get("/slack/install")
        assert page.status_code == 200
        state = re.search(r"state=([^&\"']+)", page.text)
        assert state is not None, page.text
        # The state cookie is `Secure`; a browser on HTTPS sends it back, httpx on http not.
        cookie = page.headers["set-cookie"].split(";", 1)[0]
        fake.oauth_codes["code-" + team] = team
        return browser.get("/slack/oauth_redirect", headers={"Cookie": cookie},
                           params={"code": "code-" + team, "state": state.group(1)})


async def _installations(server: LiveServer) -> list[tuple[str, str]]:
    async with server.hub.database.connect() as connection:
        rows = await connection.execute(text(
            "SELECT team_id, bot_token FROM slack_installations ORDER BY id"))
        return [(row.team_id, row.bot_token) for row in rows]


def test_a_workspace_installs_then_gets_answers_with_its_own_token(
        oauth_server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    done = install(oauth_server, fake_slack, "T0NEW")
    assert done.status_code == 200, done.text
    assert oauth_server.run(_installations(oauth_server)) == [("T0NEW",
                                                               "xoxb-installed-T0NEW")]
    [exchange] = fake_slack.calls_to("oauth.v2.access")
    assert exchange.args["code"] == "code-T0NEW"

    event = fake_slack.message_event("hello from the new workspace", mention=True)
    event["team"] = "T0NEW"
    envelope = fake_slack.event_envelope(event, team_id="T0NEW")
    assert send(oauth_server, fake_slack, envelope).status_code == 200
    wait_for(lambda: answers(fake_slack, "C0GENERAL", event["ts"]))
    posted = fake_slack.calls_to("chat.postMessage") + fake_slack.calls_to("chat.startStream")
    assert posted and all(call.token == "xoxb-installed-T0NEW" for call in posted)


def test_a_forged_or_stale_state_is_refused_without_an_exchange(
        oauth_server: LiveServer, fake_slack: FakeSlack) -> None:
    response = httpx.get(f"{oauth_server.url}/slack/oauth_redirect",
                         params={"code": "x", "state": "forged.9999999999.sig"})
    assert 400 <= response.status_code < 500
    assert fake_slack.calls_to("oauth.v2.access") == []


def test_uninstalling_removes_the_workspace_and_its_events_go_unanswered(
        oauth_server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    install(oauth_server, fake_slack, "T0GONE")
    uninstalled = fake_slack.event_envelope({"type": "app_uninstalled", "event_ts": "1.1"},
                                            team_id="T0GONE")
    assert send(oauth_server, fake_slack, uninstalled).status_code == 200
    wait_for(lambda: oauth_server.run(_installations(oauth_server)) == [])

    event = fake_slack.message_event("anyone?", mention=True)
    event["team"] = "T0GONE"
    response = send(oauth_server, fake_slack, fake_slack.event_envelope(event,
                                                                        team_id="T0GONE"))
    assert response.status_code < 500
    time.sleep(0.3)
    assert fake_openai.chat_requests() == []


def test_events_from_a_workspace_that_never_installed_are_not_answered(
        oauth_server: LiveServer, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    event = fake_slack.message_event("who are you?", mention=True)
    response = send(oauth_server, fake_slack, fake_slack.event_envelope(event,
                                                                        team_id="T0STRANGER"))
    assert response.status_code < 500
    time.sleep(0.3)
    assert fake_openai.chat_requests() == []


async def test_signed_states_expire_and_cannot_be_forged() -> None:
    store = SignedStateStore("secret", expiration_seconds=60)
    state = await store.async_issue()
    assert await store.async_consume(state)
    assert not await SignedStateStore("other").async_consume(state)
    nonce, expires, signature = state.split(".")
    assert not await store.async_consume(f"{nonce}.{int(expires) + 999}.{signature}")
    assert not await store.async_consume("garbage")
    # Not one of ours (non-ASCII, an expiry int() refuses): refused, not an exception.
    assert not await store.async_consume(f"\u00e9.{expires}.{signature}")
    assert not await store.async_consume(f"{nonce}.{expires}.\u00e9")
    assert not await store.async_consume(f"{nonce}.{'9' * 5000}.{signature}")
    old = SignedStateStore("secret", expiration_seconds=-1)
    assert not await old.async_consume(await old.async_issue())


def test_half_an_oauth_configuration_is_a_clear_error(tmp_path: Path) -> None:
    from bot.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="needs SLACK_CLIENT_SECRET, SLACK_STATE_SECRET"):
        load_settings(_env_file=None, slack_client_id="111.222")
