"""Which leadership practice a learner's answer touches on, and the words to quote.

Ranking is BM25 over the lesson's own practices, with a light suffix-stripping stemmer
so "saying no" meets "Say “no”" and "documenting decisions" meets "Document
decisions". It is deterministic and needs no network or model: the same answer always
gets the same practice, which keeps the acknowledgement and the later check-in in
agreement.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Common words that say nothing about a practice. "no" and "not" stay: saying no is one.
_STOP_WORDS = """a about after again all also am an and any are as at be because been before being
    but by can could did do does doing for from had has have having he her here hers him
    his how i if in into is it its itself just me more most my myself of on once only or
    other our ours out over own same she should so some such than that the their them
    then there these they this those through to too under until up very was we were what
    when where which while who whom why will with would you your yours really think feel
    feels get got lot much many thing things something way ways make made one need needs
    needed needing like likes liked want wants wanted honestly"""
_STOP = frozenset(_STOP_WORDS.split())
# Words that rank a practice but alone do not make an answer about it: "No, not really"
# or "I had no time" say nothing about saying no.
_NOT_ENOUGH = frozenset(("no", "not"))
_SUFFIXES = ("ations", "ation", "ingly", "ings", "ing", "edly", "ies", "ied", "es", "ed", "ly", "s")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.!?…])\s+|\n+")
K1, B = 1.2, 0.75


def stem(word: str) -> str:
    """A crude English stem: "saying" and "say", "writing" and "write" meet."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + ("y" if suffix in ("ies", "ied") else "")
            break
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


# Everyday ways of saying what a practice names, added to the text (never replacing it).
_ALSO = (
    (re.compile(r"\b(writ\w*|put|jot\w*) (it |them |things )?down\b"), "document"),
    (re.compile(r"\b(adrs?|decision records?|design docs?)\b"), "document decision"),
    (re.compile(r"\bdecid\w*"), "decision"),
    (re.compile(r"\b(push\w* back|decline\w*|refus\w*|turn\w* down)\b"), "say no"),
    (re.compile(r"\b(blam\w*|fault|own\w* (it|the mistake))\b"), "ownership blame"),
    # "I owned the platform", "we own it"; not "my own project".
    (re.compile(r"\b(owns|owned|owning|owners?|own (it|up|the|this|that))\b"), "ownership"),
    (re.compile(r"\b(sa(y|id|ys|ying)) no\b"), "say no"),
    (re.compile(r"\b(tell|told|talk\w*|updat\w*|inform\w*|silent|quiet)\b"), "communication"),
    (
        re.compile(r"\b(review\w*|feedback) (the |a |our )?(design|architecture)\w*"),
        "review design",
    ),
)


def terms(text: str, *, expand: bool = True) -> list[str]:
    """Lower-cased, stemmed content words of ``text``, with everyday phrasings of the
    practices' words added (so "write down why we decided" meets "Document decisions")."""
    folded = unicodedata.normalize("NFKC", text).lower()
    extra = [words for pattern, words in _ALSO if expand and pattern.search(folded)]
    words = _WORD.findall(" ".join([folded, *extra]))
    return [stem(w) for w in words if w not in _STOP]


def normalise(practice: str) -> str:
    """A practice's name for comparisons: case, quotes and spacing ignored."""
    return " ".join(terms(practice, expand=False)) or practice.strip().lower()


@dataclass(frozen=True)
class Ranked:
    practice: str
    score: float


def rank(practices: Sequence[str], text: str, context: str = "") -> list[Ranked]:
    """``practices`` scored against ``text`` (the answer) and, at half weight,
    ``context`` (its question), best first; ties keep the lesson's order."""
    docs = [Counter(terms(p, expand=False)) for p in practices]
    if not docs:
        return []
    average = sum(sum(d.values()) for d in docs) / len(docs) or 1.0
    query = Counter(terms(text))
    for term, count in Counter(terms(context)).items():
        query[term] += count * 0.5
    scored = []
    for index, (practice, doc) in enumerate(zip(practices, docs, strict=True)):
        length = sum(doc.values()) or 1
        score = 0.0
        for term, weight in query.items():
            tf = doc.get(term, 0)
            if not tf:
                continue
            holders = sum(1 for d in docs if term in d)
            idf = math.log(1 + (len(docs) - holders + 0.5) / (holders + 0.5))
            score += weight * idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / average))
        scored.append((-score, index, Ranked(practice, score)))
    return [r for _, _, r in sorted(scored)]


def choose(
    practices: Sequence[str],
    text: str,
    context: str = "",
    *,
    pinned: Sequence[str] = (),
    used: Iterable[str] = (),
    last: str | None = None,
) -> str | None:
    """The practice to bring up: the best-fitting one not used yet for this learner
    (among the question's pinned ones first), else the next unused one in lesson order;
    never the one brought up last time."""
    if not practices:
        return None
    done = {normalise(p) for p in used}
    previous = normalise(last) if last else None
    pins = [p for p in practices if normalise(p) in {normalise(x) for x in pinned}]

    def fresh(pool: Sequence[str]) -> list[str]:
        return [p for p in pool if normalise(p) not in done and normalise(p) != previous]

    for pool in (fresh(pins), fresh(practices)):
        if not pool:
            continue
        best = rank(pool, text, context)[0]
        return best.practice if best.score > 0 else pool[0]
    # Every practice has come up: start again, still never twice in a row.
    again = [p for p in practices if normalise(p) != previous] or list(practices)
    best = rank(again, text, context)[0]
    return best.practice if best.score > 0 else again[0]


def touches(practice: str, text: str) -> bool:
    """Whether ``text`` itself shares a word with ``practice``. When ``choose`` found no
    practice that fits, it brings up the next one in lesson order: the mentor then
    offers it as something to try, and must not claim the answer was about it."""
    shared = set(terms(practice, expand=False)) & set(terms(text)) - _NOT_ENOUGH
    return bool(shared)


def best_sentence(text: str, practice: str, limit: int = 160) -> str:
    """The sentence of ``text`` that matches ``practice`` best (else the first), cut to
    ``limit`` characters on a word boundary."""
    sentences = [s.strip() for s in _SENTENCE.split(text) if s.strip()] or [text.strip()]
    wanted = set(terms(practice, expand=False))
    best = max(sentences, key=lambda s: (len(wanted & set(terms(s))), -sentences.index(s)))
    return clip(best, limit)


_JOINERS = {"\u200d", "\ufe0f", "\ufe0e"}


def clip(text: str, limit: int) -> str:
    """``text`` shortened to at most ``limit`` characters plus "…", never cutting a word
    or an emoji (with its joiners, variation selectors and skin tones) in half."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    space = cut.rfind(" ")
    if space > limit // 3:
        return cut[:space].rstrip(" ,;:") + "…"
    # One very long word: back off to a boundary between whole characters.
    end = limit
    while end > 1 and (
        flat[end] in _JOINERS
        or flat[end - 1] in _JOINERS
        or unicodedata.combining(flat[end])
        or 0x1F3FB <= ord(flat[end]) <= 0x1F3FF  # skin tone modifiers
    ):
        end -= 1
    return flat[:end] + "…"
