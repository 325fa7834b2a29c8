"""Integration tests of the PostgreSQL event store and its read models (no mocks).

Every test builds real journeys with the domain (``decide`` / ``evolve`` /
``due_events``), wraps their events in envelopes and appends them to the real embedded
PostgreSQL of the session. Each test uses its own programme id and stream ids, so tests
share the database without seeing each other's rows.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from activities.migrations import MIGRATIONS, migrate
from activities.store import ConcurrencyError, EventStore
from domain.commands import (
    ArrangeMeeting,
    Command,
    EnrollFirm,
    Outcome,
    RecordMeetingResult,
    RecordVisitAttendance,
    RequestMeeting,
    SignContract,
)
from domain.deadlines import due_events
from domain.events import ContractSigned, Event, EventEnvelope
from domain.journey import decide
from domain.money import Money
from domain.programme import Firm, Programme
from domain.state import JourneyState, evolve
from tests.conftest import make_programme

pytestmark = pytest.mark.timeout(120)

LA = ZoneInfo("America/Los_Angeles")
ENROLLED_AT = datetime(2013, 9, 18, 12, tzinfo=LA)
SPRING_2014 = datetime(2014, 3, 20, 12, tzinfo=LA)

READ_MODELS = {
    "journeys": "stream_id",
    "meetings": "stream_id, meeting_id",
    "contracts": "stream_id, contract_id",
    "return_visits": "stream_id, visit",
}


# --------------------------------------------------------------------------- helpers


class Journey:
    """A firm's journey driven through the domain, collecting the events it records."""

    def __init__(self, programme: Programme, firm_id: str) -> None:
        self.programme = programme
        self.firm_id = firm_id
        self.stream_id = f"journey/{programme.id}/{firm_id}"
        self.state: JourneyState | None = None
        self.events: list[Event] = []

    def _fold(self, events: Sequence[Event]) -> None:
        for event in events:
            self.state = evolve(self.state, event)
            self.events.append(event)

    def do(self, command: Command, now: datetime = ENROLLED_AT) -> Journey:
        self._fold(decide(self.state, command, now))
        return self

    def wait_until(self, now: datetime) -> Journey:
        assert self.state is not None
        _, events = due_events(self.state, now)
        self._fold(events)
        return self

    def enrol(self) -> Journey:
        return self.do(
            EnrollFirm(
                occurred_on=date(2013, 9, 17),
                programme=self.programme,
                firm=Firm(id=self.firm_id, name=f"Firm {self.firm_id}"),
                mission_id="m1",
                wants_to_meet=["Apple"],
            )
        )

    def request(self, meeting_id: str, counterpart: str) -> Journey:
        return self.do(
            RequestMeeting(
                meeting_id=meeting_id, counterpart=counterpart, occurred_on=date(2013, 9, 17)
            )
        )

    def arrange(self, meeting_id: str, hour: int, day: int = 18) -> Journey:
        return self.do(
            ArrangeMeeting(
                meeting_id=meeting_id,
                partner_id="labizfed",
                scheduled_at=datetime(2013, 9, day, hour, tzinfo=LA),
                place="Los Angeles",
            )
        )

    def envelopes(self, start: int = 1, stop: int | None = None) -> list[EventEnvelope]:
        """Envelopes of events ``start``..``stop`` (stream versions, inclusive)."""
        stop = len(self.events) if stop is None else stop
        return [
            EventEnvelope(
                event_id=uuid.uuid4(),
                stream_id=self.stream_id,
                stream_version=version,
                command_id=f"cmd-{version}",
                event=self.events[version - 1],
            )
            for version in range(start, stop + 1)
        ]


def short_journey(programme: Programme, firm_id: str, meetings: int = 3) -> Journey:
    """Enrolment then ``meetings`` meeting requests (1 + meetings events)."""
    journey = Journey(programme, firm_id).enrol()
    for n in range(1, meetings + 1):
        journey.request(f"mt-{n}", f"Counterpart {n}")
    return journey


def rich_journey(programme: Programme, firm_id: str) -> Journey:
    """A journey with rows in every read model.

    mt-1 with Apple is held (promising) and leads to a contract; mt-2 with Google is
    arranged but its result never comes (overdue); mt-3 with Intel stays requested.
    Six months later the first return visit falls due and the firm attends it.
    """
    journey = Journey(programme, firm_id).enrol()
    journey.request("mt-1", "Apple").arrange("mt-1", hour=10, day=17)
    journey.do(RecordMeetingResult(meeting_id="mt-1", outcome=Outcome.PROMISING))
    journey.do(
        SignContract(
            counterpart="Apple",
            value=Money(amount=Decimal("250000.00"), currency="CAD"),
            meeting_ids=["mt-1"],
        )
    )
    journey.request("mt-2", "Google").arrange("mt-2", hour=15)
    journey.request("mt-3", "Intel")
    journey.wait_until(SPRING_2014)
    journey.do(
        RecordVisitAttendance(attended=True, occurred_on=date(2014, 3, 20), mission_id="m2"),
        now=SPRING_2014,
    )
    return journey


async def append_all(store: EventStore, journey: Journey, batch: int = 3) -> None:
    """Append a journey's events in batches of ``batch``, as successive activities do."""
    version = await store.stream_version(journey.stream_id)
    while version < len(journey.events):
        stop = min(version + batch, len(journey.events))
        result = await store.append(
            journey.stream_id, version, journey.envelopes(version + 1, stop)
        )
        assert result.appended == stop - version
        version = result.stream_version


async def count_events(store: EventStore, stream_id: str) -> int:
    count: int = await store.pool.fetchval(
        "SELECT count(*) FROM events WHERE stream_id = $1", stream_id
    )
    return count


async def read_models(store: EventStore, programme_id: str) -> dict[str, list[dict[str, Any]]]:
    """Full contents of the four read models for one programme, by primary key."""
    return {
        table: [
            dict(row)
            for row in await store.pool.fetch(
                f"SELECT * FROM {table} WHERE programme_id = $1 ORDER BY {key}", programme_id
            )
        ]
        for table, key in READ_MODELS.items()
    }


@pytest.fixture
def programme(programme_id: str) -> Programme:
    return make_programme(programme_id)


# ------------------------------------------------------------------ append and read


async def test_new_stream_reads_back_the_same_events_in_version_order(
    store: EventStore, programme: Programme
) -> None:
    journey = rich_journey(programme, "trifide")
    envelopes = journey.envelopes()
    assert await store.stream_version(journey.stream_id) == 0

    result = await store.append(journey.stream_id, 0, envelopes)

    assert result.appended == len(envelopes)
    assert result.stream_version == len(envelopes)
    assert await store.stream_version(journey.stream_id) == len(envelopes)
    read = await store.read_stream(journey.stream_id)
    assert read == envelopes
    assert [e.stream_version for e in read] == list(range(1, len(envelopes) + 1))
    assert [e.event.type for e in read][:3] == [
        "FirmEnrolled",
        "MeetingRequested",
        "MeetingArranged",
    ]
    contract = read[4].event
    assert isinstance(contract, ContractSigned)
    assert contract.value == Money(amount=Decimal("250000.00"), currency="CAD")
    assert read[2].command_id == "cmd-3"
    assert await store.read_stream(journey.stream_id, after_version=5) == envelopes[5:]


async def test_stream_version_of_unknown_stream_is_zero(store: EventStore) -> None:
    stream_id = f"journey/nobody-{uuid.uuid4().hex}/nobody"
    assert await store.stream_version(stream_id) == 0
    assert await store.read_stream(stream_id) == []


async def test_appending_in_several_batches_continues_the_stream(
    store: EventStore, programme: Programme
) -> None:
    journey = rich_journey(programme, "trifide")
    await append_all(store, journey, batch=2)

    assert [e.event for e in await store.read_stream(journey.stream_id)] == journey.events
    assert await store.stream_version(journey.stream_id) == len(journey.events)


async def test_retrying_the_same_envelopes_is_a_no_op(
    store: EventStore, programme: Programme
) -> None:
    journey = short_journey(programme, "trifide")
    envelopes = journey.envelopes()
    await store.append(journey.stream_id, 0, envelopes)

    again = await store.append(journey.stream_id, 0, envelopes)

    assert again.appended == 0
    assert again.stream_version == len(envelopes)
    assert await count_events(store, journey.stream_id) == len(envelopes)
    assert await store.read_stream(journey.stream_id) == envelopes
    assert await store.pool.fetchval(
        "SELECT version FROM journeys WHERE stream_id = $1", journey.stream_id
    ) == len(envelopes)


async def test_retrying_an_earlier_batch_after_the_stream_moved_on_is_a_no_op(
    store: EventStore, programme: Programme
) -> None:
    journey = short_journey(programme, "trifide", meetings=3)
    first, second = journey.envelopes(1, 2), journey.envelopes(3, 4)
    await store.append(journey.stream_id, 0, first)
    await store.append(journey.stream_id, 2, second)

    again = await store.append(journey.stream_id, 0, first)

    assert again.appended == 0
    assert await count_events(store, journey.stream_id) == 4
    assert await store.stream_version(journey.stream_id) == 4


async def test_appending_an_empty_batch_writes_nothing(
    store: EventStore, programme: Programme
) -> None:
    stream_id = f"journey/{programme.id}/nobody"
    result = await store.append(stream_id, 0, [])
    assert (result.appended, result.stream_version) == (0, 0)
    assert await count_events(store, stream_id) == 0


# ------------------------------------------------------------------- concurrency


async def test_wrong_expected_version_is_a_concurrency_error_naming_both_versions(
    store: EventStore, programme: Programme
) -> None:
    journey = short_journey(programme, "trifide", meetings=3)
    await store.append(journey.stream_id, 0, journey.envelopes(1, 2))

    # The stream is at 2; a writer that believes it is at 3 is refused.
    with pytest.raises(ConcurrencyError) as raised:
        await store.append(journey.stream_id, 3, journey.envelopes(4, 4))
    message = str(raised.value)
    assert journey.stream_id in message
    assert message == f"stream {journey.stream_id} is at version 2, expected 3"

    # A new stream is at 0: expecting 1 is refused as well.
    fresh = short_journey(programme, "other", meetings=1)
    with pytest.raises(ConcurrencyError, match=re.escape(f"stream {fresh.stream_id} is at")):
        await store.append(fresh.stream_id, 1, fresh.envelopes(2, 2))

    assert await count_events(store, journey.stream_id) == 2
    assert await count_events(store, fresh.stream_id) == 0


async def test_a_different_event_at_a_taken_version_is_refused_and_writes_nothing(
    store: EventStore, programme: Programme
) -> None:
    journey = short_journey(programme, "trifide", meetings=3)
    stored = journey.envelopes(1, 3)
    await store.append(journey.stream_id, 0, stored)
    before = await read_models(store, programme.id)

    # Another writer also decided version 3 (a new event id), from version 2.
    rival = journey.envelopes(3, 4)
    with pytest.raises(ConcurrencyError, match=re.escape(journey.stream_id)):
        await store.append(journey.stream_id, 2, rival)

    assert await count_events(store, journey.stream_id) == 3
    assert await store.read_stream(journey.stream_id) == stored
    assert await read_models(store, programme.id) == before


async def test_an_event_id_already_stored_elsewhere_is_refused_and_writes_nothing(
    store: EventStore, programme: Programme
) -> None:
    journey = short_journey(programme, "trifide", meetings=3)
    stored = journey.envelopes(1, 3)
    await store.append(journey.stream_id, 0, stored)
    before = await read_models(store, programme.id)

    reused = EventEnvelope(
        event_id=stored[0].event_id,
        stream_id=journey.stream_id,
        stream_version=4,
        event=journey.events[3],
    )
    with pytest.raises(ConcurrencyError, match=re.escape(journey.stream_id)):
        await store.append(journey.stream_id, 3, [reused])
    # Part of a batch already stored, part new: not a retry either.
    with pytest.raises(ConcurrencyError):
        await store.append(journey.stream_id, 2, [stored[2], *journey.envelopes(4, 4)])

    assert await count_events(store, journey.stream_id) == 3
    assert await read_models(store, programme.id) == before


@pytest.mark.parametrize(
    ("expected_version", "versions", "stream_suffix"),
    [
        pytest.param(0, [2, 3], "", id="starts-after-expected"),
        pytest.param(0, [1, 3], "", id="gap"),
        pytest.param(0, [2, 1], "", id="out-of-order"),
        pytest.param(1, [1, 2], "", id="starts-at-expected"),
        pytest.param(0, [1, 2], "-elsewhere", id="other-stream"),
    ],
)
async def test_envelopes_that_do_not_follow_the_expected_version_are_a_value_error(
    store: EventStore,
    programme: Programme,
    expected_version: int,
    versions: list[int],
    stream_suffix: str,
) -> None:
    journey = short_journey(programme, "trifide", meetings=2)
    envelopes = [
        EventEnvelope(
            event_id=uuid.uuid4(),
            stream_id=journey.stream_id + stream_suffix,
            stream_version=version,
            event=journey.events[version - 1],
        )
        for version in versions
    ]
    with pytest.raises(ValueError, match="expected"):
        await store.append(journey.stream_id, expected_version, envelopes)
    assert await count_events(store, journey.stream_id) == 0
    assert await count_events(store, journey.stream_id + stream_suffix) == 0


# -------------------------------------------------------------------- read models


async def test_read_models_follow_each_append(store: EventStore, programme: Programme) -> None:
    journey = rich_journey(programme, "trifide")
    stream_id = journey.stream_id

    await store.append(stream_id, 0, journey.envelopes(1, 2))
    row = await store.pool.fetchrow("SELECT * FROM journeys WHERE stream_id = $1", stream_id)
    assert row is not None
    assert row["programme_id"] == programme.id
    assert row["firm_id"] == "trifide"
    assert row["firm_name"] == "Firm trifide"
    assert row["mission_id"] == "m1"
    assert row["introduced_on"] == date(2013, 9, 17)
    assert row["stage"] == "meetings"
    assert row["cycle"] == 1
    assert row["version"] == 2
    assert row["last_event_type"] == "MeetingRequested"
    assert row["last_event_summary"] == "meeting mt-1 with Apple requested"
    assert row["last_event_at"] == datetime(2013, 9, 17, tzinfo=LA)
    assert row["next_deadline_kind"] == "visit_reminder"
    assert row["next_deadline"] == "reminder of return visit 1 (due 2014-03-17) on 2014-02-15"
    assert row["next_deadline_at"] == datetime(2014, 2, 15, tzinfo=LA)
    meetings = await store.pool.fetch(
        "SELECT meeting_id, counterpart, status FROM meetings WHERE stream_id = $1", stream_id
    )
    assert [tuple(m) for m in meetings] == [("mt-1", "Apple", "requested")]

    # Arranged: the next deadline becomes the meeting's result, 7 days after it.
    await store.append(stream_id, 2, journey.envelopes(3, 3))
    row = await store.pool.fetchrow("SELECT * FROM journeys WHERE stream_id = $1", stream_id)
    assert row is not None
    assert (row["version"], row["last_event_type"]) == (3, "MeetingArranged")
    assert row["next_deadline_kind"] == "result_overdue"
    assert row["next_deadline_at"] == datetime(2013, 9, 24, 10, tzinfo=LA)
    assert (
        await store.pool.fetchval(
            "SELECT status FROM meetings WHERE stream_id = $1 AND meeting_id = 'mt-1'", stream_id
        )
        == "arranged"
    )

    await store.append(stream_id, 3, journey.envelopes(4, len(journey.events)))
    row = await store.pool.fetchrow("SELECT * FROM journeys WHERE stream_id = $1", stream_id)
    assert row is not None
    assert row["stage"] == "contracted"
    assert row["version"] == len(journey.events)
    assert row["last_event_type"] == "ReturnVisitAttended"
    assert row["last_event_at"] == datetime(2014, 3, 20, tzinfo=LA)
    assert row["next_deadline"] == "reminder of return visit 2 (due 2014-09-17) on 2014-08-18"
    assert row["next_deadline_at"] == datetime(2014, 8, 18, tzinfo=LA)
    assert JourneyState.model_validate(row["state"]) == journey.state

    meetings = await store.pool.fetch(
        "SELECT meeting_id, counterpart, partner_id, scheduled_at, status, outcome, result_on,"
        " overdue FROM meetings WHERE stream_id = $1 ORDER BY meeting_id",
        stream_id,
    )
    assert [tuple(m) for m in meetings] == [
        (
            "mt-1",
            "Apple",
            "labizfed",
            datetime(2013, 9, 17, 10, tzinfo=LA),
            "promising",
            "promising",
            date(2013, 9, 18),
            False,
        ),
        (
            "mt-2",
            "Google",
            "labizfed",
            datetime(2013, 9, 18, 15, tzinfo=LA),
            "overdue",
            None,
            None,
            True,
        ),
        ("mt-3", "Intel", None, None, "requested", None, None, False),
    ]
    contracts = await store.pool.fetch(
        "SELECT contract_id, counterpart, amount, currency, signed_on, meeting_ids"
        " FROM contracts WHERE stream_id = $1",
        stream_id,
    )
    assert [tuple(c) for c in contracts] == [
        ("c1", "Apple", Decimal("250000.00"), "CAD", date(2013, 9, 18), ["mt-1"])
    ]
    visits = await store.pool.fetch(
        "SELECT visit, due_on, status, recorded_on, mission_id FROM return_visits"
        " WHERE stream_id = $1",
        stream_id,
    )
    assert [tuple(v) for v in visits] == [
        (1, date(2014, 3, 17), "attended", date(2014, 3, 20), "m2")
    ]


async def test_journey_states_come_from_the_read_model(
    store: EventStore, programme: Programme
) -> None:
    first, second = rich_journey(programme, "alpha"), short_journey(programme, "beta")
    await append_all(store, first)
    await append_all(store, second)

    states = await store.journey_states(programme.id)

    assert states == {first.stream_id: first.state, second.stream_id: second.state}
    assert await store.journey_states(programme.id, "beta") == {second.stream_id: second.state}
    listed = [p for p in await store.programmes() if p["programme_id"] == programme.id]
    assert listed == [{"programme_id": programme.id, "name": programme.name, "journeys": 2}]


# -------------------------------------------------------------------------- rebuild


async def _append_programme(store: EventStore, programme: Programme) -> list[Journey]:
    journeys = [
        rich_journey(programme, "alpha"),
        rich_journey(programme, "bravo"),
        short_journey(programme, "charlie", meetings=1),
        Journey(programme, "delta").enrol(),
    ]
    # Interleave the streams' batches so the global order mixes them.
    for batch in range(0, 12, 2):
        for journey in journeys:
            if batch < len(journey.events):
                stop = min(batch + 2, len(journey.events))
                await store.append(journey.stream_id, batch, journey.envelopes(batch + 1, stop))
    return journeys


async def test_rebuild_yields_exactly_the_same_rows(
    store: EventStore, programme: Programme
) -> None:
    await _append_programme(store, programme)
    before = await read_models(store, programme.id)
    assert all(before[table] for table in READ_MODELS), before

    await store.rebuild_read_models()

    assert await read_models(store, programme.id) == before


def _without_state(models: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {
        table: [{k: v for k, v in row.items() if k != "state"} for row in rows]
        for table, rows in models.items()
    }


def _states(models: dict[str, list[dict[str, Any]]]) -> list[JourneyState]:
    return [JourneyState.model_validate(row["state"]) for row in models["journeys"]]


async def test_rebuild_yields_the_same_read_models(store: EventStore, programme: Programme) -> None:
    journeys = await _append_programme(store, programme)
    before = await read_models(store, programme.id)
    assert [len(before[t]) for t in READ_MODELS] == [4, 7, 2, 2]

    replayed = await store.rebuild_read_models()

    assert replayed == await store.pool.fetchval("SELECT count(*) FROM events")
    after = await read_models(store, programme.id)
    # Every column equal; the state column equal as the domain reads it.
    assert _without_state(after) == _without_state(before)
    assert _states(after) == _states(before)
    assert _states(after) == [j.state for j in sorted(journeys, key=lambda j: j.stream_id)]


@pytest.mark.parametrize("chunk", [1, 3, 7])
async def test_rebuild_reading_in_small_chunks_yields_the_same_read_models(
    store: EventStore, programme: Programme, chunk: int
) -> None:
    """Streams cut across chunks (one event per chunk, or a few) fold the same."""
    await _append_programme(store, programme)
    before = await read_models(store, programme.id)

    replayed = await store.rebuild_read_models(chunk=chunk)

    assert replayed == await store.pool.fetchval("SELECT count(*) FROM events")
    after = await read_models(store, programme.id)
    assert _without_state(after) == _without_state(before)
    assert _states(after) == _states(before)


async def test_rebuild_restores_a_corrupted_read_model(
    store: EventStore, programme: Programme
) -> None:
    journeys = await _append_programme(store, programme)
    alpha = journeys[0].stream_id
    before = await read_models(store, programme.id)

    await store.pool.execute(
        "UPDATE journeys SET stage = 'x', version = 99 WHERE stream_id = $1", alpha
    )
    await store.pool.execute(
        "UPDATE meetings SET status = 'cancelled' WHERE stream_id = $1 AND meeting_id = 'mt-1'",
        alpha,
    )
    await store.pool.execute("DELETE FROM contracts WHERE stream_id = $1", alpha)
    await store.pool.execute("DELETE FROM return_visits WHERE stream_id = $1", alpha)
    await store.pool.execute(
        "INSERT INTO meetings (stream_id, meeting_id, programme_id, firm_id, counterpart,"
        " requested_on, status, overdue) VALUES ($1, 'ghost', $2, 'alpha', 'Nobody',"
        " '2013-09-17', 'requested', false)",
        alpha,
        programme.id,
    )
    assert await read_models(store, programme.id) != before

    await store.rebuild_read_models()

    after = await read_models(store, programme.id)
    assert _without_state(after) == _without_state(before)
    assert _states(after) == _states(before)
    row = await store.pool.fetchrow(
        "SELECT stage, version FROM journeys WHERE stream_id = $1", alpha
    )
    assert row is not None
    assert (row["stage"], row["version"]) == ("contracted", len(journeys[0].events))


async def test_appends_after_a_rebuild_continue_from_the_rebuilt_state(
    store: EventStore, programme: Programme
) -> None:
    journey = short_journey(programme, "trifide", meetings=3)
    await store.append(journey.stream_id, 0, journey.envelopes(1, 2))
    await store.rebuild_read_models()

    await store.append(journey.stream_id, 2, journey.envelopes(3, 4))

    states = await store.journey_states(programme.id)
    assert states == {journey.stream_id: journey.state}


# ------------------------------------------------------------------ schema guards


async def test_events_cannot_be_updated_or_deleted(store: EventStore, programme: Programme) -> None:
    journey = short_journey(programme, "trifide", meetings=1)
    envelopes = journey.envelopes()
    await store.append(journey.stream_id, 0, envelopes)

    with pytest.raises(asyncpg.exceptions.RaiseError, match=r"append-only .*UPDATE"):
        await store.pool.execute(
            "UPDATE events SET event_type = 'Tampered' WHERE stream_id = $1", journey.stream_id
        )
    with pytest.raises(asyncpg.exceptions.RaiseError, match=r"append-only .*DELETE"):
        await store.pool.execute("DELETE FROM events WHERE stream_id = $1", journey.stream_id)
    async with store.pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        try:
            with pytest.raises(asyncpg.exceptions.RaiseError, match=r"append-only .*TRUNCATE"):
                await connection.execute("TRUNCATE events")
        finally:
            await transaction.rollback()

    assert await store.read_stream(journey.stream_id) == envelopes


async def test_migrate_again_applies_nothing(store: EventStore) -> None:
    async with store.pool.acquire() as connection:
        assert await migrate(connection) == []
        applied = await connection.fetch("SELECT number FROM schema_migrations ORDER BY number")
    assert [r["number"] for r in applied] == [number for number, _, _ in MIGRATIONS]


# ----------------------------------------------------------- concurrent appends


async def test_concurrent_appends_all_land_and_a_catch_up_reader_misses_none(
    store: EventStore, programme: Programme
) -> None:
    journeys = [short_journey(programme, f"firm-{n:02d}", meetings=5) for n in range(20)]
    envelopes = {j.stream_id: j.envelopes() for j in journeys}
    expected_ids = {e.event_id for batch in envelopes.values() for e in batch}
    start: int = await store.pool.fetchval("SELECT coalesce(max(position), 0) FROM events")

    writers_done = asyncio.Event()
    seen: list[tuple[int, uuid.UUID]] = []
    reads = 0

    async def write(stream_id: str) -> None:
        batch = envelopes[stream_id]
        for version in range(0, len(batch), 2):
            await store.append(stream_id, version, batch[version : version + 2])
            await asyncio.sleep(0)

    async def catch_up() -> None:
        nonlocal reads
        position = start
        while True:
            finished = writers_done.is_set()
            page = await store.read_all(after_position=position, limit=5)
            reads += 1
            for stored in page:
                seen.append((stored.position, stored.envelope.event_id))
                position = stored.position
            if finished and not page:
                return
            if not page:
                await asyncio.sleep(0.001)

    async def all_writers() -> None:
        try:
            await asyncio.gather(*(write(j.stream_id) for j in journeys))
        finally:
            writers_done.set()

    await asyncio.gather(all_writers(), catch_up())

    # Every stream landed whole.
    for journey in journeys:
        assert await store.read_stream(journey.stream_id) == envelopes[journey.stream_id]
        assert await store.stream_version(journey.stream_id) == 6
    rows = await store.pool.fetch(
        "SELECT position, stream_id, stream_version FROM events"
        " WHERE stream_id = ANY($1::text[]) ORDER BY position",
        list(envelopes),
    )
    positions = [r["position"] for r in rows]
    assert len(rows) == len(expected_ids) == 120
    assert len(set(positions)) == len(positions)
    for stream_id in envelopes:
        versions = [r["stream_version"] for r in rows if r["stream_id"] == stream_id]
        assert versions == list(range(1, 7))
    assert (
        await store.pool.fetchval(
            "SELECT count(*) FROM journeys WHERE programme_id = $1 AND version = 6", programme.id
        )
        == 20
    )

    # The reader, running while the writers were appending, saw each event once, in order.
    assert reads > 1
    seen_positions = [p for p, _ in seen]
    assert seen_positions == sorted(set(seen_positions))
    seen_ids = [event_id for _, event_id in seen if event_id in expected_ids]
    assert len(seen_ids) == len(set(seen_ids))
    assert set(seen_ids) == expected_ids
    assert [p for p, event_id in seen if event_id in expected_ids] == positions


# ------------------------------------------------------- upgrading a database


async def test_migrating_a_database_of_the_previous_version_keeps_its_events(
    dsn: str, programme: Programme, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dev database written by the previous version (identity positions, rows written
    by the old projection) migrates, keeps every event and position, and goes on."""
    import urllib.parse

    from activities import migrations
    from activities.projections import ChangedRows

    database = f"corridor_upgrade_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{database}"')
    scratch = urllib.parse.urlunsplit(urllib.parse.urlsplit(dsn)._replace(path=f"/{database}"))
    try:
        old = await asyncpg.connect(scratch)
        try:
            with monkeypatch.context() as patch:
                patch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:3])
                assert await migrate(old) == [1, 2, 3]
            journeys = [short_journey(programme, f"old-{n}", meetings=3) for n in range(3)]
            for journey in journeys:  # as the previous version stored them
                for envelope in journey.envelopes(1, 3):
                    stored = envelope.event
                    data = stored.model_dump_json(exclude={"type", "occurred_at", "recorded_at"})
                    await old.execute(
                        "INSERT INTO events (stream_id, stream_version, event_id, event_type,"
                        " schema_version, data, occurred_at, recorded_at)"
                        " VALUES ($1, $2, $3, $4, 1, $5::jsonb, $6, $7)",
                        envelope.stream_id, envelope.stream_version, envelope.event_id,
                        stored.type, data, stored.occurred_at, stored.recorded_at,
                    )
                folded = [evolve(None, journey.events[0])]
                for event in journey.events[1:3]:
                    folded.append(evolve(folded[-1], event))
                row = ChangedRows(journey.stream_id, folded[-1], journey.events[:3]).journey
                await old.execute(
                    "INSERT INTO journeys SELECT * FROM jsonb_populate_record("
                    "NULL::journeys, $1::jsonb)",
                    row,
                )
            old_positions = [
                r["position"] for r in await old.fetch("SELECT position FROM events ORDER BY 1")
            ]
            assert old_positions == list(range(1, 10))
        finally:
            await old.close()

        async with EventStore.connect(scratch) as upgraded:  # migrates to the current version
            async with upgraded.pool.acquire() as connection:
                applied = await migrations.applied_migrations(connection)
            assert applied == {number for number, _, _ in MIGRATIONS}
            for journey in journeys:
                assert await upgraded.append(journey.stream_id, 3, journey.envelopes(4, 4))
            fresh = short_journey(programme, "new", meetings=1)
            await upgraded.append(fresh.stream_id, 0, fresh.envelopes())

            everything = await upgraded.read_all(0)
            positions = [e.position for e in everything]
            assert positions[:9] == old_positions  # kept
            assert positions == sorted(positions) and len(positions) == 9 + 3 + 2
            assert positions[9] > 9
            states = await upgraded.journey_states(programme.id)
            assert states == {j.stream_id: j.state for j in [*journeys, fresh]}
            assert await upgraded.rebuild_read_models() == 14
            assert await upgraded.journey_states(programme.id) == states
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
