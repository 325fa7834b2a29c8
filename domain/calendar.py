"""Calendar rules of a programme, in one place.

Every business date of Corridor is a calendar date local to the programme's time zone
(the missions' destination, e.g. America/Los_Angeles). Timestamps are always aware.
Durations of the policy are calendar months and days, never fixed numbers of seconds:
six months after 31 August is the end of February (BRIEF, "Time").
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.relativedelta import relativedelta
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


def add_months(day: date, months: int) -> date:
    """Add calendar months to a date, clamping to the end of the month.

    Args:
        day: The starting date.
        months: Number of calendar months to add (may be negative).

    Returns:
        The same day of the month ``months`` later, or the last day of that month when
        it is shorter: ``add_months(date(2013, 8, 31), 6) == date(2014, 2, 28)``.
    """
    result: date = day + relativedelta(months=months)
    return result


def zone(name: str) -> ZoneInfo:
    """Return the IANA time zone called ``name``.

    Args:
        name: An IANA zone name such as ``"America/Los_Angeles"``.

    Raises:
        ValueError: If no such zone exists.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {name!r}") from error


def start_of_day(day: date, tz: str) -> datetime:
    """Return the aware instant at which ``day`` begins in the time zone ``tz``.

    Args:
        day: A local calendar date.
        tz: IANA zone name of the programme.
    """
    return datetime.combine(day, time(0, 0), tzinfo=zone(tz))


def local_date(instant: datetime, tz: str) -> date:
    """Return the calendar date of an aware instant in the time zone ``tz``.

    Raises:
        ValueError: If ``instant`` is naive.
    """
    if instant.tzinfo is None:
        raise ValueError(f"timestamp {instant.isoformat()} has no UTC offset")
    return instant.astimezone(zone(tz)).date()


class ProgrammeClock(BaseModel):
    """Maps the real (Temporal) clock to the programme's business clock.

    In production the two are the same (the default). For demos and tests the business
    clock can start at a chosen instant and run faster than the real one (``speed``
    business seconds per real second), so a two-year cycle plays in seconds while every
    business date stays a real calendar date (BRIEF, "Time").

    Attributes:
        business_origin: Business instant matching ``real_origin``; None means the
            business clock is the real clock.
        real_origin: Real instant at which the business clock reads ``business_origin``;
            None means "when the journey first runs" (the workflow anchors it).
        speed: Business seconds elapsing per real second (1.0 = real time).
        held: The business clock stands still at ``business_origin`` until it is moved
            on (``advanced_to``) or let run (``running_from``): a journal of past records
            is played this way, each record on its day, its deadlines between.
    """

    model_config = ConfigDict(frozen=True)

    business_origin: AwareDatetime | None = None
    real_origin: AwareDatetime | None = None
    speed: float = Field(default=1.0, gt=0)
    held: bool = False

    @property
    def is_real_time(self) -> bool:
        """True when business time is the real time."""
        return self.business_origin is None

    def anchored(self, real_now: datetime) -> ProgrammeClock:
        """Return this clock with ``real_origin`` fixed to ``real_now`` if it was unset."""
        if self.business_origin is None or self.real_origin is not None:
            return self
        return self.model_copy(update={"real_origin": real_now})

    def business_time(self, real_now: datetime) -> datetime:
        """Return the business instant at the real instant ``real_now`` (aware, UTC)."""
        if self.business_origin is None:
            return real_now.astimezone(UTC)
        if self.held:
            return self.business_origin.astimezone(UTC)
        origin = self.real_origin or real_now
        elapsed = (real_now - origin).total_seconds() * self.speed
        # Add elapsed seconds to the UTC instant: in a zone with DST, aware arithmetic
        # would count wall-clock hours instead.
        return self.business_origin.astimezone(UTC) + timedelta(seconds=elapsed)

    def real_delay(self, business_delay: timedelta) -> timedelta:
        """Return how long the real clock takes to cover ``business_delay``."""
        if business_delay <= timedelta(0):
            return timedelta(0)
        return business_delay / self.speed

    @classmethod
    def held_at(cls, business: datetime) -> ProgrammeClock:
        """A clock standing still at the business instant ``business`` (aware)."""
        return cls(business_origin=business, held=True)

    def advanced_to(self, business: datetime) -> ProgrammeClock:
        """This held clock moved on to ``business``; never backwards.

        Raises:
            ValueError: The clock is not held.
        """
        if not self.held or self.business_origin is None:
            raise ValueError("only a held clock can be advanced")
        return self.held_at(max(business, self.business_origin))

    def running_from(self, real_now: datetime, business: datetime | None = None) -> ProgrammeClock:
        """A clock that runs at real speed from now on.

        Args:
            real_now: The real instant now.
            business: The business instant it reads now; None for the real time itself
                (business time is real time from then on).
        """
        if business is None:
            return ProgrammeClock()
        return ProgrammeClock(business_origin=business, real_origin=real_now, speed=1.0)

    def rebased(self, real_now: datetime, speed: float) -> ProgrammeClock:
        """Return a clock that reads the same business time now but runs at ``speed``.

        Used at the end of a compressed demo so the journeys go on in real time.
        """
        if self.business_origin is None:
            return self
        if self.held:
            return self
        return ProgrammeClock(
            business_origin=self.business_time(real_now), real_origin=real_now, speed=speed
        )
