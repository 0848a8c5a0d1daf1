"""The models: each chat model of the fallback chain and the embedding model, each asked for
the smallest thing it can do (a one-token answer, one embedding) with the openai SDK.

A one-token completion rather than `models.retrieve`: it proves what the hub needs (this key may
chat with this model at this endpoint), and OpenAI-compatible servers that have no models
endpoint answer it too. It costs a few tokens per model.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import openai
from openai import AsyncOpenAI

from bot.check.context import Check, Context
from bot.check.findings import Finding, failed, first_line, ok, public_url, skipped, warning
from bot.config import Settings

OPENAI_URL = "https://api.openai.com/v1"
NO_KEY_FIX = ("set OPENAI_API_KEY (and OPENAI_BASE_URL for another OpenAI-compatible server) "
              "for written answers")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A model at an OpenAI-compatible endpoint, with the names of the settings that say so:
    a fix names the variable to change."""

    model: str
    base_url: str | None
    api_key: str
    model_setting: str  # e.g. "BOTHUB_CHAT_MODEL"
    url_setting: str  # e.g. "OPENAI_BASE_URL"
    key_setting: str  # e.g. "OPENAI_API_KEY"

    @property
    def shown_url(self) -> str:
        return public_url(self.base_url or OPENAI_URL)

    def client(self, timeout: float) -> AsyncOpenAI:
        return AsyncOpenAI(api_key=self.api_key, base_url=self.base_url or None,
                           timeout=timeout, max_retries=0)


def checks(context: Context) -> list[Check]:
    settings = context.settings
    if settings.openai_api_key is None:
        return [Check("model", _not_configured), Check("embeddings", _embeddings_without_key)]
    chat = [("model" if i == 0 else "fallback model", e)
            for i, e in enumerate(chat_endpoints(context))]
    found = [Check(part, _chat_check(part, endpoint), _hang_fix(endpoint))
             for part, endpoint in chat]
    embedding = settings.embedding_model.strip()
    if _not_remote(embedding):
        found.append(Check("embeddings", _embeddings_without_key))
    else:
        endpoint = _primary(settings, embedding, "BOTHUB_EMBEDDING_MODEL")
        found.append(Check("embeddings", _embedding_check(endpoint),
                           _hang_fix(endpoint)))
    return found


def chat_endpoints(context: Context) -> list[Endpoint]:
    """The fallback chain as `bot.llm.ChatModel.from_settings` builds it."""
    settings = context.settings
    chain = [_primary(settings, settings.chat_model, "BOTHUB_CHAT_MODEL")]
    chain += [_primary(settings, name.strip(), "BOTHUB_FALLBACK_MODELS")
              for name in settings.fallback_models.split(",") if name.strip()]
    for other in context.behaviour.fallbacks:
        key = os.environ.get(other.api_key_env, "") if other.api_key_env else ""
        chain.append(Endpoint(other.model, other.base_url, key or "unused",
                              "fallbacks[].model in BOTHUB_CONFIG",
                              "fallbacks[].base_url in BOTHUB_CONFIG",
                              other.api_key_env or "fallbacks[].api_key_env in BOTHUB_CONFIG"))
    return chain


def _not_remote(choice: str) -> bool:
    lowered = choice.lower()
    return lowered in {"", "none", "off", "local"} or lowered.startswith("local:")


def _primary(settings: Settings, model: str, model_setting: str) -> Endpoint:
    assert settings.openai_api_key is not None
    return Endpoint(model, settings.openai_base_url, settings.openai_api_key.get_secret_value(),
                    model_setting, "OPENAI_BASE_URL", "OPENAI_API_KEY")


def _hang_fix(endpoint: Endpoint) -> str:
    return f"the endpoint {endpoint.shown_url} is slow or stuck; check {endpoint.url_setting}"


async def _not_configured(context: Context) -> list[Finding]:
    return [skipped("model", "not configured: answers come from the knowledge base only",
                    NO_KEY_FIX)]


async def _embeddings_without_key(context: Context) -> list[Finding]:
    choice = context.settings.embedding_model.strip()
    lowered = choice.lower()
    if lowered in {"", "none", "off"}:
        return [skipped("embeddings", "off: the knowledge base is searched by full text only")]
    if lowered == "local" or lowered.startswith("local:"):
        if importlib.util.find_spec("sentence_transformers") is None:
            return [failed("embeddings", f"BOTHUB_EMBEDDING_MODEL={choice} needs the local "
                                         "embeddings extra, which is not installed",
                           "pip install 'bothub[local-embeddings]' (torch's CPU build first), "
                           "or set BOTHUB_EMBEDDING_MODEL=none")]
        return [ok("embeddings", f"{choice}: a local model, loaded when the hub starts")]
    return [skipped("embeddings", "no OPENAI_API_KEY: the knowledge base is searched by full "
                                  "text only",
                    "set OPENAI_API_KEY for vector search too, or BOTHUB_EMBEDDING_MODEL=local "
                    "for a local model")]


Probe = Callable[[Context], Awaitable[list[Finding]]]


def _chat_check(part: str, endpoint: Endpoint) -> Probe:
    async def run(context: Context) -> list[Finding]:
        client = endpoint.client(context.timeout)
        started = time.monotonic()
        try:
            await client.chat.completions.create(
                model=endpoint.model, messages=[{"role": "user", "content": "Say OK."}],
                max_completion_tokens=1)
        except openai.OpenAIError as exc:
            return [_failure(part, endpoint, exc, endpoint.model_setting)]
        finally:
            await client.close()
        return [ok(part, f"{endpoint.model} answers at {endpoint.shown_url} "
                         f"({time.monotonic() - started:.1f} s)")]

    return run


def _embedding_check(endpoint: Endpoint) -> Probe:
    part = "embeddings"

    async def run(context: Context) -> list[Finding]:
        client = endpoint.client(context.timeout)
        try:
            response = await client.embeddings.create(model=endpoint.model, input=["ping"])
        except openai.OpenAIError as exc:
            return [_failure(part, endpoint, exc, endpoint.model_setting)]
        finally:
            await client.close()
        dims = len(response.data[0].embedding) if response.data else 0
        return [ok(part, f"{endpoint.model}: {dims}-dimension vectors from "
                         f"{endpoint.shown_url}")]

    return run


def _failure(part: str, endpoint: Endpoint, exc: openai.OpenAIError,
             model_setting: str) -> Finding:
    """What went wrong, in the terms of the settings that would fix it."""
    found = _explain(part, endpoint, exc, model_setting)
    return Finding(found.part, found.state, f"{endpoint.model}: {found.detail}", found.fix)


def _explain(part: str, endpoint: Endpoint, exc: openai.OpenAIError,
             model_setting: str) -> Finding:
    said = first_line(exc)
    if isinstance(exc, openai.AuthenticationError):
        return failed(part, f"{endpoint.key_setting} is rejected by {endpoint.shown_url} "
                            f"(401)",
                      f"put a valid key in {endpoint.key_setting} (a new one from "
                      "platform.openai.com/api-keys, or your server's own)")
    if isinstance(exc, openai.PermissionDeniedError):
        return failed(part, f"the key may not use {endpoint.model} (403: {said})",
                      f"allow {endpoint.model} for this key's project, or change "
                      f"{model_setting}")
    if isinstance(exc, openai.NotFoundError):
        return failed(part, f"{endpoint.model} is not served at {endpoint.shown_url} "
                            f"(404: {said})",
                      f"set {model_setting} to a model this endpoint serves, or check "
                      f"{endpoint.url_setting}")
    if isinstance(exc, openai.RateLimitError):
        if getattr(exc, "code", None) == "insufficient_quota":
            return failed(part, f"the key's quota is used up (429: {said})",
                          "add credit or raise the spending limit of the key's account")
        return warning(part, f"rate limited right now (429: {said})",
                       "nothing, if it passes; otherwise raise the account's rate limits")
    if isinstance(exc, openai.APITimeoutError):
        return failed(part, f"no answer from {endpoint.shown_url} in time",
                      _hang_fix(endpoint))
    if isinstance(exc, openai.APIConnectionError):
        return failed(part, f"cannot connect to {endpoint.shown_url} ({_cause(exc)})",
                      f"check {endpoint.url_setting} (unset it for api.openai.com) and that "
                      "the server is up")
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code >= 500:
            return failed(part, f"{endpoint.shown_url} has a problem ({exc.status_code}: "
                                f"{said})",
                          "the provider's side: try again later (the fallback chain covers "
                          "it while it lasts)")
        return failed(part, f"{endpoint.model} refused a one-token request "
                            f"({exc.status_code}: {said})",
                      f"check {model_setting} names a chat model this endpoint serves")
    return failed(part, f"{type(exc).__name__}: {said}", f"check {endpoint.url_setting}")


def _cause(exc: BaseException) -> str:
    """The network error under the SDK's "Connection error.": refused, unknown host..."""
    root = exc
    while (inner := root.__cause__ or root.__context__) is not None:
        root = inner
    return first_line(root, 120) if root is not exc else "connection error"
