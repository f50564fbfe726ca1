"""Buttons and the reply form.

Buttons are ``DynamicItem``s: discord.py matches a pressed button's custom id against
``BUTTON_TEMPLATE`` no matter which process sent the message, so lesson buttons keep
working after a restart. The reply form (a modal) is not kept in discord.py's modal
store at all; its submission is read straight from the interaction (see
``DiscordAdapter._on_interaction``), so a form left open across a restart, or for an
hour, still arrives.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import discord

from adapters.discord.render import (
    ANSWER_INPUT_ID,
    BUTTON_LABEL_LIMIT,
    BUTTON_TEMPLATE,
    button_custom_id,
    modal_custom_id,
)
from bot.messages import Action
from bot.text import preview

if TYPE_CHECKING:
    from discord.ui import Item

log = logging.getLogger(__name__)

MODAL_TITLE = "Your answer"
INPUT_LABEL = "Answer"
INPUT_PLACEHOLDER = "Write your answer here. Only you and the bot see it."
# Discord's limit for a text input; longer answers can be sent as DMs instead.
INPUT_MAX_LENGTH = 4000

_STYLES = {"primary": discord.ButtonStyle.primary, "danger": discord.ButtonStyle.danger}


class ButtonHandler(Protocol):
    """What a pressed button is handed to (the adapter)."""

    async def on_button(
        self,
        interaction: discord.Interaction,
        action: str,
        delivery_id: int | None,
        workspace: str,
        command: str | None,
    ) -> None: ...


class ActionButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=BUTTON_TEMPLATE):
    """A core ``Action`` as a button whose custom id holds the action itself."""

    def __init__(
        self,
        action: str,
        delivery_id: int | None,
        workspace: str,
        command: str | None,
        *,
        label: str = "",
        style: discord.ButtonStyle = discord.ButtonStyle.secondary,
        custom_id: str | None = None,
    ) -> None:
        self.action = action
        self.delivery_id = delivery_id
        self.workspace = workspace
        self.command = command
        super().__init__(
            discord.ui.Button(
                label=label or action,
                style=style,
                custom_id=custom_id or f"mentor:{action}:{delivery_id or ''}:{workspace}",
            )
        )

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: Item[Any],
        match: re.Match[str],
        /,
    ) -> ActionButton:
        delivery = match.group("delivery")
        return cls(
            match.group("action"),
            int(delivery) if delivery else None,
            match.group("workspace") or "",
            match.group("command"),
            custom_id=getattr(item, "custom_id", None),
        )

    async def callback(self, interaction: discord.Interaction) -> None:
        handler: ButtonHandler | None = getattr(interaction.client, "button_handler", None)
        if handler is not None:
            await handler.on_button(
                interaction, self.action, self.delivery_id, self.workspace, self.command
            )


def build_view(
    actions: Iterable[Action], delivery_id: int | None, workspace: str
) -> discord.ui.View | None:
    """A view of action buttons (none when there are no actions)."""
    items = []
    for action in actions:
        custom_id = button_custom_id(action, delivery_id, workspace)
        if custom_id is None:
            log.warning("button %r left out: its command is too long for Discord", action.id)
            continue
        items.append(
            ActionButton(
                action.id,
                delivery_id,
                workspace,
                None if action.opens_reply_form else action.command,
                label=preview(action.label, BUTTON_LABEL_LIMIT),
                style=_STYLES.get(action.style or "", discord.ButtonStyle.secondary),
                custom_id=custom_id,
            )
        )
    if not items:
        return None
    view = discord.ui.View(timeout=None)
    for item in items:
        view.add_item(item)
    return view


def reply_modal(delivery_id: int | None, workspace: str) -> discord.ui.Modal:
    """The reply form for one question.

    It is stopped before it is sent, so discord.py does not keep it waiting in memory;
    the adapter reads the submission from the raw interaction instead.
    """
    modal = discord.ui.Modal(
        title=MODAL_TITLE, timeout=None, custom_id=modal_custom_id(delivery_id, workspace)
    )
    modal.add_item(
        discord.ui.TextInput(
            label=INPUT_LABEL,
            style=discord.TextStyle.paragraph,
            custom_id=ANSWER_INPUT_ID,
            placeholder=INPUT_PLACEHOLDER,
            required=True,
            min_length=1,
            max_length=INPUT_MAX_LENGTH,
        )
    )
    modal.stop()
    return modal


def submitted_text(data: Mapping[str, Any] | None, custom_id: str = ANSWER_INPUT_ID) -> str | None:
    """The value of text input ``custom_id`` in a modal submission.

    Discord nests inputs in action rows (type 1) or, in newer forms, labels (type 18,
    key ``component``); walk both rather than assume one shape.
    """

    def walk(node: Any) -> str | None:
        if isinstance(node, Mapping):
            if node.get("custom_id") == custom_id and "value" in node:
                return str(node.get("value") or "")
            for key in ("components", "component"):
                found = walk(node.get(key))
                if found is not None:
                    return found
        elif isinstance(node, list):
            for child in node:
                found = walk(child)
                if found is not None:
                    return found
        return None

    return walk((data or {}).get("components"))
