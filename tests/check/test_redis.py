"""The Redis check: PING with the asyncio client, at the shared server and where none is."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bot.check import State
from tests.check.conftest import SilentServer, check_settings, findings_for, the

PASSWORD = "Redis-Pa55word-xyz"


@pytest.fixture
def guarded_redis(tmp_path: Path, closed_port: int) -> Iterator[int]:
    """A private redis-server that wants PASSWORD, on a free port."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    server = subprocess.Popen(
        [binary, "--port", str(closed_port), "--bind", "127.0.0.1", "--requirepass", PASSWORD,
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=closed_port, password=PASSWORD)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()
        yield closed_port
    finally:
        server.terminate()
        server.wait(10)


async def test_not_configured_says_what_that_means(tmp_path: Path) -> None:
    found = the(await findings_for(check_settings(tmp_path)), "redis")
    assert found.state is State.SKIPPED
    assert "per process" in found.detail and "REDIS_URL" in found.fix


async def test_the_shared_redis_answers(tmp_path: Path) -> None:
    found = the(await findings_for(check_settings(tmp_path,
                                                  redis_url="redis://127.0.0.1:6379/0")), "redis")
    assert found.state is State.OK
    assert found.detail.startswith("Redis ") and "at redis://127.0.0.1:6379/0 answers PING" \
        in found.detail


async def test_redis_down_fails_without_the_password(tmp_path: Path, closed_port: int) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{closed_port}/0"
    findings = await findings_for(check_settings(tmp_path, redis_url=url))
    found = the(findings, "redis")
    assert found.state is State.FAILED
    assert f"cannot reach Redis at redis://:***@127.0.0.1:{closed_port}/0" in found.detail
    assert "start Redis or correct REDIS_URL" in found.fix
    assert all(PASSWORD not in f.detail + f.fix for f in findings)


async def test_a_wrong_password_is_named(tmp_path: Path, guarded_redis: int) -> None:
    wrong = the(await findings_for(check_settings(
        tmp_path, redis_url=f"redis://:not-the-password@127.0.0.1:{guarded_redis}/0")), "redis")
    assert wrong.state is State.FAILED
    assert "rejected the password" in wrong.detail
    assert wrong.fix == "correct the password in REDIS_URL"
    missing = the(await findings_for(check_settings(
        tmp_path, redis_url=f"redis://127.0.0.1:{guarded_redis}/0")), "redis")
    assert missing.state is State.FAILED and "wants a password" in missing.detail
    right = the(await findings_for(check_settings(
        tmp_path, redis_url=f"redis://:{PASSWORD}@127.0.0.1:{guarded_redis}/0")), "redis")
    assert right.state is State.OK


async def test_a_redis_that_never_answers_times_out(tmp_path: Path,
                                                    silent_server: SilentServer) -> None:
    started = time.monotonic()
    found = the(await findings_for(check_settings(
        tmp_path, redis_url=f"redis://127.0.0.1:{silent_server.port}/0"), seconds=1), "redis")
    assert found.state is State.FAILED
    assert time.monotonic() - started < 5


async def test_a_url_that_is_not_redis_is_named(tmp_path: Path) -> None:
    found = the(await findings_for(check_settings(tmp_path, redis_url="http://cache:6379")),
                "redis")
    assert found.state is State.FAILED
    assert found.detail.startswith("REDIS_URL is not a Redis URL")
