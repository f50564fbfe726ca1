"""Block Kit rendering and reading Slack's text back: Slack's limits and formats."""

from __future__ import annotations

import json
from typing import Any

from adapters.slack.render import (
    MESSAGE_BLOCK_LIMIT,
    SECTION_LIMIT,
    from_slack_text,
    home_view,
    question_from_blocks,
    read_button_value,
    render_parts,
    reply_modal,
    to_mrkdwn,
)
from adapters.slack.translate import read_dm, submitted_answer
from bot.messages import Action, EventKind, OutgoingMessage, Section


def message(**fields: object) -> OutgoingMessage:
    base: dict[str, object] = {"platform": "slack", "workspace": "T1", "user": "U1", "text": ""}
    return OutgoingMessage(**{**base, **fields})  # type: ignore[arg-type]


def test_light_markdown_becomes_mrkdwn_and_control_characters_are_escaped() -> None:
    text = "**Bold** and *it*, ~~gone~~, [docs](https://example.com) & a<b\n- item\n# Head"

    assert to_mrkdwn(text) == (
        "*Bold* and _it_, ~gone~, <https://example.com|docs> &amp; a&lt;b\n• item\n*Head*"
    )


def test_code_quotes_and_slack_tokens_are_left_alone() -> None:
    text = "> quoted\n`a<b **c**`\n```\nx = 1 ** 2\n```\nsee <@U123> and <https://x.io|x>"

    assert to_mrkdwn(text) == (
        "> quoted\n`a&lt;b **c**`\n```\nx = 1 ** 2\n```\nsee <@U123> and <https://x.io|x>"
    )


def test_incoming_text_is_unescaped_and_links_unwrapped() -> None:
    assert from_slack_text("a &lt;b&gt; &amp;amp; <https://x.io> <mailto:a@b.c|a@b.c>") == (
        "a <b> &amp; https://x.io a@b.c"
    )
    assert from_slack_text("<https://x.io|docs> <@U1>") == "docs (https://x.io) <@U1>"


def test_a_lesson_is_header_sections_question_and_buttons() -> None:
    actions = (
        Action("reply", "Reply", "reply", "primary", opens_reply_form=True),
        Action("skip", "Skip", "skip"),
    )
    lesson = message(
        title="0.2.2 Lesson — day 1 of 3",
        sections=(Section("Concept", "Some **bold** words."),),
        question="Why?",
        text="Reply in this DM to answer.",
        actions=actions,
        delivery_id=7,
    )

    (part,) = render_parts(lesson)

    kinds = [b["type"] for b in part.blocks]
    assert kinds == ["header", "section", "section", "divider", "section", "actions"]
    assert part.blocks[1]["text"]["text"] == "*Concept*\nSome *bold* words."
    assert question_from_blocks(part.blocks) == "*Question*\nWhy?"
    reply, skip = part.blocks[-1]["elements"]
    assert reply["style"] == "primary" and "style" not in skip
    assert json.loads(reply["value"]) == {"command": "reply", "delivery": 7, "form": True}
    assert read_button_value(skip["value"]) is not None
    assert read_button_value(skip["value"]).command == "skip"  # type: ignore[union-attr]
    assert part.text == to_mrkdwn(lesson.plain_text())


def test_long_sections_are_split_under_3000_characters_at_sentence_ends() -> None:
    body = " ".join(f"Sentence number {i} ends here." for i in range(400))

    (part,) = render_parts(message(sections=(Section(None, body),)))

    texts = [b["text"]["text"] for b in part.blocks]
    assert len(texts) > 3
    assert all(len(t) <= SECTION_LIMIT for t in texts)
    assert all(t.endswith("ends here.") for t in texts)
    assert " ".join(texts) == body


def test_more_than_50_blocks_become_several_messages_with_buttons_last() -> None:
    sections = tuple(Section(f"Part {i}", f"Body {i}.") for i in range(120))
    big = message(
        title="Big", sections=sections, actions=(Action("skip", "Skip", "skip"),), delivery_id=1
    )

    parts = render_parts(big)

    assert len(parts) == 3
    assert all(len(p.blocks) <= MESSAGE_BLOCK_LIMIT for p in parts)
    assert parts[0].blocks[0]["type"] == "header"
    assert [b["type"] for p in parts for b in p.blocks].count("actions") == 1
    assert parts[-1].blocks[-1]["type"] == "actions"
    assert "Part 0" in parts[0].text and "Part 119" in parts[-1].text


def test_header_and_button_labels_are_clipped_to_slack_limits() -> None:
    (part,) = render_parts(message(title="T" * 400, actions=(Action("a", "L" * 100, "help"),)))

    assert len(part.blocks[0]["text"]["text"]) == 150
    assert len(part.blocks[-1]["elements"][0]["text"]["text"]) == 75


def test_forged_or_foreign_button_values_are_not_read() -> None:
    assert read_button_value("not json") is None
    assert read_button_value('{"command": 3}') is None
    assert read_button_value('{"command": "skip", "delivery": "7"}') is None
    assert read_button_value('{"command": "skip", "delivery": null}') is not None


def test_home_view_and_reply_modal() -> None:
    progress = message(
        text="Course: X", title="Your progress", actions=(Action("p", "P", "pause"),)
    )

    view = home_view([progress], (Action("start", "Start", "start", "primary"),))
    modal = reply_modal(5, "*Question*\nWhy?", "D1")

    assert view["type"] == "home"
    assert [b["type"] for b in view["blocks"]] == ["header", "section", "actions", "actions"]
    assert json.loads(modal["private_metadata"]) == {"delivery": 5, "channel": "D1"}
    assert modal["blocks"][-1]["element"]["multiline"] is True
    answer = {"state": {"values": {"answer": {"text": {"type": "x", "value": "Because"}}}}}
    assert submitted_answer(answer) == "Because"
    assert submitted_answer({}) == ""


def test_read_dm_sorts_replies_edits_commands_and_noise() -> None:
    base = {"type": "message", "channel": "D1", "channel_type": "im", "user": "U1", "ts": "1.1"}

    reply = read_dm({**base, "text": "hi &amp; bye"}, "UB1")
    threaded = read_dm({**base, "text": "x", "thread_ts": "0.5"}, "UB1")
    command = read_dm({**base, "text": "/mentor next"}, "UB1")
    edit = read_dm(
        {
            **base,
            "subtype": "message_changed",
            "message": {"user": "U1", "ts": "0.9", "text": "new"},
            "previous_message": {"user": "U1", "ts": "0.9", "text": "old"},
        },
        "UB1",
    )

    assert reply is not None and (reply.kind, reply.text) == (EventKind.MESSAGE, "hi & bye")
    assert threaded is not None and threaded.answers_message == "0.5"
    assert command is not None and command.kind is EventKind.COMMAND
    assert edit is not None and (edit.kind, edit.message_id, edit.text) == (
        EventKind.EDIT,
        "0.9",
        "new",
    )
    ignored: list[dict[str, Any]] = [
        {**base, "text": "x", "bot_id": "B1"},
        {**base, "text": "x", "user": "UB1"},
        {**base, "text": "x", "channel_type": "channel"},
        {**base, "subtype": "message_deleted"},
        {
            **base,
            "subtype": "message_changed",
            "message": {"user": "U1", "ts": "0.9", "text": "same"},
            "previous_message": {"user": "U1", "ts": "0.9", "text": "same"},
        },
    ]
    assert [read_dm(e, "UB1") for e in ignored] == [None] * len(ignored)
