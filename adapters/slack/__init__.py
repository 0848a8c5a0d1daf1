"""Slack: events in over HTTP, answers streamed into the thread of each question."""

from adapters.slack.app import SlackAdapter

__all__ = ["SlackAdapter"]
