"""A reproducible workload: N firms, each playing a full two-year cycle.

Every firm follows the same kind of script (a meeting, its result or none, a return
visit, maybe a contract, the evaluation decision), varied by its number so that the
journeys end in different states. The same script is played twice:

- through the pure domain (``expected_streams``): the oracle, the exact events each
  stream must hold;
- on the real servers (``play_firm``), while faults are injected.

The driver retries what a fault interrupts (connection errors, a journey busy
continuing as new) with the same command ids, so a retry can never record twice.
"""

from __future__ import annotations

import asyncio
import time as clock
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TypeVar

from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import TimeSkipper, TimeSkippingConfig

from corridor import service
from domain.calendar import ProgrammeClock, zone
from domain.commands import (
    ArrangeMeeting,
    Command,
    DecideEvaluation,
    Decision,
    EnrollFirm,
    Outcome,
    RecordMeetingResult,
    RecordVisitAttendance,
    RequestMeeting,
    SignContract,
)
from domain.deadlines import due_events
from domain.journey import decide
from domain.money import Money
from domain.programme import Firm, Programme
from domain.state import JourneyState, evolve

TZ = "America/Los_Angeles"
INTRODUCED_ON = date(2013, 9, 17)
END_ON = date(2015, 10, 1)

T = TypeVar("T")


def programme(programme_id: str) -> Programme:
    """The workload's programme: one mission in September 2013, the default policy."""
    return Programme.model_validate(
        {
            "id": programme_id,
            "name": f"Reliability {programme_id}",
            "organiser": "Québec International",
            "currency": "CAD",
            "timezone": TZ,
            "missions": [
                {"id": "m1", "name": "Mission 1", "starts_on": "2013-09-17",
                 "ends_on": "2013-09-20"},
                {"id": "m2", "name": "Mission 2", "starts_on": "2014-03-24",
                 "ends_on": "2014-03-27"},
            ],
            "partners": [{"id": "labizfed", "name": "L.A. BizFed"}],
        }
    )


def enrolment(prog: Programme, number: int) -> EnrollFirm:
    """Firm ``number``'s enrolment, introduced at the first mission."""
    return EnrollFirm(
        command_id=f"enrol-{number}",
        occurred_on=INTRODUCED_ON,
        programme=prog,
        firm=Firm(id=firm_id(number), name=f"Firm {number} (fictional)"),
        mission_id="m1",
    )


def firm_id(number: int) -> str:
    """Id of firm ``number``."""
    return f"f{number:03d}"


def script(number: int) -> list[Command]:
    """What staff record for firm ``number``, in date order (each with its own id)."""
    held = number % 3 != 0  # a third never get a result: it becomes overdue
    steps: list[Command] = [
        RequestMeeting(occurred_on=date(2013, 9, 17), meeting_id="m-1", counterpart="Apple"),
        ArrangeMeeting(
            occurred_on=date(2013, 9, 18),
            meeting_id="m-1",
            partner_id="labizfed",
            scheduled_at=datetime(2013, 9, 19, 10, tzinfo=zone(TZ)),
        ),
    ]
    if held:
        steps.append(
            RecordMeetingResult(
                occurred_on=date(2013, 9, 19), meeting_id="m-1", outcome=Outcome.PROMISING
            )
        )
    steps.append(
        RecordVisitAttendance(occurred_on=date(2014, 3, 24), attended=number % 2 == 0)
    )
    if held:
        steps.append(
            SignContract(
                occurred_on=date(2014, 7, 15),
                counterpart="Apple",
                value=Money(amount=Decimal(1000 * (number + 1)), currency="USD"),
                meeting_ids=["m-1"],
            )
        )
    decision = Decision.RENEW if number % 5 == 0 else Decision.CLOSE
    steps.append(DecideEvaluation(occurred_on=date(2015, 9, 25), decision=decision))
    return [
        step.model_copy(update={"command_id": f"{firm_id(number)}-step-{i}"})
        for i, step in enumerate(steps)
    ]


def _noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=zone(TZ))


def _end() -> datetime:
    return datetime.combine(END_ON, time(12), tzinfo=zone(TZ))


def expected_stream(prog: Programme, number: int) -> tuple[list[str], JourneyState]:
    """The event types firm ``number``'s stream must hold, and its final state."""
    state: JourneyState | None = None
    types: list[str] = []
    for command in [enrolment(prog, number), *script(number)]:
        assert command.occurred_on is not None
        now = _noon(command.occurred_on)
        if state is not None:
            state, fired = due_events(state, now)
            types += [type(e).__name__ for e in fired]
        for event in decide(state, command, now):
            state = evolve(state, event)
            types.append(type(event).__name__)
    assert state is not None
    if not state.is_over:
        state, fired = due_events(state, _end())
        types += [type(e).__name__ for e in fired]
    return types, state


@dataclass
class Counters:
    """What the driver saw: how often it had to try again."""

    retries: int = 0


async def patiently(
    action: Callable[[], Awaitable[T]], counters: Counters, *, deadline: float = 180.0
) -> T:
    """Run ``action``, retrying while a fault makes a server unreachable."""
    give_up = clock.monotonic() + deadline
    while True:
        try:
            return await action()
        except service.Refused as refusal:
            if refusal.rule not in ("Unavailable", "UnknownJourney", "Refused"):
                raise  # a rule refused it: a fault must never cause that
            error: Exception = refusal
        except (RPCError, OSError, RuntimeError) as failure:
            error = failure
        if clock.monotonic() > give_up:
            raise TimeoutError(f"gave up after {deadline}s: {error}")
        counters.retries += 1
        await asyncio.sleep(0.5)


async def play_firm(
    client: Client,
    prog: Programme,
    number: int,
    *,
    task_queue: str,
    counters: Counters,
    continue_as_new_after: int | None = None,
    patience: float = 180.0,
) -> None:
    """Play firm ``number``'s script on the real servers, skipping time between steps.

    Each step is tried again while a fault lasts, for at most ``patience`` seconds.
    """
    def step(action: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        return patiently(action, counters, deadline=patience)

    # An outage makes the store activity retry; the server skips over its backoff
    # timers too, so allow more skips than the default 200 per session.
    skipper = TimeSkipper(client, config=TimeSkippingConfig(max_session_skip_count=100_000))
    enrol = enrolment(prog, number)
    firm = enrol.firm.id
    clock_ = ProgrammeClock(business_origin=_noon(INTRODUCED_ON))
    await step(
        lambda: service.enroll(
            client,
            enrol,
            task_queue=task_queue,
            clock=clock_,
            continue_as_new_after=continue_as_new_after,
        ),
    )
    handle = service.journey_handle(client, prog.id, firm)
    anchored = (await step(lambda: service.view(client, prog.id, firm))).clock

    async def skip_to(target: datetime) -> None:
        now = anchored.business_time(await skipper.get_current_time(handle))
        if target - now > timedelta(0) and not await skipper.fast_forward(handle, target - now):
            info = await skipper.get_time_skipping_info(handle)
            raise RuntimeError(f"fast-forward of {firm} did not complete: {info}")

    async def when_due(command: Command) -> None:
        """Skip to the command's day, then send it (again, if its day had not come)."""
        assert command.occurred_on is not None
        await skip_to(_noon(command.occurred_on))
        try:
            await service.send(client, prog.id, firm, command)
        except service.Refused as refusal:
            if refusal.rule == "DateOutOfRange" and "in the future" in refusal.message:
                # A workflow task that started before a fault may still carry an
                # earlier time: let the journey's clock catch up and send it again.
                raise RuntimeError(refusal.message) from None
            raise

    for command in script(number):
        await step(lambda command=command: when_due(command))  # type: ignore[misc]
    state = await step(lambda: service.view(client, prog.id, firm))
    if not state.state.is_over:
        await step(lambda: skip_to(_end()))
    await step(lambda: _synced(client, prog.id, firm))


async def _synced(client: Client, programme_id: str, firm: str) -> None:
    view = await service.view(client, programme_id, firm)
    if view.state.is_over:
        if view.unstored:
            raise RuntimeError("ended journey with unstored events")
        return
    await service.sync(client, programme_id, firm)  # raises while it cannot answer
