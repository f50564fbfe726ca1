"""Slack: slash command, DMs, buttons, the Reply modal and App Home, over Socket Mode or
HTTP, for one workspace (bot token) or many (OAuth installs kept in the database)."""

from adapters.slack.app import SlackAdapter

__all__ = ["SlackAdapter"]
