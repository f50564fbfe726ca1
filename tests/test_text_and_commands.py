"""Splitting long text for platform limits, and the shared command grammar."""

from __future__ import annotations

import re

import pytest

from bot.commands import CommandError, help_text, is_command, parse_command
from bot.text import split_text


def test_split_keeps_paragraphs_and_never_cuts_a_sentence() -> None:
    sentence = "Ownership means you follow a problem to its end. "
    text = "\n\n".join(sentence * 8 for _ in range(12))
    parts = split_text(text, 500)
    assert all(len(p) <= 500 for p in parts)
    assert "".join(parts).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace(
        "\n", ""
    )
    for part in parts:
        assert part.endswith("."), part[-40:]
        assert re.match(r"^[A-Z]", part)


def test_split_handles_unicode_and_unbreakable_runs() -> None:
    assert split_text("שלום עולם. 你好。", 3000) == ["שלום עולם. 你好。"]
    long_url = "https://example.invalid/" + "a" * 50
    assert all(len(p) <= 20 for p in split_text(long_url, 20))


@pytest.mark.parametrize(
    ("text", "name", "args"),
    [
        ("/mentor", "help", ()),
        ("/mentor start", "start", ()),
        ("/mentor start data-engineering", "start", ("data-engineering",)),
        ("start", "start", ()),
        ("  /mentor   NEXT ", "next", ()),
        ("/mentor forget-me confirm", "forget-me", ("confirm",)),
        ('/mentor start "Data Engineering Leadership"', "start", ("Data Engineering Leadership",)),
    ],
)
def test_parse_command(text: str, name: str, args: tuple[str, ...]) -> None:
    command = parse_command(text)
    assert (command.name, command.args) == (name, args)


def test_mentions_are_normalised_from_each_platform() -> None:
    command = parse_command("/mentor help <@U123ABC|ana> <@!4242> <@777>")
    assert command.mentions == ("U123ABC", "4242", "777")


def test_unknown_command_suggests_the_closest() -> None:
    with pytest.raises(
        CommandError,
        match=re.escape("Unknown command `\ue000strat\ue001`. Did you mean `/mentor start`"),
    ):
        parse_command("/mentor strat")


def test_is_command_and_help() -> None:
    assert is_command("/mentor next") and is_command("/mentor")
    assert not is_command("I mentor people") and not is_command("/mentorship")
    assert "/mentor forget-me" in help_text()
