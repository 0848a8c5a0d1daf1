"""`bothub escalations` as an operator runs it: the console script in a subprocess."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.app import Hub
from bot.escalation.store import Actor, EscalationStore
from bot.model import ConversationKey
from tests.conftest import make_settings
from tests.test_cli import run

KEY = ConversationKey("discord", "G1", "C1", "T1")


async def _escalate(tmp_path: Path) -> int:
    hub = await Hub.create(make_settings(tmp_path, None))
    try:
        conversation = await hub.store.open(KEY)
        ticket, _ = await EscalationStore(hub.database).open(
            conversation.id, KEY, reason="topic:refunds", detail="refund please", summary="",
            user=Actor("1001", "Ada", "discord"), destination_platform="slack",
            destination="C0AGENTS")
        return ticket.id
    finally:
        await hub.close()


def test_list_claim_and_resolve_from_the_command_line(tmp_path: Path) -> None:
    number = asyncio.run(_escalate(tmp_path))
    listed = run(["escalations", "list"], tmp_path, None, COLUMNS="250")
    assert listed.returncode == 0, listed.stderr
    assert "policy topic: refunds" in listed.stdout and "not posted yet" in listed.stdout

    claimed = run(["escalations", "claim", str(number), "--agent", "grace"], tmp_path, None)
    assert claimed.returncode == 0 and "You've claimed" in claimed.stdout
    again = run(["escalations", "claim", str(number), "--agent", "eve"], tmp_path, None)
    assert again.returncode == 1 and "already claimed by grace" in again.stdout

    resolved = run(["escalations", "resolve", str(number), "--agent", "grace"], tmp_path, None)
    assert resolved.returncode == 0 and "is resolved" in resolved.stdout
    assert "No open escalations." in run(["escalations", "list"], tmp_path, None).stdout
    everything = run(["escalations", "list", "--all"], tmp_path, None, COLUMNS="250").stdout
    assert "resolved" in everything and "grace" in everything

    unknown = run(["escalations", "resolve", "4242"], tmp_path, None)
    assert unknown.returncode == 1 and "no escalation #4242" in unknown.stdout
    bad = run(["escalations", "claim", "not-a-number"], tmp_path, None)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
