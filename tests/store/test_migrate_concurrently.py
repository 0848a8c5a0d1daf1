"""Several workers starting at once on one fresh PostgreSQL database migrate it once."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot.store import migrate
from bot.store.database import create_engine

pytestmark = pytest.mark.postgres

BOTHUB = shutil.which("bothub", path=str(Path(sys.executable).parent)) or "bothub"


def test_four_workers_migrating_at_once_all_end_at_head(postgres_url: str,
                                                        tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BOTHUB_")},
           "DATABASE_URL": postgres_url, "BOTHUB_DATA_DIR": str(tmp_path)}
    workers = [subprocess.Popen([BOTHUB, "migrate"], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(4)]
    outputs = [worker.communicate(timeout=120)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0] * 4, outputs
    async def revision() -> str | None:
        engine = create_engine(postgres_url)
        try:
            return await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    assert asyncio.run(revision()) == migrate.head_revision()
