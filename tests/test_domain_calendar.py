"""The programme's calendar rules: months, days local to the destination, the clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from domain.calendar import ProgrammeClock, add_months, local_date, start_of_day, zone
from domain.programme import Policy, Programme
from tests.conftest import make_programme

LA = "America/Los_Angeles"
REAL_ORIGIN = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
BUSINESS_ORIGIN = datetime(2013, 9, 17, 0, 0, tzinfo=ZoneInfo(LA))
ONE_MONTH_IN_TWO_SECONDS = 30 * 86_400 / 2


# ----------------------------------------------------------------------- add_months


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (date(2013, 8, 31), 6, date(2014, 2, 28)),
        (date(2015, 8, 31), 6, date(2016, 2, 29)),
        (date(2014, 1, 31), 1, date(2014, 2, 28)),
        (date(2013, 9, 17), 6, date(2014, 3, 17)),
        (date(2013, 9, 17), 24, date(2015, 9, 17)),
        (date(2014, 3, 31), -1, date(2014, 2, 28)),
        (date(2013, 10, 31), 3, date(2014, 1, 31)),
    ],
)
def test_adding_months_keeps_the_day_or_clamps_to_the_end_of_a_shorter_month(
    start: date, months: int, expected: date
) -> None:
    assert add_months(start, months) == expected


def test_six_months_after_31_august_twice_comes_back_to_31_august() -> None:
    # Each date is computed from the origin, so the clamping of February does not stick.
    assert add_months(date(2013, 8, 31), 12) == date(2014, 8, 31)
    assert add_months(add_months(date(2013, 8, 31), 6), 6) == date(2014, 8, 28)


# ------------------------------------------------------------------ days and zones


def test_start_of_day_is_an_aware_midnight_in_the_programme_zone() -> None:
    begins = start_of_day(date(2014, 7, 1), LA)
    assert begins.tzinfo is not None
    assert begins.utcoffset() == timedelta(hours=-7)
    assert begins.astimezone(UTC) == datetime(2014, 7, 1, 7, 0, tzinfo=UTC)


def test_start_of_day_in_winter_is_pacific_standard_time() -> None:
    begins = start_of_day(date(2014, 1, 15), LA)
    assert begins.utcoffset() == timedelta(hours=-8)
    assert begins.astimezone(UTC) == datetime(2014, 1, 15, 8, 0, tzinfo=UTC)


def test_start_of_day_when_summer_time_begins_is_still_standard_time_at_midnight() -> None:
    # On 2014-03-09 clocks in Los Angeles jump from 02:00 PST to 03:00 PDT.
    begins = start_of_day(date(2014, 3, 9), LA)
    assert begins.utcoffset() == timedelta(hours=-8)
    assert begins.astimezone(UTC) == datetime(2014, 3, 9, 8, 0, tzinfo=UTC)
    following = start_of_day(date(2014, 3, 10), LA)
    assert following.utcoffset() == timedelta(hours=-7)
    # Aware datetimes sharing a ZoneInfo subtract by wall clock: compare in UTC.
    assert following.astimezone(UTC) - begins.astimezone(UTC) == timedelta(hours=23)


def test_start_of_day_when_summer_time_ends_is_still_daylight_time_at_midnight() -> None:
    # On 2014-11-02 clocks in Los Angeles fall back from 02:00 PDT to 01:00 PST.
    begins = start_of_day(date(2014, 11, 2), LA)
    assert begins.utcoffset() == timedelta(hours=-7)
    assert begins.astimezone(UTC) == datetime(2014, 11, 2, 7, 0, tzinfo=UTC)
    following = start_of_day(date(2014, 11, 3), LA)
    assert following.utcoffset() == timedelta(hours=-8)
    assert following.astimezone(UTC) - begins.astimezone(UTC) == timedelta(hours=25)


def test_local_date_of_a_utc_instant_late_in_the_day_is_the_previous_los_angeles_date() -> None:
    assert local_date(datetime(2014, 7, 1, 5, 0, tzinfo=UTC), LA) == date(2014, 6, 30)
    assert local_date(datetime(2014, 7, 1, 7, 0, tzinfo=UTC), LA) == date(2014, 7, 1)
    assert local_date(datetime(2014, 1, 1, 7, 59, tzinfo=UTC), LA) == date(2013, 12, 31)


def test_local_date_round_trips_start_of_day_across_the_dst_changes() -> None:
    for day in (date(2014, 3, 9), date(2014, 11, 2), date(2016, 2, 29)):
        assert local_date(start_of_day(day, LA), LA) == day


def test_local_date_refuses_a_naive_timestamp() -> None:
    with pytest.raises(ValueError, match=r"2014-07-01T05:00:00 has no UTC offset"):
        local_date(datetime(2014, 7, 1, 5, 0), LA)


def test_an_unknown_zone_name_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"unknown time zone 'Mars/Olympus_Mons'"):
        zone("Mars/Olympus_Mons")
    with pytest.raises(ValueError, match=r"unknown time zone 'America/Los Angeles'"):
        start_of_day(date(2014, 1, 1), "America/Los Angeles")


# ----------------------------------------------------------------- ProgrammeClock


def test_the_default_clock_is_the_real_clock() -> None:
    clock = ProgrammeClock()
    real_now = datetime(2014, 7, 1, 12, 0, tzinfo=ZoneInfo(LA))
    assert clock.is_real_time
    assert clock.business_time(real_now) == real_now
    assert clock.business_time(real_now).tzinfo == UTC
    assert clock.real_delay(timedelta(days=3)) == timedelta(days=3)
    assert clock.anchored(real_now) is clock
    assert clock.anchored(real_now).real_origin is None


def test_a_compressed_clock_maps_real_seconds_to_business_months() -> None:
    clock = ProgrammeClock(
        business_origin=BUSINESS_ORIGIN, real_origin=REAL_ORIGIN, speed=ONE_MONTH_IN_TWO_SECONDS
    )
    assert not clock.is_real_time
    assert clock.business_time(REAL_ORIGIN) == BUSINESS_ORIGIN
    two_seconds_later = clock.business_time(REAL_ORIGIN + timedelta(seconds=2))
    assert two_seconds_later == BUSINESS_ORIGIN + timedelta(days=30)
    assert two_seconds_later.tzinfo == UTC
    assert local_date(two_seconds_later, LA) == date(2013, 10, 17)
    # Two business years take 48 real seconds at this speed.
    two_years = start_of_day(date(2015, 9, 17), LA) - BUSINESS_ORIGIN
    assert clock.real_delay(two_years) == two_years / ONE_MONTH_IN_TWO_SECONDS
    assert timedelta(seconds=47) < clock.real_delay(two_years) < timedelta(seconds=49)


def test_an_unanchored_clock_reads_its_business_origin_until_it_is_anchored() -> None:
    clock = ProgrammeClock(business_origin=BUSINESS_ORIGIN, speed=1000.0)
    assert clock.real_origin is None
    assert clock.business_time(REAL_ORIGIN + timedelta(hours=5)) == BUSINESS_ORIGIN


def test_anchoring_fixes_the_real_origin_once() -> None:
    clock = ProgrammeClock(business_origin=BUSINESS_ORIGIN, speed=1000.0)
    anchored = clock.anchored(REAL_ORIGIN)
    assert anchored.real_origin == REAL_ORIGIN
    assert clock.real_origin is None  # the clock is a value: anchoring returns a new one
    later = REAL_ORIGIN + timedelta(minutes=10)
    assert anchored.anchored(later).real_origin == REAL_ORIGIN
    assert anchored.business_time(REAL_ORIGIN + timedelta(seconds=1)) == (
        BUSINESS_ORIGIN + timedelta(seconds=1000)
    )


def test_rebasing_keeps_the_business_time_and_changes_the_speed() -> None:
    fast = ProgrammeClock(
        business_origin=BUSINESS_ORIGIN, real_origin=REAL_ORIGIN, speed=ONE_MONTH_IN_TWO_SECONDS
    )
    real_now = REAL_ORIGIN + timedelta(seconds=48)
    reading = fast.business_time(real_now)
    slow = fast.rebased(real_now, speed=1.0)
    assert slow.speed == 1.0
    assert slow.real_origin == real_now
    assert slow.business_time(real_now) == reading
    assert slow.business_time(real_now + timedelta(seconds=10)) == reading + timedelta(seconds=10)
    assert fast.business_time(real_now + timedelta(seconds=10)) > reading + timedelta(days=1)


def test_the_real_delay_divides_by_the_speed_and_is_never_negative() -> None:
    clock = ProgrammeClock(business_origin=BUSINESS_ORIGIN, real_origin=REAL_ORIGIN, speed=86_400)
    assert clock.real_delay(timedelta(days=1)) == timedelta(seconds=1)
    assert clock.real_delay(timedelta(days=30)) == timedelta(seconds=30)
    assert clock.real_delay(timedelta(0)) == timedelta(0)
    assert clock.real_delay(timedelta(days=-3)) == timedelta(0)
    assert ProgrammeClock().real_delay(timedelta(seconds=-1)) == timedelta(0)


def test_a_clock_counts_elapsed_seconds_across_a_dst_change_whatever_its_origin_zone() -> None:
    zoned = ProgrammeClock(
        business_origin=start_of_day(date(2014, 3, 8), LA), real_origin=REAL_ORIGIN, speed=1.0
    )
    fixed = ProgrammeClock.model_validate_json(zoned.model_dump_json())
    assert fixed.business_origin == zoned.business_origin  # the same instant
    real_now = REAL_ORIGIN + timedelta(hours=48)
    expected = datetime(2014, 3, 10, 8, 0, tzinfo=UTC)  # 48 hours after 2014-03-08T08:00Z
    assert fixed.business_time(real_now) == expected
    assert zoned.business_time(real_now) == expected


@pytest.mark.parametrize("speed", [0, -2.0])
def test_a_clock_that_stands_still_or_runs_backwards_is_refused(speed: float) -> None:
    with pytest.raises(ValidationError, match=r"speed"):
        ProgrammeClock(business_origin=BUSINESS_ORIGIN, speed=speed)


def test_a_clock_with_a_naive_origin_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"business_origin"):
        ProgrammeClock(business_origin=datetime(2013, 9, 17))


# ----------------------------------------------------------- policy and programme


def test_the_default_policy_is_the_briefs_six_months_and_two_years() -> None:
    policy = Policy()
    assert policy.return_visit_every_months == 6
    assert policy.evaluation_after_months == 24
    assert policy.visit_reminder_days_before == 30
    assert policy.result_overdue_after_days == 7


@pytest.mark.parametrize(("months", "days"), [(1, 31), (1, 28), (2, 60), (6, 180)])
def test_a_reminder_lead_as_long_as_the_visit_interval_is_refused(months: int, days: int) -> None:
    message = r"visit_reminder_days_before \(\d+ days\) must be shorter"
    with pytest.raises(ValidationError, match=message):
        Policy(return_visit_every_months=months, visit_reminder_days_before=days)


@pytest.mark.parametrize(("months", "days"), [(1, 27), (1, 0), (6, 167)])
def test_a_reminder_lead_shorter_than_the_shortest_interval_is_accepted(
    months: int, days: int
) -> None:
    policy = Policy(return_visit_every_months=months, visit_reminder_days_before=days)
    assert policy.visit_reminder_days_before == days


def test_an_unknown_policy_field_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match=r"visit_every_months"):
        Policy.model_validate({"visit_every_months": 6})


def test_a_programme_in_an_unknown_time_zone_is_refused() -> None:
    data = make_programme("p-zone").model_dump()
    data["timezone"] = "America/Quebec_City"
    with pytest.raises(ValidationError, match=r"unknown time zone 'America/Quebec_City'"):
        Programme.model_validate(data)


def test_a_programme_with_two_missions_of_the_same_id_is_refused() -> None:
    data = make_programme("p-dup").model_dump()
    data["missions"][1]["id"] = "m1"
    with pytest.raises(ValidationError, match=r"mission id 'm1' appears twice"):
        Programme.model_validate(data)


def test_a_programme_with_two_partners_of_the_same_id_is_refused() -> None:
    data = make_programme("p-dup").model_dump()
    data["partners"].append({"id": "labizfed", "name": "Another federation"})
    with pytest.raises(ValidationError, match=r"partner id 'labizfed' appears twice"):
        Programme.model_validate(data)


def test_a_mission_ending_before_it_starts_is_refused() -> None:
    data = make_programme("p-mission").model_dump()
    data["missions"][0]["ends_on"] = date(2013, 9, 16)
    with pytest.raises(ValidationError, match=r"mission m1 ends \(2013-09-16\) before it starts"):
        Programme.model_validate(data)


def test_the_test_programme_knows_its_missions_and_partner() -> None:
    programme = make_programme("p-ok", result_overdue_after_days=3)
    assert programme.timezone == LA
    assert programme.policy.result_overdue_after_days == 3
    assert programme.mission("m2").starts_on == date(2014, 3, 24)
    assert programme.partner("labizfed").name == "L.A. BizFed"
