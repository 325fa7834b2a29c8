"""The firm's journey as a pure function of its events: rules, timers, fold and bilan.

Each journey is played like the workflow plays it: before every command the journey's
own deadlines up to the command's business instant (noon in Los Angeles on its date)
are fired with ``due_events``, then ``decide`` is asked and its events are folded.
"""

from __future__ import annotations

import unicodedata
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TypeVar
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from domain.bilan import compute_bilan
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
from domain.deadlines import (
    DeadlineKind,
    DeadlinesNotFolded,
    cycle_started_on,
    due_events,
    next_deadline,
)
from domain.errors import (
    AlreadyEnrolled,
    AmountAboveMaximum,
    ContractRuleBroken,
    DateOutOfRange,
    DomainError,
    EvaluationRuleBroken,
    JourneyOver,
    MeetingRuleBroken,
    RecordDiffers,
    UnknownReference,
    VisitRuleBroken,
)
from domain.events import (
    ContractSigned,
    EvaluationCompleted,
    EvaluationDecided,
    Event,
    FirmEnrolled,
    FirmWithdrew,
    MeetingArranged,
    MeetingHeld,
    MeetingNotHeld,
    MeetingRequested,
    MeetingResultOverdue,
    NextStepScheduled,
    ReturnVisitAttended,
    ReturnVisitDue,
    ReturnVisitMissed,
    ReturnVisitSkipped,
)
from domain.journey import decide, enrolment_differences
from domain.money import Money
from domain.programme import Firm, Policy, Programme
from domain.state import JourneyState, Stage, VisitStatus, evolve, fold
from tests.conftest import make_programme

LA = ZoneInfo("America/Los_Angeles")
INTRO = date(2013, 9, 17)
E = TypeVar("E", bound=DomainError)


def at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    """An aware business instant in Los Angeles (noon by default)."""
    return datetime.combine(day, time(hour, minute), tzinfo=LA)


class Journey:
    """One firm's journey, played command by command as the workflow would."""

    def __init__(
        self,
        programme: Programme | None = None,
        *,
        firm_id: str = "trifide",
        mission_id: str = "m1",
        on: date = INTRO,
        now: date | None = None,
    ) -> None:
        self.programme = programme or make_programme("p-journey")
        enrol = EnrollFirm(
            programme=self.programme,
            firm=Firm(id=firm_id, name=f"Groupe {firm_id.title()}"),
            mission_id=mission_id,
            occurred_on=on,
            wants_to_meet=["Apple", "Xerox"],
        )
        self.events: list[Event] = decide(None, enrol, at(now or on))
        self.state: JourneyState = fold(self.events)

    def catch_up(self, day: date, hour: int = 12, minute: int = 0) -> list[Event]:
        """Fire the journey's own deadlines up to that instant; return what fired."""
        self.state, fired = due_events(self.state, at(day, hour, minute))
        self.events.extend(fired)
        return fired

    def do(self, day: date, command: Command) -> list[Event]:
        """Catch up to noon of ``day``, then decide and fold ``command``."""
        self.catch_up(day)
        produced = decide(self.state, command, at(day))
        for event in produced:
            self.state = evolve(self.state, event)
        self.events.extend(produced)
        return produced

    def play(self, *steps: tuple[date, Command]) -> None:
        for day, command in steps:
            self.do(day, command)

    def refuse(self, day: date, command: Command, error: type[E]) -> E:
        """Assert ``command`` is refused on ``day`` with ``error`` and changes nothing."""
        self.catch_up(day)
        before = self.state.model_dump()
        with pytest.raises(error) as caught:
            decide(self.state, command, at(day))
        assert type(caught.value) is error
        assert self.state.model_dump() == before
        return caught.value


def request(meeting_id: str, counterpart: str, on: date | None = None) -> RequestMeeting:
    return RequestMeeting(meeting_id=meeting_id, counterpart=counterpart, occurred_on=on)


def arrange(
    meeting_id: str, scheduled_at: datetime, partner: str = "labizfed", on: date | None = None
) -> ArrangeMeeting:
    return ArrangeMeeting(
        meeting_id=meeting_id,
        partner_id=partner,
        scheduled_at=scheduled_at,
        place="Cupertino",
        occurred_on=on,
    )


def result(meeting_id: str, outcome: Outcome, on: date | None = None) -> RecordMeetingResult:
    return RecordMeetingResult(meeting_id=meeting_id, outcome=outcome, occurred_on=on)


def contract(
    counterpart: str, amount: str, currency: str = "USD", *meetings: str, on: date | None = None
) -> SignContract:
    return SignContract(
        counterpart=counterpart,
        value=Money(amount=Decimal(amount), currency=currency),
        meeting_ids=list(meetings),
        occurred_on=on,
    )


def visit(attended: bool = True, on: date | None = None) -> RecordVisitAttendance:
    return RecordVisitAttendance(attended=attended, occurred_on=on)


def held_meeting_with_apple(journey: Journey) -> None:
    """Apple: requested 2013-09-17, arranged for 2013-09-19 10:00, held (promising)."""
    journey.play(
        (INTRO, request("apple-1", "Apple")),
        (date(2013, 9, 18), arrange("apple-1", at(date(2013, 9, 19), 10))),
        (date(2013, 9, 19), result("apple-1", Outcome.PROMISING)),
    )


def kinds(events: list[Event]) -> list[tuple[str, int, date]]:
    """(type, visit or cycle, local date) of each event, for timeline comparisons."""
    rows: list[tuple[str, int, date]] = []
    for event in events:
        number: int = getattr(event, "visit", 0) or getattr(event, "cycle", 0)
        rows.append((type(event).__name__, number, event.occurred_at.astimezone(LA).date()))
    return rows


# ------------------------------------------------------------------- introduction


def test_enrolling_a_firm_records_its_introduction_at_the_mission() -> None:
    journey = Journey(on=date(2013, 9, 18), now=date(2013, 9, 20))
    [enrolled] = journey.events
    assert isinstance(enrolled, FirmEnrolled)
    assert enrolled.introduced_on == date(2013, 9, 18)
    assert enrolled.occurred_at == at(date(2013, 9, 18), 0)
    assert enrolled.recorded_at == at(date(2013, 9, 20))
    assert journey.state.stage is Stage.INTRODUCED
    assert journey.state.mission_id == "m1"
    assert journey.state.wants_to_meet == ["Apple", "Xerox"]
    assert journey.state.stream_version == 1


def test_enrolling_a_firm_twice_is_refused() -> None:
    journey = Journey()
    again = EnrollFirm(
        programme=journey.programme,
        firm=journey.state.firm,
        mission_id="m2",
        occurred_on=date(2014, 3, 24),
    )
    error = journey.refuse(date(2014, 3, 24), again, AlreadyEnrolled)
    assert "trifide is already enrolled in p-journey since 2013-09-17" in str(error)


def test_a_roster_re_export_that_changes_nothing_has_no_differences() -> None:
    """Decomposed accents, an e-mail in capitals, the default adviser written out."""
    base = make_programme("p-again")
    programme = Programme.model_validate(
        {
            **base.model_dump(),
            "staff": [{"id": "ifortin", "name": "Isabelle Fortin", "email": "if@agency.example"}],
            "default_adviser": "ifortin",
        }
    )
    firm = Firm(
        id="trifide", name="Groupe Trifide", contact_name="Élise Tremblay",
        contact_email="elise@trifide.example",
    )
    journey = Journey(programme)
    journey.state = journey.state.model_copy(update={"firm": firm})
    export = firm.model_copy(
        update={
            "contact_name": unicodedata.normalize("NFD", "Élise Tremblay"),
            "contact_email": "ELISE@TRIFIDE.EXAMPLE",
            "adviser": "ifortin",
        }
    )
    again = EnrollFirm(programme=programme, firm=export, mission_id="m1", occurred_on=INTRO)
    assert enrolment_differences(journey.state, again) == []
    renamed = again.model_copy(
        update={"firm": export.model_copy(update={"name": "Groupe Trifide inc."})}
    )
    assert enrolment_differences(journey.state, renamed) == [
        ("firm_name", "Groupe Trifide", "Groupe Trifide inc.")
    ]


def test_an_introduction_outside_its_mission_is_refused() -> None:
    programme = make_programme("p-intro")
    command = EnrollFirm(
        programme=programme,
        firm=Firm(id="exmachina", name="Ex Machina"),
        mission_id="m1",
        occurred_on=date(2013, 9, 21),
    )
    with pytest.raises(DateOutOfRange) as caught:
        decide(None, command, at(date(2013, 10, 1)))
    assert "introduction date 2013-09-21 is outside mission m1" in str(caught.value)
    assert "(2013-09-17 to 2013-09-20)" in str(caught.value)


def test_an_introduction_at_an_unknown_mission_is_refused() -> None:
    command = EnrollFirm(
        programme=make_programme("p-intro"),
        firm=Firm(id="doculibre", name="DocuLibre"),
        mission_id="m9",
        occurred_on=INTRO,
    )
    with pytest.raises(UnknownReference, match=r"unknown mission 'm9' \(known: m1, m2\)"):
        decide(None, command, at(INTRO))


def test_an_introduction_dated_in_the_future_is_refused() -> None:
    command = EnrollFirm(
        programme=make_programme("p-intro"),
        firm=Firm(id="doculibre", name="DocuLibre"),
        mission_id="m1",
        occurred_on=date(2013, 9, 18),
    )
    with pytest.raises(DateOutOfRange, match=r"introduction date 2013-09-18 is in the future"):
        decide(None, command, at(INTRO))


def test_an_introduction_without_a_date_is_the_programmes_today() -> None:
    command = EnrollFirm(
        programme=make_programme("p-intro"),
        firm=Firm(id="doculibre", name="DocuLibre"),
        mission_id="m2",
    )
    # 02:00 UTC on the 26th is still the 25th in Los Angeles.
    [enrolled] = decide(None, command, datetime.fromisoformat("2014-03-26T02:00:00+00:00"))
    assert isinstance(enrolled, FirmEnrolled)
    assert enrolled.introduced_on == date(2014, 3, 25)


def test_a_command_for_a_firm_never_enrolled_is_refused() -> None:
    with pytest.raises(UnknownReference, match=r"not enrolled"):
        decide(None, request("apple-1", "Apple"), at(INTRO))


# ------------------------------------------------------------------------ dates


def test_a_command_dated_in_the_future_is_refused() -> None:
    journey = Journey()
    error = journey.refuse(
        date(2013, 9, 18), request("apple-1", "Apple", on=date(2013, 9, 19)), DateOutOfRange
    )
    assert "date 2013-09-19 is in the future: the programme's today is 2013-09-18" in str(error)


def test_a_command_dated_before_the_introduction_is_refused() -> None:
    journey = Journey(on=date(2013, 9, 18))
    error = journey.refuse(
        date(2013, 9, 20), request("apple-1", "Apple", on=date(2013, 9, 17)), DateOutOfRange
    )
    assert "date 2013-09-17 is before the firm's introduction on 2013-09-18" in str(error)


def test_a_command_without_a_date_happens_on_the_programmes_today() -> None:
    journey = Journey()
    [requested] = journey.do(date(2013, 9, 18), request("apple-1", "Apple"))
    assert requested.occurred_at == at(date(2013, 9, 18), 0)
    assert requested.recorded_at == at(date(2013, 9, 18))
    assert journey.state.meetings["apple-1"].requested_on == date(2013, 9, 18)


# --------------------------------------------------------------------- meetings


def test_a_meeting_requested_arranged_and_held_is_recorded_in_order() -> None:
    journey = Journey()
    held_meeting_with_apple(journey)
    assert [type(e) for e in journey.events] == [
        FirmEnrolled,
        MeetingRequested,
        MeetingArranged,
        MeetingHeld,
    ]
    meeting = journey.state.meetings["apple-1"]
    assert meeting.counterpart == "Apple"
    assert meeting.partner_id == "labizfed"
    assert meeting.scheduled_at == at(date(2013, 9, 19), 10)
    assert meeting.outcome is Outcome.PROMISING
    assert meeting.status == "promising"
    assert meeting.result_on == date(2013, 9, 19)
    assert journey.state.stage is Stage.MEETINGS


@pytest.mark.parametrize("outcome", [Outcome.NO_SHOW, Outcome.CANCELLED])
def test_a_meeting_that_did_not_take_place_is_recorded_as_not_held(outcome: Outcome) -> None:
    journey = Journey()
    journey.play(
        (INTRO, request("xerox-1", "Xerox")),
        (INTRO, arrange("xerox-1", at(date(2013, 9, 19), 15))),
    )
    [event] = journey.do(date(2013, 9, 19), result("xerox-1", outcome))
    assert isinstance(event, MeetingNotHeld)
    assert event.outcome is outcome
    assert journey.state.assessment().meetings_held == 0
    assert journey.state.assessment().outcomes == {outcome.value: 1}


def test_a_meeting_requested_again_is_already_recorded() -> None:
    journey = Journey()
    journey.do(INTRO, request("apple-1", "Apple"))
    before = journey.state
    assert journey.do(date(2013, 9, 18), request("apple-1", "APPLE")) == []
    assert journey.state == before


def test_a_meeting_requested_again_with_another_counterpart_differs() -> None:
    journey = Journey()
    journey.do(INTRO, request("apple-1", "Apple"))
    error = journey.refuse(date(2013, 9, 18), request("apple-1", "Xerox"), RecordDiffers)
    assert str(error) == (
        "meeting apple-1 (requested on 2013-09-17) is recorded with counterpart Apple, "
        "this says counterpart Xerox: a meeting's counterpart is not corrected: request "
        "the other meeting under a meeting id of its own"
    )
    assert (error.rule, error.fields, error.correction) == ("RecordDiffers", ("counterpart",), None)


def test_arranging_a_meeting_never_requested_is_refused() -> None:
    journey = Journey()
    error = journey.refuse(INTRO, arrange("linkedin-1", at(date(2013, 9, 19), 9)), UnknownReference)
    assert "meeting linkedin-1 was never requested" in str(error)


def test_a_meeting_arranged_by_an_unknown_partner_is_refused() -> None:
    journey = Journey()
    journey.do(INTRO, request("apple-1", "Apple"))
    error = journey.refuse(
        INTRO, arrange("apple-1", at(date(2013, 9, 19), 9), partner="acme"), UnknownReference
    )
    assert "unknown partner 'acme' (known: labizfed)" in str(error)


def test_a_meeting_scheduled_before_it_was_requested_is_refused() -> None:
    journey = Journey()
    journey.do(date(2013, 9, 18), request("apple-1", "Apple"))
    error = journey.refuse(date(2013, 9, 18), arrange("apple-1", at(INTRO, 9)), DateOutOfRange)
    assert "meeting apple-1 scheduled for 2013-09-17T09:00:00-07:00" in str(error)
    assert "before it was requested on 2013-09-18" in str(error)


def test_a_result_for_a_meeting_never_arranged_is_refused() -> None:
    journey = Journey()
    journey.do(INTRO, request("apple-1", "Apple"))
    error = journey.refuse(
        date(2013, 9, 19), result("apple-1", Outcome.PROMISING), MeetingRuleBroken
    )
    assert "meeting apple-1 was never arranged" in str(error)


def test_a_result_for_a_meeting_never_requested_is_refused() -> None:
    journey = Journey()
    error = journey.refuse(INTRO, result("ghost", Outcome.NEUTRAL), UnknownReference)
    assert "meeting ghost was never requested" in str(error)


def test_the_same_result_again_is_already_recorded_whatever_its_notes() -> None:
    journey = Journey()
    held_meeting_with_apple(journey)
    again = RecordMeetingResult(
        meeting_id="apple-1", outcome=Outcome.PROMISING, notes="Edited in the spreadsheet"
    )
    assert journey.do(date(2013, 9, 20), again) == []
    assert journey.state.meetings["apple-1"].notes == ""


def test_the_result_again_with_a_next_step_adds_the_next_step() -> None:
    """Staff often agree on the next step after typing the result: it is not dropped."""
    journey = Journey()
    held_meeting_with_apple(journey)
    with_step = RecordMeetingResult(
        meeting_id="apple-1",
        outcome=Outcome.PROMISING,
        next_step="Send the proposal",
        next_step_due_on=date(2013, 10, 1),
    )
    [scheduled] = journey.do(date(2013, 9, 20), with_step)
    assert isinstance(scheduled, NextStepScheduled)
    assert (scheduled.next_step, scheduled.due_on) == ("Send the proposal", date(2013, 10, 1))
    assert scheduled.occurred_at.astimezone(LA).date() == date(2013, 9, 20)
    assert journey.state.meetings["apple-1"].outcome is Outcome.PROMISING  # unchanged
    assert journey.state.next_steps["apple-1"].pending
    assert journey.do(date(2013, 9, 21), with_step) == []  # the same again: recorded
    other_day = with_step.model_copy(update={"next_step_due_on": date(2013, 10, 8)})
    error = journey.refuse(date(2013, 9, 21), other_day, RecordDiffers)
    assert "next_step_due_on 2013-10-01, this says next_step_due_on 2013-10-08" in str(error)
    assert "corridor next-step done trifide apple-1" in str(error)


def test_a_next_step_for_a_meeting_not_held_is_refused() -> None:
    journey = Journey()
    journey.play(
        (INTRO, request("apple-1", "Apple")),
        (date(2013, 9, 18), arrange("apple-1", at(date(2013, 9, 19), 10))),
        (date(2013, 9, 19), result("apple-1", Outcome.NO_SHOW)),
    )
    step = RecordMeetingResult(
        meeting_id="apple-1",
        outcome=Outcome.NO_SHOW,
        next_step="Call again",
        next_step_due_on=date(2013, 10, 1),
    )
    error = journey.refuse(date(2013, 9, 20), step, MeetingRuleBroken)
    assert "was not held (no_show)" in str(error)


def test_another_result_for_the_same_meeting_differs_and_names_the_correction() -> None:
    journey = Journey()
    held_meeting_with_apple(journey)
    error = journey.refuse(date(2013, 9, 20), result("apple-1", Outcome.NEUTRAL), RecordDiffers)
    assert str(error) == (
        "the result of meeting apple-1 (Apple, recorded on 2013-09-19) is recorded with "
        "outcome promising, this says outcome neutral: to change it, "
        "`corridor correct meeting trifide apple-1 neutral --reason ...`"
    )
    assert error.correction == "corridor correct meeting trifide apple-1 neutral --reason ..."


def test_a_result_dated_before_the_meeting_is_refused() -> None:
    journey = Journey()
    journey.play(
        (INTRO, request("apple-1", "Apple")),
        (INTRO, arrange("apple-1", at(date(2013, 9, 20), 10))),
    )
    error = journey.refuse(
        date(2013, 9, 25),
        result("apple-1", Outcome.NEUTRAL, on=date(2013, 9, 19)),
        DateOutOfRange,
    )
    assert "result of meeting apple-1 dated 2013-09-19, before the meeting (2013-09-20)" in str(
        error
    )


def test_a_cancellation_may_be_recorded_before_the_meeting_was_due() -> None:
    journey = Journey()
    journey.play(
        (INTRO, request("apple-1", "Apple")),
        (INTRO, arrange("apple-1", at(date(2013, 9, 20), 10))),
    )
    [event] = journey.do(date(2013, 9, 18), result("apple-1", Outcome.CANCELLED))
    assert isinstance(event, MeetingNotHeld)
    assert journey.state.meetings["apple-1"].status == "cancelled"


def test_a_meeting_result_left_unrecorded_becomes_overdue_seven_days_after_the_meeting() -> None:
    journey = Journey()
    journey.play(
        (INTRO, request("apple-1", "Apple")),
        (date(2013, 9, 18), arrange("apple-1", at(date(2013, 9, 19), 10))),
    )
    deadline = next_deadline(journey.state)
    assert deadline is not None
    assert deadline.kind is DeadlineKind.RESULT_OVERDUE
    assert deadline.at == at(date(2013, 9, 26), 10)
    assert deadline.subject == "apple-1"

    assert journey.catch_up(date(2013, 9, 26), 9, 59) == []
    assert journey.state.meetings["apple-1"].overdue is False
    [overdue] = journey.catch_up(date(2013, 9, 26), 10, 0)
    assert isinstance(overdue, MeetingResultOverdue)
    assert overdue.meeting_id == "apple-1"
    assert overdue.occurred_at == at(date(2013, 9, 26), 10)
    assert journey.state.meetings["apple-1"].status == "overdue"

    journey.do(date(2013, 10, 2), result("apple-1", Outcome.NEUTRAL, on=date(2013, 9, 19)))
    meeting = journey.state.meetings["apple-1"]
    assert meeting.overdue is False
    assert meeting.status == "neutral"
    later = journey.catch_up(date(2014, 1, 1))
    assert not any(isinstance(e, MeetingResultOverdue) for e in later)


def test_the_overdue_delay_follows_the_programme_policy() -> None:
    journey = Journey(make_programme("p-overdue", result_overdue_after_days=2))
    journey.play(
        (INTRO, request("apple-1", "Apple")),
        (INTRO, arrange("apple-1", at(date(2013, 9, 19), 10))),
    )
    assert journey.catch_up(date(2013, 9, 21), 9) == []
    [overdue] = journey.catch_up(date(2013, 9, 21), 11)
    assert isinstance(overdue, MeetingResultOverdue)


# -------------------------------------------------------------------- contracts


def test_a_contract_attributed_to_a_held_meeting_is_signed() -> None:
    journey = Journey()
    held_meeting_with_apple(journey)
    [signed] = journey.do(date(2013, 11, 4), contract("apple", "525000", "USD", "apple-1"))
    assert isinstance(signed, ContractSigned)
    assert signed.contract_id == "c1"
    assert signed.value == Money(amount=Decimal(525000), currency="USD")
    assert signed.meeting_ids == ["apple-1"]
    [second] = journey.do(date(2013, 12, 1), contract("Apple", "40000", "CAD"))
    assert isinstance(second, ContractSigned)
    assert second.contract_id == "c2"
    assert journey.state.stage is Stage.CONTRACTED
    assessment = journey.state.assessment()
    assert assessment.contracts == 2
    assert assessment.value_by_currency == {"CAD": Decimal(40000), "USD": Decimal(525000)}
    assert assessment.days_to_first_contract == 48


def test_a_contract_attributed_to_a_meeting_that_was_a_no_show_is_refused() -> None:
    journey = Journey()
    journey.play(
        (INTRO, request("apple-1", "Apple")),
        (INTRO, arrange("apple-1", at(date(2013, 9, 19), 10))),
        (date(2013, 9, 19), result("apple-1", Outcome.NO_SHOW)),
    )
    error = journey.refuse(
        date(2013, 10, 1), contract("Apple", "1000", "USD", "apple-1"), ContractRuleBroken
    )
    assert "contract attributed to meeting apple-1, which was not held (no show)" in str(error)


def test_a_contract_attributed_to_a_meeting_without_a_result_is_refused() -> None:
    journey = Journey()
    journey.play(
        (INTRO, request("apple-1", "Apple")),
        (INTRO, arrange("apple-1", at(date(2013, 9, 19), 10))),
    )
    error = journey.refuse(
        date(2013, 9, 20), contract("Apple", "1000", "USD", "apple-1"), ContractRuleBroken
    )
    assert "meeting apple-1, which was not held (arranged)" in str(error)


def test_a_contract_attributed_to_a_meeting_never_requested_is_refused() -> None:
    journey = Journey()
    held_meeting_with_apple(journey)
    error = journey.refuse(
        date(2013, 10, 1),
        contract("Apple", "1000", "USD", "apple-1", "apple-2"),
        UnknownReference,
    )
    assert "contract attributed to meeting apple-2, which was never requested" in str(error)


def test_a_contract_attributed_to_a_meeting_with_another_counterpart_is_refused() -> None:
    journey = Journey()
    held_meeting_with_apple(journey)
    error = journey.refuse(
        date(2013, 10, 1), contract("Xerox", "1000", "USD", "apple-1"), ContractRuleBroken
    )
    assert "contract with 'Xerox' attributed to meeting apple-1, which was with 'Apple'" in str(
        error
    )


def test_a_contract_dated_before_its_meeting_was_held_is_refused() -> None:
    journey = Journey()
    held_meeting_with_apple(journey)
    error = journey.refuse(
        date(2013, 10, 1),
        contract("Apple", "1000", "USD", "apple-1", on=date(2013, 9, 18)),
        DateOutOfRange,
    )
    assert "contract dated 2013-09-18, before meeting apple-1 was held (2013-09-19)" in str(error)


def test_a_contract_after_the_firm_withdrew_is_refused() -> None:
    journey = Journey()
    held_meeting_with_apple(journey)
    [withdrew] = journey.do(date(2014, 1, 10), Withdraw(reason="acquired"))
    assert isinstance(withdrew, FirmWithdrew)
    assert journey.state.stage is Stage.WITHDRAWN
    error = journey.refuse(
        date(2014, 2, 1),
        contract("Apple", "1000", "USD", "apple-1", on=date(2014, 1, 5)),
        JourneyOver,
    )
    assert "trifide: refused, the firm withdrew on 2014-01-10" in str(error)


def test_a_contract_above_the_programme_maximum_is_refused_naming_value_and_maximum() -> None:
    journey = Journey()
    error = journey.refuse(
        date(2013, 11, 4), contract("Apple", "1000000000.01", "USD"), AmountAboveMaximum
    )
    assert error.rule == "AmountAboveMaximum"
    assert isinstance(error, ContractRuleBroken)
    assert str(error) == (
        "contract amount USD 1,000,000,000.01 is above the programme's maximum of "
        "1,000,000,000 USD (policy max_contract_amount of p-journey)"
    )
    [signed] = journey.do(date(2013, 11, 4), contract("Apple", "1000000000", "JPY"))
    assert isinstance(signed, ContractSigned)


def test_the_contract_maximum_is_the_programme_s_own() -> None:
    programme = make_programme("p-small")
    small = programme.model_copy(update={"policy": Policy(max_contract_amount=Decimal(50_000))})
    journey = Journey(small)
    error = journey.refuse(date(2013, 11, 4), contract("Apple", "50000.01"), AmountAboveMaximum)
    assert "USD 50,000.01 is above the programme's maximum of 50,000 USD" in str(error)
    journey.do(date(2013, 11, 4), contract("Apple", "50000"))
    with pytest.raises(ValidationError, match=r"less than or equal to 1000000000000000"):
        Policy(max_contract_amount=Decimal(10) ** 16)


def test_a_programme_recorded_before_the_contract_maximum_existed_gets_the_default() -> None:
    stored = make_programme("p-old").model_dump(mode="json")
    del stored["policy"]["max_contract_amount"]
    assert Programme.model_validate(stored).policy.max_contract_amount == Decimal(10) ** 9


# ------------------------------------------------------------------ return visits


def test_a_firm_caught_up_at_once_gets_every_past_deadline_in_calendar_order() -> None:
    journey = Journey(now=date(2016, 1, 1))
    fired = journey.catch_up(date(2016, 1, 1))
    assert kinds(fired) == [
        ("ReturnVisitReminderDue", 1, date(2014, 2, 15)),
        ("ReturnVisitDue", 1, date(2014, 3, 17)),
        ("ReturnVisitReminderDue", 2, date(2014, 8, 18)),
        ("ReturnVisitMissed", 1, date(2014, 9, 17)),
        ("ReturnVisitDue", 2, date(2014, 9, 17)),
        ("ReturnVisitReminderDue", 3, date(2015, 2, 15)),
        ("ReturnVisitMissed", 2, date(2015, 3, 17)),
        ("ReturnVisitDue", 3, date(2015, 3, 17)),
        ("ReturnVisitReminderDue", 4, date(2015, 8, 18)),
        ("ReturnVisitMissed", 3, date(2015, 9, 17)),
        ("ReturnVisitDue", 4, date(2015, 9, 17)),
        ("EvaluationCompleted", 1, date(2015, 9, 17)),
    ]
    due = [e for e in fired if isinstance(e, ReturnVisitDue)]
    assert [e.due_on for e in due] == [
        date(2014, 3, 17),
        date(2014, 9, 17),
        date(2015, 3, 17),
        date(2015, 9, 17),
    ]
    assert all(e.occurred_at == at(e.due_on, 0) for e in due)
    assert all(e.recorded_at == at(date(2016, 1, 1)) for e in fired)
    state = journey.state
    assert state.stage is Stage.AWAITING_DECISION
    assert [state.visits[n].status for n in (1, 2, 3, 4)] == [
        VisitStatus.MISSED,
        VisitStatus.MISSED,
        VisitStatus.MISSED,
        VisitStatus.DUE,
    ]
    [evaluation] = [e for e in fired if isinstance(e, EvaluationCompleted)]
    assert evaluation.cycle == 1
    assert evaluation.due_on == date(2015, 9, 17)
    assert evaluation.assessment.visits_missed == 3
    assert evaluation.assessment.visits_attended == 0


def test_visits_are_anchored_on_the_introduction_and_clamped_to_the_end_of_month() -> None:
    data = make_programme("p-august").model_dump()
    data["missions"].append(
        {"id": "m0", "name": "Mission 0", "starts_on": "2015-08-30", "ends_on": "2015-09-02"}
    )
    journey = Journey(Programme.model_validate(data), mission_id="m0", on=date(2015, 8, 31))
    fired = journey.catch_up(date(2016, 9, 1))
    due = [e.due_on for e in fired if isinstance(e, ReturnVisitDue)]
    assert due == [date(2016, 2, 29), date(2016, 8, 31)]


def test_a_visit_attended_is_not_missed_when_the_next_falls_due() -> None:
    journey = Journey()
    [attended] = journey.do(date(2014, 3, 20), visit(True))
    assert isinstance(attended, ReturnVisitAttended)
    assert attended.visit == 1
    assert attended.due_on == date(2014, 3, 17)
    fired = journey.catch_up(date(2014, 10, 1))
    assert not any(isinstance(e, ReturnVisitMissed) for e in fired)
    assert journey.state.visits[1].status is VisitStatus.ATTENDED
    assert journey.state.visits[1].recorded_on == date(2014, 3, 20)
    [skipped] = journey.do(date(2014, 10, 2), visit(False))
    assert isinstance(skipped, ReturnVisitSkipped)
    assert skipped.visit == 2
    assessment = journey.state.assessment()
    assert (assessment.visits_attended, assessment.visits_skipped) == (1, 1)


def test_attendance_may_be_recorded_once_the_reminder_window_opens() -> None:
    journey = Journey()
    [attended] = journey.do(date(2014, 2, 15), visit(True))
    assert isinstance(attended, ReturnVisitAttended)
    assert attended.visit == 1


def test_a_visit_attended_ahead_of_its_date_still_falls_due() -> None:
    journey = Journey()
    journey.do(date(2014, 3, 1), visit(True))
    fired = journey.catch_up(date(2014, 3, 18))
    assert kinds(fired) == [("ReturnVisitDue", 1, date(2014, 3, 17))]
    assert journey.state.visits[1].status is VisitStatus.ATTENDED


def test_attendance_before_the_visit_window_opens_is_refused() -> None:
    journey = Journey()
    error = journey.refuse(date(2014, 2, 14), visit(True), VisitRuleBroken)
    assert "no return visit is open on 2014-02-14" in str(error)
    assert "visit 1 falls due on 2014-03-17 and opens for attendance on 2014-02-15" in str(error)


def test_the_same_attendance_again_is_already_recorded() -> None:
    journey = Journey()
    journey.do(date(2014, 3, 18), visit(True))
    assert journey.do(date(2014, 4, 2), visit(True)) == []
    assert journey.do(date(2014, 4, 2), visit(True, on=date(2014, 3, 18))) == []
    assert journey.state.visits[1].recorded_on == date(2014, 3, 18)


def test_another_attendance_for_a_recorded_visit_differs_and_names_the_correction() -> None:
    journey = Journey()
    journey.do(date(2014, 3, 18), visit(True))
    error = journey.refuse(date(2014, 4, 2), visit(False), RecordDiffers)
    assert str(error) == (
        "return visit 1 (due 2014-03-17, recorded on 2014-03-18) is recorded with attendance "
        "attended, this says attendance skipped: to change it, "
        "`corridor correct visit trifide 1 skipped --reason ...`"
    )


def test_an_attendance_sent_again_in_the_next_visit_s_window_is_already_recorded() -> None:
    """Recorded late, in the 30 days before visit 2 falls due: sent again, it is the
    same record, not visit 2's."""
    journey = Journey()
    late = date(2014, 8, 20)  # visit 2 falls due 2014-09-17, its window opens 2014-08-18
    [attended] = journey.do(late, visit(True))
    assert isinstance(attended, ReturnVisitAttended)
    assert attended.visit == 1
    assert journey.do(date(2014, 8, 25), visit(True, on=late)) == []
    assert journey.state.visits[1].status is VisitStatus.ATTENDED
    assert 2 not in journey.state.visits or journey.state.visits[2].status is VisitStatus.UPCOMING


def test_attendance_at_an_unknown_mission_is_refused() -> None:
    journey = Journey()
    command = RecordVisitAttendance(attended=True, mission_id="m7")
    error = journey.refuse(date(2014, 3, 18), command, UnknownReference)
    assert "unknown mission 'm7'" in str(error)


# ---------------------------------------------------------------- evaluation


def test_an_evaluation_decision_before_the_evaluation_is_due_is_refused() -> None:
    journey = Journey()
    command = DecideEvaluation(decision=Decision.RENEW)
    error = journey.refuse(date(2015, 9, 16), command, EvaluationRuleBroken)
    assert "the evaluation of cycle 1 falls due on 2015-09-17" in str(error)
    assert "a decision dated 2015-09-16 comes before it" in str(error)


def test_an_evaluation_decision_backdated_before_the_due_date_is_refused() -> None:
    journey = Journey()
    command = DecideEvaluation(decision=Decision.CLOSE, occurred_on=date(2015, 9, 10))
    error = journey.refuse(date(2015, 10, 1), command, EvaluationRuleBroken)
    assert "fell due on 2015-09-17: a decision dated 2015-09-10" in str(error)


def test_the_evaluation_assesses_everything_recorded_since_the_introduction() -> None:
    journey = Journey()
    held_meeting_with_apple(journey)
    journey.play(
        (date(2013, 9, 19), request("xerox-1", "Xerox")),
        (date(2013, 9, 19), arrange("xerox-1", at(date(2013, 9, 20), 9))),
        (date(2013, 9, 20), result("xerox-1", Outcome.NO_SHOW)),
        (date(2014, 3, 17), visit(True)),
        (date(2014, 6, 1), contract("Apple", "525000", "USD", "apple-1")),
    )
    [evaluation] = [
        e for e in journey.catch_up(date(2015, 9, 17)) if isinstance(e, EvaluationCompleted)
    ]
    assessment = evaluation.assessment
    assert assessment.meetings_requested == 2
    assert assessment.meetings_held == 1
    assert assessment.outcomes == {"no_show": 1, "promising": 1}
    assert assessment.contracts == 1
    assert assessment.value_by_currency == {"USD": Decimal(525000)}
    assert assessment.days_to_first_contract == 257
    assert (assessment.visits_attended, assessment.visits_missed) == (1, 2)
    assert journey.state.stage is Stage.AWAITING_DECISION


def test_a_renew_decision_starts_a_second_cycle_evaluated_two_years_later() -> None:
    journey = Journey()
    journey.catch_up(date(2015, 9, 17))
    [decided] = journey.do(date(2015, 10, 1), DecideEvaluation(decision=Decision.RENEW))
    assert isinstance(decided, EvaluationDecided)
    assert (decided.cycle, decided.decision) == (1, Decision.RENEW)
    state = journey.state
    assert state.cycle == 2
    assert cycle_started_on(state) == date(2015, 9, 17)
    assert state.stage is Stage.INTRODUCED
    assert state.evaluations[1].decided_on == date(2015, 10, 1)
    fired = journey.catch_up(date(2017, 9, 17))
    [evaluation] = [e for e in fired if isinstance(e, EvaluationCompleted)]
    assert (evaluation.cycle, evaluation.due_on) == (2, date(2017, 9, 17))
    assert evaluation.occurred_at == at(date(2017, 9, 17), 0)
    assert journey.state.stage is Stage.AWAITING_DECISION


def test_the_same_decision_for_a_renewed_cycle_is_already_recorded() -> None:
    journey = Journey()
    journey.do(date(2015, 10, 1), DecideEvaluation(decision=Decision.RENEW))
    assert journey.do(date(2015, 10, 2), DecideEvaluation(decision=Decision.RENEW)) == []
    assert journey.state.cycle == 2


def test_another_decision_for_a_renewed_cycle_differs() -> None:
    journey = Journey()
    journey.do(date(2015, 10, 1), DecideEvaluation(decision=Decision.RENEW))
    error = journey.refuse(
        date(2015, 10, 2), DecideEvaluation(decision=Decision.CLOSE), RecordDiffers
    )
    assert str(error) == (
        "the evaluation of cycle 1 (decided on 2015-10-01) is recorded with decision renew, "
        "this says decision close: an evaluation decision is not corrected (to end the "
        "renewed journey: `corridor withdraw trifide`)"
    )


def test_a_decision_before_the_next_evaluation_is_due_is_not_the_last_cycle_s() -> None:
    journey = Journey()
    journey.do(date(2015, 10, 1), DecideEvaluation(decision=Decision.RENEW))
    journey.catch_up(date(2017, 10, 1))
    error = journey.refuse(
        date(2017, 10, 1),
        DecideEvaluation(decision=Decision.RENEW, occurred_on=date(2017, 9, 10)),
        EvaluationRuleBroken,
    )
    assert "the evaluation of cycle 2 fell due on 2017-09-17" in str(error)


def test_a_command_dated_in_a_closed_cycle_after_a_renew_decision_is_refused() -> None:
    journey = Journey()
    journey.do(date(2015, 10, 1), DecideEvaluation(decision=Decision.RENEW))
    error = journey.refuse(date(2015, 10, 5), visit(True, on=date(2015, 9, 10)), DateOutOfRange)
    assert "date 2015-09-10 falls in a closed cycle: cycle 2 began on 2015-09-17" in str(error)
    error = journey.refuse(
        date(2015, 10, 5), contract("Apple", "10", on=date(2015, 9, 16)), DateOutOfRange
    )
    assert "date 2015-09-16 falls in a closed cycle" in str(error)
    [attended] = journey.do(date(2015, 10, 5), visit(True, on=date(2015, 9, 17)))
    assert isinstance(attended, ReturnVisitAttended)
    assert attended.visit == 4


def test_anything_after_the_journey_was_closed_is_refused() -> None:
    journey = Journey()
    journey.do(date(2015, 9, 20), DecideEvaluation(decision=Decision.CLOSE))
    assert journey.state.stage is Stage.CLOSED
    assert journey.state.closed_on == date(2015, 9, 20)
    for command in (
        request("apple-9", "Apple"),
        visit(True),
        Withdraw(),
        DecideEvaluation(decision=Decision.RENEW),
    ):
        error = journey.refuse(date(2015, 10, 1), command, JourneyOver)
        assert "the firm journey was closed on 2015-09-20" in str(error)
    assert next_deadline(journey.state) is None
    assert journey.catch_up(date(2018, 1, 1)) == []


def test_no_deadline_is_pending_once_the_firm_withdrew() -> None:
    journey = Journey()
    journey.do(date(2013, 9, 20), request("apple-1", "Apple"))
    journey.do(date(2013, 9, 20), arrange("apple-1", at(date(2013, 9, 25), 10)))
    deadline = next_deadline(journey.state)
    assert deadline is not None
    assert deadline.kind is DeadlineKind.RESULT_OVERDUE
    journey.do(date(2013, 9, 21), Withdraw(reason="no longer exporting"))
    assert journey.state.withdrawn_on == date(2013, 9, 21)
    assert next_deadline(journey.state) is None
    assert journey.catch_up(date(2016, 1, 1)) == []


def test_the_next_deadline_of_a_new_journey_is_the_first_visit_reminder() -> None:
    journey = Journey()
    deadline = next_deadline(journey.state)
    assert deadline is not None
    assert deadline.kind is DeadlineKind.VISIT_REMINDER
    assert deadline.at == at(date(2014, 2, 15), 0)
    assert deadline.description == "reminder of return visit 1 (due 2014-03-17) on 2014-02-15"


def test_deciding_on_a_state_whose_deadlines_are_not_folded_is_a_programming_error() -> None:
    journey = Journey()
    journey.do(date(2013, 9, 20), request("apple-1", "Apple"))
    # The reminder of visit 1 falls due on 2014-02-15 at midnight; nobody folded it.
    later = at(date(2014, 2, 20))
    with pytest.raises(DeadlinesNotFolded) as caught:
        decide(journey.state, request("xerox-1", "Xerox"), later)
    assert not isinstance(caught.value, DomainError)
    assert isinstance(caught.value, AssertionError)
    assert "reminder of return visit 1 (due 2014-03-17) on 2014-02-15" in str(caught.value)
    assert "fold due_events(state, now) first" in str(caught.value)
    # Once the calendar is folded, the same command is decided.
    caught_up, fired = due_events(journey.state, later)
    assert [type(e).__name__ for e in fired] == ["ReturnVisitReminderDue"]
    [requested] = decide(caught_up, request("xerox-1", "Xerox"), later)
    assert isinstance(requested, MeetingRequested)


def test_a_deadline_falling_due_at_the_very_instant_of_the_command_must_be_folded() -> None:
    journey = Journey()
    deadline = next_deadline(journey.state)
    assert deadline is not None
    just_before = deadline.at - timedelta(microseconds=1)
    assert decide(journey.state, request("apple-1", "Apple"), just_before)
    with pytest.raises(DeadlinesNotFolded):
        decide(journey.state, request("apple-1", "Apple"), deadline.at)


def test_an_enrolment_and_a_journey_that_is_over_have_no_deadline_to_fold() -> None:
    journey = Journey()
    journey.do(date(2013, 9, 21), Withdraw(reason="no longer exporting"))
    with pytest.raises(JourneyOver):
        decide(journey.state, request("apple-1", "Apple"), at(date(2016, 1, 1)))


# ------------------------------------------------------- records recognised by meaning
# A command naming a record the journey has: the same values record nothing (decide
# returns []), other values are refused naming the field and the correcting command.


def signed(
    counterpart: str, amount: str, *meetings: str, on: date, contract_id: str | None = None
) -> SignContract:
    return SignContract(
        contract_id=contract_id,
        counterpart=counterpart,
        value=Money(amount=Decimal(amount), currency="USD"),
        meeting_ids=list(meetings),
        occurred_on=on,
        notes="Signed in Cupertino",
    )


def test_a_contract_sent_again_is_already_recorded_whatever_its_text_or_notes() -> None:
    journey = Journey()
    held_meeting_with_apple(journey)
    day = date(2014, 7, 15)
    journey.do(day, signed("Apple", "2001.00", "apple-1", on=day))
    before = journey.state
    again = signed("APPLE", "2001.0", "apple-1", on=day).model_copy(update={"notes": "edited"})
    assert journey.do(date(2014, 7, 20), again) == []
    assert journey.state == before
    assert [c.contract_id for c in journey.state.contracts] == ["c1"]


def test_a_contract_sent_again_with_another_amount_names_the_field_and_the_correction() -> None:
    journey = Journey()
    held_meeting_with_apple(journey)
    day = date(2014, 7, 15)
    journey.do(day, signed("Apple", "2001.00", "apple-1", on=day))
    error = journey.refuse(
        date(2014, 7, 20), signed("Apple", "2002.00", "apple-1", on=day), RecordDiffers
    )
    assert str(error) == (
        "contract c1 (Apple, 2014-07-15) is recorded with amount USD 2,001.00, this says "
        "amount USD 2,002.00: to change it, `corridor correct contract trifide c1 --amount "
        "2002.00 --currency USD --reason ...`; if it is another contract signed that day, "
        "give each its own contract id (--contract-id, or the journal's contract_id column)"
    )
    assert error.fields == ("amount",)


def test_a_contract_in_another_currency_or_with_other_meetings_differs() -> None:
    journey = Journey()
    held_meeting_with_apple(journey)
    day = date(2014, 7, 15)
    journey.do(day, signed("Apple", "2001.00", "apple-1", on=day))
    other = SignContract(
        counterpart="Apple", value=Money(amount=Decimal("2001"), currency="CAD"), occurred_on=day
    )
    error = journey.refuse(day, other, RecordDiffers)
    assert error.fields == ("currency", "meetings")
    assert "recorded with currency USD 2,001.00; meetings apple-1, this says currency " in str(
        error
    )
    assert "CAD 2,001.00; meetings (none)" in str(error)
    assert error.correction == (
        "corridor correct contract trifide c1 --amount 2001 --currency CAD --reason ..."
    )


def test_two_contracts_alike_on_one_day_are_two_contracts_when_they_carry_distinct_ids() -> None:
    journey = Journey()
    day = date(2014, 7, 15)
    [first] = journey.do(day, signed("Apple", "5000.00", on=day, contract_id="po-101"))
    [second] = journey.do(day, signed("Apple", "5000.00", on=day, contract_id="po-102"))
    assert isinstance(first, ContractSigned) and isinstance(second, ContractSigned)
    assert (first.contract_id, second.contract_id) == ("po-101", "po-102")
    assert journey.do(day, signed("Apple", "5000.00", on=day, contract_id="po-102")) == []
    assert journey.do(day, signed("Apple", "5000.00", on=day)) == []  # the natural key
    assert journey.state.assessment().value_by_currency == {"USD": Decimal(10000)}
    error = journey.refuse(day, signed("Apple", "7000.00", on=day), RecordDiffers)
    assert str(error).startswith(
        "contracts po-101, po-102 (Apple, 2014-07-15) are recorded at USD 5,000.00, "
        "USD 5,000.00, this says USD 7,000.00: if it is another contract signed that day, "
        "give each its own contract id"
    )


def test_a_contract_recognised_by_its_id_compares_counterpart_and_date_too() -> None:
    journey = Journey()
    day = date(2014, 7, 15)
    journey.do(day, signed("Apple", "5000.00", on=day, contract_id="po-101"))
    moved = signed("Apple Inc.", "5000.00", on=date(2014, 7, 16), contract_id="po-101")
    error = journey.refuse(date(2014, 7, 16), moved, RecordDiffers)
    assert error.fields == ("counterpart", "signing date")
    assert error.correction == (
        "corridor correct contract trifide po-101 --counterpart 'Apple Inc.' "
        "--signed-on 2014-07-16 --reason ..."
    )


def test_contracts_signed_without_an_id_get_the_next_free_c_number() -> None:
    journey = Journey()
    day = date(2014, 7, 15)
    journey.do(day, signed("Apple", "10.00", on=day, contract_id="c2"))
    [auto] = journey.do(day, signed("Xerox", "20.00", on=day))
    assert isinstance(auto, ContractSigned)
    assert auto.contract_id == "c3"


def test_a_contract_id_follows_the_id_rules() -> None:
    with pytest.raises(ValidationError, match="contract_id"):
        signed("Apple", "10.00", on=INTRO, contract_id="PO 101")


def test_a_record_sent_again_to_a_journey_that_is_over_is_already_recorded() -> None:
    journey = Journey()
    day = date(2014, 7, 15)
    journey.do(day, signed("Apple", "2001.00", on=day))
    journey.do(date(2014, 8, 1), Withdraw(reason="Refocusing"))
    assert journey.do(date(2014, 9, 1), signed("Apple", "2001.00", on=day)) == []
    assert journey.do(date(2014, 9, 1), Withdraw(occurred_on=date(2014, 8, 1))) == []
    error = journey.refuse(date(2014, 9, 1), signed("Apple", "2002.00", on=day), JourneyOver)
    assert "the firm withdrew on 2014-08-01" in str(error)
    error = journey.refuse(date(2014, 9, 1), Withdraw(), JourneyOver)
    assert "the firm withdrew on 2014-08-01" in str(error)


def test_the_same_arrangement_again_is_already_recorded() -> None:
    journey = Journey()
    held_meeting_with_apple(journey)
    again = arrange("apple-1", at(date(2013, 9, 19), 10), on=date(2013, 9, 18))
    assert journey.do(date(2013, 9, 25), again) == []


def test_another_arrangement_before_a_result_reschedules_the_meeting() -> None:
    journey = Journey()
    journey.play(
        (INTRO, request("apple-1", "Apple")),
        (INTRO, arrange("apple-1", at(date(2013, 9, 19), 10))),
    )
    [moved] = journey.do(date(2013, 9, 18), arrange("apple-1", at(date(2013, 9, 20), 10)))
    assert isinstance(moved, MeetingArranged)
    assert journey.state.meetings["apple-1"].scheduled_at == at(date(2013, 9, 20), 10)


def test_another_arrangement_after_a_result_differs() -> None:
    journey = Journey()
    held_meeting_with_apple(journey)
    error = journey.refuse(
        date(2013, 9, 25), arrange("apple-1", at(date(2013, 9, 19), 11), "dqla"), RecordDiffers
    )
    assert str(error) == (
        "meeting apple-1 (Apple) is recorded with partner labizfed; scheduled_at "
        "2013-09-19T10:00:00-07:00, this says partner dqla; scheduled_at "
        "2013-09-19T11:00:00-07:00: the meeting already has a result (promising, recorded "
        "on 2013-09-19): its arrangement no longer changes"
    )


# ------------------------------------------------------------------ fold / evolve


def full_journey() -> Journey:
    journey = Journey()
    held_meeting_with_apple(journey)
    journey.play(
        (date(2013, 9, 19), request("xerox-1", "Xerox")),
        (date(2013, 9, 19), arrange("xerox-1", at(date(2013, 9, 20), 9))),
        (date(2013, 11, 4), contract("Apple", "525000", "USD", "apple-1")),
        (date(2014, 3, 18), visit(True)),
        (date(2015, 10, 1), DecideEvaluation(decision=Decision.RENEW)),
        (date(2016, 4, 1), visit(False)),
    )
    journey.catch_up(date(2016, 6, 1))
    return journey


def test_folding_the_recorded_events_gives_the_incrementally_evolved_state() -> None:
    journey = full_journey()
    types = {type(e).__name__ for e in journey.events}
    assert {"MeetingResultOverdue", "ReturnVisitMissed", "EvaluationDecided"} <= types
    folded = fold(journey.events)
    assert folded.model_dump() == journey.state.model_dump()
    assert folded.stream_version == len(journey.events)
    assert folded.last_event_type == type(journey.events[-1]).__name__


def test_folding_events_read_back_from_json_gives_the_same_state() -> None:
    journey = full_journey()
    read_back = [type(e).model_validate_json(e.model_dump_json()) for e in journey.events]
    assert fold(read_back).model_dump(mode="json") == journey.state.model_dump(mode="json")


def test_evolve_leaves_the_previous_state_unchanged() -> None:
    journey = Journey()
    before = journey.state
    [requested] = decide(before, request("apple-1", "Apple"), at(INTRO))
    after = evolve(before, requested)
    assert "apple-1" in after.meetings
    assert before.meetings == {}
    assert (before.stream_version, after.stream_version) == (1, 2)


def test_no_state_of_a_fold_is_changed_by_the_events_folded_after_it() -> None:
    events = full_journey().events
    states: list[JourneyState] = []
    snapshots: list[dict[str, object]] = []
    state: JourneyState | None = None
    for event in events:
        state = evolve(state, event)
        states.append(state)
        snapshots.append(state.model_dump())
    kept = [s.model_dump() for s in states]
    assert kept == snapshots
    # The fold went through meetings, contracts, visits and evaluations at every stage.
    arranged = next(s for s in states if s.last_event_type == "MeetingArranged")
    assert arranged.meetings["apple-1"].outcome is None
    assert states[-1].meetings["apple-1"].outcome is Outcome.PROMISING
    due = next(s for s in states if s.last_event_type == "ReturnVisitDue")
    assert due.visits[1].status is VisitStatus.DUE
    assert states[-1].visits[1].status is VisitStatus.ATTENDED
    completed = next(s for s in states if s.last_event_type == "EvaluationCompleted")
    assert completed.evaluations[1].decision is None
    assert states[-1].evaluations[1].decision is Decision.RENEW
    assert [len(s.contracts) for s in states][-1] == 1
    assert next(s for s in states if s.last_event_type == "MeetingHeld").contracts == []


def test_evolve_shares_what_an_event_leaves_alone_and_copies_what_it_changes() -> None:
    journey = full_journey()
    before = journey.state
    [requested] = decide(before, request("intel-1", "Intel"), at(date(2016, 6, 1)))
    after = evolve(before, requested)
    assert after.programme is before.programme
    assert after.visits is before.visits and after.contracts is before.contracts
    assert after.meetings is not before.meetings
    assert after.meetings["apple-1"] is before.meetings["apple-1"]
    assert "intel-1" not in before.meetings


def test_states_and_their_parts_cannot_be_changed_in_place() -> None:
    state = full_journey().state
    with pytest.raises(ValidationError, match=r"frozen"):
        state.cycle = 9  # type: ignore[misc]
    with pytest.raises(ValidationError, match=r"frozen"):
        state.meetings["apple-1"].overdue = True  # type: ignore[misc]
    with pytest.raises(ValidationError, match=r"frozen"):
        state.visits[1].status = VisitStatus.MISSED  # type: ignore[misc]
    with pytest.raises(ValidationError, match=r"frozen"):
        state.evaluations[1].decision = Decision.CLOSE  # type: ignore[misc]


def test_a_stream_that_does_not_start_with_firm_enrolled_is_refused() -> None:
    journey = Journey()
    [requested] = decide(journey.state, request("apple-1", "Apple"), at(INTRO))
    with pytest.raises(ValueError, match=r"starts with FirmEnrolled, not MeetingRequested"):
        evolve(None, requested)
    with pytest.raises(ValueError, match=r"FirmEnrolled can only start a journey"):
        evolve(journey.state, journey.events[0])
    with pytest.raises(ValueError, match=r"empty stream"):
        fold([])


# --------------------------------------------------------------------------- bilan


def bilan_journeys() -> list[JourneyState]:
    """Three firms: two from mission m1 with contracts, one from m2 without."""
    programme = make_programme("p-bilan")
    trifide = Journey(programme, firm_id="trifide")
    held_meeting_with_apple(trifide)
    trifide.play(
        (date(2013, 10, 17), contract("Apple", "100000", "USD", "apple-1")),  # day 30
        (date(2014, 1, 10), contract("Apple", "50000", "CAD")),
    )
    exmachina = Journey(programme, firm_id="exmachina", on=date(2013, 9, 18))
    exmachina.play(
        (date(2013, 9, 18), request("xerox-1", "Xerox")),
        (date(2013, 9, 18), arrange("xerox-1", at(date(2013, 9, 19), 14))),
        (date(2013, 9, 19), result("xerox-1", Outcome.NEUTRAL)),
        (date(2013, 11, 8), contract("Xerox", "25000.50", "USD", "xerox-1")),  # day 51
    )
    doculibre = Journey(programme, firm_id="doculibre", mission_id="m2", on=date(2014, 3, 25))
    doculibre.play(
        (date(2014, 3, 25), request("linkedin-1", "LinkedIn")),
        (date(2014, 3, 25), arrange("linkedin-1", at(date(2014, 3, 26), 11))),
        (date(2014, 3, 26), result("linkedin-1", Outcome.NO_SHOW)),
    )
    states = []
    for journey in (doculibre, trifide, exmachina):
        journey.catch_up(date(2014, 6, 1))
        states.append(journey.state)
    return states


def test_the_bilan_sums_values_per_currency_without_adding_currencies() -> None:
    bilan = compute_bilan("p-bilan", "Bilan", bilan_journeys())
    assert bilan.scope == "programme"
    assert bilan.firms == 3
    assert bilan.contracts == 3
    assert bilan.value_by_currency == {"CAD": Decimal(50000), "USD": Decimal("125000.50")}
    assert bilan.meetings_requested == 3
    assert bilan.meetings_arranged == 3
    assert bilan.meetings_held == 2
    assert bilan.outcomes == {
        "promising": 1,
        "neutral": 1,
        "not_interested": 0,
        "no_show": 1,
        "cancelled": 0,
    }


def test_the_bilan_gives_the_share_of_firms_with_a_contract() -> None:
    bilan = compute_bilan("p-bilan", "Bilan", bilan_journeys())
    assert bilan.firms_with_contract == 2
    assert bilan.share_with_contract == pytest.approx(2 / 3)


def test_the_median_time_to_first_contract_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    bilan = compute_bilan("p-bilan", "Bilan", bilan_journeys())
    assert [r.days_to_first_contract for r in bilan.rows] == [30, 51, None]
    assert bilan.median_days_to_first_contract == 40.5


def test_the_median_time_to_first_contract_of_an_odd_count_is_the_middle_value() -> None:
    states = bilan_journeys()
    doculibre = Journey(
        make_programme("p-bilan"), firm_id="late", mission_id="m2", on=date(2014, 3, 24)
    )
    doculibre.do(date(2014, 5, 23), contract("LinkedIn", "900", "USD"))  # day 60
    bilan = compute_bilan("p-bilan", "Bilan", [*states, doculibre.state])
    assert bilan.median_days_to_first_contract == 51.0
    assert bilan.share_with_contract == pytest.approx(3 / 4)


def test_the_bilan_of_a_mission_keeps_only_the_firms_introduced_there() -> None:
    states = bilan_journeys()
    m1 = compute_bilan("p-bilan", "Bilan", states, mission_id="m1")
    assert m1.scope == "m1"
    assert [r.firm_id for r in m1.rows] == ["trifide", "exmachina"]
    assert m1.share_with_contract == 1.0
    assert m1.value_by_currency == {"CAD": Decimal(50000), "USD": Decimal("125000.50")}
    m2 = compute_bilan("p-bilan", "Bilan", states, mission_id="m2")
    assert [r.firm_id for r in m2.rows] == ["doculibre"]
    assert m2.share_with_contract == 0.0
    assert m2.median_days_to_first_contract is None
    assert m2.value_by_currency == {}
    assert m2.outcomes["no_show"] == 1
    empty = compute_bilan("p-bilan", "Bilan", states, mission_id="m9")
    assert (empty.firms, empty.share_with_contract) == (0, None)


def test_the_bilan_counts_stages_and_visits() -> None:
    states = bilan_journeys()
    bilan = compute_bilan("p-bilan", "Bilan", states)
    assert (bilan.withdrawn, bilan.closed, bilan.active) == (0, 0, 3)
    # Visit 1 of the m1 firms is due (2014-03-17/18), nothing recorded, none missed yet.
    assert (bilan.visits_attended, bilan.visits_missed) == (0, 0)
    assert [r.stage for r in bilan.rows] == [Stage.CONTRACTED, Stage.CONTRACTED, Stage.MEETINGS]
