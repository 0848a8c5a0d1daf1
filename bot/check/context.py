"""What every check is given, and the shape of a check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.check.findings import Finding
from bot.config import Behaviour, Settings


@dataclass(frozen=True, slots=True)
class Context:
    settings: Settings
    behaviour: Behaviour
    timeout: float  # seconds one check may take; SDK clients get it as their own timeout


@dataclass(frozen=True, slots=True)
class Check:
    """One thing to reach. `part` names it in the timeout or crash finding the runner makes
    when `run` does not come back with findings of its own; `hint` is that finding's fix."""

    part: str
    run: Callable[[Context], Awaitable[list[Finding]]]
    hint: str = ""
