"""Discord: slash commands, buttons and a reply form in guilds and DMs; lessons in DMs."""

from adapters.discord.adapter import INTENTS, DiscordAdapter, gateway_intents

__all__ = ["INTENTS", "DiscordAdapter", "gateway_intents"]
