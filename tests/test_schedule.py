"""Local-time schedules across daylight-saving changes, and the preview command."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import islice

import pytest

from bot.schedule import (
    Schedule,
    ScheduleError,
    holidays_in,
    parse_clock,
    parse_days,
    parse_holidays,
    parse_schedule_args,
    parse_snooze,
    parse_time,
    parse_zone,
    practice_time,
    reminder_time,
)
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


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("7:30", time(7, 30)),
        ("19:30", time(19, 30)),
        ("7:30am", time(7, 30)),
        ("7pm", time(19, 0)),
        ("7.30 p.m.", time(19, 30)),
        ("12am", time(0, 0)),
        ("12pm", time(12, 0)),
    ],
)
def test_commands_take_times_as_people_type_them(typed: str, expected: time) -> None:
    assert parse_clock(typed) == expected
    assert parse_schedule_args(typed.split())[0] == expected  # "7:30 pm" as two words


@pytest.mark.parametrize(
    ("typed", "named"),
    [
        ("25:00", "hours go to 23"),
        ("13pm", "with am/pm, hours go from 1 to 12"),
        ("0am", "with am/pm, hours go from 1 to 12"),
        ("9", "use HH:MM like 07:30"),
    ],
)
def test_impossible_times_are_named(typed: str, named: str) -> None:
    with pytest.raises(ScheduleError, match=named):
        parse_clock(typed)


@pytest.mark.parametrize(
    ("args", "hours"),
    [
        ((), 2.0),
        (("3",), 3.0),
        (("1.5",), 1.5),
        (("2h",), 2.0),
        (("2", "hours"), 2.0),
        (("90m",), 1.5),
        (("30", "min"), 0.5),
        (("72",), 72.0),
    ],
)
def test_snooze_lengths(args: tuple[str, ...], hours: float) -> None:
    assert parse_snooze(args) == hours


@pytest.mark.parametrize("args", [("0",), ("73",), ("100",), ("soon",), ("2", "days"), ("-1",)])
def test_snooze_lengths_out_of_range_are_refused(args: tuple[str, ...]) -> None:
    with pytest.raises(ScheduleError, match="not a length of time I can snooze for"):
        parse_snooze(args)


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


def test_holidays_are_skipped_like_weekends_and_the_day_moves_on() -> None:
    schedule = Schedule.parse("09:00", "weekdays", "Europe/Berlin", "DE")
    assert instants("Europe/Berlin", "09:00", date(2027, 3, 25), 3, "weekdays")[1].startswith(
        "2027-03-26"
    )  # without holidays Good Friday is a lesson-day
    got = [schedule.local(i).isoformat() for i in islice(schedule.instants(date(2027, 3, 25)), 3)]
    assert got == [
        "2027-03-25T09:00:00+01:00",
        "2027-03-30T09:00:00+02:00",  # Good Friday and Easter Monday skipped
        "2027-03-31T09:00:00+02:00",
    ]
    thursday_noon = datetime(2027, 3, 25, 12, tzinfo=UTC)
    assert schedule.next_after(thursday_noon) == datetime(2027, 3, 30, 7, tzinfo=UTC)
    assert not schedule.is_delivery_day(date(2027, 3, 26))
    assert not schedule.is_delivery_day(date(2027, 3, 27))  # a Saturday
    assert schedule.is_delivery_day(date(2027, 3, 30))
    assert schedule.holiday(date(2027, 3, 29)) == "Easter Monday (DE)"
    # A reminder never falls on a holiday; a check-in two delivery days on skips them.
    good_friday = datetime(2027, 3, 26, 8, tzinfo=UTC)
    assert reminder_time(schedule, good_friday, timedelta(hours=4)) is None
    wednesday = datetime(2027, 3, 24, 10, tzinfo=UTC)
    assert schedule.local(practice_time(schedule, wednesday)).date() == date(2027, 3, 30)
    assert "skipping public holidays in DE" in schedule.describe()


def test_a_holiday_is_a_day_of_the_learners_own_calendar() -> None:
    # 09:00 on Good Friday in Kiritimati (UTC+14) is still Thursday in UTC and in Germany.
    schedule = Schedule.parse("09:00", "daily", "Pacific/Kiritimati", "DE")
    got = [schedule.local(i).date() for i in islice(schedule.instants(date(2027, 3, 25)), 2)]
    assert got == [date(2027, 3, 25), date(2027, 3, 27)]
    # Regions have their own days: Epiphany is a holiday in Bavaria, not in Berlin.
    assert Schedule.parse("09:00", "daily", "UTC", "DE-BY").holiday(date(2027, 1, 6))
    assert Schedule.parse("09:00", "daily", "UTC", "DE-BE").holiday(date(2027, 1, 6)) is None
    # Several calendars: a day off in either is skipped.
    both = Schedule.parse("09:00", "weekdays", "UTC", "DE,US-CA")
    assert both.holiday(date(2027, 7, 5)) == "Independence Day (observed) (US-CA)"
    assert both.holiday(date(2027, 5, 6)) == "Ascension Day (DE)"
    assert both.is_delivery_day(date(2027, 7, 6))


def test_holiday_codes_are_read_in_any_case_and_listed_once() -> None:
    assert parse_holidays("DE") == ("DE",)
    assert parse_holidays("de-by") == ("DE-BY",)
    assert parse_holidays("DE-BY, us-ca de-by") == ("DE-BY", "US-CA")
    assert parse_holidays("DE_BY") == ("DE-BY",)
    assert parse_holidays("off") == ()
    assert parse_holidays("None") == ()


@pytest.mark.parametrize(
    ("typed", "named", "suggested"),
    [
        ("DX", "unknown holiday calendar 'DX'", "did you mean DE, DJ or DK?"),
        ("Germany", "unknown holiday calendar 'Germany'", "did you mean DE?"),
        ("DE-BX", "DE has no region 'BX'", "did you mean DE-BB, DE-BE or DE-BW?"),
        ("US-ZZ", "US has no region 'ZZ'", "did you mean"),
        ("DE, Q1", "unknown holiday calendar 'Q1'", "use a country code like DE"),
        ("", "name a holiday calendar", "or off for none"),
    ],
)
def test_an_unknown_holiday_code_is_named_with_close_matches(
    typed: str, named: str, suggested: str
) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_holidays(typed)
    message = str(caught.value)
    assert named in message and suggested in message and "\n" not in message


def test_holiday_lookups_are_cached_per_code_and_year() -> None:
    holidays_in.cache_clear()
    schedule = Schedule.parse("09:00", "daily", "UTC", "DE")
    for _ in range(3):
        list(islice(schedule.instants(date(2027, 12, 20)), 30))  # runs into 2028
    info = holidays_in.cache_info()
    assert (info.misses, info.currsize) == (2, 2) and info.hits > 0


def test_preview_marks_the_days_holidays_skip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    args = ["schedule", "preview", "--tz", "Europe/Berlin", "--time", "09:00"]
    result = run([*args, "--from", "2027-03-25", "--count", "3", "--holidays", "DE"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "2027-03-25T09:00:00+01:00  Thu  2027-03-25T08:00:00Z",
        "2027-03-26                 Fri  skipped: Good Friday (DE)",
        "2027-03-29                 Mon  skipped: Easter Monday (DE)",
        "2027-03-30T09:00:00+02:00  Tue  2027-03-30T07:00:00Z",
        "2027-03-31T09:00:00+02:00  Wed  2027-03-31T07:00:00Z",
    ]
    failed = run([*args, "--from", "2027-03-25", "--holidays", "DX"], tmp_path)
    assert failed.returncode == 2
    assert failed.stderr.strip() == (
        "mentorbot: unknown holiday calendar 'DX': use a country code like DE, or a country "
        "and region like DE-BY (did you mean DE, DJ or DK?)"
    )
