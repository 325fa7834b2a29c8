"""Corrections, authors and the timeline, as pure functions of the journey's events.

A correction is a new event carrying the values before and after; the record it
corrects stays in the stream, and the state, the bilan and the timeline show the latest
values. Played as the workflow plays a journey (``tests.test_domain_journey.Journey``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pydantic import TypeAdapter, ValidationError

from domain.bilan import compute_bilan
from domain.commands import (
    CorrectContract,
    CorrectMeetingResult,
    CorrectVisitAttendance,
    Outcome,
    RecordVisitAttendance,
    VoidContract,
)
from domain.errors import (
    AmountAboveMaximum,
    ContractRuleBroken,
    CorrectionRuleBroken,
    DateOutOfRange,
    UnknownReference,
)
from domain.events import (
    AnyEvent,
    ContractCorrected,
    ContractSigned,
    ContractVoided,
    Event,
    MeetingResultCorrected,
    VisitAttendanceCorrected,
)
from domain.money import Money
from domain.state import Stage, VisitStatus, fold
from domain.timeline import Change, timeline
from tests.test_domain_journey import (
    INTRO,
    Journey,
    arrange,
    at,
    contract,
    held_meeting_with_apple,
    request,
    result,
)

SIGNED_ON = date(2013, 10, 1)
USD_2001 = Money(amount=Decimal("2001.00"), currency="USD")
USD_2002 = Money(amount=Decimal("2002.00"), currency="USD")
EVENTS = TypeAdapter[Event](AnyEvent)


def with_contract() -> Journey:
    """Apple met on 2013-09-19 (promising); contract c1 of USD 2,001.00 on 2013-10-01."""
    journey = Journey()
    held_meeting_with_apple(journey)
    journey.do(SIGNED_ON, contract("Apple", "2001.00", "USD", "apple-1", on=SIGNED_ON))
    return journey


def correct_amount(value: Money = USD_2002, **fields: object) -> CorrectContract:
    return CorrectContract.model_validate(
        {"contract_id": "c1", "value": value, "reason": "typo in the amount", **fields}
    )


# ------------------------------------------------------------------------ contracts


def test_a_corrected_amount_is_what_the_state_and_the_bilan_show() -> None:
    journey = with_contract()
    [corrected] = journey.do(date(2013, 10, 3), correct_amount())

    assert isinstance(corrected, ContractCorrected)
    assert (corrected.value_before, corrected.value_after) == (USD_2001, USD_2002)
    assert corrected.counterpart_before is corrected.counterpart_after is None
    assert corrected.reason == "typo in the amount"
    # The original record stays in the stream, unchanged.
    [signed] = [e for e in journey.events if isinstance(e, ContractSigned)]
    assert signed.value == USD_2001
    [c1] = journey.state.contracts
    assert (c1.value, c1.counterpart, c1.signed_on) == (USD_2002, "Apple", SIGNED_ON)
    bilan = compute_bilan("p", "P", [journey.state])
    assert bilan.contracts == 1
    assert bilan.value_by_currency == {"USD": Decimal("2002.00")}
    assert fold(journey.events) == journey.state


def test_a_contract_s_counterpart_date_and_meetings_can_be_corrected_together() -> None:
    journey = with_contract()
    journey.play(
        (date(2013, 9, 20), request("apple-2", "apple inc.")),
        (date(2013, 9, 20), arrange("apple-2", at(date(2013, 9, 24), 9))),
        (date(2013, 9, 24), result("apple-2", Outcome.NEUTRAL)),
    )
    [corrected] = journey.do(
        date(2013, 10, 2),
        CorrectContract(
            contract_id="c1",
            counterpart="Apple Inc.",
            signed_on=date(2013, 9, 30),
            meeting_ids=["apple-2"],
            reason="name and date as on the signed copy",
        ),
    )
    assert isinstance(corrected, ContractCorrected)
    assert (corrected.counterpart_before, corrected.counterpart_after) == ("Apple", "Apple Inc.")
    assert (corrected.signed_on_before, corrected.signed_on_after) == (
        SIGNED_ON,
        date(2013, 9, 30),
    )
    assert (corrected.meeting_ids_before, corrected.meeting_ids_after) == (["apple-1"], ["apple-2"])
    assert corrected.value_before is None
    [c1] = journey.state.contracts
    assert (c1.counterpart, c1.signed_on, c1.meeting_ids) == (
        "Apple Inc.",
        date(2013, 9, 30),
        ["apple-2"],
    )
    assert journey.state.assessment().days_to_first_contract == 13


def test_a_voided_contract_counts_nowhere_and_its_id_is_not_reused() -> None:
    journey = with_contract()
    [voided] = journey.do(
        date(2013, 10, 5), VoidContract(contract_id="c1", reason="entered for the wrong firm")
    )
    assert isinstance(voided, ContractVoided)
    assert (voided.counterpart, voided.value, voided.signed_on) == ("Apple", USD_2001, SIGNED_ON)
    assert journey.state.stage is Stage.MEETINGS
    assert journey.state.contracts_in_force == []
    assert journey.state.contracts[0].voided_on == date(2013, 10, 5)
    bilan = compute_bilan("p", "P", [journey.state])
    assert (bilan.contracts, bilan.value_by_currency, bilan.firms_with_contract) == (0, {}, 0)
    assert bilan.median_days_to_first_contract is None

    [second] = journey.do(date(2013, 10, 6), contract("Apple", "500.00", "USD"))
    assert isinstance(second, ContractSigned)
    assert second.contract_id == "c2"
    assert compute_bilan("p", "P", [journey.state]).value_by_currency == {"USD": Decimal("500.00")}


@pytest.mark.parametrize(
    ("command", "error", "words"),
    [
        pytest.param(
            CorrectContract(contract_id="c9", value=USD_2002, reason="r"),
            UnknownReference,
            ["contract c9 was never signed", "c1"],
            id="correcting-a-contract-never-signed",
        ),
        pytest.param(
            VoidContract(contract_id="c9", reason="r"),
            UnknownReference,
            ["contract c9 was never signed"],
            id="voiding-a-contract-never-signed",
        ),
        pytest.param(
            correct_amount(USD_2001),
            CorrectionRuleBroken,
            ["contract c1 already records USD 2,001.00 with Apple", "changes nothing"],
            id="a-correction-identical-to-the-record",
        ),
        pytest.param(
            correct_amount(Money(amount=Decimal("2001"), currency="USD"), counterpart="Apple"),
            CorrectionRuleBroken,
            ["changes nothing"],
            id="the-same-amount-written-otherwise",
        ),
        pytest.param(
            correct_amount(Money(amount=Decimal("2000000000"), currency="USD")),
            AmountAboveMaximum,
            ["USD 2,000,000,000.00", "maximum"],
            id="a-corrected-amount-above-the-maximum",
        ),
        pytest.param(
            CorrectContract(contract_id="c1", signed_on=date(2013, 10, 4), reason="r"),
            DateOutOfRange,
            ["2013-10-04", "after the correction's date (2013-10-03)"],
            id="a-signing-date-after-the-correction",
        ),
        pytest.param(
            CorrectContract(contract_id="c1", signed_on=date(2013, 9, 18), reason="r"),
            DateOutOfRange,
            ["contract dated 2013-09-18, before meeting apple-1 was held (2013-09-19)"],
            id="a-signing-date-before-its-meeting",
        ),
        pytest.param(
            CorrectContract(contract_id="c1", counterpart="Xerox", reason="r"),
            ContractRuleBroken,
            ["'Xerox'", "apple-1", "'Apple'"],
            id="a-counterpart-other-than-its-meeting-s",
        ),
        pytest.param(
            CorrectContract(contract_id="c1", meeting_ids=["m-404"], reason="r"),
            UnknownReference,
            ["m-404", "never requested"],
            id="attributed-to-a-meeting-never-requested",
        ),
        pytest.param(
            CorrectContract(contract_id="c1", value=USD_2002, reason="r", occurred_on=INTRO),
            DateOutOfRange,
            ["dated 2013-09-17, before it was signed on 2013-10-01"],
            id="a-correction-dated-before-the-contract",
        ),
    ],
)
def test_a_contract_correction_that_makes_no_sense_is_refused(
    command: CorrectContract | VoidContract, error: type[Exception], words: list[str]
) -> None:
    journey = with_contract()
    refused = journey.refuse(date(2013, 10, 3), command, error)  # type: ignore[type-var]
    for word in words:
        assert word in str(refused), (word, str(refused))


def test_voiding_twice_or_correcting_a_voided_contract_is_refused() -> None:
    journey = with_contract()
    journey.do(date(2013, 10, 5), VoidContract(contract_id="c1", reason="duplicate"))
    twice = journey.refuse(
        date(2013, 10, 6), VoidContract(contract_id="c1", reason="again"), CorrectionRuleBroken
    )
    assert "contract c1 was voided on 2013-10-05" in str(twice)
    corrected = journey.refuse(date(2013, 10, 6), correct_amount(), CorrectionRuleBroken)
    assert "contract c1 was voided on 2013-10-05" in str(corrected)


def test_a_correction_needs_a_reason() -> None:
    with pytest.raises(ValidationError, match="reason"):
        CorrectContract.model_validate({"contract_id": "c1", "value": USD_2002})
    with pytest.raises(ValidationError, match="reason"):
        VoidContract(contract_id="c1", reason="   ")


# ------------------------------------------------------------------------- meetings


def test_a_corrected_meeting_outcome_is_what_the_bilan_counts() -> None:
    journey = Journey()
    held_meeting_with_apple(journey)
    [corrected] = journey.do(
        date(2013, 9, 20),
        CorrectMeetingResult(meeting_id="apple-1", outcome=Outcome.NEUTRAL, reason="misheard"),
    )
    assert isinstance(corrected, MeetingResultCorrected)
    assert (corrected.outcome_before, corrected.outcome_after) == (
        Outcome.PROMISING,
        Outcome.NEUTRAL,
    )
    assert journey.state.meetings["apple-1"].outcome is Outcome.NEUTRAL
    journey.do(
        date(2013, 9, 21),
        CorrectMeetingResult(meeting_id="apple-1", outcome=Outcome.NO_SHOW, reason="never came"),
    )
    bilan = compute_bilan("p", "P", [journey.state])
    assert (bilan.meetings_held, bilan.outcomes["no_show"], bilan.outcomes["promising"]) == (
        0,
        1,
        0,
    )


def test_a_meeting_correction_that_makes_no_sense_is_refused() -> None:
    journey = with_contract()
    journey.play((date(2013, 10, 1), request("xerox-1", "Xerox")))
    no_result = journey.refuse(
        date(2013, 10, 2),
        CorrectMeetingResult(meeting_id="xerox-1", outcome=Outcome.NEUTRAL, reason="r"),
        CorrectionRuleBroken,
    )
    assert "meeting xerox-1 has no result to correct (requested)" in str(no_result)
    never = journey.refuse(
        date(2013, 10, 2),
        CorrectMeetingResult(meeting_id="m-404", outcome=Outcome.NEUTRAL, reason="r"),
        UnknownReference,
    )
    assert "m-404 was never requested" in str(never)
    same = journey.refuse(
        date(2013, 10, 2),
        CorrectMeetingResult(meeting_id="apple-1", outcome=Outcome.PROMISING, reason="r"),
        CorrectionRuleBroken,
    )
    assert "already records promising" in str(same)
    attributed = journey.refuse(
        date(2013, 10, 2),
        CorrectMeetingResult(meeting_id="apple-1", outcome=Outcome.NO_SHOW, reason="r"),
        CorrectionRuleBroken,
    )
    assert "meeting apple-1 led to contract c1" in str(attributed)


# --------------------------------------------------------------------------- visits


def test_a_corrected_visit_attendance_is_what_the_bilan_counts() -> None:
    journey = Journey()
    visit_day = date(2014, 3, 20)
    journey.do(visit_day, RecordVisitAttendance(attended=False))
    [corrected] = journey.do(
        date(2014, 3, 25),
        CorrectVisitAttendance(visit=1, attended=True, reason="came after all"),
    )
    assert isinstance(corrected, VisitAttendanceCorrected)
    assert (corrected.attended_before, corrected.attended_after) == (False, True)
    assert corrected.due_on == date(2014, 3, 17)
    assert journey.state.visits[1].status is VisitStatus.ATTENDED
    bilan = compute_bilan("p", "P", [journey.state])
    assert (bilan.visits_attended, bilan.visits_skipped) == (1, 0)


def test_correcting_a_visit_not_recorded_or_identical_is_refused() -> None:
    journey = Journey()
    journey.catch_up(date(2014, 10, 1))  # visit 1 missed, visit 2 due
    missed = journey.refuse(
        date(2014, 10, 1),
        CorrectVisitAttendance(visit=1, attended=True, reason="r"),
        CorrectionRuleBroken,
    )
    assert "return visit 1 has no attendance recorded to correct (missed)" in str(missed)
    unknown = journey.refuse(
        date(2014, 10, 1),
        CorrectVisitAttendance(visit=9, attended=True, reason="r"),
        CorrectionRuleBroken,
    )
    assert "return visit 9 has no attendance recorded to correct (not due yet)" in str(unknown)
    journey.do(date(2014, 10, 1), RecordVisitAttendance(attended=True))
    same = journey.refuse(
        date(2014, 10, 2),
        CorrectVisitAttendance(visit=2, attended=True, reason="r"),
        CorrectionRuleBroken,
    )
    assert "return visit 2 is already recorded as attended" in str(same)


# ----------------------------------------------------------------- authors, timeline


def test_every_event_records_the_author_of_its_command_and_timers_none() -> None:
    journey = Journey()
    journey.do(INTRO, request("apple-1", "Apple").model_copy(update={"by": "alice"}))
    fired = journey.catch_up(date(2014, 3, 18))
    assert fired and all(e.recorded_by is None for e in fired)
    [requested] = [e for e in journey.events if type(e).__name__ == "MeetingRequested"]
    assert requested.recorded_by == "alice"


def test_an_event_stored_before_authors_were_recorded_still_loads() -> None:
    journey = with_contract()
    stored = journey.events[-1].model_dump(mode="json")
    del stored["recorded_by"]
    loaded = EVENTS.validate_python(stored)
    assert isinstance(loaded, ContractSigned)
    assert loaded.recorded_by is None


def test_the_timeline_gives_stages_authors_and_values_before_and_after() -> None:
    journey = with_contract()
    journey.do(date(2013, 10, 3), correct_amount().model_copy(update={"by": "bob"}))
    journey.do(
        date(2013, 10, 5),
        VoidContract(contract_id="c1", reason="duplicate", by="carol"),
    )
    entries = timeline(journey.events)

    assert [e.version for e in entries] == list(range(1, len(journey.events) + 1))
    enrolled, *_, signed, corrected, voided = entries
    assert (enrolled.stage_before, enrolled.stage_after) == (None, Stage.INTRODUCED)
    assert (signed.type, signed.stage_before, signed.stage_after) == (
        "ContractSigned",
        Stage.MEETINGS,
        Stage.CONTRACTED,
    )
    assert signed.recorded_by == "corridor"  # sent without an author
    assert corrected.recorded_by == "bob"
    assert corrected.changes == [
        Change(subject="contract c1", field="value", before="USD 2,001.00", after="USD 2,002.00")
    ]
    assert (corrected.stage_before, corrected.stage_after) == (Stage.CONTRACTED, Stage.CONTRACTED)
    assert corrected.recorded_at == at(date(2013, 10, 3)).astimezone(UTC)
    assert corrected.occurred_at == datetime(2013, 10, 3, 7, tzinfo=UTC)  # midnight in LA
    assert voided.changes[0].after == "voided"
    assert (voided.stage_before, voided.stage_after) == (Stage.CONTRACTED, Stage.MEETINGS)
    line = corrected.line("America/Los_Angeles")
    assert line == (
        "2013-10-03 contract c1 corrected (value): typo in the amount; "
        "contract c1 value: USD 2,001.00 → USD 2,002.00; by bob"
    )
    assert voided.line("America/Los_Angeles").endswith("stage contracted → meetings; by carol")
