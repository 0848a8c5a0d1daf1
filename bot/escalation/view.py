"""What every platform shows of an escalation: its headline, its state, and the actions that
apply in that state. Adapters only render these in their own widgets."""

from __future__ import annotations

from dataclasses import dataclass

from bot.escalation.desk import describe
from bot.escalation.store import State, Ticket


@dataclass(frozen=True, slots=True)
class Action:
    verb: str  # claim, resolve, resolve_save or release
    label: str
    primary: bool = False


_ACTIONS = {
    State.OPEN: (Action("claim", "Claim", primary=True), Action("resolve", "Resolve"),
                 Action("resolve_save", "Resolve & save to KB")),
    State.CLAIMED: (Action("resolve", "Resolve", primary=True),
                    Action("resolve_save", "Resolve & save to KB"), Action("release", "Release")),
    State.RESOLVED: (),
}


def actions(ticket: Ticket) -> tuple[Action, ...]:
    return _ACTIONS[ticket.state]


def headline(ticket: Ticket) -> str:
    return f"Escalation #{ticket.id}: {describe(ticket.reason)}"


def state_line(ticket: Ticket) -> str:
    if ticket.state is State.OPEN:
        return "🟠 Waiting for an agent"
    if ticket.state is State.CLAIMED:
        return f"🟢 Claimed by {ticket.claimed_by_name or ticket.claimed_by or ''}"
    return "✅ Resolved"
