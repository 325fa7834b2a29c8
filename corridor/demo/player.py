"""The demo: the seed's mission played at its real dates, 2013 to 2016.

The roster is enrolled and the journal played in date order while the journeys' own
timers fire in between (reminders, return visits falling due or missed, overdue
results, evaluations). Two clocks make years pass in seconds, with every business date
a real calendar date:

- ``skip`` (default on the embedded stack): each journey's clock is fast-forwarded by
  the Temporal server's per-workflow time skipping up to the next record's date. The
  order of timers and records is exact. (Experimental Temporal API: the dev server must
  run with ``frontend.WorkflowTimeSkippingEnabled``, as ``corridor dev`` does.)
- ``compressed`` (any server): the programme's clock runs ``speed`` times faster than
  the real one; records are sent when the programme's clock reaches their day. At the
  end the journeys go back to real time.
- ``held`` (any server, no waiting): each journey's clock stands still and is moved on
  to each record's day before the record is sent, so its deadlines fall due between
  the records in business-time order, as with ``skip``. At the end it runs at real
  speed from the last date. ``corridor enroll --journal`` imports past journals so.

Firms play side by side, a bounded number at a time; a firm whose journey fails is
reported and never stops the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import TimeSkipper

from corridor import service
from corridor.imports import JournalRecord
from domain.calendar import ProgrammeClock, zone
from domain.commands import EnrollFirm
from domain.programme import Programme
from workflows.journey import ClockChange

MONTH = timedelta(days=30)


class ClockMode(StrEnum):
    """How the demo makes years pass."""

    SKIP = "skip"
    COMPRESSED = "compressed"
    HELD = "held"


PARALLEL_FIRMS = 16
"""Firms played at once (each firm's records stay in order)."""


@dataclass
class DemoOutcome:
    """What the demo did.

    Attributes:
        enrolled: Firms whose journey started now.
        already_enrolled: Firms that already had a journey (the demo ran before).
        accepted: Journal records accepted.
        duplicates: Journal records already recorded before.
        refused: Journal records refused, as (row, firm, message).
        clocks_not_reset: Journeys whose compressed clock could not be set back to real
            time at the end, as (firm, why).
        failed: Firms whose play failed (a server error), as (firm, why); the others
            went on.
    """

    enrolled: int = 0
    already_enrolled: int = 0
    accepted: int = 0
    duplicates: int = 0
    refused: list[tuple[int, str, str]] = field(default_factory=list)
    clocks_not_reset: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


Progress = Callable[[date, str], None]
"""Called after each record with its business date and a short description."""


def _noon(day: date, programme: Programme) -> datetime:
    return datetime.combine(day, time(12), tzinfo=zone(programme.timezone))


def _end_of(day: date, programme: Programme) -> datetime:
    return datetime.combine(day, time(23, 0), tzinfo=zone(programme.timezone))


async def play(
    client: Client,
    programme: Programme,
    roster: Sequence[EnrollFirm],
    journal: Sequence[JournalRecord],
    *,
    task_queue: str,
    until: date | None,
    mode: ClockMode = ClockMode.SKIP,
    month_seconds: float = 1.0,
    progress: Progress | None = None,
) -> DemoOutcome:
    """Enrol the roster and play the journal, letting the journeys' timers fire.

    Args:
        client: Temporal client (pydantic data converter).
        programme: The programme.
        roster: One enrolment per firm.
        journal: The records, in date order.
        task_queue: The workers' task queue.
        until: Business date to which every journey is brought at the end; None (held
            clocks only) lets the journeys run on the real clock, catching up to today.
        mode: How time passes (see the module docstring).
        month_seconds: In compressed mode, real seconds per 30 business days.
        progress: Called after each enrolment and record.

    Returns:
        Counts of what was accepted, already there, or refused.
    """
    outcome = DemoOutcome()
    report = progress or (lambda _day, _text: None)
    if until is None and mode is not ClockMode.HELD:
        raise ValueError(f"the {mode.value} clock needs a date to play until")
    if mode in (ClockMode.SKIP, ClockMode.HELD):
        skipper = TimeSkipper(client)
        slots = asyncio.Semaphore(PARALLEL_FIRMS)

        async def one_firm(enrolment: EnrollFirm) -> None:
            records = [r for r in journal if r.firm_id == enrolment.firm.id]
            async with slots:
                try:
                    if mode is ClockMode.SKIP:
                        assert until is not None
                        await _play_firm_skipping(
                            client,
                            skipper,
                            programme,
                            enrolment,
                            records,
                            task_queue=task_queue,
                            until=until,
                            outcome=outcome,
                            report=report,
                        )
                    else:
                        await play_firm_held(
                            client,
                            programme,
                            enrolment,
                            records,
                            task_queue=task_queue,
                            until=until,
                            outcome=outcome,
                            report=report,
                        )
                except (service.Unreachable, RPCError, service.Refused) as error:
                    outcome.failed.append((enrolment.firm.id, str(error)))

        await asyncio.gather(*(one_firm(enrolment) for enrolment in roster))
    else:
        assert until is not None
        await _play_compressed(
            client,
            programme,
            roster,
            journal,
            task_queue=task_queue,
            until=until,
            speed=MONTH.total_seconds() / month_seconds,
            outcome=outcome,
            report=report,
        )
    return outcome


async def _send(
    client: Client, programme: Programme, record: JournalRecord, outcome: DemoOutcome
) -> None:
    try:
        result = await service.send(client, programme.id, record.firm_id, record.command)
    except service.Refused as refusal:
        outcome.refused.append((record.row, record.firm_id, str(refusal)))
        return
    if result.duplicate:
        outcome.duplicates += 1
    else:
        outcome.accepted += 1


async def _enroll(
    client: Client,
    enrolment: EnrollFirm,
    *,
    task_queue: str,
    clock: ProgrammeClock,
    outcome: DemoOutcome,
    quiet_until: datetime | None = None,
) -> bool:
    started = await service.enroll(
        client, enrolment, task_queue=task_queue, clock=clock, quiet_until=quiet_until
    )
    if started.started:
        outcome.enrolled += 1
    else:
        outcome.already_enrolled += 1
    return started.started


async def _play_firm_skipping(
    client: Client,
    skipper: TimeSkipper,
    programme: Programme,
    enrolment: EnrollFirm,
    records: list[JournalRecord],
    *,
    task_queue: str,
    until: date,
    outcome: DemoOutcome,
    report: Progress,
) -> None:
    """One firm's journey: its clock starts at noon of its introduction day."""
    assert enrolment.occurred_on is not None
    clock = ProgrammeClock(business_origin=_noon(enrolment.occurred_on, programme))
    started = await _enroll(client, enrolment, task_queue=task_queue, clock=clock, outcome=outcome)
    report(enrolment.occurred_on, f"{enrolment.firm.id} enrolled")
    handle = service.journey_handle(client, programme.id, enrolment.firm.id)
    anchored = (await service.view(client, programme.id, enrolment.firm.id)).clock
    for record in records:
        if started:
            await _fast_forward(skipper, handle, anchored, _noon(record.occurred_on, programme))
        await _send(client, programme, record, outcome)
        report(record.occurred_on, f"{record.firm_id} {record.action.replace('_', ' ')}")
    if started:
        await _fast_forward(skipper, handle, anchored, _end_of(until, programme))
    await service.sync(client, programme.id, enrolment.firm.id)


async def play_firm_held(
    client: Client,
    programme: Programme,
    enrolment: EnrollFirm,
    records: list[JournalRecord],
    *,
    task_queue: str,
    until: date | None,
    outcome: DemoOutcome,
    report: Progress,
    quiet_until: datetime | None = None,
) -> None:
    """One firm's journey on a held clock, moved on to each record's day.

    Args:
        client: Temporal client.
        programme: The programme.
        enrolment: The firm's enrolment.
        records: The firm's records, in date order.
        task_queue: The workers' task queue.
        until: Business date the journey is brought to at the end, then runs at real
            speed from; None lets it run on the real clock (it catches up to today).
        outcome: Counts to add to.
        report: Called after each enrolment and record.
        quiet_until: For an import after the fact (``corridor enroll --journal``): the
            real instant at which its messages are judged, so nobody is told of the past;
            None (the demo): at each record's business time, as the story plays.
    """
    assert enrolment.occurred_on is not None
    firm = enrolment.firm.id
    clock = ProgrammeClock.held_at(_noon(enrolment.occurred_on, programme))
    await _enroll(
        client, enrolment, task_queue=task_queue, clock=clock, outcome=outcome,
        quiet_until=quiet_until,
    )
    report(enrolment.occurred_on, f"{firm} enrolled")
    held = (await service.view(client, programme.id, firm)).clock.held
    for record in records:
        if held:
            await service.advance_clock(
                client, programme.id, firm, _noon(record.occurred_on, programme)
            )
        await _send(client, programme, record, outcome)
        report(record.occurred_on, f"{record.firm_id} {record.action.replace('_', ' ')}")
    if held:
        end = _end_of(until, programme) if until is not None else None
        if end is not None:
            await service.advance_clock(client, programme.id, firm, end)
        await service.release_clock(client, programme.id, firm, at=end)
    await service.sync(client, programme.id, firm)


async def _fast_forward(
    skipper: TimeSkipper, handle: WorkflowHandle[Any, Any], clock: ProgrammeClock, to: datetime
) -> None:
    """Skip the journey's virtual clock until its business time reads ``to``."""
    try:
        virtual_now = await skipper.get_current_time(handle)
    except RPCError:
        return
    ahead = to - clock.business_time(virtual_now)
    if ahead > timedelta(0):
        try:
            await skipper.fast_forward(handle, ahead)
        except RPCError:
            return  # the journey ended (withdrawn or closed): nothing left to skip


async def _play_compressed(
    client: Client,
    programme: Programme,
    roster: Sequence[EnrollFirm],
    journal: Sequence[JournalRecord],
    *,
    task_queue: str,
    until: date,
    speed: float,
    outcome: DemoOutcome,
    report: Progress,
) -> None:
    """Every journey shares one compressed clock starting on the first date."""
    items: list[tuple[date, int, EnrollFirm | JournalRecord]] = [
        (e.occurred_on, 0, e) for e in roster if e.occurred_on is not None
    ]
    items += [(r.occurred_on, 1, r) for r in journal]
    items.sort(key=lambda item: (item[0], item[1]))
    first = items[0][0]
    clock = ProgrammeClock(
        business_origin=datetime.combine(first, time(0), tzinfo=zone(programme.timezone)),
        real_origin=datetime.now(UTC) + timedelta(seconds=1),
        speed=speed,
    )

    async def wait_until(business: datetime) -> None:
        assert clock.real_origin is not None and clock.business_origin is not None
        elapsed = business.astimezone(UTC) - clock.business_origin.astimezone(UTC)
        real = clock.real_origin + elapsed / speed
        delay = (real - datetime.now(UTC)).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)

    for day, _, item in items:
        await wait_until(_noon(day, programme))
        if isinstance(item, EnrollFirm):
            await _enroll(client, item, task_queue=task_queue, clock=clock, outcome=outcome)
            report(day, f"{item.firm.id} enrolled")
        else:
            await _send(client, programme, item, outcome)
            report(day, f"{item.firm_id} {item.action.replace('_', ' ')}")
    await wait_until(_end_of(until, programme))
    for enrolment in roster:
        firm_id = enrolment.firm.id
        await service.sync(client, programme.id, firm_id)
        try:
            # An ended journey has no clock left to set; Unreachable propagates.
            await service.adjust_clock(client, programme.id, firm_id, ClockChange(speed=1.0))
        except service.Refused as refusal:
            outcome.clocks_not_reset.append((firm_id, refusal.message))
