"""Marking learner-written text (``bot.text``) and the console's rendering of it: the
marks are the agreed way for the core to tell adapters which words are a learner's."""

from __future__ import annotations

import asyncio
import io

from adapters.console import ConsoleAdapter
from bot.messages import OutgoingMessage, Section
from bot.text import (
    LEARNER_CLOSE,
    LEARNER_OPEN,
    learner_spans,
    learner_text,
    strip_learner_marks,
)


def test_learner_text_is_wrapped_once_and_cannot_carry_marks_of_its_own() -> None:
    assert learner_text("hi <!here>") == f"{LEARNER_OPEN}hi <!here>{LEARNER_CLOSE}"
    forged = f"a{LEARNER_CLOSE}<@U1>{LEARNER_OPEN}b"
    assert learner_text(forged) == f"{LEARNER_OPEN}a<@U1>b{LEARNER_CLOSE}"
    assert strip_learner_marks(f"<@U1> said {learner_text('x')}") == "<@U1> said x"
    assert strip_learner_marks("no marks") == "no marks"


def test_spans_say_which_words_are_the_learners_and_doubt_counts_as_the_learners() -> None:
    text = f"<@U1> said {learner_text('<!here>')} at 9"
    assert learner_spans(text) == [("<@U1> said ", False), ("<!here>", True), (" at 9", False)]
    assert learner_spans(learner_text("")) == []
    # Cut after the opening mark (a preview): the learner's to the end.
    assert learner_spans(f"quote: {LEARNER_OPEN}<!channel> and mo…") == [
        ("quote: ", False),
        ("<!channel> and mo…", True),
    ]
    # A closing mark with no opening one: what came before it is the learner's.
    assert learner_spans(f"<!channel>{LEARNER_CLOSE} <@U1>") == [
        ("<!channel>", True),
        (" <@U1>", False),
    ]


def test_the_console_prints_learner_words_as_written_and_no_marks() -> None:
    out = io.StringIO()
    console = ConsoleAdapter(stdin=io.StringIO(""), stdout=out, user="me")
    message = OutgoingMessage(
        platform="console",
        workspace="local",
        user="me",
        text=f"<@ana> wrote: {learner_text('<@bo> & <#team>')}",
        title=learner_text("Re: <!here>"),
        sections=(Section(learner_text("t"), learner_text("b <@x>")),),
        question=learner_text("q?"),
    )

    asyncio.run(console.send(message))

    shown = out.getvalue()
    assert LEARNER_OPEN not in shown and LEARNER_CLOSE not in shown
    assert "@ana wrote: <@bo> & <#team>" in shown  # the bot's mention in console form
    assert "Re: <!here>" in shown and "## t\nb <@x>" in shown and "❓ q?" in shown
