"""The Slack fake, one per test worker, reset for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
