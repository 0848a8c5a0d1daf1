"""The model checks: a one-token answer from each chat model, one embedding, with the SDK."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.check import State
from bot.config import Behaviour, FallbackModel
from tests.check.conftest import SilentServer, check_settings, findings_for, the
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply


async def test_without_a_key_answers_come_from_the_knowledge_base(tmp_path: Path) -> None:
    findings = await findings_for(check_settings(tmp_path))
    model = the(findings, "model")
    assert model.state is State.SKIPPED
    assert model.detail == "not configured: answers come from the knowledge base only"
    assert "OPENAI_API_KEY" in model.fix
    assert "full text only" in the(findings, "embeddings").detail


async def test_each_model_of_the_chain_is_asked_for_one_token(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    findings = await findings_for(check_settings(tmp_path, fake_openai,
                                                 fallback_models="gpt-4o-mini"))
    model, fallback = the(findings, "model"), the(findings, "fallback model")
    assert model.state is State.OK and model.detail.startswith(
        f"gpt-4o answers at {fake_openai.base_url}")
    assert fallback.state is State.OK and fallback.detail.startswith("gpt-4o-mini answers")
    embeddings = the(findings, "embeddings")
    assert embeddings.state is State.OK
    assert embeddings.detail.startswith("text-embedding-3-small: 1536-dimension vectors")
    requests = fake_openai.chat_requests()
    assert sorted(r["model"] for r in requests) == ["gpt-4o", "gpt-4o-mini"]
    assert all(r["max_completion_tokens"] == 1 for r in requests)


async def test_a_rejected_key_names_the_variable(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.model_faults = {"gpt-4o": ScriptedReply(status=401)}
    findings = await findings_for(check_settings(tmp_path, fake_openai))
    found = the(findings, "model")
    assert found.state is State.FAILED
    assert found.detail == f"gpt-4o: OPENAI_API_KEY is rejected by {fake_openai.base_url} (401)"
    assert "put a valid key in OPENAI_API_KEY" in found.fix
    assert all(fake_openai.api_key not in f.detail + f.fix for f in findings)


async def test_an_unknown_model_names_its_setting(tmp_path: Path,
                                                  fake_openai: FakeOpenAI) -> None:
    fake_openai.model_faults = {"gpt-nope": ScriptedReply(
        status=404, text="The model `gpt-nope` does not exist")}
    found = the(await findings_for(check_settings(tmp_path, fake_openai,
                                                  chat_model="gpt-nope")), "model")
    assert found.state is State.FAILED
    assert found.detail.startswith("gpt-nope: gpt-nope is not served at")
    assert "set BOTHUB_CHAT_MODEL to a model this endpoint serves" in found.fix


async def test_a_refused_connection_names_the_base_url(tmp_path: Path,
                                                       closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/v1"
    findings = await findings_for(check_settings(tmp_path, openai_api_key="sk-test-0123456789",
                                                 openai_base_url=url))
    for part in ("model", "embeddings"):
        found = the(findings, part)
        assert found.state is State.FAILED
        assert f"cannot connect to {url}" in found.detail
        assert "check OPENAI_BASE_URL" in found.fix


async def test_a_hanging_model_times_out_and_the_fallback_still_answers(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.model_faults = {"gpt-4o": ScriptedReply(delay=30)}
    findings = await findings_for(check_settings(tmp_path, fake_openai,
                                                 fallback_models="gpt-4o-mini"), seconds=3)
    stuck = the(findings, "model")
    assert stuck.state is State.FAILED
    assert "in time" in stuck.detail or stuck.detail == "no answer within 3 s"
    assert the(findings, "fallback model").state is State.OK


async def test_an_endpoint_that_never_answers_times_out(tmp_path: Path,
                                                        silent_server: SilentServer) -> None:
    findings = await findings_for(check_settings(
        tmp_path, openai_api_key="sk-test-0123456789",
        openai_base_url=f"{silent_server.url}/v1"), seconds=1)
    assert the(findings, "model").state is State.FAILED
    assert the(findings, "embeddings").state is State.FAILED


async def test_a_yaml_fallback_uses_its_own_key_variable(
        tmp_path: Path, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_LLM_KEY", "sk-local-fallback-secret")
    fake_openai.model_faults = {"gpt-4o-mini": ScriptedReply(status=401)}
    behaviour = Behaviour(fallbacks=[FallbackModel(model="gpt-4o-mini",
                                                   base_url=fake_openai.base_url,
                                                   api_key_env="LOCAL_LLM_KEY")])
    findings = await findings_for(check_settings(tmp_path, fake_openai), behaviour)
    found = the(findings, "fallback model")
    assert found.state is State.FAILED
    assert "LOCAL_LLM_KEY is rejected" in found.detail and "LOCAL_LLM_KEY" in found.fix
    sent = [r.headers["authorization"] for r in fake_openai.requests
            if r.json and r.json.get("model") == "gpt-4o-mini"]
    assert sent == ["Bearer sk-local-fallback-secret"]
    assert all("sk-local-fallback-secret" not in f.detail + f.fix for f in findings)


async def test_embeddings_switched_off_are_not_asked_for(tmp_path: Path,
                                                         fake_openai: FakeOpenAI) -> None:
    found = the(await findings_for(check_settings(tmp_path, fake_openai,
                                                  embedding_model="none")), "embeddings")
    assert found.state is State.SKIPPED and "full text only" in found.detail
    assert not [r for r in fake_openai.requests if r.path == "/v1/embeddings"]
