"""The runner: configuration problems as findings, parts side by side under their timeouts,
surprises as one line, secrets never in what comes back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.check import State, check_everything, load_configuration, runner
from bot.check.context import Check, Context
from bot.check.findings import Finding, ok
from tests.check.conftest import SilentServer, check_settings, findings_for, the
from tests.fakes.slack_server import FakeSlack


@pytest.fixture
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No .env and no bothub variables from the machine running the tests."""
    monkeypatch.chdir(tmp_path)
    for name in ("BOTHUB_CONFIG", "DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY",
                 "SLACK_BOT_TOKEN", "DISCORD_BOT_TOKEN", "MICROSOFT_APP_ID", "LANCEDB_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BOTHUB_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def test_a_bad_environment_value_is_a_finding_naming_the_variable(
        clean_environment: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTHUB_INBOX_LEASE_SECONDS", "soon")
    found, settings, _ = load_configuration()
    assert settings is None
    assert [f.state for f in found] == [State.FAILED]
    assert found[0].part == "configuration"
    assert "BOTHUB_INBOX_LEASE_SECONDS:" in found[0].detail


async def test_a_bad_yaml_file_is_named_and_the_rest_is_still_checked(
        clean_environment: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = clean_environment / "bothub.yaml"
    config.write_text("persona:\n  bot_name: [unclosed\n", encoding="utf-8")
    monkeypatch.setenv("BOTHUB_CONFIG", str(config))
    findings = await check_everything(30)
    configuration = the(findings, "configuration")
    assert configuration.state is State.FAILED
    assert configuration.detail.startswith(f"{config} line ")
    assert "not valid YAML" in configuration.detail
    assert the(findings, "database").state is State.WARNING  # no database yet: still checked


async def test_a_good_configuration_is_ok(clean_environment: Path) -> None:
    findings = await check_everything(30)
    assert the(findings, "configuration").detail == (
        "environment valid; default behaviour (no BOTHUB_CONFIG)")
    assert [f.part for f in findings][:4] == ["configuration", "database", "knowledge base",
                                              "redis"]


async def test_hanging_parts_wait_side_by_side(tmp_path: Path, fake_slack: FakeSlack,
                                               silent_server: SilentServer) -> None:
    settings = check_settings(
        tmp_path, redis_url=f"redis://127.0.0.1:{silent_server.port}/0",
        openai_api_key="sk-test-0123456789", openai_base_url=f"{silent_server.url}/v1",
        slack_bot_token=fake_slack.bot_token, slack_signing_secret="s" * 16,
        slack_api_url=f"{silent_server.url}/api/")
    started = time.monotonic()
    findings = await findings_for(settings, seconds=3)
    elapsed = time.monotonic() - started
    for part in ("redis", "model", "embeddings", "slack"):
        assert the(findings, part).state is State.FAILED
    assert elapsed < 9, f"parts waited one after another: {elapsed:.1f} s"  # 4 x 3 s: 12 s


async def test_a_broken_check_is_one_line_and_secrets_are_scrubbed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = "xoxb-0000-1111-the-real-token"

    async def leaky(context: Context) -> list[Finding]:
        return [ok("leaky", f"token={token}", f"SLACK_BOT_TOKEN={token}")]

    async def broken(context: Context) -> list[Finding]:
        raise KeyError("team_id")

    monkeypatch.setattr(runner, "PARTS", (
        lambda context: [Check("leaky", leaky)],
        lambda context: [Check("broken", broken, "report it")]))
    findings = await findings_for(check_settings(tmp_path, slack_bot_token=token,
                                                 slack_signing_secret="s" * 16))
    leaked = the(findings, "leaky")
    assert token not in leaked.detail + leaked.fix
    assert leaked.detail.startswith("token=[redacted")
    broke = the(findings, "broken")
    assert (broke.state, broke.detail, broke.fix) == (State.FAILED, "KeyError: 'team_id'",
                                                      "report it")
