"""FirmJourney on the real servers: what staff, auditors and reports see.

Every test runs the workflow on the session's Temporal dev server and stores its events
in the session's PostgreSQL; nothing is mocked. Assertions read what a user would read:
the event store's rows, the ``state`` query, the journeys read model and Temporal's own
history of the journey.

Business clocks used here:

- *still*: the programme's clock starts at noon (Los Angeles) on the introduction day and
  runs at real speed, so the business date stays 2013-09-17 for the whole test;
- *compressed*: one business month per half real second, so a two-year cycle plays in
  about twelve seconds while every business date stays a real calendar date;
- *real time* (the default ``ProgrammeClock()``): business time is today.
"""

from __future__ import annotations

import asyncio
import time as monotonic
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, ResetReapplyExcludeType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Replayer

from activities.store import EventStore
from corridor import service
from domain.calendar import ProgrammeClock
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
    Withdraw,
)
from domain.events import EventEnvelope
from domain.money import Money
from domain.programme import Firm, Programme
from tests.conftest import make_programme
from workflows.journey import (
    ClockChange,
    FirmJourney,
    JourneyInput,
    JourneyView,
    journey_workflow_id,
    unpack_state,
)

LA = ZoneInfo("America/Los_Angeles")
INTRO = date(2013, 9, 17)  # first day of mission m1 of make_programme
MONTH_SECONDS = 0.5
SPEED = timedelta(days=30).total_seconds() / MONTH_SECONDS


# ------------------------------------------------------------------------ helpers


def months_after(day: date, months: int) -> date:
    """Calendar arithmetic written out by hand (day 17 exists in every month)."""
    index = day.month - 1 + months
    return date(day.year + index // 12, index % 12 + 1, day.day)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=LA)


def noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=LA)


def still_clock() -> ProgrammeClock:
    """Business time starts at noon on the introduction day and runs at real speed."""
    return ProgrammeClock(business_origin=noon(INTRO))


def compressed_clock() -> ProgrammeClock:
    """One business month (30 days) per half real second, from noon on the intro day."""
    return ProgrammeClock(business_origin=noon(INTRO), speed=SPEED)


async def run_clock(handle: WorkflowHandle[Any, Any], speed: float) -> None:
    """Run the journey's business clock at ``speed`` from now on (1.0: real time).

    Tests hold the clock at real time while they record facts that must fall between
    two deadlines, so that a loaded machine cannot let a deadline slip in between.
    """
    await handle.execute_update(FirmJourney.adjust_clock, ClockChange(speed=speed))


async def enrol(
    client: Client,
    task_queue: str,
    programme: Programme,
    firm_id: str,
    *,
    clock: ProgrammeClock | None = None,
    continue_as_new_after: int | None = None,
) -> WorkflowHandle[Any, Any]:
    command = EnrollFirm(
        programme=programme,
        firm=Firm(id=firm_id, name=f"Firm {firm_id}", sector="software"),
        mission_id="m1",
        occurred_on=INTRO,
        wants_to_meet=["Apple", "Xerox", "LinkedIn"],
    )
    enrolment = await service.enroll(
        client,
        command,
        task_queue=task_queue,
        clock=clock,
        continue_as_new_after=continue_as_new_after,
    )
    assert enrolment.started
    stored = await service.sync(client, programme.id, firm_id)
    assert stored is not None, "the journey did not answer sync"
    return service.journey_handle(client, programme.id, firm_id)


async def stream(store: EventStore, programme_id: str, firm_id: str) -> list[EventEnvelope]:
    return await store.read_stream(journey_workflow_id(programme_id, firm_id))


def of_type(events: list[EventEnvelope], kind: str) -> list[Any]:
    return [e.event for e in events if e.event.type == kind]


def assert_consecutive(events: list[EventEnvelope]) -> None:
    """Versions 1..N exactly once each, and every event id once."""
    assert [e.stream_version for e in events] == list(range(1, len(events) + 1))
    assert len({e.event_id for e in events}) == len(events)


async def history_events(handle: WorkflowHandle[Any, Any]) -> list[Any]:
    return list((await handle.fetch_history()).events)


async def wait_for(
    client: Client,
    programme_id: str,
    firm_id: str,
    condition: Callable[[JourneyView], bool],
    *,
    within: float,
    what: str,
) -> JourneyView:
    """Poll the ``state`` query until ``condition`` holds (or fail after ``timeout``)."""
    deadline = monotonic.monotonic() + within
    while True:
        view = await service.view(client, programme_id, firm_id)
        if condition(view):
            return view
        if monotonic.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {within}s waiting for {what}; business now "
                f"{view.business_now.astimezone(LA)}, stage {view.state.stage}"
            )
        await asyncio.sleep(0.05)


async def updates_accepted_per_run(client: Client, workflow_id: str, run_id: str) -> list[int]:
    """Follow the chain of runs from ``run_id``; count the updates each one accepted."""
    counts: list[int] = []
    next_run: str | None = run_id
    while next_run:
        history = await client.get_workflow_handle(workflow_id, run_id=next_run).fetch_history()
        kinds = [e.event_type for e in history.events]
        counts.append(kinds.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED))
        last = history.events[-1]
        next_run = None
        if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            next_run = (
                last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            )
    return counts


def business_day(view: JourneyView) -> date:
    return view.business_now.astimezone(LA).date()


# ------------------------------------------------------- 1. a whole two-cycle journey


async def test_full_journey_through_two_cycles(
    client: Client, store: EventStore, worker: None, task_queue: str, programme_id: str
) -> None:
    started = monotonic.monotonic()
    programme = make_programme(programme_id)  # real policy: 6-month visits, 24-month cycle
    assert programme.policy.return_visit_every_months == 6
    assert programme.policy.evaluation_after_months == 24
    firm = "trifide"
    handle = await enrol(client, task_queue, programme, firm, clock=still_clock())
    first_run = (await handle.describe()).run_id
    pid = programme_id

    # Meetings and a contract on the introduction day (explicit business dates).
    await service.send(
        client, pid, firm, RequestMeeting(meeting_id="m-1", counterpart="Apple", occurred_on=INTRO)
    )
    await service.send(
        client,
        pid,
        firm,
        ArrangeMeeting(
            meeting_id="m-1",
            partner_id="labizfed",
            scheduled_at=datetime.combine(INTRO, time(10), tzinfo=LA),
            place="Cupertino",
            occurred_on=INTRO,
        ),
    )
    await service.send(
        client,
        pid,
        firm,
        RecordMeetingResult(meeting_id="m-1", outcome=Outcome.PROMISING, occurred_on=INTRO),
    )
    await service.send(
        client,
        pid,
        firm,
        SignContract(
            counterpart="Apple",
            value=Money(amount=Decimal("250000.00"), currency="USD"),
            meeting_ids=["m-1"],
            occurred_on=INTRO,
        ),
    )
    await run_clock(handle, SPEED)  # from here on, one business month per half second

    # The firm takes part in the first return visit (mission m2, 2014-03-24).
    visit_day = date(2014, 3, 24)
    await wait_for(
        client, pid, firm, lambda v: business_day(v) > visit_day, within=30, what="visit 1"
    )
    await run_clock(handle, 1.0)
    attended = await service.send(
        client,
        pid,
        firm,
        RecordVisitAttendance(attended=True, mission_id="m2", occurred_on=visit_day),
    )
    assert attended.events == ["return visit 1 attended"]
    await run_clock(handle, SPEED)

    # The evaluation of cycle 1 falls due on its own, 24 months after the introduction.
    view = await wait_for(
        client,
        pid,
        firm,
        lambda v: v.state.stage == "awaiting_decision",
        within=45,
        what="the evaluation of cycle 1",
    )
    assert view.state.cycle == 1
    assert view.state.evaluations[1].due_on == months_after(INTRO, 24)
    renewed = await service.send(client, pid, firm, DecideEvaluation(decision=Decision.RENEW))
    assert "cycle 1 evaluated: renewed for cycle 2" in renewed.events

    # A new cycle continues the journey as new, carrying its state.
    await wait_for(
        client, pid, firm, lambda v: v.state.cycle == 2, within=10, what="cycle 2 to start"
    )
    second_run = (await handle.describe()).run_id
    # The new run shows its details in the Web UI from its first task on.
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert "(cycle 2)" in str(metadata.current_details)
    assert second_run != first_run
    new_history = await client.get_workflow_handle(handle.id, run_id=second_run).fetch_history()
    first_event = new_history.events[0]
    assert first_event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
    started_attributes = first_event.workflow_execution_started_event_attributes
    assert started_attributes.continued_execution_run_id == first_run
    [carried] = await client.data_converter.decode(
        started_attributes.input.payloads, [JourneyInput]
    )
    assert carried.packed_state is not None
    carried_state = unpack_state(carried.packed_state)
    assert carried_state.cycle == 2
    assert carried_state.evaluations[1].decision == Decision.RENEW
    assert carried_state.contracts[0].contract_id == "c1"
    assert carried.stored_version == renewed.stream_version
    assert carried.unstored == []
    assert carried.clock.real_origin is not None  # same business clock, not restarted

    # Cycle 2's evaluation falls due 48 months after the introduction.
    view = await wait_for(
        client,
        pid,
        firm,
        lambda v: 2 in v.state.evaluations,
        within=30,
        what="the evaluation of cycle 2",
    )
    assert view.state.stage == "awaiting_decision"
    await service.sync(client, pid, firm)
    events = await stream(store, pid, firm)
    assert_consecutive(events)
    assert events[0].event.type == "FirmEnrolled"
    for kind in ("MeetingRequested", "MeetingArranged", "MeetingHeld", "ContractSigned"):
        assert len(of_type(events, kind)) == 1, kind
    assert [(e.visit, e.mission_id) for e in of_type(events, "ReturnVisitAttended")] == [(1, "m2")]

    due = {e.visit: e.due_on for e in of_type(events, "ReturnVisitDue")}
    assert [due[n] for n in range(1, 9)] == [months_after(INTRO, 6 * n) for n in range(1, 9)]
    assert [date(2014, 3, 17), date(2014, 9, 17), date(2015, 3, 17), date(2015, 9, 17)] == [
        due[n] for n in range(1, 5)
    ]
    visits_due = [e.visit for e in of_type(events, "ReturnVisitDue")]
    assert visits_due == list(range(1, len(visits_due) + 1))  # each once, in order
    missed = [e.visit for e in of_type(events, "ReturnVisitMissed")]
    assert 1 not in missed
    assert {2, 3, 4, 5, 6, 7} <= set(missed)

    evaluations = of_type(events, "EvaluationCompleted")
    assert [(e.cycle, e.due_on, e.occurred_at) for e in evaluations] == [
        (1, date(2015, 9, 17), midnight(date(2015, 9, 17))),
        (2, date(2017, 9, 17), midnight(date(2017, 9, 17))),
    ]
    first = evaluations[0].assessment
    assert (first.meetings_requested, first.meetings_held, first.contracts) == (1, 1, 1)
    assert first.value_by_currency == {"USD": Decimal("250000.00")}
    assert first.days_to_first_contract == 0
    assert (first.visits_attended, first.visits_missed) == (1, 2)
    assert [(e.cycle, e.decision) for e in of_type(events, "EvaluationDecided")] == [
        (1, Decision.RENEW)
    ]
    types = [e.event.type for e in events]
    decided_at = types.index("EvaluationDecided")
    assert types.index("EvaluationCompleted") < decided_at
    assert types.index("EvaluationCompleted", decided_at) > decided_at

    # Closing the journey ends the workflow; the read model says closed.
    closed = await service.send(client, pid, firm, DecideEvaluation(decision=Decision.CLOSE))
    summary = await client.get_workflow_handle_for(FirmJourney.run, handle.id).result()
    assert summary.stage == "closed"
    assert summary.stream_version == closed.stream_version
    row = await store.pool.fetchrow(
        "SELECT stage, cycle, version FROM journeys WHERE stream_id = $1", handle.id
    )
    assert row is not None
    assert (row["stage"], row["cycle"], row["version"]) == ("closed", 2, closed.stream_version)
    final = await stream(store, pid, firm)
    assert_consecutive(final)
    assert final[-1].event.type == "EvaluationDecided"
    assert final[-1].event.decision == Decision.CLOSE

    with pytest.raises(service.Refused) as refused:
        await service.send(client, pid, firm, RequestMeeting(meeting_id="m-2", counterpart="X"))
    assert refused.value.rule == "JourneyOver"
    assert firm in refused.value.message
    assert len(await stream(store, pid, firm)) == len(final)
    print(f"two cycles played in {monotonic.monotonic() - started:.1f}s")


# ------------------------------------------------ 2. refused updates change nothing

_REFUSALS_FIRM = "exmachina"


@pytest.fixture(scope="module")
async def refusal_journey(client: Client, store: EventStore, worker: None, task_queue: str) -> str:
    """A journey on 2013-09-17 with m-1 requested, m-2 arranged and m-3 held (neutral).

    Returns its programme id.
    """
    pid = f"p-{uuid.uuid4().hex[:10]}"
    firm = _REFUSALS_FIRM
    await enrol(client, task_queue, make_programme(pid), firm, clock=still_clock())
    morning = datetime.combine(INTRO, time(9), tzinfo=LA)
    for command in (
        RequestMeeting(meeting_id="m-1", counterpart="Apple"),
        RequestMeeting(meeting_id="m-2", counterpart="Xerox"),
        ArrangeMeeting(meeting_id="m-2", partner_id="labizfed", scheduled_at=morning),
        RequestMeeting(meeting_id="m-3", counterpart="LinkedIn"),
        ArrangeMeeting(meeting_id="m-3", partner_id="labizfed", scheduled_at=morning),
        RecordMeetingResult(meeting_id="m-3", outcome=Outcome.NEUTRAL),
    ):
        await service.send(client, pid, firm, command)
    return pid


_USD = Money(amount=Decimal("1000.00"), currency="USD")

REFUSED_UPDATES: list[Any] = [
    pytest.param(
        RequestMeeting(meeting_id="m-1", counterpart="Xerox"),
        "RecordDiffers",
        ["m-1", "requested on 2013-09-17", "counterpart Apple", "counterpart Xerox"],
        id="meeting-requested-again-with-another-counterpart",
    ),
    pytest.param(
        RecordMeetingResult(meeting_id="m-1", outcome=Outcome.PROMISING),
        "MeetingRuleBroken",
        ["m-1", "never arranged"],
        id="result-for-a-meeting-never-arranged",
    ),
    pytest.param(
        RecordMeetingResult(meeting_id="m-3", outcome=Outcome.PROMISING),
        "RecordDiffers",
        ["m-3", "outcome neutral", "outcome promising", "corridor correct meeting"],
        id="another-result-for-a-meeting",
    ),
    pytest.param(
        ArrangeMeeting(
            meeting_id="m-3",
            partner_id="labizfed",
            scheduled_at=datetime.combine(INTRO, time(11), tzinfo=LA),
        ),
        "RecordDiffers",
        ["m-3", "already has a result (neutral"],
        id="arranging-a-meeting-already-held",
    ),
    pytest.param(
        ArrangeMeeting(
            meeting_id="m-404",
            partner_id="labizfed",
            scheduled_at=datetime.combine(INTRO, time(11), tzinfo=LA),
        ),
        "UnknownReference",
        ["m-404", "never requested"],
        id="arranging-a-meeting-never-requested",
    ),
    pytest.param(
        ArrangeMeeting(
            meeting_id="m-1",
            partner_id="nobody",
            scheduled_at=datetime.combine(INTRO, time(11), tzinfo=LA),
        ),
        "UnknownReference",
        ["'nobody'", "labizfed"],
        id="unknown-partner",
    ),
    pytest.param(
        RecordVisitAttendance(attended=True, mission_id="m9"),
        "UnknownReference",
        ["'m9'", "m1, m2"],
        id="unknown-mission",
    ),
    pytest.param(
        RequestMeeting(meeting_id="m-5", counterpart="Apple", occurred_on=date(2013, 9, 18)),
        "DateOutOfRange",
        ["2013-09-18", "future", "2013-09-17"],
        id="date-in-the-future",
    ),
    pytest.param(
        RequestMeeting(meeting_id="m-5", counterpart="Apple", occurred_on=date(2013, 9, 16)),
        "DateOutOfRange",
        ["2013-09-16", "before the firm's introduction"],
        id="date-before-the-introduction",
    ),
    pytest.param(
        ArrangeMeeting(
            meeting_id="m-1",
            partner_id="labizfed",
            scheduled_at=datetime(2013, 9, 10, 15, tzinfo=LA),
        ),
        "DateOutOfRange",
        ["m-1", "2013-09-10", "before it was requested"],
        id="meeting-scheduled-before-its-request",
    ),
    pytest.param(
        DecideEvaluation(decision=Decision.RENEW),
        "EvaluationRuleBroken",
        ["cycle 1", "2015-09-17", "2013-09-17"],
        id="decision-before-the-evaluation",
    ),
    pytest.param(
        RecordVisitAttendance(attended=True),
        "VisitRuleBroken",
        ["2013-09-17", "visit 1", "2014-03-17", "2014-02-15"],
        id="attendance-when-no-visit-is-open",
    ),
    pytest.param(
        SignContract(counterpart="Apple", value=_USD, meeting_ids=["m-ghost"]),
        "UnknownReference",
        ["m-ghost", "never requested"],
        id="contract-for-a-meeting-never-requested",
    ),
    pytest.param(
        SignContract(counterpart="Xerox", value=_USD, meeting_ids=["m-2"]),
        "ContractRuleBroken",
        ["m-2", "not held (arranged)"],
        id="contract-for-a-meeting-not-held",
    ),
    pytest.param(
        SignContract(counterpart="Apple", value=_USD, meeting_ids=["m-3"]),
        "ContractRuleBroken",
        ["'Apple'", "m-3", "'LinkedIn'"],
        id="contract-with-another-counterpart",
    ),
]


@pytest.mark.parametrize(("command", "rule", "words"), REFUSED_UPDATES)
async def test_refused_update_names_its_rule_and_writes_nothing(
    client: Client,
    store: EventStore,
    refusal_journey: str,
    command: Command,
    rule: str,
    words: list[str],
) -> None:
    pid, firm = refusal_journey, _REFUSALS_FIRM
    handle = service.journey_handle(client, pid, firm)
    await service.sync(client, pid, firm)
    history_before = len(await history_events(handle))
    version_before = await store.stream_version(handle.id)

    with pytest.raises(service.Refused) as refused:
        await service.send(client, pid, firm, command)

    assert refused.value.rule == rule, refused.value
    for word in words:
        assert word in refused.value.message, (word, refused.value.message)
    assert len(await history_events(handle)) == history_before
    assert await store.stream_version(handle.id) == version_before
    view = await service.view(client, pid, firm)
    assert view.state.stream_version == version_before
    assert view.stored_version == version_before
    assert view.refusals == []  # only refused *signals* are kept


async def test_update_with_a_malformed_payload_is_rejected_and_writes_nothing(
    client: Client, store: EventStore, refusal_journey: str
) -> None:
    handle = service.journey_handle(client, refusal_journey, _REFUSALS_FIRM)
    await service.sync(client, refusal_journey, _REFUSALS_FIRM)
    history_before = len(await history_events(handle))
    version_before = await store.stream_version(handle.id)

    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update("request_meeting", {"meeting": 3})

    assert len(await history_events(handle)) == history_before
    assert await store.stream_version(handle.id) == version_before


async def test_command_to_a_withdrawn_firm_is_refused_as_journey_over(
    client: Client, store: EventStore, worker: None, task_queue: str, programme_id: str
) -> None:
    firm = "doculibre"
    handle = await enrol(
        client, task_queue, make_programme(programme_id), firm, clock=still_clock()
    )
    await service.send(client, programme_id, firm, Withdraw(reason="no budget"))
    summary = await client.get_workflow_handle_for(FirmJourney.run, handle.id).result()
    assert summary.stage == "withdrawn"
    history_before = len(await history_events(handle))
    version_before = await store.stream_version(handle.id)

    with pytest.raises(service.Refused) as refused:
        await service.send(
            client,
            programme_id,
            firm,
            SignContract(counterpart="Apple", value=_USD),
        )

    assert refused.value.rule == "JourneyOver"
    assert firm in refused.value.message
    assert len(await history_events(handle)) == history_before
    assert await store.stream_version(handle.id) == version_before == 2


async def test_command_in_the_journeys_first_workflow_task_is_accepted(
    client: Client, store: EventStore, worker: None, task_queue: str, programme_id: str
) -> None:
    programme = make_programme(programme_id)
    enrolment = EnrollFirm(
        programme=programme,
        firm=Firm(id="trifide", name="Groupe Trifide"),
        mission_id="m1",
        occurred_on=INTRO,
    )
    start = WithStartWorkflowOperation(
        FirmJourney.run,
        JourneyInput(enrollment=enrolment, clock=still_clock()),
        id=journey_workflow_id(programme_id, "trifide"),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
    )

    result = await client.execute_update_with_start_workflow(
        FirmJourney.request_meeting,
        RequestMeeting(meeting_id="m-1", counterpart="Apple"),
        start_workflow_operation=start,
    )

    assert result.events == ["meeting m-1 with Apple requested"]
    events = await stream(store, programme_id, "trifide")
    assert [e.event.type for e in events] == ["FirmEnrolled", "MeetingRequested"]


# ------------------------------------------------------------------------- 3. signals


async def test_signals_record_valid_commands_and_keep_refusals_without_failing(
    client: Client, store: EventStore, worker: None, task_queue: str, programme_id: str
) -> None:
    firm = "trifide"
    handle = await enrol(
        client, task_queue, make_programme(programme_id), firm, clock=still_clock()
    )

    await handle.signal("request_meeting", {"meeting_id": "m-9", "counterpart": "Apple"})
    await handle.signal("request_meeting", {"meeting": 3})
    await handle.signal("request_meeting", ["m-10", "Xerox"])
    await handle.signal("request_meeting", {"meeting_id": "m-9", "counterpart": "Apple"})
    await handle.signal("request_meeting", {"meeting_id": "m-9", "counterpart": "Xerox"})
    await handle.signal(
        "arrange_meeting",
        {"meeting_id": "m-9", "partner_id": "labizfed", "scheduled_at": "2013-09-17T10:00"},
    )
    await service.sync(client, programme_id, firm)

    events = await stream(store, programme_id, firm)
    assert [(e.event.type, getattr(e.event, "meeting_id", None)) for e in events] == [
        ("FirmEnrolled", None),
        ("MeetingRequested", "m-9"),
    ]
    view = await service.view(client, programme_id, firm)
    refusals = [(r.command, r.rule, r.message) for r in view.refusals]
    assert len(refusals) == 4, refusals
    shape, listed, rule, naive = refusals
    assert shape == (
        "request_meeting",
        "InvalidPayload",
        "meeting_id: is required; counterpart: is required; "
        "meeting: is not a field of this command",
    )
    assert listed == (
        "request_meeting",
        "InvalidPayload",
        "expects one JSON object with meeting_id, counterpart "
        "(optional: command_id, occurred_on, by); got a JSON array",
    )
    # m-9 with Apple again is already recorded (no refusal); with Xerox it differs.
    assert rule[:2] == ("request_meeting", "RecordDiffers")
    assert "m-9 (requested on 2013-09-17) is recorded with counterpart Apple" in rule[2]
    assert naive[:2] == ("arrange_meeting", "InvalidPayload")
    assert "scheduled_at" in naive[2]
    assert all(r.at.astimezone(LA).date() == INTRO for r in view.refusals)

    # The journey keeps running and answers commands, by update and by signal.
    result = await service.send(
        client, programme_id, firm, RequestMeeting(meeting_id="m-10", counterpart="Xerox")
    )
    assert result.events == ["meeting m-10 with Xerox requested"]
    await handle.signal(
        "arrange_meeting",
        {"meeting_id": "m-9", "partner_id": "labizfed", "scheduled_at": "2013-09-17T10:00-07:00"},
    )
    await service.sync(client, programme_id, firm)
    events = await stream(store, programme_id, firm)
    assert [e.event.type for e in events] == [
        "FirmEnrolled",
        "MeetingRequested",
        "MeetingRequested",
        "MeetingArranged",
    ]
    assert_consecutive(events)

    history = await history_events(handle)
    kinds = Counter(e.event_type for e in history)
    assert kinds[EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED] == 7
    assert kinds[EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED] == 0
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


# --------------------------------------------------------------------- 4. idempotency


async def test_same_command_id_twice_is_answered_as_duplicate(
    client: Client, store: EventStore, worker: None, task_queue: str, programme_id: str
) -> None:
    firm = "trifide"
    handle = await enrol(
        client,
        task_queue,
        make_programme(programme_id),
        firm,
        clock=still_clock(),
        continue_as_new_after=50,
    )
    first_run = (await handle.describe()).run_id
    command = RequestMeeting(command_id="req-apple-1", meeting_id="m-1", counterpart="Apple")

    first = await service.send(client, programme_id, firm, command)
    second = await service.send(client, programme_id, firm, command)

    assert (first.duplicate, first.stream_version) == (False, 2)
    assert first.events == ["meeting m-1 with Apple requested"]
    assert (second.duplicate, second.stream_version, second.events) == (True, 2, [])

    # Command ids are carried across continue-as-new.
    for n in range(30):
        if (await handle.describe()).run_id != first_run:
            break
        await service.send(
            client, programme_id, firm, RequestMeeting(meeting_id=f"m-x{n}", counterpart="Xerox")
        )
    assert (await handle.describe()).run_id != first_run
    after = await service.send(client, programme_id, firm, command)
    assert after.duplicate is True
    assert after.events == []

    events = await stream(store, programme_id, firm)
    assert_consecutive(events)
    requested = [e for e in events if e.command_id == "req-apple-1"]
    assert [(e.event.type, getattr(e.event, "meeting_id", None)) for e in requested] == [
        ("MeetingRequested", "m-1")
    ]


async def test_same_command_id_by_update_then_signal_is_recorded_once(
    client: Client, store: EventStore, worker: None, task_queue: str, programme_id: str
) -> None:
    firm = "trifide"
    handle = await enrol(
        client, task_queue, make_programme(programme_id), firm, clock=still_clock()
    )
    command = RequestMeeting(command_id="req-xerox-1", meeting_id="m-1", counterpart="Xerox")
    await service.send(client, programme_id, firm, command)
    await handle.signal("request_meeting", command.model_dump(mode="json"))
    await service.sync(client, programme_id, firm)

    events = await stream(store, programme_id, firm)
    assert [e.event.type for e in events] == ["FirmEnrolled", "MeetingRequested"]
    assert (await service.view(client, programme_id, firm)).refusals == []
    # Enrolling the same firm again starts nothing either.
    again = await service.enroll(
        client,
        EnrollFirm(
            programme=make_programme(programme_id),
            firm=Firm(id=firm, name=f"Firm {firm}"),
            mission_id="m1",
            occurred_on=INTRO,
        ),
        task_queue="unused",
    )
    assert again.started is False


# ------------------------------------------------------- 5. continue-as-new mid-burst


async def burst(
    client: Client, programme_id: str, firm: str, meeting_ids: list[str], *, with_ids: bool
) -> list[Any]:
    """Send one meeting request per id, all at once; results or exceptions, in order."""
    return await asyncio.gather(
        *(
            service.send(
                client,
                programme_id,
                firm,
                RequestMeeting(
                    meeting_id=m,
                    counterpart=f"Counterpart {m}",
                    command_id=f"request-{m}" if with_ids else None,
                ),
            )
            for m in meeting_ids
        ),
        return_exceptions=True,
    )


async def test_continue_as_new_during_a_burst_loses_nothing(
    client: Client, store: EventStore, worker: None, task_queue: str, programme_id: str
) -> None:
    firm = "trifide"
    handle = await enrol(
        client,
        task_queue,
        make_programme(programme_id),
        firm,
        clock=still_clock(),
        continue_as_new_after=60,
    )
    first_run = (await handle.describe()).run_id
    meeting_ids = [f"m-{n:02d}" for n in range(40)]

    results = await burst(client, programme_id, firm, meeting_ids, with_ids=True)
    accepted_per_run = await updates_accepted_per_run(client, handle.id, first_run)

    # The journey continued as new while the burst was being answered.
    assert len(accepted_per_run) >= 2, accepted_per_run
    assert sum(accepted_per_run[1:]) > 0, accepted_per_run
    # No command is refused by a rule; Temporal may answer "Unavailable" while a run
    # closes (see the report), and a caller resends with the same command id.
    unavailable = [
        m
        for m, r in zip(meeting_ids, results, strict=True)
        if isinstance(r, service.Refused) and r.rule == "Unavailable"
    ]
    failures = [
        (m, r)
        for m, r in zip(meeting_ids, results, strict=True)
        if isinstance(r, BaseException) and m not in unavailable
    ]
    assert failures == []
    resent = await burst(client, programme_id, firm, unavailable, with_ids=True)
    assert [r for r in resent if isinstance(r, BaseException)] == []

    await service.sync(client, programme_id, firm)
    events = await stream(store, programme_id, firm)
    assert_consecutive(events)
    requested = of_type(events, "MeetingRequested")
    assert Counter(e.meeting_id for e in requested) == Counter(meeting_ids)
    # Each first answer names the version at which its own event is stored.
    stored = {e.stream_version: (e.event, e.command_id) for e in events}
    for result, meeting_id in zip(results, meeting_ids, strict=True):
        if isinstance(result, BaseException) or result.duplicate:
            continue
        event, command_id = stored[result.stream_version]
        assert (getattr(event, "meeting_id", None), command_id) == (
            meeting_id,
            f"request-{meeting_id}",
        )
    assert (await handle.describe()).run_id != first_run
    view = await service.view(client, programme_id, firm)
    assert sorted(view.state.meetings) == meeting_ids
    assert view.stored_version == view.state.stream_version == 41


async def test_burst_without_command_ids_answers_every_update_across_continue_as_new(
    client: Client, store: EventStore, worker: None, task_queue: str
) -> None:
    firm = "trifide"
    meeting_ids = [f"m-{n:02d}" for n in range(80)]
    for _attempt in range(6):
        programme_id = f"p-{uuid.uuid4().hex[:10]}"
        await enrol(
            client,
            task_queue,
            make_programme(programme_id),
            firm,
            clock=still_clock(),
            continue_as_new_after=50,
        )
        results = await burst(client, programme_id, firm, meeting_ids, with_ids=False)
        await service.sync(client, programme_id, firm)
        recorded = Counter(
            e.meeting_id
            for e in of_type(await stream(store, programme_id, firm), "MeetingRequested")
        )
        assert recorded == Counter(meeting_ids)  # the store itself loses nothing
        failures = [
            (m, str(r))
            for m, r in zip(meeting_ids, results, strict=True)
            if isinstance(r, BaseException)
        ]
        assert failures == [], f"recorded once, yet the caller was told: {failures}"


async def test_concurrent_commands_each_answer_with_their_own_events(
    client: Client, worker: None, task_queue: str, programme_id: str
) -> None:
    firm = "trifide"
    await enrol(client, task_queue, make_programme(programme_id), firm, clock=still_clock())
    meeting_ids = [f"m-{n:02d}" for n in range(20)]

    results = await asyncio.gather(
        *(
            service.send(
                client, programme_id, firm, RequestMeeting(meeting_id=m, counterpart="Apple")
            )
            for m in meeting_ids
        )
    )

    for result, meeting_id in zip(results, meeting_ids, strict=True):
        assert result.events == [f"meeting {meeting_id} with Apple requested"], result


# ------------------------------------------------------------------------ 6. catch-up


async def test_late_enrolment_catches_up_every_past_deadline_in_calendar_order(
    client: Client, store: EventStore, worker: None, task_queue: str, programme_id: str
) -> None:
    firm = "trifide"
    started = monotonic.monotonic()
    await enrol(client, task_queue, make_programme(programme_id), firm)  # real-time clock
    events = await stream(store, programme_id, firm)
    assert monotonic.monotonic() - started < 10

    assert_consecutive(events)
    enrolled = events[0].event
    assert enrolled.type == "FirmEnrolled"
    assert enrolled.occurred_at == midnight(INTRO)
    now = events[-1].event.recorded_at
    assert now.year >= 2026

    expected: list[tuple[str, datetime, int]] = [("FirmEnrolled", midnight(INTRO), 0)]
    visit = 1
    while True:
        due_on = months_after(INTRO, 6 * visit)
        reminder = midnight(due_on - timedelta(days=30))
        if reminder > now:
            break
        expected.append(("ReturnVisitReminderDue", reminder, visit))
        if midnight(due_on) > now:
            break
        if visit > 1:
            expected.append(("ReturnVisitMissed", midnight(due_on), visit - 1))
        expected.append(("ReturnVisitDue", midnight(due_on), visit))
        if visit == 4:
            expected.append(("EvaluationCompleted", midnight(months_after(INTRO, 24)), 1))
        visit += 1

    def subject(event: Any) -> int:
        return getattr(event, "visit", getattr(event, "cycle", 0))

    actual = [(e.event.type, e.event.occurred_at, subject(e.event)) for e in events]
    assert actual == expected
    moments = [e.event.occurred_at for e in events]
    assert moments == sorted(moments)
    [evaluation] = of_type(events, "EvaluationCompleted")
    assert (evaluation.cycle, evaluation.due_on) == (1, date(2015, 9, 17))
    assert evaluation.assessment.visits_missed == 3

    view = await service.view(client, programme_id, firm)
    assert view.state.stage == "awaiting_decision"
    assert view.stored_version == len(events)
    assert view.next_deadline is not None
    assert view.next_deadline.at > now
    row = await store.pool.fetchrow(
        "SELECT stage, version FROM journeys WHERE stream_id = $1", events[0].stream_id
    )
    assert row is not None
    assert (row["stage"], row["version"]) == ("awaiting_decision", len(events))


# ------------------------------------------- a data error blocks storage, visibly


async def test_events_the_store_refuses_block_storage_visibly_until_retried(
    client: Client, store: EventStore, worker: None, task_queue: str, programme_id: str
) -> None:
    """A data error is not retried unseen: status and search attribute show it."""
    firm = "refused"
    handle = await enrol(
        client, task_queue, make_programme(programme_id), firm, clock=still_clock()
    )
    stream_id = journey_workflow_id(programme_id, firm)
    trigger = f"refuse_{programme_id.replace('-', '_')}"
    await store.pool.execute(
        f"CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"RAISE EXCEPTION 'meeting ids with a slash are refused'; END $$; "
        f"CREATE TRIGGER {trigger} BEFORE INSERT ON events FOR EACH ROW "
        f"WHEN (NEW.stream_id = '{stream_id}') EXECUTE FUNCTION {trigger}()"
    )
    try:
        await handle.signal("request_meeting", {"meeting_id": "m-1", "counterpart": "Apple"})
        view = await wait_for(
            client,
            programme_id,
            firm,
            lambda v: v.storage_problem is not None,
            within=20,
            what="the storage problem to show",
        )
        assert "meeting ids with a slash are refused" in (view.storage_problem or "")
        assert view.unstored == 1
        query = f"CorridorProgramme = '{programme_id}' AND CorridorStorageBlocked = true"
        listed: list[str] = []
        for _ in range(100):  # visibility follows the workflow a moment later
            listed = [w.id async for w in client.list_workflows(query)]
            if listed:
                break
            await asyncio.sleep(0.1)
        assert listed == [stream_id]
        assert (await store.stream_version(stream_id)) == 1  # only FirmEnrolled
    finally:
        await store.pool.execute(f"DROP TRIGGER {trigger} ON events; DROP FUNCTION {trigger}()")
    await handle.signal(FirmJourney.retry_storage)
    view = await wait_for(
        client,
        programme_id,
        firm,
        lambda v: v.storage_problem is None and v.unstored == 0,
        within=20,
        what="storage to resume",
    )
    events = await store.read_stream(stream_id)
    assert [e.event.type for e in events] == ["FirmEnrolled", "MeetingRequested"]
    assert view.stored_version == 2


# ------------------------------------- a journey reset behind its record (issue 7)


async def _reset_to(client: Client, handle: WorkflowHandle[Any, Any], event_id: int) -> None:
    """``temporal workflow reset`` to ``event_id``, re-applying no signal nor update."""
    description = await handle.describe()
    await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=handle.id, run_id=description.run_id),
            reason="test: reset before the meeting was arranged",
            workflow_task_finish_event_id=event_id,
            request_id=str(uuid.uuid4()),
            reset_reapply_exclude_types=[
                ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_SIGNAL,
                ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_UPDATE,
            ],
        )
    )


@pytest.mark.parametrize("via", ["update", "signal"])
async def test_a_journey_reset_before_an_arrangement_accepts_the_meetings_result(
    client: Client,
    store: EventStore,
    worker: None,
    task_queue: str,
    programme_id: str,
    via: str,
) -> None:
    """A reset run reads what the store recorded after its reset point before refusing.

    The meeting was arranged after the point the journey is reset to, and nothing
    re-applies the arrangement: only the event store knows it. The result must be
    recorded, not refused as "never arranged". An update that arrives while the reset
    is being applied is asked again by ``service.send`` (``JourneyJustReset``).
    """
    firm = f"reset-{via}"
    handle = await enrol(
        client, task_queue, make_programme(programme_id), firm, clock=still_clock()
    )
    await service.send(
        client, programme_id, firm, RequestMeeting(meeting_id="m-1", counterpart="Apple")
    )
    point = [
        e.event_id
        for e in await history_events(handle)
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ][-1]
    await service.send(
        client,
        programme_id,
        firm,
        ArrangeMeeting(
            meeting_id="m-1",
            partner_id="labizfed",
            scheduled_at=datetime.combine(INTRO, time(10), tzinfo=LA),
        ),
    )
    await _reset_to(client, handle, point)

    result = RecordMeetingResult(
        command_id=f"result-{via}", meeting_id="m-1", outcome=Outcome.PROMISING
    )
    if via == "update":
        answer = await service.send(client, programme_id, firm, result)
        assert (answer.duplicate, answer.stream_version) == (False, 4)
    else:
        # A signal is decided in the task it arrives in: once the reset is applied
        # (a sync answered), the run knows it may be behind its record.
        await service.sync(client, programme_id, firm)
        await handle.signal("record_meeting_result", result.model_dump(mode="json"))
        await wait_for(
            client,
            programme_id,
            firm,
            lambda v: v.stored_version == 4 or bool(v.refusals),
            within=20,
            what="the signalled result to be stored or refused",
        )

    view = await service.view(client, programme_id, firm)
    assert view.refusals == []
    meeting = view.state.meetings["m-1"]
    assert (meeting.partner_id, meeting.outcome) == ("labizfed", Outcome.PROMISING)
    events = await stream(store, programme_id, firm)
    assert_consecutive(events)
    assert [e.event.type for e in events] == [
        "FirmEnrolled",
        "MeetingRequested",
        "MeetingArranged",
        "MeetingHeld",
    ]
    scheduled = [
        e.user_metadata.summary
        for e in await history_events(handle)
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    summaries = await client.data_converter.decode(scheduled, [str] * len(scheduled))
    # Version 1 or 2: the store of the request may have been in flight at the reset point.
    reads = [s for s in summaries if s.endswith("(the journey was reset)")]
    assert len(reads) == 1, summaries
    assert reads[0].startswith("read the record after version "), reads
    # The reset run replays: the read is where the patch's marker says.
    replayer = Replayer(workflows=[FirmJourney], data_converter=client.data_converter)
    await replayer.replay_workflow(await handle.fetch_history())
