"""What an incoming message is: a command, an answer, an addition, or a note.

One router for every platform, in two steps. ``read_text`` looks at the words alone
(no database), so commands are recognised however they are typed and long text is
refused before any parsing or locking. ``route`` then decides, from a snapshot of the
learner's open questions, where free text belongs. Both are pure functions: the rules
live here and nowhere else, and the tests drive them directly.

The order of the rules, first match wins:

1. Commands: ``/mentor help`` in any case, ``mentor help``, ``/help``, a lone command
   word (``progress``, ``stop``), a command word whose other words read in full as its
   arguments (``schedule 7:30 America/New_York``, ``snooze 3``, ``away 2w``, a lead's
   ``assign @ana``, ``digest #team weekly``, ``settings time 08:30``), and
   near-misses (``/mentr history``, ``/mentor hlep``), which get a "did you mean"
   instead. A command word followed by a short try at its arguments that does not parse
   (``schedule 25:00``, ``snooze 100``) is a command too, so its error names what is
   wrong. A command is never stored as a reply.
2. An explicit target: a thread or message reply, the Reply button or form,
   ``/mentor answer N TEXT``. Without one, "yes please" or "not yet" right after "go on
   to the next lesson?" answers that.
3. An addition: a message within ``ADDITION_WINDOW`` of the learner's last answer is
   appended to that answer, unless it is small talk ("thanks!").
4. The newest open question asked (today's lesson question beats an older practice
   check-in), unless the text plainly speaks to another current one (``newest_open``).
   "What is this bot?" gets what the bot is, and is kept as a note.
5. When unsure (the question is old, the text is small talk, or it puts the question
   off: "too busy today") the bot asks, keeping the text as a note meanwhile and, for
   a busy day, offering a reminder; with no open question the text is a note.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from bot.commands import (
    PREFIX,
    SETTING_NAMES,
    SPECS,
    canonical,
    is_channel,
    is_mention,
    known_word,
)
from bot.practices import terms
from bot.schedule import (
    AWAY_DATE,
    AWAY_SPAN,
    ScheduleError,
    looks_like_time,
    parse_schedule_args,
    parse_snooze,
)
from bot.text import learner_text

# Slack caps a message at 40,000 characters and Discord at 4,000; a command is short.
MAX_COMMAND_CHARS = 4_000
ADDITION_WINDOW = timedelta(minutes=5)
ANSWER_WINDOW = timedelta(hours=48)

_INVISIBLE = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e", "\u034f"}
_SMALL_TALK = re.compile(
    r"^(ok(ay)?|k|kk|thanks?|thank you|thx|ty|cheers|hi|hello|hey|yo|good (morning|night|"
    r"evening|afternoon)|bye|cool|great|nice|got it|sure|lol|np|sounds good|will do|"
    r"noted|perfect|awesome|sorry,? (i )?(was|am|'?m) (busy|late|away|swamped)|"
    r"sorry for the (delay|late reply))\b",
    re.IGNORECASE,
)
# The "Remind me later" button, typed: "remind me later", "remind me in 2 hours".
_REMIND_ME = re.compile(
    r"^remind me(?: later)?(?: in (?P<span>[^.!?]{1,20}))?[.!]*$", re.IGNORECASE
)
# A reply to "Shall I go on to the next lesson?" typed instead of pressing a button.
_GO_ON = re.compile(
    r"(yes|y|yep|yeah|yup|sure|ok|okay|please|go on|go ahead|continue|let'?s go|send it|"
    r"sounds good|definitely|absolutely|sure thing)( please| thanks| thank you)?[\s!.]*",
    re.IGNORECASE,
)
_NOT_YET = re.compile(
    r"(no|nope|nah|not yet|no thanks|no thank you|not now|maybe later|wait|hold on|"
    r"not really)[\s!.]*",
    re.IGNORECASE,
)
# "I'm back", "hello, back early!": the command `resume` (alias `back`) as people say it.
_IM_BACK = re.compile(
    r"^((hi|hello|hey)\W*\s*)?(i'?m|i am|im)\s+back(\s+(now|early|again|from \w+))?[\s.!]*$",
    re.IGNORECASE,
)
# "forget me", "forget me confirm": the command `forget-me` as people type it.
_FORGET_ME = re.compile(r"^forget[- ]?me(?P<confirm>\s+confirm)?[.!]*$", re.IGNORECASE)
_CONFIRM_YES = {"yes", "y", "yep", "yeah", "yup", "correct", "right"}
_CONFIRM_NO = {"no", "n", "nope", "nah", "note", "just a note"}


class Verdict(StrEnum):
    COMMAND = "command"  # ``command`` holds the text to parse
    SUGGEST = "suggest"  # a near-miss: ``message`` says what was probably meant
    EMPTY = "empty"
    INVISIBLE = "invisible"  # only zero-width or formatting characters
    TOO_LONG = "too_long"
    TEXT = "text"  # free text: ``route`` decides where it belongs


@dataclass(frozen=True)
class TextReading:
    verdict: Verdict
    command: str | None = None
    message: str | None = None


def visible(text: str) -> str:
    """The text without zero-width and other invisible format characters."""
    return "".join(
        ch for ch in text if ch not in _INVISIBLE and unicodedata.category(ch) != "Cf"
    ).strip()


def _suggest(rest: str) -> str:
    words = rest.split()
    if not words:
        return f"`{PREFIX} help`"
    first = words[0].lower()
    if known_word(first):
        return f"`{PREFIX} {' '.join([first, *words[1:]])[:80]}`"
    close = difflib.get_close_matches(first, _names(), n=1, cutoff=0.6)
    return f"`{PREFIX} {close[0]}`" if close else f"`{PREFIX} help`"


def _names(include_lead: bool = True) -> list[str]:
    return [s.name for s in SPECS if not s.hidden and (include_lead or not s.lead_only)]


_WITH_ARGUMENTS = ("schedule", "snooze", "away")


def _reads_as_arguments(word: str, rest: str) -> bool:
    """Whether ``rest`` reads in full as the arguments of the command ``word``, for the
    commands learners type with arguments: ``schedule 7:30 America/New_York``,
    ``snooze 3``, ``away 2w``. An answer almost never does: "schedule weekly 1:1s" or
    "away from the keyboard more" stay answers."""
    args = rest.split()
    if word == "schedule":
        try:
            parse_schedule_args(args)
        except ScheduleError:
            return False
        return True
    if word == "snooze":
        try:
            parse_snooze(args)
        except ScheduleError:
            return False
        return True
    if word == "away":
        if args and args[0].lower() == "until":
            return len(args) == 2 and AWAY_DATE.match(args[1]) is not None
        return AWAY_SPAN.match(" ".join(args)) is not None
    # Commands that point at a numbered question or reply, or confirm a deletion, as
    # `open`, `history` and `forget-me` tell people to type them.
    if word in ("skip", "answer", "move"):
        return args[0].isdigit() and (word != "skip" or len(args) == 1)
    if word == "forget-me":
        return [a.lower() for a in args] == ["confirm"]
    # A lead's commands, typed in the DM: people to name, a channel, a setting.
    if word in ("assign", "unassign", "replies"):
        return is_mention(args[0])
    if word == "digest":
        return is_channel(args[0])
    if word == "settings":
        return args[0].lower() in SETTING_NAMES and len(args) >= 2
    if word == "leads":
        return args[0].lower() in ("add", "remove") and all(map(is_mention, args[1:]))
    return False


def _meant_as_arguments(word: str, rest: str) -> bool:
    """Whether ``rest`` was meant as the arguments of ``word`` even though it does not
    read as them: "schedule 25:00", "schedule 8:30 Mars/Olympus", "snooze 100",
    "away 3 months". The person wants to hear what is wrong with it, not to find it filed
    as an answer. A short rest that starts with a time or a number is such a try;
    "schedule 2 meetings a week" or "away 3 months from the team" are answers."""
    args = rest.split()
    if not args:
        return False
    if word == "schedule":
        return len(args) <= 3 and any(looks_like_time(arg) for arg in args)
    if word in ("snooze", "away"):
        first = args[0].lower()
        return len(args) <= 2 and (first[:1].isdigit() or (word == "away" and first == "until"))
    return False


def read_text(text: str, *, max_reply_chars: int) -> TextReading:
    """Classify a message by its words alone (see the module docstring)."""
    stripped = text.strip()
    if not stripped:
        return TextReading(Verdict.EMPTY)
    if not visible(stripped):
        return TextReading(Verdict.INVISIBLE)
    words = stripped.split(maxsplit=1)
    head = words[0].lower()
    rest = words[1] if len(words) > 1 else ""
    looks_like_command = head.startswith("/") or head == "mentor"
    if looks_like_command and len(stripped) > MAX_COMMAND_CHARS:
        return TextReading(
            Verdict.TOO_LONG,
            message=f"That command is {len(stripped):,} characters long; commands are short. "
            f"Nothing was changed. Try `{PREFIX} help`.",
        )
    if len(stripped) > max_reply_chars:
        return TextReading(Verdict.TOO_LONG)
    if head.startswith("/"):
        word = head[1:]
        if word == "mentor":
            return TextReading(Verdict.COMMAND, command=f"{PREFIX} {rest}".strip())
        if known_word(word):
            return TextReading(Verdict.COMMAND, command=f"{PREFIX} {word} {rest}".strip())
        if difflib.get_close_matches(word, ["mentor"], n=1, cutoff=0.6):
            return TextReading(
                Verdict.SUGGEST,
                message=f"Did you mean {_suggest(rest)}? Commands start with `{PREFIX}`.",
            )
        close = difflib.get_close_matches(word, _names(), n=1, cutoff=0.7)
        hint = f"Did you mean `{PREFIX} {close[0]}`?" if close else f"Try `{PREFIX} help`."
        return TextReading(
            Verdict.SUGGEST,
            message=f"I don't know the command `{learner_text(words[0][:40])}`. {hint} "
            "I didn't keep it as an answer.",
        )
    if head == "mentor" and rest:
        second = rest.split(maxsplit=1)[0].lower()
        if known_word(second) or difflib.get_close_matches(second, _names(), n=1, cutoff=0.8):
            return TextReading(Verdict.COMMAND, command=f"{PREFIX} {rest}")
    if head == "mentor" and not rest:
        return TextReading(Verdict.COMMAND, command=f"{PREFIX} help")
    if _IM_BACK.match(stripped):
        return TextReading(Verdict.COMMAND, command=f"{PREFIX} back")
    forget = _FORGET_ME.match(stripped)
    if forget:
        confirm = " confirm" if forget.group("confirm") else ""
        return TextReading(Verdict.COMMAND, command=f"{PREFIX} forget-me{confirm}")
    remind = _REMIND_ME.match(stripped)
    if remind:
        return TextReading(
            Verdict.COMMAND, command=f"{PREFIX} snooze {remind.group('span') or ''}".strip()
        )
    if rest and (
        _reads_as_arguments(canonical(head), rest) or _meant_as_arguments(canonical(head), rest)
    ):
        return TextReading(Verdict.COMMAND, command=f"{PREFIX} {head} {rest}")
    if rest and len(head) >= 4:
        # "schedul 8:30", "snoze 2": a misspelt command word whose other words read in
        # full as that command's arguments is a typo, not an answer.
        close = difflib.get_close_matches(head, list(_WITH_ARGUMENTS), n=1, cutoff=0.8)
        if close and _reads_as_arguments(close[0], rest):
            return TextReading(
                Verdict.SUGGEST,
                # The words parsed as times, days and zone names: safe to echo as typed.
                message=f"Did you mean `{PREFIX} {close[0]} {' '.join(rest.split())}`? "
                "I didn't keep it as an answer.",
            )
    if len(words) == 1 or (len(stripped.split()) == 1):
        word = head.rstrip("?!.")
        if known_word(word) and word not in ("yes", "note", "answer", "move"):
            return TextReading(Verdict.COMMAND, command=f"{PREFIX} {word}")
        if len(word) >= 4:
            close = difflib.get_close_matches(word, _names(include_lead=False), n=1, cutoff=0.8)
            if close and word not in _CONFIRM_YES | _CONFIRM_NO:
                return TextReading(
                    Verdict.SUGGEST,
                    message=f"Did you mean `{PREFIX} {close[0]}`? If that was your answer, "
                    f"send it with a few more words, or use `{PREFIX} answer N TEXT`.",
                )
    return TextReading(Verdict.TEXT)


def is_small_talk(text: str) -> bool:
    """Short pleasantries ("thanks!", "ok, ping me later") that are rarely an answer."""
    flat = visible(text)
    if not flat:
        return True
    if len(flat.split()) > 8 or len(flat) > 60:
        return False
    if _SMALL_TALK.match(flat):
        return True
    # Only emoji and punctuation: a reaction, not an answer.
    return not any(unicodedata.category(ch)[0] in "LN" for ch in flat)


# "Too busy today", "no time right now", "not today, sorry": putting the question off.
# The whole message must be that, so "busy people need focus" stays an answer.
_FILLER = r"(honestly|sorry|sadly|ugh|oh|i'?m|i am|am|really|way|just|a bit|bit|pretty|so|too)"
_PUT_OFF = (
    r"(too busy|busy|swamped|slammed|no time|not (now|today|right now)|can'?t (now|today)"
    r"|maybe later|ask me later|later today|tomorrow)"
)
_WHEN = (
    r"(today|now|right now|this week|at the moment|atm|sorry|for now|tomorrow|later|"
    r"will (answer|reply|get back)( to (it|this|you))?( later| tomorrow)?)"
)
_PUTTING_OFF = re.compile(
    rf"({_FILLER}[,!.]?\s+)*{_PUT_OFF}([,!.]?\s*{_WHEN})*[\s!.,:()-]*",
    re.IGNORECASE,
)
# "What is this bot?", "who are you?", "what do you do?": asked of the bot itself.
_ABOUT_THE_BOT = re.compile(
    r"^(hi,? |hey,? |hello,? )?(what|who)('?s| is| are| do)? (is )?(this( bot| thing)?|you|"
    r"mentorbot|the bot)( do| for)?[\s?!.]*$",
    re.IGNORECASE,
)
_ASKING = re.compile(
    r"^(what|how|why|who|where|when|which|can|could|would|should|do|does|did|is|are|will)\b",
    re.IGNORECASE,
)


def puts_off(text: str) -> bool:
    """A short "too busy today" is putting the question off, not answering it."""
    flat = " ".join(visible(text).split())
    return len(flat.split()) <= 8 and _PUTTING_OFF.fullmatch(flat) is not None


def about_the_bot(text: str) -> bool:
    """ "What is this bot?": the bot says what it is instead of filing it as an answer."""
    return _ABOUT_THE_BOT.match(" ".join(visible(text).split())) is not None


def reads_as_question(text: str) -> bool:
    """A short message that asks something ("What do you mean by ownership?") rather than
    answering: the bot files it as usual, but says it cannot answer questions itself.
    An answer that ends on a rhetorical question has said something before it."""
    flat = " ".join(visible(text).split())
    if len(flat) > 300 or not flat.endswith("?") or not _ASKING.match(flat):
        return False
    return not re.search(r"[.!?]\s", flat[:-1])


def confirmation(text: str) -> str | None:
    """ "yes" or "note" when the text is a bare answer to "Is this your answer to …?"."""
    word = " ".join(visible(text).lower().strip("!.").split())
    if word in _CONFIRM_YES:
        return "yes"
    if word in _CONFIRM_NO:
        return "note"
    return None


# ---------------------------------------------------------------------- routing


class RouteKind(StrEnum):
    ANSWER = "answer"  # file as the answer to ``question_id``
    ADDITION = "addition"  # append to the answer ``reply_id``
    ASK = "ask"  # keep as a note and ask whether it answers ``question_id``
    NOTE = "note"  # no question to file it under
    CONFIRM = "confirm"  # "yes"/"note" to a pending ask: run ``command``


@dataclass(frozen=True)
class OpenQuestion:
    id: int
    kind: str  # lesson | practice
    sent_at: datetime
    superseded: bool = False  # a newer lesson-day was delivered after it
    topic: str = ""  # what it asks about: the question, or a check-in's practice


@dataclass(frozen=True)
class Target:
    """A question the message explicitly points at (thread, reply, button, ``answer N``)."""

    question_id: int | None  # None: it pointed at something gone or not this learner's
    answer_id: int | None = None  # the learner's existing answer to it, if any


@dataclass(frozen=True)
class Situation:
    now: datetime
    open_questions: Sequence[OpenQuestion]  # any order
    target: Target | None = None
    last_answer_id: int | None = None
    last_answer_at: datetime | None = None  # created or last added to
    pending_ask: bool = False  # a note is waiting for "yes" / "note"
    offered_at: datetime | None = None  # when "go on to the next lesson?" was asked
    answer_window: timedelta = ANSWER_WINDOW
    addition_window: timedelta = ADDITION_WINDOW


@dataclass(frozen=True)
class Route:
    kind: RouteKind
    question_id: int | None = None
    reply_id: int | None = None
    command: str | None = None
    reason: str = ""  # why the bot asks: late | small-talk | busy | gone; about-bot


def _offer_is_newest(situation: Situation) -> bool:
    """Whether "go on to the next lesson?" is the last thing the bot asked: no question
    and no answer came after it."""
    offered = situation.offered_at
    if offered is None:
        return False
    if situation.last_answer_at is not None and situation.last_answer_at > offered:
        return False
    return all(q.sent_at <= offered for q in situation.open_questions)


def _stale(question: OpenQuestion, situation: Situation) -> bool:
    return question.superseded or situation.now - question.sent_at > situation.answer_window


def newest_open(situation: Situation, text: str = "") -> OpenQuestion | None:
    """The question free text most likely answers: the newest one asked, preferring
    current ones (not old, not replaced by a newer lesson-day). So today's lesson
    question beats an older practice check-in, and a check-in sent after today's lesson
    beats the lesson, unless the text plainly speaks to an older current question:
    "Giving feedback is the hardest part of leadership" answers "What part of
    leadership feels difficult to you?", not the check-in on "Review designs early"
    that came an hour later. Plainly: at least two of its words, and more than the
    newest question shares with the text."""
    if not situation.open_questions:
        return None
    current = [q for q in situation.open_questions if not _stale(q, situation)]
    pool = current or list(situation.open_questions)
    newest = max(pool, key=lambda q: (q.sent_at, q.id))
    words = set(terms(text, expand=False)) if text and len(pool) > 1 else set()
    if not words:
        return newest
    shared = {q.id: len(words & set(terms(q.topic, expand=False))) for q in pool}
    best = max(pool, key=lambda q: (shared[q.id], q.sent_at, q.id))
    return best if shared[best.id] >= 2 and shared[best.id] > shared[newest.id] else newest


def route(situation: Situation, text: str) -> Route:
    """Where free text belongs (see the module docstring for the order)."""
    if situation.pending_ask:
        said = confirmation(text)
        if said is not None:
            return Route(RouteKind.CONFIRM, command=said)
    target = situation.target
    if target is None and about_the_bot(text):
        return Route(RouteKind.NOTE, reason="about-bot")
    if target is None and _offer_is_newest(situation):
        flat = " ".join(visible(text).split())
        if _GO_ON.fullmatch(flat):
            return Route(RouteKind.CONFIRM, command="continue")
        if _NOT_YET.fullmatch(flat):
            return Route(RouteKind.CONFIRM, command="not-yet")
    if target is not None and target.question_id is not None:
        if target.answer_id is not None:
            return Route(RouteKind.ADDITION, target.question_id, target.answer_id)
        return Route(RouteKind.ANSWER, target.question_id)
    if (
        target is None
        and not is_small_talk(text)  # "thanks!" after an answer is not part of it
        and situation.last_answer_id is not None
        and situation.last_answer_at is not None
        and situation.now - situation.last_answer_at <= situation.addition_window
        and not any(q.sent_at >= situation.last_answer_at for q in situation.open_questions)
    ):
        return Route(RouteKind.ADDITION, reply_id=situation.last_answer_id)
    candidate = newest_open(situation, text)
    if candidate is None:
        return Route(RouteKind.NOTE, reason="gone" if target is not None else "")
    if target is not None:
        return Route(RouteKind.ASK, candidate.id, reason="gone")
    if _stale(candidate, situation):
        return Route(RouteKind.ASK, candidate.id, reason="late")
    if is_small_talk(text):
        return Route(RouteKind.ASK, candidate.id, reason="small-talk")
    if puts_off(text):
        return Route(RouteKind.ASK, candidate.id, reason="busy")
    return Route(RouteKind.ANSWER, candidate.id)
