"""Text rules every platform shares: size limits, splitting without cutting sentences, and
marking text a learner wrote so each platform can show it without acting on it."""

from __future__ import annotations

import re
import unicodedata

# Slack allows 40,000 characters a message; code points run higher with emoji and marks.
MAX_REPLY_CHARS = 50_000
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
# Private-use code points that bracket learner-written text inside what the core says.
# Platforms treat some text as instructions (Slack's ``<!channel>`` pings a whole
# channel), so an adapter must know which words are the learner's to render them inert;
# the core marks them and each adapter decides what inert means on its platform.
LEARNER_OPEN = "\ue000"
LEARNER_CLOSE = "\ue001"
_MARKS = str.maketrans("", "", LEARNER_OPEN + LEARNER_CLOSE)
_MARK_SPLIT = re.compile(f"([{LEARNER_OPEN}{LEARNER_CLOSE}])")


_BOUNDARIES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\n\s*\n"), "\n\n"),  # paragraphs
    (re.compile(r"\n"), "\n"),  # lines (list items)
    (_SENTENCE_END, " "),  # sentences
    (re.compile(r" "), " "),  # words
)


def _pieces(text: str, limit: int) -> list[str]:
    """Break ``text`` into parts no longer than ``limit``, coarsest boundary first."""
    if len(text) <= limit:
        return [text]
    for splitter, joiner in _BOUNDARIES:
        parts = [p.strip() for p in splitter.split(text) if p.strip()]
        if len(parts) > 1:
            return _pack(parts, limit, joiner)
    # One unbreakable run (a URL, a long word): cut on characters as a last resort.
    return [text[i : i + limit] for i in range(0, len(text), limit)]


def _pack(parts: list[str], limit: int, joiner: str) -> list[str]:
    out: list[str] = []
    current = ""
    for part in parts:
        for piece in _pieces(part, limit):
            candidate = f"{current}{joiner}{piece}" if current else piece
            if len(candidate) <= limit:
                current = candidate
            else:
                if current:
                    out.append(current)
                current = piece
    if current:
        out.append(current)
    return out


def split_text(text: str, limit: int) -> list[str]:
    """Split at paragraph boundaries, then lines, then sentences; never mid-sentence
    unless a single sentence is itself longer than ``limit``."""
    if limit < 1:
        raise ValueError("limit must be positive")
    text = text.strip()
    if not text:
        return []
    return _pieces(text, limit)


def clean_reply(text: str) -> str:
    """Normalise line endings only: a reply is stored as the learner wrote it."""
    return text.replace("\r\n", "\n")


def preview(text: str, length: int = 120) -> str:
    """A one-line excerpt for quotes and listings, safe with combining marks and RTL text."""
    flat = " ".join(text.split())
    if len(flat) <= length:
        return flat
    cut = flat[: length - 1]
    while cut and unicodedata.combining(cut[-1]):
        cut = cut[:-1]
    return cut.rstrip() + "…"


def learner_text(text: str) -> str:
    """``text`` marked as written by a learner. Marks already inside it are removed
    first, so a learner cannot close the span early and smuggle in text of the bot's."""
    return f"{LEARNER_OPEN}{text.translate(_MARKS)}{LEARNER_CLOSE}"


def strip_learner_marks(text: str) -> str:
    """``text`` without the learner marks, for renderings where nothing is parsed."""
    return text.translate(_MARKS)


def learner_spans(text: str) -> list[tuple[str, bool]]:
    """``text`` as (piece, written by a learner) in order, without the marks.

    Text cut after an opening mark (a preview of a marked reply) counts as the
    learner's up to its end, and a closing mark with no opening one counts everything
    before it since the last span as the learner's: when in doubt, text is treated as
    the learner's, which at worst shows a bot-written mention as plain text.
    """
    spans: list[tuple[str, bool]] = []
    inside = False
    for piece in _MARK_SPLIT.split(text):
        if piece in (LEARNER_OPEN, LEARNER_CLOSE):
            if piece == LEARNER_CLOSE and spans and not inside:
                spans[-1] = (spans[-1][0], True)
            inside = piece == LEARNER_OPEN
        elif piece:
            spans.append((piece, inside))
    return spans
