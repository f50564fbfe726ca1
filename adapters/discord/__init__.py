"""Discord: slash commands, buttons and a reply form in guilds and DMs; lessons in DMs."""

from adapters.discord.adapter import INTENTS, DiscordAdapter

__all__ = ["INTENTS", "DiscordAdapter"]
