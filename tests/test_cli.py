"""`bothub` as an operator runs it: the installed console script in a subprocess."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

BOTHUB = shutil.which("bothub", path=str(Path(sys.executable).parent)) or "bothub"


def run(args: list[str], tmp_path: Path, fake: FakeOpenAI | None, *, stdin: str | None = None,
        **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("OPENAI_", "BOTHUB_", "DATABASE_URL"))}
    environment.update(BOTHUB_DATA_DIR=str(tmp_path / "data"), NO_COLOR="1", COLUMNS="120")
    if fake is not None:
        environment.update(OPENAI_API_KEY=fake.api_key, OPENAI_BASE_URL=fake.base_url)
    environment.update(env)
    return subprocess.run([BOTHUB, *args], capture_output=True, text=True, input=stdin,
                          env=environment, cwd=tmp_path, timeout=60)


def test_ask_prints_the_streamed_answer(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="Use the export button on the Invoices page."))
    result = run(["ask", "How do I export invoices?"], tmp_path, fake_openai)
    assert result.returncode == 0, result.stderr
    assert "Use the export button on the Invoices page." in result.stdout
    assert fake_openai.chat_requests()[-1]["messages"][-1]["content"] == (
        "How do I export invoices?")


def test_without_a_key_ask_answers_from_the_knowledge_base_once_synced(
        tmp_path: Path) -> None:
    before = run(["ask", "How do I turn on two-factor authentication?"], tmp_path, None)
    assert before.returncode == 0
    assert "run `bothub kb sync`" in before.stderr
    assert "couldn't find anything" in before.stdout

    synced = run(["kb", "sync"], tmp_path, None)
    assert synced.returncode == 0, synced.stderr
    assert "Sync ok" in synced.stdout and "added" in synced.stdout

    after = run(["ask", "How do I turn on two-factor authentication?"], tmp_path, None)
    assert after.returncode == 0
    assert "this is what our documentation says" in after.stdout
    assert "Sources" in after.stdout and "Account" in after.stdout
    assert "kb sync" not in after.stderr
    assert "Traceback" not in after.stdout + after.stderr


def test_kb_status_and_search(tmp_path: Path) -> None:
    empty = run(["kb", "status"], tmp_path, None)
    assert empty.returncode == 0 and "No sync has run yet" in empty.stdout
    run(["kb", "sync", "--source", "docs"], tmp_path, None)
    status = run(["kb", "status"], tmp_path, None)
    assert "docs" in status.stdout and "full-text only" in status.stdout
    assert "Last syncs" in status.stdout
    found = run(["kb", "search", "recovery codes"], tmp_path, None)
    assert found.returncode == 0 and "account-security.md" in found.stdout
    assert "bm25" in found.stdout
    unknown = run(["kb", "sync", "--source", "nope"], tmp_path, None)
    assert unknown.returncode == 2 and "no source named 'nope'" in unknown.stdout
    bad_channel = run(["kb", "search", "x", "--channel", "slack"], tmp_path, None)
    assert bad_channel.returncode == 2


def test_ask_when_the_model_is_down_is_polite_and_fails_the_exit_code(tmp_path: Path) -> None:
    result = run(["ask", "hello"], tmp_path, None, OPENAI_API_KEY="sk-x",
                 OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    assert result.returncode == 1
    assert "couldn't reach my language model" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_chat_remembers_the_conversation(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    result = run(["chat"], tmp_path, fake_openai,
                 stdin="My plan is Pro.\nWhich plan am I on?\n/quit\n")
    assert result.returncode == 0, result.stderr
    assert "You said: Which plan am I on?" in result.stdout
    contents = [m["content"] for m in fake_openai.chat_requests()[-1]["messages"]]
    assert "My plan is Pro." in contents


def test_migrate_then_up_to_date(tmp_path: Path) -> None:
    first = run(["migrate"], tmp_path, None)
    assert first.returncode == 0 and "Migrated the database from empty to" in first.stdout
    again = run(["migrate"], tmp_path, None)
    assert "up to date" in again.stdout


@pytest.mark.parametrize(("env", "expected"), [
    ({"BOTHUB_CONFIG": "missing.yaml"}, "missing.yaml: no such file"),
    ({"BOTHUB_LOG_FORMAT": "xml"}, "BOTHUB_LOG_FORMAT"),
    ({"DATABASE_URL": "mysql://x@localhost/db"}, "'mysql' is not supported"),
    ({"DATABASE_URL": "::::"}, "not a database URL"),
])
def test_configuration_errors_are_one_clear_line(tmp_path: Path, env: dict[str, str],
                                                 expected: str) -> None:
    result = run(["ask", "hi"], tmp_path, None, **env)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_database_is_reported_without_a_traceback(tmp_path: Path) -> None:
    result = run(["migrate"], tmp_path, None,
                 DATABASE_URL="postgresql://nobody:secret-pw@127.0.0.1:9/none")
    assert result.returncode == 1
    assert "the database is unavailable" in result.stderr
    assert "Traceback" not in result.stderr and "secret-pw" not in result.stderr


def test_serve_migrates_and_answers_health_checks(tmp_path: Path,
                                                  fake_openai: FakeOpenAI) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BOTHUB_")}
    environment.update(BOTHUB_DATA_DIR=str(tmp_path / "data"), OPENAI_API_KEY=fake_openai.api_key,
                       OPENAI_BASE_URL=fake_openai.base_url)
    server = subprocess.Popen([BOTHUB, "serve", "--port", str(port)], env=environment,
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "bothub serve did not come up"
                time.sleep(0.1)
        assert health.json()["components"]["database"]["state"] == "ok"
        assert (tmp_path / "data" / "bothub.db").exists()
        # A fresh install indexes the shipped sample at start and answers from it.
        def synced(body: dict[str, Any]) -> bool:
            last = body["components"]["knowledge"]["last_sync"]
            return last is not None and last["status"] != "running"

        while not synced(health.json()):
            assert time.monotonic() < deadline, health.json()
            time.sleep(0.2)
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        assert health.json()["components"]["knowledge"]["last_sync"]["status"] == "ok"
        fake_openai.queue(ScriptedReply(text="Open Settings, then Security [1]."))
        answer = httpx.post(f"http://127.0.0.1:{port}/api/chat", timeout=30,
                            json={"message": "How do I turn on two-factor authentication?"})
        assert '"sources": [{"index": 1, "title": "Account' in answer.text
        passages = fake_openai.chat_requests()[-1]["messages"][-2]["content"]
        assert "recovery codes" in passages
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=15)
    assert server.returncode == 0, output
    assert "Traceback" not in output
