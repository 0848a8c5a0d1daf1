"""What `bothub serve` does once it is up: index and read the knowledge base, then keep what
lives as long as the process out of the garbage collector's full passes."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from bot.app import Hub
from bot.cli import _freeze_when_ready
from tests.conftest import make_settings
from tests.fakes.openai_server import FakeOpenAI


async def test_start_services_indexes_reads_and_then_says_the_knowledge_is_ready(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    hub = await Hub.create(make_settings(tmp_path, fake_openai))
    try:
        assert not hub.knowledge_ready.is_set()
        await hub.start_services()
        await asyncio.wait_for(hub.knowledge_ready.wait(), 60)
        _, runs = await hub.knowledge.status()
        assert [(run.trigger, run.status) for run in runs] == [("first", "ok")]
        assert await hub.knowledge.index.count() > 0
    finally:
        await hub.close()


async def test_the_long_lived_heap_is_frozen_only_once_the_hub_is_ready(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    hub = await Hub.create(make_settings(tmp_path, fake_openai))
    frozen_before = gc.get_freeze_count()
    try:
        freezing = asyncio.create_task(_freeze_when_ready(hub))
        await asyncio.sleep(0.05)
        assert not freezing.done() and gc.get_freeze_count() == frozen_before
        hub.knowledge_ready.set()
        await asyncio.wait_for(freezing, 30)
        assert gc.get_freeze_count() > frozen_before
    finally:
        gc.unfreeze()  # the rest of this test process collects as usual
        await hub.close()
