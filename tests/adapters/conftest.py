"""The platform fakes, one per test worker, reset for every test."""

from tests.conftest import shared_fake
from tests.fakes.botframework_server import FakeBotFramework
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_server import FakeSlack

_slack_server, fake_slack = shared_fake(FakeSlack, "fake_slack")
_discord_server, fake_discord = shared_fake(FakeDiscord, "fake_discord")
_teams_server, fake_teams = shared_fake(FakeBotFramework, "fake_teams")
