"""`bothub escalations list | claim | resolve`: the human queue from the command line.

Actions taken here are stored like any other (with the CLI as where they came from); the
platforms are not running in this process, so the posts in the human channels catch up when an
agent next acts there.
"""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.table import Table

from bot.app import Hub
from bot.cli_runtime import out, run_with_hub
from bot.escalation.desk import describe
from bot.escalation.store import Actor, State

escalations = typer.Typer(help="Escalations to people: list, claim, resolve.",
                          no_args_is_help=True)
AgentOption = Annotated[str, typer.Option("--agent", help="Who is acting (default: you).")]


def _desk(hub: Hub):
    assert hub.engine.desk is not None
    return hub.engine.desk


@escalations.command("list")
def list_(all_states: Annotated[bool, typer.Option(
        "--all", help="Include resolved escalations.")] = False) -> None:
    """Open and claimed escalations (with --all, resolved ones too)."""

    async def work(hub: Hub) -> int:
        states = tuple(s.value for s in State) if all_states else ("open", "claimed")
        tickets = await _desk(hub).store.tickets(states=states, limit=500)
        if not tickets:
            out.print("No escalations." if all_states else "No open escalations.")
            return 0
        table = Table("#", "State", "Reason", "User", "From", "To", "Claimed by", "Opened")
        for t in tickets:
            table.add_row(str(t.id), t.state.value, describe(t.reason), t.user_name or t.user_id,
                          str(t.origin), f"{t.destination_platform}:{t.destination}"
                          + ("" if t.posted else " (not posted yet)"),
                          t.claimed_by_name or t.claimed_by or "",
                          t.created_at.strftime("%Y-%m-%d %H:%M"))
        out.print(table)
        return 0

    raise typer.Exit(run_with_hub(work))


def _act(escalation_id: int, action: str, agent: str, *, save: bool = False) -> None:
    async def work(hub: Hub) -> int:
        answer = await _desk(hub).act(escalation_id, action, Actor(agent, agent, "cli"),
                                      save=save)
        out.print(answer)
        return 0 if answer.startswith(("You've", f"Escalation #{escalation_id} is")) \
            and "already" not in answer and "not claimed" not in answer else 1

    raise typer.Exit(run_with_hub(work))


@escalations.command()
def claim(escalation_id: Annotated[int, typer.Argument(help="The escalation's number.")],
          agent: AgentOption = "") -> None:
    """Take an escalation: the bot stays silent in its conversation."""
    _act(escalation_id, "claim", agent or getpass.getuser())


@escalations.command()
def release(escalation_id: Annotated[int, typer.Argument(help="The escalation's number.")],
            agent: AgentOption = "") -> None:
    """Put a claimed escalation back in the queue."""
    _act(escalation_id, "release", agent or getpass.getuser())


@escalations.command()
def resolve(escalation_id: Annotated[int, typer.Argument(help="The escalation's number.")],
            agent: AgentOption = "",
            save: Annotated[bool, typer.Option(
                "--save", help="Add the conversation to the knowledge base.")] = False) -> None:
    """Close an escalation: the bot answers in its conversation again."""
    _act(escalation_id, "resolve", agent or getpass.getuser(), save=save)
