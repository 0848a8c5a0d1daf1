"""Microsoft Teams, through the Bot Framework (see `wiring` for the one SDK-facing module)."""

from adapters.teams.app import TeamsAdapter

__all__ = ["TeamsAdapter"]
