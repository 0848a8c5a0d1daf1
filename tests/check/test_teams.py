"""The Teams check: the bot's own token from the fake Entra ID token endpoint, with msal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.check import State
from bot.config import Settings
from tests.check.conftest import SilentServer, check_settings, findings_for, the
from tests.fakes.botframework_server import FakeBotFramework


@pytest.fixture
def trusted(fake_teams: FakeBotFramework, monkeypatch: pytest.MonkeyPatch) -> FakeBotFramework:
    """msal (requests) trusts the fake issuer's self-signed certificate."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake_teams.issuer.ca_path)
    return fake_teams


def teams_settings(tmp_path: Path, fake: FakeBotFramework, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"microsoft_app_id": fake.app_id,
                              "microsoft_app_password": fake.app_password,
                              "teams_login_url": fake.issuer.login_url_prefix}
    values.update(overrides)
    return check_settings(tmp_path, **values)


async def test_no_app_id_means_auth_off(tmp_path: Path) -> None:
    found = the(await findings_for(check_settings(tmp_path)), "teams")
    assert found.state is State.WARNING
    assert found.detail.startswith("auth off (emulator only)")
    assert "MICROSOFT_APP_ID and MICROSOFT_APP_PASSWORD" in found.fix


async def test_the_credentials_get_a_token(tmp_path: Path, trusted: FakeBotFramework) -> None:
    found = the(await findings_for(teams_settings(tmp_path, trusted)), "teams")
    assert found.state is State.OK
    assert found.detail == (f"app {trusted.app_id} got a token from "
                            f"{trusted.issuer.login_url()}")
    requests = trusted.issuer.token_requests
    assert [r.status for r in requests] == [200]


async def test_a_wrong_password_is_rejected(tmp_path: Path, trusted: FakeBotFramework) -> None:
    password = "not-the-client-secret-42"
    findings = await findings_for(teams_settings(tmp_path, trusted,
                                                 microsoft_app_password=password))
    found = the(findings, "teams")
    assert found.state is State.FAILED
    assert found.detail.startswith("credentials rejected (invalid_client: AADSTS7000215")
    assert "MICROSOFT_APP_PASSWORD" in found.fix
    assert all(password not in f.detail + f.fix for f in findings)


async def test_an_unknown_app_is_rejected(tmp_path: Path, trusted: FakeBotFramework) -> None:
    found = the(await findings_for(teams_settings(
        tmp_path, trusted, microsoft_app_id="00000000-0000-0000-0000-000000000000")), "teams")
    assert found.state is State.FAILED
    assert found.detail.startswith("credentials rejected (unauthorized_client")


async def test_an_unreachable_login_service(tmp_path: Path, trusted: FakeBotFramework,
                                            closed_port: int) -> None:
    found = the(await findings_for(teams_settings(
        tmp_path, trusted, teams_login_url=f"https://127.0.0.1:{closed_port}/")), "teams")
    assert found.state is State.FAILED
    assert found.detail.startswith(f"cannot reach https://127.0.0.1:{closed_port}/botframework.com")
    assert "TEAMS_LOGIN_URL" in found.fix


async def test_a_login_service_that_never_answers_times_out(
        tmp_path: Path, trusted: FakeBotFramework, silent_server: SilentServer) -> None:
    found = the(await findings_for(teams_settings(
        tmp_path, trusted, teams_login_url=f"https://127.0.0.1:{silent_server.port}/"),
        seconds=1), "teams")
    assert found.state is State.FAILED
    assert found.detail == "no answer within 1 s"
    assert "TEAMS_LOGIN_URL" in found.fix
