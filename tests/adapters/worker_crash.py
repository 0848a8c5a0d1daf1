"""A worker that dies mid-answer, and the inbox sweep that takes its questions over: what the
adapters' crash tests share (run on the server's own loop with `LiveServer.run`)."""

from __future__ import annotations

import asyncio

from sqlalchemy import update

from bot.store.tables import InboxEntry, utcnow
from tests.conftest import LiveServer


async def kill_the_worker(server: LiveServer, platform: str) -> None:
    """The answers the platform's adapter was working on stop where they are."""
    adapter = server.hub.redelivery._resumers[platform]
    for task in list(adapter._in_flight._tasks):  # type: ignore[attr-defined]
        task.cancel()
    await asyncio.sleep(0.1)


async def take_over(server: LiveServer) -> None:
    """The dead worker's leases run out and the inbox sweep answers again."""
    async with server.hub.database.begin() as connection:
        await connection.execute(update(InboxEntry).values(lease_until=utcnow()))
    await server.hub.redelivery.tick()
    await server.hub.redelivery.drain()
