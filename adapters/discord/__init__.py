"""Discord: a gateway client; questions become threads, answers stream by edits."""

from adapters.discord.app import DiscordAdapter

__all__ = ["DiscordAdapter"]
