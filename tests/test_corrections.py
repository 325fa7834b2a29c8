"""Corrections, authors and the timeline on the real servers.

A journey runs on the session's Temporal dev server and stores its events in the
session's PostgreSQL. What is checked is what staff and auditors read: the bilan
computed from the journeys read model, the contracts read model, the event stream, the
``timeline`` query and the Web UI's details of the journey.
"""

from __future__ import annotations

import uuid
from datetime import datetime, time
from decimal import Decimal
from typing import Any

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client

from activities.store import EventStore
from corridor import service
from domain.bilan import compute_bilan
from domain.commands import (
    ArrangeMeeting,
    Command,
    CorrectContract,
    CorrectMeetingResult,
    CorrectVisitAttendance,
    Outcome,
    RecordMeetingResult,
    RequestMeeting,
    SignContract,
    VoidContract,
)
from domain.money import Money
from domain.timeline import TimelineEntry
from tests.conftest import make_programme
from tests.test_journey_workflow import (
    INTRO,
    LA,
    enrol,
    history_events,
    of_type,
    still_clock,
    stream,
)
from workflows.journey import FirmJourney

FIRM = "trifide"
USD_2001 = Money(amount=Decimal("2001.00"), currency="USD")


async def journey_with_contract(
    client: Client, task_queue: str, programme_id: str, firm: str = FIRM
) -> None:
    """Apple met and held (promising) on 2013-09-17; contract c1 of USD 2,001.00, by alice."""
    await enrol(client, task_queue, make_programme(programme_id), firm, clock=still_clock())
    morning = datetime.combine(INTRO, time(9), tzinfo=LA)
    for command in (
        RequestMeeting(meeting_id="m-1", counterpart="Apple"),
        ArrangeMeeting(meeting_id="m-1", partner_id="labizfed", scheduled_at=morning),
        RecordMeetingResult(meeting_id="m-1", outcome=Outcome.PROMISING),
        SignContract(counterpart="Apple", value=USD_2001, meeting_ids=["m-1"]),
    ):
        await service.send(client, programme_id, firm, command.model_copy(update={"by": "alice"}))


async def bilan_values(store: EventStore, programme_id: str) -> tuple[int, dict[str, Decimal]]:
    states = list((await store.journey_states(programme_id)).values())
    bilan = compute_bilan(programme_id, "P", states)
    return bilan.contracts, bilan.value_by_currency


async def web_ui_details(client: Client, programme_id: str, firm: str) -> str:
    """The journey's current details, as the Web UI shows them."""
    handle = service.journey_handle(client, programme_id, firm)
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return str(metadata.current_details)


async def test_a_corrected_amount_shows_in_the_bilan_and_the_timeline_with_its_author(
    client: Client, store: EventStore, worker: None, task_queue: str, programme_id: str
) -> None:
    await journey_with_contract(client, task_queue, programme_id)
    assert await bilan_values(store, programme_id) == (1, {"USD": Decimal("2001.00")})

    result = await service.send(
        client,
        programme_id,
        FIRM,
        CorrectContract(
            contract_id="c1",
            value=Money(amount=Decimal("2002.00"), currency="USD"),
            reason="typo: the signed copy says 2,002.00",
            by="bob",
        ),
    )

    assert result.events == ["contract c1 corrected (value): typo: the signed copy says 2,002.00"]
    assert await bilan_values(store, programme_id) == (1, {"USD": Decimal("2002.00")})
    row = await store.pool.fetchrow(
        "SELECT amount, currency FROM contracts WHERE programme_id = $1", programme_id
    )
    assert row is not None
    assert (row["amount"], row["currency"]) == (Decimal("2002.00"), "USD")
    # The original record stays in the store; the correction says before and after.
    events = await stream(store, programme_id, FIRM)
    [signed] = of_type(events, "ContractSigned")
    [corrected] = of_type(events, "ContractCorrected")
    assert (signed.value, signed.recorded_by) == (USD_2001, "alice")
    assert (corrected.value_before, corrected.value_after, corrected.recorded_by) == (
        USD_2001,
        Money(amount=Decimal("2002.00"), currency="USD"),
        "bob",
    )
    # The timeline query says the same, and so do the Web UI's details.
    handle = service.journey_handle(client, programme_id, FIRM)
    entries: list[TimelineEntry] = await handle.query(FirmJourney.timeline)
    last = entries[-1]
    assert (last.type, last.recorded_by, last.stage_before, last.stage_after) == (
        "ContractCorrected",
        "bob",
        "contracted",
        "contracted",
    )
    assert [str(c) for c in last.changes] == ["contract c1 value: USD 2,001.00 → USD 2,002.00"]
    assert last.recorded_at is not None
    assert last.recorded_at.astimezone(LA).date() == INTRO
    signing = entries[-2]
    assert (signing.type, signing.stage_before, signing.stage_after, signing.recorded_by) == (
        "ContractSigned",
        "meetings",
        "contracted",
        "alice",
    )
    details = await web_ui_details(client, programme_id, FIRM)
    assert last.line("America/Los_Angeles") in details
    assert (
        "2013-09-17 contract c1 corrected (value): typo: the signed copy says 2,002.00; "
        "contract c1 value: USD 2,001.00 → USD 2,002.00; by bob"
    ) in details


async def test_a_voided_contract_leaves_the_bilan_and_the_read_model(
    client: Client, store: EventStore, worker: None, task_queue: str, programme_id: str
) -> None:
    await journey_with_contract(client, task_queue, programme_id)

    await service.send(
        client,
        programme_id,
        FIRM,
        VoidContract(contract_id="c1", reason="recorded for the wrong firm", by="bob"),
    )

    assert await bilan_values(store, programme_id) == (0, {})
    # The read model keeps the contract, marked voided on its day: it counts nowhere.
    rows = await store.pool.fetch(
        "SELECT contract_id, voided_on FROM contracts WHERE programme_id = $1", programme_id
    )
    assert [(r["contract_id"], r["voided_on"]) for r in rows] == [("c1", INTRO)]
    assert (await store.bilan(programme_id)) is not None
    assert (await store.bilan(programme_id)).contracts == 0  # type: ignore[union-attr]
    stage = await store.pool.fetchval(
        "SELECT stage FROM journeys WHERE programme_id = $1", programme_id
    )
    assert stage == "meetings"
    view = await service.view(client, programme_id, FIRM)
    assert view.state.contracts[0].voided_on == INTRO
    handle = service.journey_handle(client, programme_id, FIRM)
    [voided] = [e for e in await handle.query(FirmJourney.timeline) if e.type == "ContractVoided"]
    assert (voided.stage_before, voided.stage_after, voided.recorded_by) == (
        "contracted",
        "meetings",
        "bob",
    )


# ------------------------------------------------------ refusals: nothing is written


@pytest.fixture(scope="module")
async def voided_journey(client: Client, store: EventStore, worker: None, task_queue: str) -> str:
    """A journey whose contract c1 is voided, meeting m-2 requested only; its programme id."""
    pid = f"p-{uuid.uuid4().hex[:10]}"
    await journey_with_contract(client, task_queue, pid)
    await service.send(client, pid, FIRM, RequestMeeting(meeting_id="m-2", counterpart="Xerox"))
    await service.send(client, pid, FIRM, SignContract(counterpart="LinkedIn", value=USD_2001))
    await service.send(client, pid, FIRM, VoidContract(contract_id="c1", reason="duplicate"))
    return pid


REFUSED: list[Any] = [
    pytest.param(
        VoidContract(contract_id="c1", reason="again"),
        "CorrectionRuleBroken",
        "contract c1 was voided on 2013-09-17: a voided contract can be neither corrected "
        "nor voided again",
        id="voiding-twice",
    ),
    pytest.param(
        CorrectContract(contract_id="c1", counterpart="Xerox", reason="r"),
        "CorrectionRuleBroken",
        "contract c1 was voided on 2013-09-17: a voided contract can be neither corrected "
        "nor voided again",
        id="correcting-a-voided-contract",
    ),
    pytest.param(
        CorrectContract(contract_id="c7", value=USD_2001, reason="r"),
        "UnknownReference",
        "contract c7 was never signed (contracts of trifide: c1, c2)",
        id="correcting-a-contract-never-signed",
    ),
    pytest.param(
        CorrectContract(contract_id="c2", value=USD_2001, reason="r"),
        "CorrectionRuleBroken",
        "contract c2 already records USD 2,001.00 with LinkedIn, signed on 2013-09-17: "
        "the correction changes nothing",
        id="a-correction-identical-to-the-record",
    ),
    pytest.param(
        CorrectMeetingResult(meeting_id="m-2", outcome=Outcome.NEUTRAL, reason="r"),
        "CorrectionRuleBroken",
        "meeting m-2 has no result to correct (requested): record its result instead",
        id="correcting-a-meeting-with-no-result",
    ),
    pytest.param(
        CorrectVisitAttendance(visit=1, attended=True, reason="r"),
        "CorrectionRuleBroken",
        "return visit 1 has no attendance recorded to correct (not due yet)",
        id="correcting-a-visit-not-recorded",
    ),
]


@pytest.mark.parametrize(("command", "rule", "message"), REFUSED)
async def test_a_correction_that_makes_no_sense_is_refused_and_writes_nothing(
    client: Client,
    store: EventStore,
    voided_journey: str,
    command: Command,
    rule: str,
    message: str,
) -> None:
    pid = voided_journey
    handle = service.journey_handle(client, pid, FIRM)
    await service.sync(client, pid, FIRM)
    history_before = len(await history_events(handle))
    version_before = await store.stream_version(handle.id)

    with pytest.raises(service.Refused) as refused:
        await service.send(client, pid, FIRM, command)

    assert (refused.value.rule, refused.value.message) == (rule, message)
    assert len(await history_events(handle)) == history_before
    assert await store.stream_version(handle.id) == version_before


# --------------------------------------------------------------------- raw signals


async def test_a_correction_by_raw_signal_is_recorded_as_temporal_s_and_refusals_are_kept(
    client: Client, store: EventStore, worker: None, task_queue: str, programme_id: str
) -> None:
    await journey_with_contract(client, task_queue, programme_id)
    handle = service.journey_handle(client, programme_id, FIRM)

    await handle.signal(
        "correct_contract",
        {"contract_id": "c1", "value": {"amount": "2500.00", "currency": "USD"}, "reason": "r1"},
    )
    await handle.signal("void_contract", {"contract_id": "c1"})  # no reason
    await handle.signal(
        "correct_meeting_result",
        {"meeting_id": "m-1", "outcome": "neutral", "reason": "r2", "by": "dana"},
    )
    await service.sync(client, programme_id, FIRM)

    events = await stream(store, programme_id, FIRM)
    [corrected] = of_type(events, "ContractCorrected")
    assert (corrected.value_after, corrected.recorded_by) == (
        Money(amount=Decimal("2500.00"), currency="USD"),
        "temporal (signal)",
    )
    [outcome] = of_type(events, "MeetingResultCorrected")
    assert (outcome.outcome_before, outcome.outcome_after, outcome.recorded_by) == (
        Outcome.PROMISING,
        Outcome.NEUTRAL,
        "dana",
    )
    assert of_type(events, "ContractVoided") == []
    view = await service.view(client, programme_id, FIRM)
    assert [(r.command, r.rule, r.message) for r in view.refusals] == [
        ("void_contract", "InvalidPayload", "reason: is required")
    ]
    assert await bilan_values(store, programme_id) == (1, {"USD": Decimal("2500.00")})
    # An update sent without an author by another client is said to come from Temporal.
    await handle.execute_update(
        "void_contract", {"contract_id": "c1", "reason": "duplicate"}, result_type=dict
    )
    [voided] = of_type(await stream(store, programme_id, FIRM), "ContractVoided")
    assert voided.recorded_by == "temporal (update)"
