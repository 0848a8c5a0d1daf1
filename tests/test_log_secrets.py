"""No secret reaches a log line: configured secrets (exactly) and anything that looks like one
(by pattern), from structlog and from the standard-library loggers of the SDKs, in nested
values and in tracebacks, at DEBUG. The rendered output is captured and searched as text."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog

from bot.app import Hub
from bot.config import Settings
from bot.log_redaction import (
    CONFIGURED_PLACEHOLDER,
    KEY_PLACEHOLDER,
    SecretScrubber,
    configured_secrets,
)
from bot.logging import NOISY_LOGGERS, configure_for
from tests.conftest import make_settings, question
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.fakes.recording_channel import RecordingChannel

# Built from pieces so that secret scanners do not flag this repository. Some look like their
# kind (and would also be caught by pattern); others look like nothing, so only the exact
# registration of configured values can catch them.
SECRETS = {
    "openai_api_key": "sk-proj-" + "Lg7Qw2Er4Ty6Ui8Op0As1Df3Gh5Jk7Lz",
    "slack_bot_token": "xoxb-" + "2468013579-1357924680-QpWoEiRuTyAlSkDjFhGz",
    "slack_signing_secret": "f00dfeed" + "c0ffee0ddba11ad5eedcafe8bead1e5",
    "slack_app_token": "xapp-" + "1-A0B1C2D3E4F-9876543210-deadbeefcafe",
    "slack_client_secret": "client" + "secret-plain-words-here",
    "slack_state_secret": "state" + "secret-also-plain",
    "discord_bot_token": "MTA5ODc2NTQzMjEwOTg3NjU0." + "GhIjKl.mnopqrstuvwxyzABCDEF012345",
    "microsoft_app_password": "tEAms" + "~pAss.word_42",
    "admin_token": "admin" + "-token-just-words",
}
DB_PASSWORD = "db" + "-Pa55word!42"
REDIS_PASSWORD = "redis" + "Pa55word99"
NOT_CONFIGURED = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"  # a GitHub token, by pattern
PASTED_KEY = "sk-proj-" + "Pasted9Key8From7A6User5Zz4Yy3Xx2"
ALL = [*SECRETS.values(), DB_PASSWORD, REDIS_PASSWORD, NOT_CONFIGURED, PASTED_KEY]
SDK_LOGGERS = ("slack_sdk", "slack_bolt", "discord", "botbuilder", "aiohttp.client", "httpx",
               "httpcore", "openai", "sqlalchemy.engine", "uvicorn.error", "uvicorn.access")


def full_settings(tmp_path: Path, fmt: str = "json", **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        **SECRETS, "slack_client_id": "1234.5678", "microsoft_app_id": "app-id",
        "database_url": f"postgresql://bothub:{DB_PASSWORD.replace('!', '%21')}@127.0.0.1:1/db",
        "redis_url": f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0",
        "log_level": "DEBUG", "log_format": fmt}
    values.update(overrides)
    return make_settings(tmp_path, None, **values)


@contextmanager
def captured_log(settings: Settings) -> Iterator[io.StringIO]:
    """bothub's real logging set-up writing into a buffer, every SDK logger at DEBUG; the
    previous logging and structlog configuration are restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    names = (*NOISY_LOGGERS, *SDK_LOGGERS)
    saved_levels = {name: logging.getLogger(name).level for name in names}
    config = structlog.get_config()
    processors = config["processors"]
    saved_processors = list(processors)
    buffer = io.StringIO()
    try:
        configure_for(settings, stream=buffer)
        structlog.configure(cache_logger_on_first_use=False)  # leave no logger bound to this
        for name in names:
            logging.getLogger(name).setLevel(logging.DEBUG)
        yield buffer
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
        processors[:] = saved_processors  # the same list: cached loggers hold it
        structlog.configure(processors=processors, logger_factory=config["logger_factory"],
                            wrapper_class=config["wrapper_class"],
                            context_class=config["context_class"],
                            cache_logger_on_first_use=config["cache_logger_on_first_use"])


def assert_no_secret(text: str, secrets: list[str] = ALL) -> None:
    leaked = [secret for secret in secrets if secret in text]
    assert not leaked, f"secrets in the log: {leaked}\n{text}"


@dataclass
class Client:
    """An object whose repr() holds a secret, as SDK clients and requests often do."""

    token: str


def test_configured_secrets_are_every_secret_setting(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclass
    class Fallback:
        api_key_env: str | None

    @dataclass
    class Behaviour:
        fallbacks: list[Fallback]

    monkeypatch.setenv("AZURE_OPENAI_KEY", "azure" + "-fallback-key-1")
    found = configured_secrets(full_settings(tmp_path),
                               Behaviour([Fallback("AZURE_OPENAI_KEY"), Fallback(None)]))
    assert set(found) >= {*SECRETS.values(), DB_PASSWORD, DB_PASSWORD.replace("!", "%21"),
                          REDIS_PASSWORD, "azure-fallback-key-1"}
    assert "1234.5678" not in found and "app-id" not in found  # ids are not secrets


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_structlog_and_library_lines_show_no_secret(tmp_path: Path, fmt: str) -> None:
    log = structlog.get_logger("bot.test")
    token, bot_token = SECRETS["admin_token"], SECRETS["slack_bot_token"]
    with captured_log(full_settings(tmp_path, fmt)) as output:
        log.info("plain", token_value=token, note=f"the admin token is {token}")
        log.debug("nested", request={"headers": {"Authorization": f"Bearer {bot_token}"},
                                     "retries": [1, (SECRETS["discord_bot_token"], 2)],
                                     "auth": {SECRETS["slack_signing_secret"]}})
        log.warning(f"in the event itself {SECRETS['microsoft_app_password']}")
        log.info("objects", client=Client(SECRETS["slack_client_secret"]),
                 payload=SECRETS["slack_state_secret"].encode())
        log.info("unconfigured", found=f"pushed with {NOT_CONFIGURED}", password="hunter2!",
                 headers={"X-Api-Key": "short1"})
        try:
            try:
                raise ConnectionError(f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0 refused")
            except ConnectionError as exc:
                raise RuntimeError(f"openai rejected {SECRETS['openai_api_key']}") from exc
        except RuntimeError:
            log.exception("structlog.traceback")
            logging.getLogger("slack_sdk.web.base_client").debug(
                "Sending a request - url: %s, headers: %s", "https://slack.com/api/chat.postMessage",
                {"Authorization": f"Bearer {bot_token}"}, exc_info=True)
        logging.getLogger("httpx").debug("HTTP Request: GET %s", "https://slack.com/api/x?token="
                                         + bot_token)
        logging.getLogger("discord.http").debug("Authorization: Bot %s",
                                                SECRETS["discord_bot_token"])
        logging.getLogger("botbuilder.core").info("app password %s",
                                                  SECRETS["microsoft_app_password"])
        logging.getLogger("sqlalchemy.engine.Engine").info(
            "connecting to postgresql://bothub:%s@127.0.0.1:1/db", DB_PASSWORD)
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5",
                                                 "GET", f"/admin?token={token}", "1.1", 200)
        logging.getLogger("aiohttp.client").warning("state %s", SECRETS["slack_state_secret"])
    text = output.getvalue()
    assert_no_secret(text)
    assert "hunter2" not in text and "short1" not in text  # named by their keys
    # The lines themselves were written, with what is not secret intact.
    for expected in ("plain", "nested", "structlog.traceback", "Traceback (most recent call",
                     "ConnectionError", "slack.com/api/chat.postMessage", "HTTP Request",
                     "connecting to postgresql://", "127.0.0.1:5", "retries",
                     CONFIGURED_PLACEHOLDER, KEY_PLACEHOLDER, "[redacted a GitHub token]"):
        assert expected in text, expected
    assert text.count("\n") >= 12


async def test_a_conversation_with_a_pasted_key_logs_no_secret(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, fake_openai, log_level="DEBUG",
                             **{**SECRETS, "slack_client_id": "1234.5678",
                                "microsoft_app_id": "app-id"})
    with captured_log(settings) as output:
        hub = await Hub.create(settings)
        try:
            # An answer can repeat a configured value that fits no pattern (from a document,
            # say); the answer is stored, and the database driver logs its parameters.
            fake_openai.queue(ScriptedReply(
                text=f"Rotate it; the old one was {SECRETS['slack_client_secret']}."))
            channel = RecordingChannel()
            await hub.engine.handle(question(f"my key {PASTED_KEY} and my bot token "
                                             f"{SECRETS['slack_bot_token']} stopped working"),
                                    channel)
            fake_openai.fail_next(3, status=500)  # the failure path logs too
            await hub.engine.handle(question(f"still broken: {PASTED_KEY}", thread="t2"),
                                    RecordingChannel())
        finally:
            await hub.close()
    text = output.getvalue()
    assert_no_secret(text)
    assert "chat/completions" in text and "llm.failed" in text  # the SDKs did log at DEBUG
    assert "INSERT INTO" in text and CONFIGURED_PLACEHOLDER in text
    assert "rotate" in channel.posts[0].text


async def test_a_database_url_password_is_not_logged(tmp_path: Path) -> None:
    settings = full_settings(tmp_path, redis_url=None)
    log = structlog.get_logger("bot.test")
    with captured_log(settings) as output:
        with pytest.raises(Exception) as failure:  # nothing listens on port 1
            await Hub.create(settings)
        log.error("database.unavailable", url=settings.database_url, error=str(failure.value))
        try:
            raise failure.value
        except Exception:
            log.exception("database.traceback")
        log.warning(f"password authentication failed, tried {DB_PASSWORD}")
    text = output.getvalue()
    assert_no_secret(text, [DB_PASSWORD, DB_PASSWORD.replace("!", "%21")])
    assert "database.unavailable" in text and "127.0.0.1" in text


def test_short_values_are_not_registered_and_nothing_changes_without_secrets() -> None:
    scrubber = SecretScrubber()
    scrubber.register(["abc", "", None, "   long   "[:5]])
    event = {"event": "abc opened", "timestamp": "2026-01-01T00:00:00Z", "count": 3,
             "items": ["a", 2]}
    assert scrubber(None, "info", event) == event
    scrubber.register(["abcdefgh"])
    assert scrubber(None, "info", {"event": "xabcdefghx"})["event"] == (
        f"x{CONFIGURED_PLACEHOLDER}x")
    cyclic: list[Any] = ["abcdefgh"]
    cyclic.append(cyclic)
    assert "abcdefgh" not in str(scrubber(None, "info", {"loop": cyclic}))
