"""The optional moderation check against the fake server's /v1/moderations (the real SDK):
flagged and clean inputs, images, answers, and that it never stands in the way of answering
(fails open, quickly) nor makes a request when it is off."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from bot.config import Behaviour, ConfigError, ModerationConfig, load_behaviour
from bot.moderation import NOT_CHECKED, Moderator, Verdict
from tests.conftest import make_settings, write_config
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

PNG = "data:image/png;base64,iVBORw0KGgo="


def moderator(tmp_path: Path, fake: FakeOpenAI | None, **config: Any) -> Moderator:
    behaviour = Behaviour(moderation=ModerationConfig(**{"enabled": True, **config}))
    return Moderator.from_settings(make_settings(tmp_path, fake), behaviour)


def moderation_requests(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [r.json or {} for r in fake.requests if r.path == "/v1/moderations"]


def checks(direction: str, result: str) -> float:
    return REGISTRY.get_sample_value("bothub_moderation_checks_total",
                                     {"direction": direction, "result": result}) or 0.0


async def test_a_flagged_input(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.moderation_categories = ["harassment", "violence"]
    check = moderator(tmp_path, fake_openai)
    before = checks("input", "flagged")
    try:
        verdict = await check.check_input("you are a FLAGME idiot")
    finally:
        await check.close()
    assert verdict == Verdict(flagged=True, categories=["harassment", "violence"], checked=True)
    assert moderation_requests(fake_openai) == [
        {"model": "omni-moderation-latest", "input": "you are a FLAGME idiot"}]
    assert fake_openai.requests[-1].headers["authorization"] == f"Bearer {fake_openai.api_key}"
    assert checks("input", "flagged") == before + 1


async def test_a_clean_input(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    check = moderator(tmp_path, fake_openai, model="omni-moderation-2024-09-26")
    try:
        verdict = await check.check_input("How do I reset my password?")
    finally:
        await check.close()
    assert verdict == Verdict(flagged=False, categories=[], checked=True)
    assert moderation_requests(fake_openai)[0]["model"] == "omni-moderation-2024-09-26"


async def test_images_are_checked_with_the_text(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    check = moderator(tmp_path, fake_openai)
    try:
        verdict = await check.check_input("what is this? flagme", images=[PNG])
        alone = await check.check_input("", images=[PNG])
    finally:
        await check.close()
    assert verdict.flagged and not alone.flagged and alone.checked
    first, second = moderation_requests(fake_openai)
    assert first["input"] == [{"type": "text", "text": "what is this? flagme"},
                              {"type": "image_url", "image_url": {"url": PNG}}]
    assert second["input"] == [{"type": "image_url", "image_url": {"url": PNG}}]


@pytest.mark.parametrize("status", [500, 503, 429, 401])
async def test_the_endpoint_down_fails_open(tmp_path: Path, fake_openai: FakeOpenAI,
                                            status: int) -> None:
    fake_openai.moderation_fault = ScriptedReply(status=status)
    check = moderator(tmp_path, fake_openai)
    before = checks("input", "failed")
    try:
        verdict = await check.check_input("you are a FLAGME idiot")
    finally:
        await check.close()
    assert verdict is NOT_CHECKED and not verdict.flagged
    assert checks("input", "failed") == before + 1
    assert 1 <= len(moderation_requests(fake_openai)) <= 2  # one quick retry at most


async def test_an_unreachable_endpoint_fails_open(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, None, openai_api_key="sk-test",
                             openai_base_url="http://127.0.0.1:9/v1")  # nothing listens
    check = Moderator.from_settings(settings, Behaviour(moderation=ModerationConfig(
        enabled=True)))
    try:
        assert await check.check_input("flagme") is NOT_CHECKED
    finally:
        await check.close()


async def test_a_slow_endpoint_fails_open_within_its_timeout(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.moderation_fault = ScriptedReply(delay=3)
    check = moderator(tmp_path, fake_openai, timeout_seconds=0.3)
    started = time.monotonic()
    try:
        assert await check.check_input("flagme") is NOT_CHECKED
    finally:
        await check.close()
    assert time.monotonic() - started < 0.8  # its retry included


@pytest.mark.parametrize("body", [b"{not json", b'{"id": "modr-1", "results": []}', b"[]"],
                         ids=["not-json", "no-results", "wrong-shape"])
async def test_a_garbled_response_fails_open(tmp_path: Path, fake_openai: FakeOpenAI,
                                             body: bytes) -> None:
    fake_openai.moderation_fault = ScriptedReply(body=body)
    check = moderator(tmp_path, fake_openai)
    try:
        assert await check.check_input("flagme") is NOT_CHECKED
    finally:
        await check.close()


async def test_disabled_makes_no_request(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    check = Moderator.from_settings(make_settings(tmp_path, fake_openai), Behaviour())
    assert not check.enabled and not check.checks_output
    assert await check.check_input("flagme") is NOT_CHECKED
    assert await check.check_output("flagme") is NOT_CHECKED
    await check.close()
    assert moderation_requests(fake_openai) == []


async def test_enabled_without_a_key_makes_no_request(tmp_path: Path,
                                                      fake_openai: FakeOpenAI) -> None:
    check = moderator(tmp_path, None)
    assert not check.enabled
    assert await check.check_input("flagme") is NOT_CHECKED
    assert fake_openai.requests == []


async def test_empty_text_is_not_sent(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    check = moderator(tmp_path, fake_openai)
    try:
        assert await check.check_input("   ") is NOT_CHECKED
    finally:
        await check.close()
    assert moderation_requests(fake_openai) == []


async def test_answers_are_checked_only_when_asked(tmp_path: Path,
                                                   fake_openai: FakeOpenAI) -> None:
    inputs_only = moderator(tmp_path, fake_openai)
    both = moderator(tmp_path, fake_openai, check_output=True)
    try:
        assert not inputs_only.checks_output and both.checks_output
        assert await inputs_only.check_output("flagme") is NOT_CHECKED
        assert moderation_requests(fake_openai) == []
        verdict = await both.check_output("an answer that says flagme")
    finally:
        await inputs_only.close()
        await both.close()
    assert verdict.flagged and verdict.checked
    assert len(moderation_requests(fake_openai)) == 1


def test_the_yaml_section(tmp_path: Path) -> None:
    assert Behaviour().moderation == ModerationConfig(
        enabled=False, model="omni-moderation-latest", check_output=False, timeout_seconds=5.0)
    path = write_config(tmp_path, "moderation:\n  enabled: true\n  check_output: true\n")
    behaviour = load_behaviour(path)
    assert behaviour.moderation.enabled and behaviour.moderation.check_output
    bad = write_config(tmp_path, "moderation:\n  enabeld: true\n")
    with pytest.raises(ConfigError, match=r"moderation\.enabeld: is not a known setting"):
        load_behaviour(bad)


async def test_a_flagged_question_gets_a_polite_refusal_and_no_answer(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    from bot import replies
    from bot.app import Hub
    from bot.engine import Outcome
    from tests.conftest import question, write_config
    from tests.fakes.recording_channel import RecordingChannel

    config = write_config(tmp_path, "moderation: {enabled: true, check_output: true}\n")
    hub = await Hub.create(make_settings(tmp_path, fake_openai, config_file=config))
    try:
        channel = RecordingChannel()
        result = await hub.engine.handle(question("FLAGME please"), channel)
        assert result.outcome is Outcome.REFUSED
        assert [r.text for r in channel.shown] == [replies.MODERATION_DECLINED]
        assert fake_openai.chat_requests() == []  # the model never saw it

        fake_openai.queue(ScriptedReply(text="Here is FLAGME content."))
        withheld = RecordingChannel()
        await hub.engine.handle(question("a clean question", thread="t2"), withheld)
        assert withheld.shown[-1].text == replies.MODERATION_WITHHELD
    finally:
        await hub.close()
