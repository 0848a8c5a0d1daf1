"""The Slack fake, one per test worker, reset for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_server import FakeSlack


@pytest.fixture(scope="session")
def _slack_server() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def fake_slack(_slack_server: FakeSlack) -> Iterator[FakeSlack]:
    _slack_server.reset()
    yield _slack_server
    _slack_server.reset()


@pytest.fixture(scope="session")
def _discord_server() -> Iterator[FakeDiscord]:
    with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def fake_discord(_discord_server: FakeDiscord) -> Iterator[FakeDiscord]:
    _discord_server.reset()
    yield _discord_server
    _discord_server.reset()
