"""Rendering within Discord's limits, custom ids and nonces (no network)."""

from __future__ import annotations

import re

import pytest

from adapters.discord.components import build_view, reply_modal, submitted_text
from adapters.discord.errors import translate
from adapters.discord.render import (
    BUTTON_TEMPLATE,
    CONTENT_LIMIT,
    DESCRIPTION_LIMIT,
    EMBED_TOTAL_LIMIT,
    EMBEDS_PER_MESSAGE,
    TITLE_LIMIT,
    button_custom_id,
    nonce,
    parse_footer,
    parse_modal_custom_id,
    reference,
    render,
)
from adapters.discord.slash import (
    FOLDED,
    MentorGroup,
    command_text,
    holiday_choices,
    raw_command_words,
    zone_choices,
)
from bot.commands import SPECS
from bot.messages import Action, OutgoingMessage, Section
from bot.ports import TemporarySendError


def _message(**changes: object) -> OutgoingMessage:
    base: dict[str, object] = {
        "platform": "discord",
        "workspace": "1400000000000000001",
        "user": "1400000000000000010",
        "text": "Reply in this DM to answer.",
    }
    base.update(changes)
    return OutgoingMessage(**base)  # type: ignore[arg-type]


def _words(text: str) -> list[str]:
    return re.sub(r"\*\*[^*]*\*\*", " ", text).split()


def test_huge_lesson_fits_discords_limits_and_keeps_every_word() -> None:
    sentence = "Senior engineers multiply the team's output through context. "
    sections = tuple(
        Section(f"Section {n} " + "with a very long title " * 20, sentence * (40 + 37 * n))
        for n in range(12)
    )
    message = _message(
        title="A lesson " * 40,
        sections=sections,
        question="What will you delegate this week? " * 200,
        actions=(
            Action("reply", "Reply", "reply", "primary", opens_reply_form=True),
            Action("skip", "Skip", "skip"),
        ),
        delivery_id=77,
        delivery_key="lesson:1:0.2.2:1",
        kind="lesson",
    )
    parts = render(message, mark=True)
    assert len(parts) > 3
    for number, part in enumerate(parts, start=1):
        assert part.content is None
        assert 1 <= len(part.embeds) <= EMBEDS_PER_MESSAGE
        assert sum(len(e) for e in part.embeds) <= EMBED_TOTAL_LIMIT
        for embed in part.embeds:
            assert len(embed.title or "") <= TITLE_LIMIT
            assert len(embed.description or "") <= DESCRIPTION_LIMIT
        footer = parse_footer(part.embeds[-1].footer.text)
        assert footer == (reference(message), number, len(parts))
        assert part.actions == (message.actions if number == len(parts) else ())
        assert len(nonce(message, number)) <= 25
    shown = " ".join(e.description or "" for p in parts for e in p.embeds)
    expected = (
        " ".join(s.body for s in sections) + " " + (message.question or "") + " " + message.text
    )
    assert _words(shown) == _words(expected)


def test_plain_answers_are_content_split_at_2000() -> None:
    text = "\n\n".join(f"Paragraph {n}. " + "Words that matter. " * 30 for n in range(20))
    parts = render(_message(text=text))
    assert len(parts) > 1
    assert all(p.content and len(p.content) <= CONTENT_LIMIT and not p.embeds for p in parts)
    assert _words(" ".join(p.content or "" for p in parts)) == _words(text)


def test_title_folds_into_the_first_block() -> None:
    [part] = render(_message(title="Your progress", text="Course: Data"))
    [embed] = part.embeds
    assert (embed.title, embed.description) == ("Your progress", "Course: Data")


def test_reminders_and_lessons_get_different_references() -> None:
    lesson = _message(delivery_id=5, delivery_key="lesson:1:0.2.2:1")
    reminder = _message(delivery_id=5, delivery_key="snooze:5")
    assert reference(lesson) != reference(reminder)
    assert nonce(lesson, 1) != nonce(reminder, 1)
    assert nonce(lesson, 1) == nonce(_message(delivery_id=5, delivery_key="lesson:1:0.2.2:1"), 1)


def test_custom_ids_round_trip_and_fit() -> None:
    template = re.compile(BUTTON_TEMPLATE)
    skip = Action("skip", "Skip", "skip")
    match = template.fullmatch(button_custom_id(skip, 12, "1400000000000000001"))
    assert match is not None
    assert match.group("action", "delivery", "workspace", "command") == (
        "skip",
        "12",
        "1400000000000000001",
        "skip",
    )
    confirm = Action("forget_confirm", "Delete my data", "forget-me confirm", "danger")
    assert template.fullmatch(button_custom_id(confirm, None, "")).group("command") == (
        "forget-me confirm"
    )
    reply = Action("reply", "Reply", "reply", opens_reply_form=True)
    assert template.fullmatch(button_custom_id(reply, 9, "direct")).group("command") is None
    fits = Action("x", "X", "schedule " + "9" * 70)
    assert button_custom_id(fits, 1, "1400000000000000001") == f"mentor:x:1::{fits.command}"
    too_long = Action("y", "Y", "schedule " + "9" * 120)
    assert button_custom_id(too_long, 1, "1400000000000000001") is None  # never cut
    view = build_view((skip, confirm, reply, too_long), 12, "1400000000000000001")
    assert view is not None
    assert [item.custom_id for item in view.children] == [  # type: ignore[attr-defined]
        "mentor:skip:12:1400000000000000001:skip",
        "mentor:forget_confirm:12:1400000000000000001:forget-me confirm",
        "mentor:reply:12:1400000000000000001",
    ]
    assert build_view((), 1, "") is None


def test_reply_form_and_its_submission() -> None:
    modal = reply_modal(31, "1400000000000000001")
    payload = modal.to_dict()
    assert payload["custom_id"] == "mentor-answer:31:1400000000000000001"
    assert parse_modal_custom_id(payload["custom_id"]) == (31, "1400000000000000001")
    assert parse_modal_custom_id("mentor-answer::") == (None, "")
    assert parse_modal_custom_id("someone-else:1") is None
    rows = {"components": [{"type": 1, "components": [{"custom_id": "answer", "value": "hi"}]}]}
    assert submitted_text(rows) == "hi"
    labels = {"components": [{"type": 18, "component": {"custom_id": "answer", "value": "yo"}}]}
    assert submitted_text(labels) == "yo"
    assert submitted_text({"components": []}) is None


def test_command_text_and_raw_words() -> None:
    assert command_text(["schedule", "08:30", "mon, wed", "Europe/Berlin"]) == (
        "schedule 08:30 'mon, wed' Europe/Berlin"
    )
    assert command_text(["start", None, ""]) == "start"
    assert command_text(["snooze", 1.5]) == "snooze 1.5"
    data = {
        "name": "mentor",
        "options": [
            {"name": "frob", "type": 1, "options": [{"name": "x", "type": 3, "value": "1"}]}
        ],
    }
    assert raw_command_words(data) == ["frob", "1"]
    assert all("/" in c.value or c.value == "UTC" for c in zone_choices(""))


@pytest.mark.parametrize("error", [OSError("reset"), TimeoutError(), RuntimeError("odd")])
def test_network_failures_are_temporary(error: BaseException) -> None:
    assert isinstance(translate(error), TemporarySendError)


def test_the_slash_group_mirrors_the_core_grammar() -> None:
    """A command added to the core needs its subcommand here, or Discord users lack it."""

    class Runner:
        async def run_command(self, interaction: object, words: object) -> None:
            return None

        def course_choices(self) -> list[tuple[str, str]]:
            return []

    group = MentorGroup(Runner())  # type: ignore[arg-type]
    names = {c.name for c in group.commands}
    # Past Discord's 25 subcommands, a command rides on a related subcommand's options.
    assert set(FOLDED.values()) <= names
    assert names | set(FOLDED) == {s.name for s in SPECS if not s.hidden}
    for command in group.commands:
        assert 1 <= len(command.description) <= 100  # Discord's limits
        assert len(command.parameters) <= 25


def test_holiday_codes_are_offered_as_they_are_typed() -> None:
    assert next(c.value for c in holiday_choices("")) == "off"
    assert [c.value for c in holiday_choices("de")][:2] == ["DE", "DEU"]
    assert "DE-BY" in [c.value for c in holiday_choices("de-b")]
    # The last code of a list is completed; the ones before it are kept.
    assert "DE, US-CA" in [c.value for c in holiday_choices("DE, us-c")]
    assert all(len(c.value) <= 100 for c in holiday_choices("DE, " * 40))
