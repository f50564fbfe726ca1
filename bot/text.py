"""Text rules every platform shares: size limits and splitting without cutting sentences."""

from __future__ import annotations

import re
import unicodedata

# Slack allows 40,000 characters a message; code points run higher with emoji and marks.
MAX_REPLY_CHARS = 50_000
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


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


# Learner-written text is wrapped in these private-use characters wherever the core puts
# it in a message, so each adapter can render it inert (Slack escapes it, so a reply
# holding ``<!channel>`` never pings anyone) while the bot's own mentions still work.
LEARNER_OPEN = "\ue000"
LEARNER_CLOSE = "\ue001"


def learner_text(text: str) -> str:
    """Mark ``text`` as written by a person, not the bot."""
    inner = text.replace(LEARNER_OPEN, "").replace(LEARNER_CLOSE, "")
    return f"{LEARNER_OPEN}{inner}{LEARNER_CLOSE}"


def strip_learner_marks(text: str) -> str:
    """The text without the markers, for plain renderings."""
    return text.replace(LEARNER_OPEN, "").replace(LEARNER_CLOSE, "")
