"""Local-time delivery schedules.

Every instant is built from a local date and a wall-clock time, never as "previous +
24 h", so daylight-saving changes cannot drift a learner's lesson. A wall time that does
not exist (spring forward) moves forward by the gap; an ambiguous one (fall back) takes
its first occurrence. Both follow from ``fold=0`` (PEP 495).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAYS = frozenset(range(5))
DAILY = frozenset(range(7))
QUIET_FROM = time(18, 0)  # no reminders at or after this local time
PRACTICE_OFFSET = timedelta(hours=2)  # after the delivery slot, so it never lands on the lesson
_TIME = re.compile(r"^(?P<h>\d{1,2}):(?P<m>\d{2})$")
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
    for arg in args:
        if _TIME.match(arg.strip()):
            if at is not None:
                raise ScheduleError(f"two times given: {at:%H:%M} and {arg!r}")
            at = parse_time(arg)
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
            if ":" in arg:
                parse_time(arg)  # raises the specific time error
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


@dataclass(frozen=True)
class Schedule:
    at: time
    days: frozenset[int]
    zone: ZoneInfo

    @classmethod
    def parse(cls, at: str, days: str, zone: str) -> Schedule:
        return cls(parse_time(at), parse_days(days), parse_zone(zone))

    def local_date(self, instant: datetime) -> date:
        return instant.astimezone(self.zone).date()

    def instant_on(self, day: date) -> datetime:
        """The UTC instant of the delivery on local ``day`` (fold=0 handles DST)."""
        wall = datetime.combine(day, self.at, tzinfo=self.zone)  # fold=0
        return wall.astimezone(UTC)

    def instants(self, from_day: date) -> Iterator[datetime]:
        """Delivery instants on or after local ``from_day``, in order."""
        day = from_day
        while True:
            if day.weekday() in self.days:
                yield self.instant_on(day)
            day += timedelta(days=1)

    def next_after(self, after: datetime, *, not_on: date | None = None) -> datetime:
        """The first delivery instant strictly after ``after``, skipping local date
        ``not_on`` (the day a learner already got a lesson)."""
        start = self.local_date(after) - timedelta(days=1)
        for instant in self.instants(start):
            if instant > after and self.local_date(instant) != not_on:
                return instant
        raise AssertionError("unreachable")

    def describe(self) -> str:
        return f"{self.at:%H:%M} {format_days(self.days)} ({self.zone.key})"

    def local(self, instant: datetime) -> datetime:
        return instant.astimezone(self.zone)


def reminder_time(schedule: Schedule, sent_at: datetime, after: timedelta) -> datetime | None:
    """When an unanswered question earns its reminder: ``after`` the send, same local
    day, before the quiet hour, on a delivery day. None when there is no such time."""
    at = sent_at + after
    local_sent, local_at = schedule.local(sent_at), schedule.local(at)
    if local_at.date() != local_sent.date() or local_at.time() >= QUIET_FROM:
        return None
    if local_at.weekday() not in schedule.days:
        return None
    return at


def practice_time(schedule: Schedule, replied_at: datetime) -> datetime:
    """Two delivery days after a reply, a little after the delivery slot."""
    instants = schedule.instants(schedule.local_date(replied_at) + timedelta(days=1))
    next(instants)
    return next(instants) + PRACTICE_OFFSET
