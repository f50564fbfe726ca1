"""Local-time schedules across daylight-saving changes, and the preview command."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import islice

import pytest

from bot.schedule import Schedule, ScheduleError, parse_days, parse_time, parse_zone, reminder_time
from tests.test_console_e2e import run


def instants(zone: str, at: str, start: date, count: int, days: str = "daily") -> list[str]:
    schedule = Schedule.parse(at, days, zone)
    return [schedule.local(i).isoformat() for i in islice(schedule.instants(start), count)]


def test_berlin_spring_forward_keeps_wall_time_and_moves_gap_forward() -> None:
    assert instants("Europe/Berlin", "09:00", date(2027, 3, 27), 3) == [
        "2027-03-27T09:00:00+01:00",
        "2027-03-28T09:00:00+02:00",
        "2027-03-29T09:00:00+02:00",
    ]
    # 02:30 does not exist on 28 March: it moves forward by the one-hour gap.
    assert instants("Europe/Berlin", "02:30", date(2027, 3, 28), 1) == ["2027-03-28T03:30:00+02:00"]


def test_new_york_fall_back_takes_the_first_occurrence() -> None:
    assert instants("America/New_York", "01:30", date(2027, 11, 7), 2) == [
        "2027-11-07T01:30:00-04:00",  # first of the two 01:30s (EDT)
        "2027-11-08T01:30:00-05:00",
    ]
    assert instants("America/New_York", "09:00", date(2027, 3, 13), 3) == [
        "2027-03-13T09:00:00-05:00",
        "2027-03-14T09:00:00-04:00",
        "2027-03-15T09:00:00-04:00",
    ]


def test_half_hour_zone() -> None:
    schedule = Schedule.parse("09:00", "daily", "Asia/Kolkata")
    first = next(schedule.instants(date(2027, 1, 4)))
    assert first == datetime(2027, 1, 4, 3, 30, tzinfo=UTC)


def test_lord_howe_thirty_minute_shift() -> None:
    # DST starts 3 Oct 2027 at 02:00 (+10:30 → +11:00): 02:15 does not exist that day.
    assert instants("Australia/Lord_Howe", "02:15", date(2027, 10, 2), 3) == [
        "2027-10-02T02:15:00+10:30",
        "2027-10-03T02:45:00+11:00",
        "2027-10-04T02:15:00+11:00",
    ]
    # DST ends 4 Apr 2027 at 02:00 back to 01:30: 01:45 happens twice; take the first.
    assert instants("Australia/Lord_Howe", "01:45", date(2027, 4, 4), 1) == [
        "2027-04-04T01:45:00+11:00"
    ]


def test_instants_are_a_day_apart_in_wall_time_not_24_hours() -> None:
    schedule = Schedule.parse("09:00", "daily", "Europe/Berlin")
    got = list(islice(schedule.instants(date(2027, 10, 30)), 3))
    assert got[1] - got[0] == timedelta(hours=25)  # the fall-back day is 25 hours long
    assert all(schedule.local(i).hour == 9 for i in got)


def test_weekdays_skip_the_weekend_and_next_after_skips_today() -> None:
    schedule = Schedule.parse("09:00", "weekdays", "UTC")
    friday_noon = datetime(2027, 1, 8, 12, tzinfo=UTC)
    assert schedule.next_after(friday_noon) == datetime(2027, 1, 11, 9, tzinfo=UTC)
    friday_early = datetime(2027, 1, 8, 6, tzinfo=UTC)
    assert schedule.next_after(friday_early) == datetime(2027, 1, 8, 9, tzinfo=UTC)
    assert schedule.next_after(friday_early, not_on=date(2027, 1, 8)) == datetime(
        2027, 1, 11, 9, tzinfo=UTC
    )


def test_reminders_stay_inside_the_local_day() -> None:
    schedule = Schedule.parse("09:00", "weekdays", "Europe/Berlin")
    sent = datetime(2027, 1, 4, 8, tzinfo=UTC)  # 09:00 Berlin
    assert reminder_time(schedule, sent, timedelta(hours=4)) == sent + timedelta(hours=4)
    assert reminder_time(schedule, sent, timedelta(hours=9)) is None  # 18:00 is quiet
    late = datetime(2027, 1, 4, 15, tzinfo=UTC)
    assert reminder_time(schedule, late, timedelta(hours=4)) is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_time("9"), "invalid time '9'"),
        (lambda: parse_time("24:00"), "invalid time '24:00'"),
        (lambda: parse_time("09:60"), "invalid time '09:60'"),
        (lambda: parse_days("mon,funday"), "invalid day 'funday'"),
        (lambda: parse_days(","), "name at least one day"),
        (lambda: parse_zone("Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        (lambda: parse_zone("../etc/passwd"), "invalid time zone"),
        (lambda: parse_zone("berlin"), "did you mean Europe/Berlin"),
    ],
)
def test_invalid_schedule_values_are_named(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(")):
        call()


def test_preview_command(tmp_path) -> None:  # type: ignore[no-untyped-def]
    args = ["schedule", "preview", "--tz", "Europe/Berlin", "--time", "09:00"]
    result = run([*args, "--from", "2027-03-26", "--count", "3"], tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "2027-03-26T09:00:00+01:00",
        "2027-03-29T09:00:00+02:00",
        "2027-03-30T09:00:00+02:00",
    ]
    for bad, named in (
        (["--tz", "Mars/Base", "--time", "09:00", "--from", "2027-01-01"], "Mars/Base"),
        (["--tz", "UTC", "--time", "9am", "--from", "2027-01-01"], "9am"),
        (["--tz", "UTC", "--time", "09:00", "--from", "2027-13-01"], "2027-13-01"),
        (["--tz", "UTC", "--time", "09:00", "--days", "xx", "--from", "2027-01-01"], "xx"),
    ):
        failed = run(["schedule", "preview", *bad], tmp_path)
        assert failed.returncode == 2 and named in failed.stderr, failed.stderr
