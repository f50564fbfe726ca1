"""Local-time delivery schedules.

Every instant is built from a local date and a wall-clock time, never as "previous +
24 h", so daylight-saving changes cannot drift a learner's lesson. A wall time that does
not exist (spring forward) moves forward by the gap; an ambiguous one (fall back) takes
its first occurrence. Both follow from ``fold=0`` (PEP 495).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAYS = frozenset(range(5))
DAILY = frozenset(range(7))
QUIET_FROM = time(18, 0)  # no reminders at or after this local time
PRACTICE_OFFSET = timedelta(hours=2)  # after the delivery slot, so it never lands on the lesson
_TIME = re.compile(r"^(?P<h>\d{1,2}):(?P<m>\d{2})$")
# What people type for a time of day in a command: 7:30, 07:30, 7:30am, 7pm, 7.30 pm.
_CLOCK = re.compile(
    r"^(?P<h>\d{1,2})(?:[:.](?P<m>\d{2}))?\s*(?P<half>[ap])?\.?(?:m\.?)?$", re.IGNORECASE
)
_HALF_DAY = re.compile(r"^[ap]\.?m\.?$", re.IGNORECASE)
# A word that is meant as a time even when it is not a valid one ("25:00", "7:3O").
_TIME_ATTEMPT = re.compile(r"^\d{1,3}([:.h]\d{1,3}|\s*[ap]\.?m\.?)$", re.IGNORECASE)
SNOOZE_DEFAULT_HOURS = 2.0
SNOOZE_MAX_HOURS = 72.0
# How long to snooze: "3", "1.5", "2h", "2 hours", "90m", "30 min".
_SNOOZE = re.compile(
    r"^(?P<n>\d+(?:[.,]\d+)?)\s*(?P<unit>h|hrs?|hours?|m|mins?|minutes?)?$", re.IGNORECASE
)
# How long `away` lasts: "3d", "2 weeks", or a last day away (after "until").
AWAY_SPAN = re.compile(r"^(?P<count>\d{1,6})\s*(?P<unit>d|days?|w|wks?|weeks?)$", re.IGNORECASE)
AWAY_DATE = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}$")
_LONG_NAMES = {
    "monday": 0,
    "tuesday": 1,
    "wednesday": 2,
    "thursday": 3,
    "friday": 4,
    "saturday": 5,
    "sunday": 6,
}


class ScheduleError(ValueError):
    """An invalid time, day list or time zone; the message names the bad value."""


def parse_time(value: str) -> time:
    match = _TIME.match(value.strip())
    if not match:
        raise ScheduleError(f"invalid time {value!r}: use 24-hour HH:MM, e.g. 09:00")
    hour, minute = int(match.group("h")), int(match.group("m"))
    if hour > 23 or minute > 59:
        raise ScheduleError(f"invalid time {value!r}: hours go to 23 and minutes to 59")
    return time(hour, minute)


def parse_clock(value: str) -> time:
    """A time of day as people type it in a command: 24-hour ``7:30`` or ``19:30``, or
    12-hour ``7:30am``, ``7pm``, ``7.30 p.m.``. Settings and the command line keep the
    strict ``HH:MM`` of ``parse_time``."""
    match = _CLOCK.match(value.strip())
    if not match or (match.group("m") is None and match.group("half") is None):
        raise ScheduleError(f"invalid time {value!r}: use HH:MM like 07:30 or 19:30, or 7:30pm")
    hour, minute = int(match.group("h")), int(match.group("m") or 0)
    half = (match.group("half") or "").lower()
    if half:
        if not 1 <= hour <= 12 or minute > 59:
            raise ScheduleError(
                f"invalid time {value!r}: with am/pm, hours go from 1 to 12, e.g. 7:30am"
            )
        hour = hour % 12 + (12 if half == "p" else 0)
    elif hour > 23 or minute > 59:
        raise ScheduleError(f"invalid time {value!r}: hours go to 23 and minutes to 59")
    return time(hour, minute)


def looks_like_time(word: str) -> bool:
    """Whether a word was meant as a time of day, valid or not ("7:30", "25:00", "7pm")."""
    return _TIME_ATTEMPT.match(word.strip()) is not None


def parse_snooze(args: tuple[str, ...] | list[str]) -> float:
    """Hours to snooze for, from ``snooze``'s arguments: none (the default), a number of
    hours ("3", "1.5"), or a length with its unit ("2h", "2 hours", "90m", "30 min")."""
    if not args:
        return SNOOZE_DEFAULT_HOURS
    text = " ".join(args).strip()
    match = _SNOOZE.match(text)
    if match:
        amount = float(match.group("n").replace(",", "."))
        unit = (match.group("unit") or "h").lower()
        hours = amount / 60 if unit.startswith("m") else amount
        if 0 < hours <= SNOOZE_MAX_HOURS:
            return hours
    raise ScheduleError(
        f"{text[:40]!r} is not a length of time I can snooze for: give more than 0 and at "
        f"most {SNOOZE_MAX_HOURS:.0f} hours, like 3, 2h or 30m"
    )


def parse_days(value: str) -> frozenset[int]:
    text = value.strip().lower()
    if text in ("weekdays", "workdays", "mon-fri"):
        return WEEKDAYS
    if text in ("daily", "everyday", "every-day", "all"):
        return DAILY
    if text in ("weekends", "sat,sun"):
        return frozenset({5, 6})
    days: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        if part in DAY_NAMES:
            days.add(DAY_NAMES.index(part))
        elif part in _LONG_NAMES:
            days.add(_LONG_NAMES[part])
        else:
            raise ScheduleError(
                f"invalid day {part!r} in {value!r}: use weekdays, daily, or names like mon,wed,fri"
            )
    if not days:
        raise ScheduleError(f"invalid day list {value!r}: name at least one day")
    return frozenset(days)


def format_days(days: frozenset[int]) -> str:
    if days == WEEKDAYS:
        return "weekdays"
    if days == DAILY:
        return "daily"
    return ",".join(DAY_NAMES[d] for d in sorted(days))


def parse_zone(value: str) -> ZoneInfo:
    name = value.strip()
    if not name or name.startswith(("/", ".")) or ".." in name:
        raise ScheduleError(f"invalid time zone {value!r}: use an IANA name like Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        lowered = name.lower()
        close = sorted(z for z in available_timezones() if z.lower().endswith(lowered))[:3]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ScheduleError(
            f"unknown time zone {value!r}: use an IANA name like Europe/Berlin{hint}"
        ) from exc


def parse_schedule_args(
    args: tuple[str, ...] | list[str],
) -> tuple[time | None, frozenset[int] | None, ZoneInfo | None]:
    """`schedule` arguments in any order: each is a time (HH:MM), a day list, or a time
    zone, by what it parses as; at least one must be given."""
    at: time | None = None
    days: frozenset[int] | None = None
    zone: ZoneInfo | None = None
    for arg in _joined_half_days(args):
        if _CLOCK.match(arg.strip()) and not arg.strip().isdigit():
            if at is not None:
                raise ScheduleError(f"two times given: {at:%H:%M} and {arg!r}")
            at = parse_clock(arg)
            continue
        try:
            parsed_days = parse_days(arg)
        except ScheduleError:
            parsed_days = None
        if parsed_days is not None:
            if days is not None:
                raise ScheduleError(f"two day lists given: {format_days(days)} and {arg!r}")
            days = parsed_days
            continue
        try:
            parsed_zone = parse_zone(arg)
        except ScheduleError as exc:
            if looks_like_time(arg):
                parse_clock(arg)  # raises the specific time error
            if "/" in arg:
                raise
            hint = str(exc).partition("Europe/Berlin")[2]  # "(did you mean …?)" if any
            raise ScheduleError(
                f"invalid day {arg!r}, and not a time zone either: days are weekdays, daily or "
                f"mon,tue,...; a time is HH:MM; a time zone looks like Europe/Berlin{hint}"
            ) from exc
        if zone is not None:
            raise ScheduleError(f"two time zones given: {zone.key} and {arg!r}")
        zone = parsed_zone
    if at is None and days is None and zone is None:
        raise ScheduleError("give a time, days or a time zone")
    return at, days, zone


def _joined_half_days(args: tuple[str, ...] | list[str]) -> list[str]:
    """``7:30 pm`` typed as two words is one time; the "at" of "at 9am" says nothing."""
    joined: list[str] = []
    for arg in args:
        if arg.lower() == "at" and len(args) > 1:
            continue
        if joined and _HALF_DAY.match(arg) and _CLOCK.match(joined[-1]):
            joined[-1] = f"{joined[-1]}{arg}"
        else:
            joined.append(arg)
    return joined


HOLIDAYS_OFF = ("off", "none")
HOLIDAY_LANGUAGE = "en_US"  # holiday names in English wherever a calendar has them


@lru_cache(maxsize=1)
def _holiday_codes() -> dict[str, str]:
    """Every calendar of the ``holidays`` package, upper-cased to its own spelling: each
    country (``DE``, also ``DEU``) and each country with a region (``DE-BY``, ``US-CA``).

    The package is imported here, not at the top: most processes never set holidays,
    and it takes a noticeable moment to import."""
    import holidays

    codes: dict[str, str] = {}
    for country, regions in holidays.list_supported_countries().items():
        codes[country.upper()] = country
        for region in regions:
            codes[f"{country}-{region}".upper()] = f"{country}-{region}"
    return codes


def holiday_codes() -> list[str]:
    """Every calendar code the installed ``holidays`` package supports, as it spells it."""
    return sorted(_holiday_codes().values())


@lru_cache(maxsize=1)
def _country_names() -> dict[str, str]:
    """Country names in lower case (``germany``) to their code, so a lead who types a
    name instead of a code is pointed to the code."""
    from holidays.registry import COUNTRIES

    return {key.replace("_", " "): entry[1] for key, entry in COUNTRIES.items()}


def holiday_calendar_name(code: str) -> str:
    """``DE-BY`` as a person reads it: ``Germany, Bayern``. A confirmation that names
    the country shows at once when ``DE BY`` meant Bavaria but reads as Belarus."""
    import holidays

    country, _, region = code.partition("-")
    names = {value: key for key, value in _country_names().items()}
    name = names.get(country, country).title()
    if not region:
        return name
    try:
        aliases = getattr(holidays.country_holidays(country), "subdivisions_aliases", {})
    except NotImplementedError:
        aliases = {}
    region_name = next((alias for alias, sub in aliases.items() if sub == region), region)
    return f"{name}, {region_name}"


def _closest(word: str, candidates: list[str], cutoff: float) -> list[str]:
    """Up to three candidates most like ``word``; among equally close ones, those that
    start like it first (``DX`` suggests ``DE`` before ``XK``)."""

    def prefix(candidate: str) -> int:
        return next(
            (i for i, (a, b) in enumerate(zip(word, candidate, strict=False)) if a != b),
            min(len(word), len(candidate)),
        )

    scored = [(difflib.SequenceMatcher(None, word, c).ratio(), prefix(c), c) for c in candidates]
    ranked = sorted((s for s in scored if s[0] >= cutoff), key=lambda s: (-s[0], -s[1], s[2]))
    return [candidate for _, _, candidate in ranked[:3]]


def _unknown_calendar(word: str) -> str:
    """One line naming the bad code, with the closest codes the package knows."""
    codes = _holiday_codes()
    upper = word.upper()
    country, _, region = upper.partition("-")
    if region and country in codes:
        regions = [code for code in codes if code.startswith(country + "-")]
        if not regions:
            return f"{codes[country]} has no regions in the holiday calendars: use {codes[country]}"
        close = _closest(upper, regions, cutoff=0.0)
        hint = f" (did you mean {_either([codes[c] for c in close])}?)"
        return (
            f"{codes[country]} has no region {region!r} in the holiday calendars: use "
            f"{codes[country]} or one of its regions{hint}"
        )
    names = _country_names()
    close = [names[name] for name in _closest(word.lower(), list(names), cutoff=0.75)]
    if not close:
        same_kind = [c for c in codes if "-" not in c and len(c) == len(country)]
        close = _closest(upper, same_kind if not region else list(codes), cutoff=0.5)
    hint = f" (did you mean {_either([codes.get(c, c) for c in close])}?)" if close else ""
    return (
        f"unknown holiday calendar {word!r}: use a country code like DE, or a country and "
        f"region like DE-BY{hint}"
    )


def _either(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def parse_holidays(value: str) -> tuple[str, ...]:
    """Holiday calendars, comma- or space-separated (``DE-BY, US-CA``); ``off`` for none.
    Each is given back in the package's own spelling, once."""
    words = [word for word in re.split(r"[\s,;]+", value.strip()) if word]
    if not words:
        raise ScheduleError("name a holiday calendar, e.g. DE, DE-BY or US-CA, or off for none")
    if len(words) == 1 and words[0].lower() in HOLIDAYS_OFF:
        return ()
    codes = _holiday_codes()
    found: list[str] = []
    for word in words:
        canonical = codes.get(word.upper()) or codes.get(word.upper().replace("_", "-"))
        if canonical is None:
            raise ScheduleError(_unknown_calendar(word))
        if canonical not in found:
            found.append(canonical)
    return tuple(found)


@lru_cache(maxsize=1024)
def holidays_in(code: str, year: int) -> Mapping[date, str]:
    """The public holidays of one calendar in one year, cached per (code, year): the
    planner asks for every learner it plans, and building a year costs a millisecond.

    A code the installed package no longer knows (it was saved under another version)
    counts as no holidays rather than stopping every delivery."""
    import holidays

    country, _, region = code.partition("-")
    try:
        calendar = holidays.country_holidays(
            country, subdiv=region or None, years=year, language=HOLIDAY_LANGUAGE
        )
    except NotImplementedError:
        return MappingProxyType({})
    return MappingProxyType(dict(calendar))


def split_holidays(stored: str | None) -> tuple[str, ...]:
    """The calendars kept in a workspace's setting (``DE-BY,US-CA``)."""
    return tuple(code for code in (stored or "").split(",") if code)


@dataclass(frozen=True)
class Schedule:
    """When a learner's lessons come: a wall-clock time on some weekdays in one zone,
    except on the public holidays of ``holidays`` (calendar codes such as ``DE-BY``).

    A holiday is a day of the learner's local calendar: it is skipped exactly like a
    weekday that is not a delivery day, so every rule that asks ``is_delivery_day``
    (lessons, reminders, check-ins, prompts) moves to the next delivery day."""

    at: time
    days: frozenset[int]
    zone: ZoneInfo
    holidays: tuple[str, ...] = ()

    @classmethod
    def parse(cls, at: str, days: str, zone: str, holidays: str | None = None) -> Schedule:
        return cls(parse_time(at), parse_days(days), parse_zone(zone), split_holidays(holidays))

    def local_date(self, instant: datetime) -> date:
        return instant.astimezone(self.zone).date()

    def instant_on(self, day: date) -> datetime:
        """The UTC instant of the delivery on local ``day`` (fold=0 handles DST)."""
        wall = datetime.combine(day, self.at, tzinfo=self.zone)  # fold=0
        return wall.astimezone(UTC)

    def holiday(self, day: date) -> str | None:
        """The public holiday on local ``day`` with its calendar, e.g. ``Good Friday
        (DE)``; None on an ordinary day."""
        found = self.holiday_name(day)
        return f"{found[0]} ({found[1]})" if found else None

    def holiday_name(self, day: date) -> tuple[str, str] | None:
        """The public holiday on local ``day`` and the calendar that has it."""
        for code in self.holidays:
            name = holidays_in(code, day.year).get(day)
            if name:
                return name, code
        return None

    def is_delivery_day(self, day: date) -> bool:
        """May anything the bot starts (a lesson-day, a reminder, a check-in, a prompt)
        reach the learner on local ``day``?"""
        return day.weekday() in self.days and (not self.holidays or self.holiday(day) is None)

    def slots(self, from_day: date) -> Iterator[tuple[date, datetime, str | None]]:
        """Each day of a delivery weekday on or after local ``from_day``: the day, its
        delivery instant, and the holiday that skips it (None when it is delivered)."""
        day = from_day
        while True:
            if day.weekday() in self.days:
                yield day, self.instant_on(day), self.holiday(day) if self.holidays else None
            day += timedelta(days=1)

    def instants(self, from_day: date) -> Iterator[datetime]:
        """Delivery instants on or after local ``from_day``, in order, holidays left out."""
        for _day, instant, holiday in self.slots(from_day):
            if holiday is None:
                yield instant

    def next_after(self, after: datetime, *, not_on: date | None = None) -> datetime:
        """The first delivery instant strictly after ``after``, skipping local date
        ``not_on`` (the day a learner already got a lesson)."""
        start = self.local_date(after) - timedelta(days=1)
        for instant in self.instants(start):
            if instant > after and self.local_date(instant) != not_on:
                return instant
        raise AssertionError("unreachable")

    def first_on_or_after(self, day: date) -> datetime:
        """The first delivery instant on local ``day`` or later (the end of an away
        period: the learner is back on that day)."""
        return next(self.instants(day))

    def describe(self) -> str:
        text = f"{self.at:%H:%M} {format_days(self.days)} ({self.zone.key})"
        if self.holidays:
            text += f", skipping public holidays in {', '.join(self.holidays)}"
        return text

    def local(self, instant: datetime) -> datetime:
        return instant.astimezone(self.zone)


def reminder_time(schedule: Schedule, sent_at: datetime, after: timedelta) -> datetime | None:
    """When an unanswered question earns its reminder: ``after`` the send, same local
    day, before the quiet hour, on a delivery day (not a holiday). None when there is no
    such time."""
    at = sent_at + after
    local_sent, local_at = schedule.local(sent_at), schedule.local(at)
    if local_at.date() != local_sent.date() or local_at.time() >= QUIET_FROM:
        return None
    if not schedule.is_delivery_day(local_at.date()):
        return None
    return at


def practice_time(schedule: Schedule, replied_at: datetime) -> datetime:
    """Two delivery days after a reply, a little after the delivery slot."""
    instants = schedule.instants(schedule.local_date(replied_at) + timedelta(days=1))
    next(instants)
    return next(instants) + PRACTICE_OFFSET
