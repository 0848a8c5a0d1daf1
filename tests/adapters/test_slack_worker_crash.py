"""`kill -9` of a worker with 100 Slack questions in flight: after a restart every question is
answered exactly once, in its own thread, with no second message anywhere.

Real processes (`bothub serve`) on one PostgreSQL database, real signed Events API requests
from the fake Slack, the real slack_sdk and openai SDK against their fakes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.adapters.slack_world import answers
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack

pytestmark = pytest.mark.postgres

BOTHUB = shutil.which("bothub", path=str(Path(sys.executable).parent)) or "bothub"
QUESTIONS = 100
LEASE_SECONDS = 4
CONFIG = """
limits:
  rate:
    user: {per_minute: 100000, burst: 100000}
    channel: {per_minute: 100000, burst: 100000}
    workspace: {per_minute: 100000, burst: 100000}
    max_concurrent_model_calls: 20
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Worker:
    """One `bothub serve` process."""

    def __init__(self, name: str, env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.port = _free_port()
        self.log = cwd / f"{name}.log"
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [BOTHUB, "serve", "--port", str(self.port)], env=env, cwd=cwd, stdout=out,
                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{self.url}/healthz", timeout=1)
                return
            except httpx.TransportError as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"{name} did not start:\n{self.log.read_text()}") from exc
                time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def environment(tmp_path: Path, fake_openai: FakeOpenAI, fake_slack: FakeSlack,
                postgres_url: str) -> Iterator[dict[str, str]]:
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "billing.md").write_text("# Billing\n\nInvoices are under Billing.\n")
    (tmp_path / "bothub.yaml").write_text(CONFIG)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "BOTHUB_", "SLACK_", "DISCORD_", "MICROSOFT_",
                                "TEAMS_", "DATABASE_URL", "REDIS_URL"))}
    env.update(BOTHUB_DATA_DIR=str(tmp_path / "data"), BOTHUB_KB_DIR=str(tmp_path / "kb"),
               BOTHUB_CONFIG=str(tmp_path / "bothub.yaml"), DATABASE_URL=postgres_url,
               BOTHUB_INBOX_LEASE_SECONDS=str(LEASE_SECONDS), OPENAI_API_KEY=fake_openai.api_key,
               OPENAI_BASE_URL=fake_openai.base_url, SLACK_BOT_TOKEN=fake_slack.bot_token,
               SLACK_SIGNING_SECRET=fake_slack.signing_secret, SLACK_API_URL=fake_slack.api_url,
               SLACK_NATIVE_STREAMING="false", BOTHUB_LOG_FORMAT="json")
    # Each answer takes a while, so that the kill finds some answered, some streaming and
    # some still waiting for a model slot.
    fake_openai.default_delay = 0.3
    fake_openai.default_chunk_delay = 0.08
    yield env


def _deliver(worker: Worker, fake: FakeSlack, envelope: dict[str, Any],
             retry: int | None = None) -> int:
    body, headers = fake.signed_request(envelope, retry_num=retry,
                                        retry_reason="http_timeout" if retry else None)
    return httpx.post(f"{worker.url}/slack/events", content=body, headers=headers,
                      timeout=30).status_code


def _bot_messages(fake: FakeSlack, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    return [m for m in fake.messages(channel, thread_ts) if m.get("bot_id")]


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_kill_9_with_100_questions_in_flight_each_is_answered_once_after_restart(
        environment: dict[str, str], tmp_path: Path, fake_slack: FakeSlack,
        fake_openai: FakeOpenAI, postgres_url: str) -> None:
    channel = "C0GENERAL"
    events = [fake_slack.message_event(f"question number {n}: where are my invoices?",
                                       mention=True) for n in range(QUESTIONS)]
    envelopes = [fake_slack.event_envelope(event) for event in events]
    threads = [str(event["ts"]) for event in events]

    first = Worker("first", environment, tmp_path)
    try:
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda e: _deliver(first, fake_slack, e), envelopes))
        accepted = sum(status == 200 for status in statuses)
        assert accepted == QUESTIONS, statuses  # Slack was acknowledged for every question

        def answered() -> int:
            return sum(bool(answers(fake_slack, channel, ts)) for ts in threads)

        _wait(lambda: answered() >= 15, 60, "some answers before the kill")
        first.kill()
    finally:
        first.stop()
    answered_before = answered()
    started = sum(bool(_bot_messages(fake_slack, channel, ts)) for ts in threads)
    assert answered_before < QUESTIONS, "every answer finished before the kill: nothing tested"

    restarted = time.monotonic()
    second, third = Worker("second", environment, tmp_path), Worker("third", environment,
                                                                      tmp_path)
    try:
        # Slack, unsure whether the dead worker got them, delivers some events again, to
        # both new workers at once.
        with ThreadPoolExecutor(8) as pool:
            again = list(pool.map(
                lambda pair: _deliver(pair[0], fake_slack, pair[1], retry=1),
                [(second if n % 2 else third, envelope)
                 for n, envelope in enumerate(envelopes[:20] + envelopes[:20])]))
        assert set(again) == {200}
        _wait(lambda: answered() == QUESTIONS, 120, "every question answered after restart")
        recovery_seconds = time.monotonic() - restarted
        time.sleep(LEASE_SECONDS * 2)  # time for any duplicate to show up
    finally:
        second.stop()
        third.stop()

    per_thread = {ts: _bot_messages(fake_slack, channel, ts) for ts in threads}
    duplicated = [ts for ts, messages in per_thread.items() if len(messages) != 1]
    assert duplicated == [], {ts: [m["text"][:60] for m in per_thread[ts]] for ts in duplicated}
    for ts in threads:
        [answer] = answers(fake_slack, channel, ts)
        assert "Looking into it" not in answer["text"]
    with psycopg.connect(postgres_url) as connection:
        states = dict(connection.execute(
            "SELECT state, count(*) FROM inbox GROUP BY state").fetchall())
        answers_stored = connection.execute(
            "SELECT count(*) FROM messages WHERE role = 'assistant'").fetchone()
        taken_over = connection.execute(
            "SELECT count(*) FROM inbox WHERE attempts > 1").fetchone()
    assert states == {"done": QUESTIONS}
    assert answers_stored == (QUESTIONS,)
    figures = {"accepted": accepted, "answered_before_kill": answered_before,
               "started_before_kill": started, "answered": answered(),
               "duplicated": len(duplicated), "taken_over": taken_over[0] if taken_over else 0,
               "redelivered_events": len(again), "recovery_seconds": round(recovery_seconds, 1)}
    artifacts = Path(os.environ.get("BOTHUB_TEST_ARTIFACTS", "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "worker_crash.json").write_text(json.dumps(figures, indent=2))
    print("worker crash figures:", figures)
