"""`bothub check` as an operator runs it: the installed console script in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.botframework_server import FakeBotFramework
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.fakes.slack_server import FakeSlack

BOTHUB = shutil.which("bothub", path=str(Path(sys.executable).parent)) or "bothub"
OWN_VARIABLES = ("OPENAI_", "BOTHUB_", "DATABASE_URL", "REDIS_URL", "LANCEDB_URI", "SLACK_",
                 "DISCORD_", "MICROSOFT_", "TEAMS_")


def bothub_check(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(OWN_VARIABLES)}
    environment.update(BOTHUB_DATA_DIR=str(tmp_path / "data"), NO_COLOR="1", COLUMNS="200")
    environment.update(env)
    return subprocess.run([BOTHUB, "check", *args], capture_output=True, text=True,
                          env=environment, cwd=tmp_path, timeout=90)


def test_a_fresh_install_prints_the_table_and_exits_0(tmp_path: Path) -> None:
    result = bothub_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any("Part" in line and "State" in line and "To fix" in line for line in lines)
    database = next(line for line in lines if line.startswith("│ database"))
    assert "warning" in database and "no database yet" in database
    assert any(line.startswith("│ model") and "not configured" in line
               and "knowledge base only" in line for line in lines)
    assert "Everything configured is reachable." in result.stdout
    assert result.stderr == ""


def test_everything_configured_and_reachable(tmp_path: Path, fake_openai: FakeOpenAI,
                                            fake_slack: FakeSlack, fake_discord: FakeDiscord,
                                            fake_teams: FakeBotFramework) -> None:
    result = bothub_check(
        tmp_path, "--json",
        OPENAI_API_KEY=fake_openai.api_key, OPENAI_BASE_URL=fake_openai.base_url,
        REDIS_URL="redis://127.0.0.1:6379/0",
        SLACK_BOT_TOKEN=fake_slack.bot_token, SLACK_SIGNING_SECRET=fake_slack.signing_secret,
        SLACK_API_URL=fake_slack.api_url, SLACK_ESCALATION_CHANNEL="C0GENERAL",
        DISCORD_BOT_TOKEN=fake_discord.bot_token, DISCORD_API_URL=fake_discord.api_url,
        DISCORD_ESCALATION_CHANNEL=fake_discord.general_channel_id,
        MICROSOFT_APP_ID=fake_teams.app_id, MICROSOFT_APP_PASSWORD=fake_teams.app_password,
        TEAMS_LOGIN_URL=fake_teams.issuer.login_url_prefix,
        TEAMS_ESCALATION_CONVERSATION="19:agents@thread.tacv2",
        REQUESTS_CA_BUNDLE=fake_teams.issuer.ca_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    states = {f["part"]: f["state"] for f in report["findings"]}
    assert report["ok"] is True
    assert states == {
        "configuration": "ok", "database": "warning", "knowledge base": "warning",
        "redis": "ok", "model": "ok", "embeddings": "ok", "slack": "ok",
        "slack escalation channel": "ok", "discord": "ok", "discord escalation channel": "ok",
        "teams": "ok", "escalation": "ok"}
    assert set(report["findings"][0]) == {"part", "state", "detail", "fix"}


def test_a_failure_exits_1_and_no_secret_is_printed(tmp_path: Path, fake_openai: FakeOpenAI,
                                                    fake_slack: FakeSlack,
                                                    fake_discord: FakeDiscord,
                                                    fake_teams: FakeBotFramework,
                                                    closed_port: int) -> None:
    secrets = {"OPENAI_API_KEY": "sk-proj-Secret0penAIKey123",
               "SLACK_BOT_TOKEN": "xoxb-111-222-SecretSlackBotToken",
               "SLACK_SIGNING_SECRET": "SecretSigningSecret456",
               "SLACK_APP_TOKEN": "xapp-1-SecretSlackAppToken",
               "DISCORD_BOT_TOKEN": "MTE.SecretDiscordToken.abc",
               "MICROSOFT_APP_PASSWORD": "SecretTeamsPassword789",
               "BOTHUB_ADMIN_TOKEN": "SecretAdminToken000"}
    redis_password, database_password = "SecretRedisPw1", "SecretDbPw2"
    fake_openai.model_faults = {"gpt-4o": ScriptedReply(status=401)}
    fake_slack.fail("auth.test", "invalid_auth", times=2)
    for extra in ("--json", None):
        result = bothub_check(
            tmp_path, *([extra] if extra else []), "--timeout", "30", **secrets,
            OPENAI_BASE_URL=fake_openai.base_url, SLACK_API_URL=fake_slack.api_url,
            DISCORD_API_URL=fake_discord.api_url, MICROSOFT_APP_ID=fake_teams.app_id,
            TEAMS_LOGIN_URL=fake_teams.issuer.login_url_prefix,
            REQUESTS_CA_BUNDLE=fake_teams.issuer.ca_path,
            REDIS_URL=f"redis://:{redis_password}@127.0.0.1:{closed_port}/0",
            DATABASE_URL=f"postgresql://bothub:{database_password}@127.0.0.1:{closed_port}/db")
        assert result.returncode == 1, result.stdout + result.stderr
        printed = result.stdout + result.stderr
        for secret in [*secrets.values(), redis_password, database_password]:
            assert secret not in printed
        assert "Traceback" not in printed
        if extra == "--json":
            report = json.loads(result.stdout)
            assert report["ok"] is False
            failed = {f["part"]: f for f in report["findings"] if f["state"] == "failed"}
            assert {"database", "redis", "model", "slack", "discord", "teams"} <= set(failed)
            assert "OPENAI_API_KEY is rejected" in failed["model"]["detail"]
            assert "SLACK_BOT_TOKEN is rejected (invalid_auth)" in failed["slack"]["detail"]
            assert "DISCORD_BOT_TOKEN is rejected" in failed["discord"]["detail"]
            assert "credentials rejected" in failed["teams"]["detail"]
            assert f"redis://:***@127.0.0.1:{closed_port}/0" in failed["redis"]["detail"]
        else:
            assert "Something needs fixing" in result.stdout


@pytest.mark.parametrize(("variable", "value"), [("BOTHUB_LOG_FORMAT", "xml"),
                                                 ("BOTHUB_KB_SYNC_CRON", "every night")])
def test_a_bad_environment_value_is_named_without_a_traceback(
        tmp_path: Path, variable: str, value: str) -> None:
    result = bothub_check(tmp_path, **{variable: value})
    assert result.returncode == 1
    assert f"{variable}:" in result.stdout
    assert "configuration" in result.stdout and "failed" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_a_bad_yaml_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "bothub.yaml"
    config.write_text("limits:\n  max_input_chars: lots\n", encoding="utf-8")
    result = bothub_check(tmp_path, "--json", BOTHUB_CONFIG=str(config))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    configuration = report["findings"][0]
    assert configuration["part"] == "configuration" and configuration["state"] == "failed"
    assert "limits.max_input_chars" in configuration["detail"]
    assert len(report["findings"]) > 1  # the other parts were still checked


def test_the_timeout_is_validated(tmp_path: Path) -> None:
    result = bothub_check(tmp_path, "--timeout", "0")
    assert result.returncode == 2
    assert "--timeout" in result.stderr
