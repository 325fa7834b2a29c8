"""Journeys for the benchmarks, decided by the domain's own rules.

A few template journeys are decided once with ``domain.journey.decide``; each stream of
a benchmark is a template given its own firm (and new event ids), so thousands of
streams cost no domain work and every event is one the journey really records.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from domain.commands import (
    ArrangeMeeting,
    Command,
    EnrollFirm,
    Outcome,
    RecordMeetingResult,
    RequestMeeting,
    SignContract,
    Withdraw,
)
from domain.events import Event, EventEnvelope, FirmEnrolled
from domain.journey import decide
from domain.money import Money
from domain.programme import Firm, Programme
from domain.state import JourneyState, evolve

LA = ZoneInfo("America/Los_Angeles")
NOW = datetime(2013, 9, 20, 12, tzinfo=LA)


def programme(programme_id: str) -> Programme:
    """A programme like the seed's: Los Angeles time, two missions, one partner."""
    return Programme.model_validate(
        {
            "id": programme_id,
            "name": f"Benchmark {programme_id}",
            "organiser": "Québec International",
            "currency": "CAD",
            "timezone": "America/Los_Angeles",
            "missions": [
                {"id": "m1", "name": "Mission 1", "starts_on": "2013-09-17",
                 "ends_on": "2013-09-20"},
                {"id": "m2", "name": "Mission 2", "starts_on": "2014-03-24",
                 "ends_on": "2014-03-27"},
            ],
            "partners": [{"id": "labizfed", "name": "L.A. BizFed"}],
        }
    )


def _decide(state: JourneyState | None, commands: list[Command]) -> list[Event]:
    events: list[Event] = []
    for command in commands:
        for event in decide(state, command, NOW):
            state = evolve(state, event)
            events.append(event)
    return events


def templates(prog: Programme) -> list[list[Event]]:
    """Three journeys of ten events: a contract in CAD, one in USD, a withdrawal."""
    def enrol() -> EnrollFirm:
        return EnrollFirm(
            occurred_on=date(2013, 9, 17), programme=prog,
            firm=Firm(id="template", name="Template"), mission_id="m1",
        )

    def meetings(currency: str, amount: str) -> list[Command]:
        return [
            enrol(),
            RequestMeeting(meeting_id="mt-1", counterpart="Apple", occurred_on=date(2013, 9, 17)),
            RequestMeeting(meeting_id="mt-2", counterpart="Intel", occurred_on=date(2013, 9, 17)),
            RequestMeeting(meeting_id="mt-3", counterpart="Adobe", occurred_on=date(2013, 9, 18)),
            ArrangeMeeting(meeting_id="mt-1", partner_id="labizfed",
                           scheduled_at=datetime(2013, 9, 18, 10, tzinfo=LA)),
            ArrangeMeeting(meeting_id="mt-2", partner_id="labizfed",
                           scheduled_at=datetime(2013, 9, 18, 15, tzinfo=LA)),
            RecordMeetingResult(meeting_id="mt-1", outcome=Outcome.PROMISING),
            RecordMeetingResult(meeting_id="mt-2", outcome=Outcome.NEUTRAL),
            SignContract(counterpart="Apple", meeting_ids=["mt-1"],
                         value=Money(amount=Decimal(amount), currency=currency)),
            RequestMeeting(meeting_id="mt-4", counterpart="Oracle"),
        ]

    withdrawn: list[Command] = [
        enrol(),
        *[RequestMeeting(meeting_id=f"mt-{n}", counterpart=f"Counterpart {n}") for n in range(8)],
        Withdraw(reason="Refocusing on Europe"),
    ]
    return [
        _decide(None, meetings("CAD", "250000.00")),
        _decide(None, meetings("USD", "75000.50")),
        _decide(None, withdrawn),
    ]


def streams(
    prog: Programme, journeys: int, tag: str, events: int = 10
) -> list[list[EventEnvelope]]:
    """``journeys`` streams of ``events`` events each (their firms ``{tag}-{n}``)."""
    shapes = templates(prog)
    result = []
    for n in range(journeys):
        template = shapes[n % len(shapes)][:events]
        first = template[0]
        assert isinstance(first, FirmEnrolled)
        firm_id = f"{tag}-{n}"
        enrolled = first.model_copy(update={"firm": Firm(id=firm_id, name=f"Firm {n}")})
        stream_id = f"journey/{prog.id}/{firm_id}"
        result.append(
            [
                EventEnvelope(
                    event_id=uuid.uuid4(), stream_id=stream_id, stream_version=version,
                    command_id=f"cmd-{version}", event=event,
                )
                for version, event in enumerate([enrolled, *template[1:]], start=1)
            ]
        )
    return result
