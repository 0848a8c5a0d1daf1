"""Configuration errors name the file, the key or the variable, and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Behaviour, ConfigError, load_behaviour, load_settings


def _load(tmp_path: Path, text: str | bytes) -> Behaviour:
    path = tmp_path / "bothub.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return load_behaviour(path)


def test_defaults_without_a_file() -> None:
    behaviour = load_behaviour(None)
    assert behaviour.persona.bot_name == "bothub"
    assert "{user_name}" in behaviour.persona.system_prompt
    assert behaviour.price("gpt-4o-2024-08-06") == behaviour.price("gpt-4o")
    assert behaviour.price("unknown-model") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("persona:\n  bot_nam: Pip\n", "persona.bot_nam: is not a known setting"),
    ("limits:\n  history_token_budget: ten\n", "limits.history_token_budget:"),
    ("persona:\n  system_prompt: 'Hi {username}'\n", "unknown placeholder(s) username"),
    ("persona:\n  system_prompt: 'Hi {user_name'\n", "not a valid template"),
    ("persona:\n  system_prompt: 'Hi {user_name.__class__}'\n", "unknown placeholder"),
    ("channels:\n  - channel: C1\n    answer:\n      max_words: 5\n",
     "channels.0.answer.max_words:"),
    ("prices:\n  gpt-4o: {input: -1, output: 2}\n", "prices.gpt-4o.input:"),
    ("persona: [unclosed\n", "line 2, column 1: not valid YAML"),
    ("- just\n- a list\n", "top level must be a mapping"),
    (b"\xff\xfe\x00binary", "cannot be read"),
])
def test_bad_files_name_the_file_and_the_key(tmp_path: Path, text: str | bytes,
                                             expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, text)
    assert str(tmp_path / "bothub.yaml") in str(error.value)
    assert expected in str(error.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such file.*BOTHUB_CONFIG"):
        load_behaviour(tmp_path / "absent.yaml")


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert _load(tmp_path, "") == Behaviour()


def test_channel_overrides_last_match_wins(tmp_path: Path) -> None:
    behaviour = _load(tmp_path, """
channels:
  - platform: slack
    answer: {max_words: 100}
  - platform: slack
    channel: "C-billing*"
    answer: {max_words: 40}
""")
    assert behaviour.policy_for("slack", "T1", "C-billing-eu").answer.max_words == 40
    assert behaviour.policy_for("slack", "T1", "C-general").answer.max_words == 100
    assert behaviour.policy_for("discord", "G1", "C-billing").answer.max_words == 250


def test_bad_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTHUB_LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="BOTHUB_LOG_FORMAT: must be 'console' or 'json'"):
        load_settings(_env_file=None)


def test_blank_key_means_no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "  ")
    assert not load_settings(_env_file=None).model_configured


def test_the_shipped_example_config_is_valid() -> None:
    example = Path(__file__).parent.parent / "bothub.example.yaml"
    behaviour = load_behaviour(example)
    assert behaviour.persona.bot_name == "Pip"
    assert behaviour.policy_for("slack", "T1", "C0BILLING01").answer.max_words == 120
