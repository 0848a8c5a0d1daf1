"""docs/configuration.md is the generator's output, so a setting added without its docs fails
here; and .env.example, the settings model and the reference name the same variables."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from bot.config import Behaviour, Settings, load_behaviour
from bot.config_reference import COMMAND, LIBRARY_VARIABLES, render, settings_variables
from tests.deploy.dockerfile import ROOT

REFERENCE = ROOT / "docs" / "configuration.md"
ENV_EXAMPLE = ROOT / ".env.example"
BOTHUB = shutil.which("bothub", path=str(Path(sys.executable).parent)) or "bothub"


@pytest.fixture(scope="module")
def reference() -> str:
    return render()


def env_example_variables() -> list[str]:
    """Every `NAME=` line of .env.example, commented out or not."""
    return re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(encoding="utf-8"),
                      flags=re.MULTILINE)


def test_the_committed_reference_is_up_to_date(reference: str) -> None:
    committed = REFERENCE.read_text(encoding="utf-8")
    assert committed == reference, (
        f"docs/configuration.md is out of date with bot/config.py: run `{COMMAND}`")


def test_every_setting_says_what_it_is_for() -> None:
    undocumented = [variable for variable, field in settings_variables().items()
                    if not (field.description or "").strip()]
    assert not undocumented, f"add description= to the Settings fields of {undocumented}"


def test_every_variable_appears_once_with_its_default_and_secrecy(reference: str) -> None:
    for variable, field in settings_variables().items():
        rows = [line for line in reference.splitlines() if line.startswith(f"| `{variable}`")]
        assert len(rows) == 1, variable
        secret = "SecretStr" in str(field.annotation)
        assert rows[0].startswith(f"| `{variable}` 🔒 |") == secret, rows[0]
    assert "| `BOTHUB_KB_SYNC_CRON` | text | `0 2 * * *` |" in reference
    assert "| `BOTHUB_INBOX_LEASE_SECONDS` | number, ≥ 1, ≤ 3600 | `60` |" in reference
    assert "| `SLACK_NATIVE_STREAMING` | boolean | `true` |" in reference
    assert "| `DATABASE_URL` | text | unset |" in reference


def test_behaviour_keys_carry_the_defaults_in_force_at_their_place(reference: str) -> None:
    # Each bucket's default differs from the others', though they share one model; and a
    # bucket written in the file needs both of its keys.
    assert ("| `limits.rate.user.per_minute` | number, > 0, ≤ 100000 | `10` (required when you "
            "write `limits.rate.user`) |") in reference
    assert ("| `limits.rate.channel.per_minute` | number, > 0, ≤ 100000 | `120` (required "
            "when you write `limits.rate.channel`) |") in reference
    assert "| `knowledge.sources[].kind` | one of `folder`, `web`, `escalations` | required |" \
        in reference
    # A comment beside the field is its description; a pipe in a pattern stays in its cell.
    assert "| `discord.sharded` | boolean | `false` | AutoShardedClient:" in reference
    assert r"matching `^(slack\|discord\|teams):.+$`" in reference
    assert "### `channels[].persona`\n\nThe same keys as `persona`." in reference


def test_the_documented_defaults_are_the_defaults(reference: str, tmp_path: Path) -> None:
    """A file that writes every key at its documented default loads, and behaves exactly as
    no file at all: each key exists, and each default in the reference is the real one."""
    rows = re.findall(r"^\| `([a-z_.]+)` \| [^|]+ \| `([^`]*)`", reference, re.MULTILINE)
    written: dict[str, Any] = {}
    for key, default in rows:
        if default.endswith("…\""):  # shortened in the table (the system prompt)
            continue
        *parents, leaf = key.split(".")
        place = written
        for part in parents:
            place = place.setdefault(part, {})
        place[leaf] = yaml.safe_load(default)
    assert len(rows) > 40 and {"limits", "escalation", "budgets"} <= set(written)
    path = tmp_path / "bothub.yaml"
    path.write_text(yaml.safe_dump(written), encoding="utf-8")
    assert load_behaviour(path) == Behaviour()


def test_env_example_lists_only_variables_bothub_reads() -> None:
    readable = set(settings_variables()) | {name for name, _, _ in LIBRARY_VARIABLES}
    unknown = sorted(set(env_example_variables()) - readable)
    assert not unknown, f".env.example names {unknown}, which bot/config.py does not read"


def test_env_example_lists_every_setting() -> None:
    missing = [v for v in settings_variables() if v not in env_example_variables()]
    assert not missing, f"add {missing} to .env.example"


def test_each_variable_is_read_from_one_name() -> None:
    names = [v for v in settings_variables()]
    assert len(names) == len(set(names)) == len(Settings.model_fields)


def test_bothub_config_reference_prints_it(reference: str, tmp_path: Path) -> None:
    printed = subprocess.run([BOTHUB, "config-reference"], capture_output=True, text=True,
                             timeout=60, cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == reference


def test_bothub_config_reference_writes_it(reference: str, tmp_path: Path) -> None:
    from bot.cli import app

    target = tmp_path / "configuration.md"
    written = CliRunner().invoke(app, ["config-reference", "--output", str(target)])
    assert written.exit_code == 0, written.output
    assert target.read_text(encoding="utf-8") == reference
    failed = CliRunner().invoke(app, ["config-reference", "--output",
                                      str(tmp_path / "missing" / "x.md")])
    assert failed.exit_code == 1
    assert "Cannot write" in failed.output
    assert not isinstance(failed.exception, Exception)  # an exit, not a crash
