"""`bothub check`: reach every configured part of a deployment and say what to fix.

Each part (database, knowledge index, Redis, the models, Slack, Discord, Teams, escalation
routing) has its own module that talks to the part with the same client the hub uses, so a
green check means the hub will get through too. `runner` runs them side by side, each under its
own timeout, and turns anything unexpected into a finding: a part that hangs or breaks never
stops the others, and no secret ends up in what is printed.
"""

from bot.check.findings import Finding, State
from bot.check.runner import check_everything, load_configuration, run_checks

__all__ = ["Finding", "State", "check_everything", "load_configuration", "run_checks"]
