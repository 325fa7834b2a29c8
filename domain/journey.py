"""The firm's journey: the rules that decide what a command records.

Read top to bottom as the BRIEF's journey: introduction, meetings, contracts, return
visits every six months, the two-year evaluation, withdrawal. The journey is three
pure functions, in three modules:

- ``decide(state, command, now) -> events`` (here) applies the rules or raises a
  ``DomainError`` naming the broken rule; a command naming a record the journey
  already has is recognised by that record's business identity (no event when its
  values are the same, ``RecordDiffers`` when they are not);
- ``evolve(state, event) -> state`` (``domain.state``) folds one event into the state;
- ``due_events(state, now) -> (state, events)`` (``domain.deadlines``) produces what
  the journey's own timers add (reminders, visits falling due or missed, overdue
  results, evaluations), in order.

The names of ``domain.state`` and ``domain.deadlines`` that callers used to import from
here are re-exported (``__all__``).
"""

from __future__ import annotations

import shlex
import unicodedata
from datetime import date, datetime, timedelta

from domain.calendar import add_months, local_date, start_of_day
from domain.commands import (
    ArrangeMeeting,
    AssignAdviser,
    Command,
    CompleteNextStep,
    CorrectContract,
    CorrectMeetingResult,
    CorrectVisitAttendance,
    DecideEvaluation,
    Decision,
    EnrollFirm,
    Outcome,
    RecordMeetingResult,
    RecordVisitAttendance,
    RequestMeeting,
    SignContract,
    VoidContract,
    Withdraw,
)
from domain.deadlines import (
    Deadline,
    DeadlineKind,
    DeadlinesNotFolded,
    cycle_started_on,
    due_events,
    evaluation_due_on,
    next_deadline,
    require_deadlines_folded,
    visit_due_on,
    visit_window,
)
from domain.errors import (
    AlreadyEnrolled,
    AmountAboveMaximum,
    ContractRuleBroken,
    CorrectionRuleBroken,
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
    AdviserAssigned,
    ContractCorrected,
    ContractSigned,
    ContractVoided,
    EvaluationDecided,
    Event,
    FirmEnrolled,
    FirmWithdrew,
    MeetingArranged,
    MeetingHeld,
    MeetingNotHeld,
    MeetingRequested,
    MeetingResultCorrected,
    NextStepCompleted,
    NextStepScheduled,
    ReturnVisitAttended,
    ReturnVisitSkipped,
    VisitAttendanceCorrected,
)
from domain.money import Money
from domain.programme import Programme
from domain.state import (
    ContractState,
    JourneyState,
    MeetingState,
    Stage,
    VisitState,
    VisitStatus,
    evolve,
    fold,
)

__all__ = [
    "Deadline",
    "DeadlineKind",
    "DeadlinesNotFolded",
    "JourneyState",
    "Stage",
    "VisitStatus",
    "decide",
    "due_events",
    "evolve",
    "fold",
    "next_deadline",
]


def decide(state: JourneyState | None, command: Command, now: datetime) -> list[Event]:
    """Apply the journey's rules to a command; its events carry its author.

    The rules are :func:`_decide`'s; every event the command causes records who sent
    it (``Event.recorded_by`` is ``command.by``).

    Args:
        state: The journey's state; None for a firm not enrolled yet.
        command: The command to decide.
        now: The business instant (aware) at which the command is decided, with the
            journey's deadlines up to ``now`` folded into ``state``.

    Returns:
        The events the command causes.

    Raises:
        DomainError: The command breaks a rule; nothing is changed.
        DeadlinesNotFolded: A deadline of the journey up to ``now`` is not folded.
    """
    events = _decide(state, command, now)
    if command.by is None:
        return events
    return [event.model_copy(update={"recorded_by": command.by}) for event in events]


def _decide(state: JourneyState | None, command: Command, now: datetime) -> list[Event]:
    """Apply the journey's rules to a command.

    Args:
        state: The journey's state; None for a firm not enrolled yet.
        command: The command to decide.
        now: The business instant (aware) at which the command is decided; the
            journey's own deadlines up to ``now`` must already be folded into ``state``
            (``state, _ = due_events(state, now)``): the rules see what the calendar
            recorded before the command.

    Returns:
        The events the command causes; empty when the journey already records this
        fact: the record the command names (by its business identity: the meeting id;
        the contract id, else the counterpart and signing date; the return visit; the
        cycle's evaluation; the withdrawal) is there with the same values. Notes and
        other free text are not compared.

    Raises:
        RecordDiffers: The command names a record the journey has, with other values;
            the message names each field that differs, both values, and the command
            that corrects it. (On a journey that is over: ``JourneyOver``.)
        DomainError: The command breaks a rule; nothing is changed.
        DeadlinesNotFolded: A programming error: a deadline of the journey up to
            ``now`` is not folded into ``state``.
    """
    if isinstance(command, EnrollFirm):
        return [_enroll(state, command, now)]
    if state is None:
        raise UnknownReference("the firm is not enrolled in this programme")
    require_deadlines_folded(state, now)
    try:
        recorded = _already_recorded(state, command, local_date(now, state.tz))
    except RecordDiffers:
        if not state.is_over:
            raise
        recorded = False  # nothing changes on a journey that is over: refused below
    if recorded:
        return []
    if state.is_over:
        what = (
            f"withdrew on {state.withdrawn_on}"
            if state.withdrawn_on
            else f"journey was closed on {state.closed_on}"
        )
        raise JourneyOver(f"{state.firm.id}: refused, the firm {what}")
    day = _command_day(state, command, now)
    match command:
        case RequestMeeting():
            return [_request_meeting(state, command, day, now)]
        case ArrangeMeeting():
            return [_arrange_meeting(state, command, day, now)]
        case RecordMeetingResult():
            meeting = state.meetings.get(command.meeting_id)
            if meeting is not None and meeting.outcome is command.outcome:
                return [_added_next_step(state, command, day, now)]
            result = _record_result(state, command, day, now)
            return [result, *_next_step(state, command, result)]
        case SignContract():
            return [_sign_contract(state, command, day, now)]
        case RecordVisitAttendance():
            return [_record_visit_attendance(state, command, day, now)]
        case DecideEvaluation():
            return [_decide_evaluation(state, command, day, now)]
        case Withdraw():
            return [FirmWithdrew(**_when(state, day, now), reason=command.reason)]
        case CorrectContract():
            return [_correct_contract(state, command, day, now)]
        case VoidContract():
            return [_void_contract(state, command, day, now)]
        case CorrectMeetingResult():
            return [_correct_meeting_result(state, command, day, now)]
        case CorrectVisitAttendance():
            return [_correct_visit_attendance(state, command, day, now)]
        case CompleteNextStep():
            return [_complete_next_step(state, command, day, now)]
        case AssignAdviser():
            return [_assign_adviser(state, command, day, now)]
    raise DomainError(f"unknown command {type(command).__name__}")


def _when(state: JourneyState, day: date, now: datetime) -> dict[str, datetime]:
    return {"occurred_at": start_of_day(day, state.tz), "recorded_at": now}


def _command_day(state: JourneyState, command: Command, now: datetime) -> date:
    """The command's business date, checked against today, introduction and cycle."""
    today = local_date(now, state.tz)
    day = command.occurred_on or today
    if day > today:
        raise DateOutOfRange(f"date {day} is in the future: the programme's today is {today}")
    if day < state.introduced_on:
        raise DateOutOfRange(
            f"date {day} is before the firm's introduction on {state.introduced_on}"
        )
    if day < cycle_started_on(state):
        raise DateOutOfRange(
            f"date {day} falls in a closed cycle: cycle {state.cycle} began on "
            f"{cycle_started_on(state)}"
        )
    return day


_ENROLMENT_FIRM_FIELDS = {
    "name": "firm_name",
    "sector": "sector",
    "city": "city",
    "contact_name": "contact_name",
    "contact_email": "contact_email",
    "adviser": "adviser",
    "language": "language",
}
"""The firm's fields an enrolment compares, with the roster column each comes from."""


def enrolment_differences(state: JourneyState, command: EnrollFirm) -> list[Difference]:
    """What an enrolment says that differs from the journey the firm already has.

    A roster enrols each firm once (``AlreadyEnrolled``); a row sent again with other
    values is not applied, and these are the values to report so that nothing typed
    is silently dropped. What a spreadsheet's re-export changes without changing the
    meaning is not a difference: text compared in Unicode NFC (a Mac export writes
    accents decomposed), e-mail addresses in any case, an empty adviser and the
    programme's default adviser written out.

    Args:
        state: The firm's journey.
        command: The enrolment sent again (a roster row).

    Returns:
        ``(roster column, recorded, this row says)`` for each value that differs: the
        firm's fields, ``mission_id`` and, when the row gives one, ``introduced_on``;
        none for a firm whose personal data was erased.
    """
    if state.erased_on is not None:
        return []
    pairs: list[tuple[str, object, object]] = [
        ("mission_id", state.mission_id, command.mission_id)
    ]
    if command.occurred_on is not None:
        pairs.append(("introduced_on", state.introduced_on, command.occurred_on))
    for field, column in _ENROLMENT_FIRM_FIELDS.items():
        old, new = getattr(state.firm, field), getattr(command.firm, field)
        if field == "adviser":
            old = old or state.programme.default_adviser
            new = new or command.programme.default_adviser
        pairs.append((column, old, new))
    return [
        (column, "(none)" if old is None else str(old), "(none)" if new is None else str(new))
        for column, old, new in pairs
        if _comparable(column, old) != _comparable(column, new)
    ]


def _comparable(column: str, value: object) -> object:
    if not isinstance(value, str):
        return value
    text = unicodedata.normalize("NFC", value)
    return text.casefold() if column == "contact_email" else text


def _enroll(state: JourneyState | None, command: EnrollFirm, now: datetime) -> FirmEnrolled:
    if state is not None:
        raise AlreadyEnrolled(
            f"{state.firm.id} is already enrolled in {state.programme.id} "
            f"since {state.introduced_on}"
        )
    tz = command.programme.timezone
    today = local_date(now, tz)
    mission = command.programme.mission(command.mission_id)
    day = command.occurred_on or today
    if day > today:
        raise DateOutOfRange(f"introduction date {day} is in the future (today is {today})")
    if not mission.starts_on <= day <= mission.ends_on:
        raise DateOutOfRange(
            f"introduction date {day} is outside mission {mission.id} "
            f"({mission.starts_on} to {mission.ends_on})"
        )
    if command.firm.adviser is not None:
        command.programme.adviser(command.firm.adviser)
    return FirmEnrolled(
        occurred_at=start_of_day(day, tz),
        recorded_at=now,
        programme=command.programme,
        firm=command.firm,
        mission_id=mission.id,
        introduced_on=day,
        wants_to_meet=list(command.wants_to_meet),
    )


def _meeting(state: JourneyState, meeting_id: str) -> MeetingState:
    try:
        return state.meetings[meeting_id]
    except KeyError:
        raise UnknownReference(f"meeting {meeting_id} was never requested") from None


def _request_meeting(
    state: JourneyState, command: RequestMeeting, day: date, now: datetime
) -> MeetingRequested:
    existing = state.meetings.get(command.meeting_id)
    if existing is not None:
        raise MeetingRuleBroken(
            f"meeting {command.meeting_id} was already requested on {existing.requested_on}"
        )
    return MeetingRequested(
        **_when(state, day, now), meeting_id=command.meeting_id, counterpart=command.counterpart
    )


def _arrange_meeting(
    state: JourneyState, command: ArrangeMeeting, day: date, now: datetime
) -> MeetingArranged:
    meeting = _meeting(state, command.meeting_id)
    state.programme.partner(command.partner_id)
    if meeting.outcome is not None:
        raise MeetingRuleBroken(
            f"meeting {meeting.meeting_id} already has a result ({meeting.outcome.value})"
        )
    if day < meeting.requested_on:
        raise DateOutOfRange(
            f"meeting {meeting.meeting_id} arranged on {day}, before it was requested "
            f"on {meeting.requested_on}"
        )
    if local_date(command.scheduled_at, state.tz) < meeting.requested_on:
        raise DateOutOfRange(
            f"meeting {meeting.meeting_id} scheduled for {command.scheduled_at.isoformat()}, "
            f"before it was requested on {meeting.requested_on}"
        )
    return MeetingArranged(
        **_when(state, day, now),
        meeting_id=meeting.meeting_id,
        partner_id=command.partner_id,
        scheduled_at=command.scheduled_at,
        place=command.place,
    )


def _record_result(
    state: JourneyState, command: RecordMeetingResult, day: date, now: datetime
) -> MeetingHeld | MeetingNotHeld:
    meeting = _meeting(state, command.meeting_id)
    if meeting.scheduled_at is None or meeting.arranged_on is None:
        raise MeetingRuleBroken(
            f"meeting {meeting.meeting_id} was never arranged: a result needs an arranged meeting"
        )
    if meeting.outcome is not None:
        raise MeetingRuleBroken(
            f"meeting {meeting.meeting_id} already has a result "
            f"({meeting.outcome.value}, recorded on {meeting.result_on})"
        )
    earliest = (
        meeting.arranged_on
        if command.outcome is Outcome.CANCELLED
        else local_date(meeting.scheduled_at, state.tz)
    )
    if day < earliest:
        raise DateOutOfRange(
            f"result of meeting {meeting.meeting_id} dated {day}, before the meeting "
            f"({local_date(meeting.scheduled_at, state.tz)})"
        )
    if command.outcome.held:
        return MeetingHeld(
            **_when(state, day, now),
            meeting_id=meeting.meeting_id,
            outcome=command.outcome,
            notes=command.notes,
            next_step=command.next_step,
            next_step_due_on=command.next_step_due_on,
        )
    return MeetingNotHeld(
        **_when(state, day, now),
        meeting_id=meeting.meeting_id,
        outcome=command.outcome,
        notes=command.notes,
    )


def _next_step(
    state: JourneyState, command: RecordMeetingResult, result: MeetingHeld | MeetingNotHeld
) -> list[NextStepScheduled]:
    """A held meeting's next step with a due date becomes a deadline (issue 9).

    Raises:
        DateOutOfRange: The next step is due before the result's date.
    """
    if not isinstance(result, MeetingHeld) or command.next_step_due_on is None:
        return []
    day = local_date(result.occurred_at, state.tz)
    if command.next_step_due_on < day:
        raise DateOutOfRange(
            f"next step of meeting {command.meeting_id} due on {command.next_step_due_on}, "
            f"before the result ({day})"
        )
    return [
        NextStepScheduled(
            occurred_at=result.occurred_at,
            recorded_at=result.recorded_at,
            meeting_id=command.meeting_id,
            next_step=command.next_step or "next step",
            due_on=command.next_step_due_on,
        )
    ]


def _added_next_step(
    state: JourneyState, command: RecordMeetingResult, day: date, now: datetime
) -> NextStepScheduled:
    """A next step with a due date given after the meeting's result was recorded.

    The result is sent again with the same outcome and the next step: the result stays
    as recorded (``_result_recorded`` sends here only when the meeting has no next step
    yet), and the next step becomes a deadline from the command's date.

    Raises:
        MeetingRuleBroken: The meeting was not held (no next step to follow).
        DateOutOfRange: The next step is due before the command's date.
    """
    meeting = state.meetings[command.meeting_id]
    if not command.outcome.held:
        raise MeetingRuleBroken(
            f"meeting {meeting.meeting_id} was not held ({command.outcome.value}): "
            "it has no next step to follow"
        )
    due_on = command.next_step_due_on
    assert due_on is not None  # _result_recorded: a result without a due date is recorded
    if due_on < day:
        raise DateOutOfRange(
            f"next step of meeting {command.meeting_id} due on {due_on}, before {day}"
        )
    return NextStepScheduled(
        **_when(state, day, now),
        meeting_id=meeting.meeting_id,
        next_step=command.next_step or "next step",
        due_on=due_on,
    )


def _complete_next_step(
    state: JourneyState, command: CompleteNextStep, day: date, now: datetime
) -> NextStepCompleted:
    step = state.next_steps.get(command.meeting_id)
    if step is None:
        raise UnknownReference(
            f"meeting {command.meeting_id} has no next step with a due date "
            f"(known: {', '.join(sorted(state.next_steps)) or 'none'})"
        )
    result_on = state.meetings[command.meeting_id].result_on
    if result_on is not None and day < result_on:
        raise DateOutOfRange(
            f"next step of meeting {command.meeting_id} done on {day}, before the "
            f"meeting's result ({result_on})"
        )
    return NextStepCompleted(
        **_when(state, day, now), meeting_id=command.meeting_id, notes=command.notes
    )


def _assign_adviser(
    state: JourneyState, command: AssignAdviser, day: date, now: datetime
) -> AdviserAssigned:
    state.programme.adviser(command.adviser_id)
    return AdviserAssigned(
        **_when(state, day, now),
        adviser_id=command.adviser_id,
        previous_adviser_id=state.adviser_id,
        notes=command.notes,
    )


def _sign_contract(
    state: JourneyState, command: SignContract, day: date, now: datetime
) -> ContractSigned:
    _check_attribution(state, command.counterpart, command.meeting_ids, day)
    _check_amount(state, command.value)
    return ContractSigned(
        **_when(state, day, now),
        contract_id=command.contract_id or _next_contract_id(state),
        counterpart=command.counterpart,
        value=command.value,
        meeting_ids=list(command.meeting_ids),
        notes=command.notes,
    )


def _record_visit_attendance(
    state: JourneyState, command: RecordVisitAttendance, day: date, now: datetime
) -> ReturnVisitAttended | ReturnVisitSkipped:
    if command.mission_id is not None:
        state.programme.mission(command.mission_id)
    visit, known = _visit_on(state, day)
    if known is not None:  # recognised by decide before: kept for callers of this rule
        raise VisitRuleBroken(
            f"return visit {visit} (due {known.due_on}) was already recorded as "
            f"{known.status.value} on {known.recorded_on}"
        )
    if command.mission_id is not None:
        mission = state.programme.mission(command.mission_id)
        opens, closes = visit_window(state, visit)
        if mission.ends_on < opens or mission.starts_on >= closes:
            raise VisitRuleBroken(
                f"mission {mission.id} ({mission.starts_on} to {mission.ends_on}) is not the "
                f"mission of return visit {visit}, open from {opens} to "
                f"{closes - timedelta(days=1)}"
            )
    fields = {
        **_when(state, day, now),
        "visit": visit,
        "due_on": visit_due_on(state, visit),
        "mission_id": command.mission_id,
        "notes": command.notes,
    }
    if command.attended:
        return ReturnVisitAttended.model_validate(fields)
    return ReturnVisitSkipped.model_validate(fields)


def _decide_evaluation(
    state: JourneyState, command: DecideEvaluation, day: date, now: datetime
) -> EvaluationDecided:
    evaluation = state.awaiting_decision
    if evaluation is None:
        due_on = evaluation_due_on(state)
        raise EvaluationRuleBroken(
            f"the evaluation of cycle {state.cycle} falls due on {due_on}: "
            f"a decision dated {day} comes before it"
        )
    if day < evaluation.due_on:
        raise EvaluationRuleBroken(
            f"the evaluation of cycle {state.cycle} fell due on {evaluation.due_on}: "
            f"a decision dated {day} comes before it"
        )
    return EvaluationDecided(
        **_when(state, day, now),
        cycle=evaluation.cycle,
        decision=command.decision,
        notes=command.notes,
    )


# ------------------------------------------------------------------- corrections
#
# A correction changes what an earlier command recorded, with a reason. It is refused
# when it makes no sense: a record that does not exist or was voided, nothing recorded
# to correct, or a value identical to the one recorded. The corrected record obeys the
# same rules as when it was first recorded (attribution, dates, the programme's
# maximum amount).


def _correctable_contract(state: JourneyState, contract_id: str, day: date) -> ContractState:
    """The contract a correction or void names, still in force and signed by ``day``."""
    contract = state.contract(contract_id)
    if contract is None:
        known = ", ".join(c.contract_id for c in state.contracts) or "none"
        raise UnknownReference(
            f"contract {contract_id} was never signed (contracts of {state.firm.id}: {known})"
        )
    if contract.voided_on is not None:
        raise CorrectionRuleBroken(
            f"contract {contract_id} was voided on {contract.voided_on}: a voided contract "
            "can be neither corrected nor voided again"
        )
    if day < contract.signed_on:
        raise DateOutOfRange(
            f"correction of contract {contract_id} dated {day}, before it was signed "
            f"on {contract.signed_on}"
        )
    return contract


def _check_attribution(
    state: JourneyState, counterpart: str, meeting_ids: list[str], signed_on: date
) -> None:
    """A contract is attributed to held meetings with its counterpart, before it."""
    for meeting_id in meeting_ids:
        meeting = state.meetings.get(meeting_id)
        if meeting is None:
            raise UnknownReference(
                f"contract attributed to meeting {meeting_id}, which was never requested"
            )
        if meeting.outcome is None or not meeting.outcome.held:
            status = meeting.status.replace("_", " ")
            raise ContractRuleBroken(
                f"contract attributed to meeting {meeting_id}, which was not held ({status})"
            )
        if meeting.counterpart.casefold() != counterpart.casefold():
            raise ContractRuleBroken(
                f"contract with {counterpart!r} attributed to meeting {meeting_id}, "
                f"which was with {meeting.counterpart!r}"
            )
        held_on = local_date(meeting.scheduled_at, state.tz) if meeting.scheduled_at else None
        if held_on is not None and signed_on < held_on:
            raise DateOutOfRange(
                f"contract dated {signed_on}, before meeting {meeting_id} was held ({held_on})"
            )


def _check_amount(state: JourneyState, value: Money) -> None:
    check_contract_amount(state.programme, value)


def check_contract_amount(programme: Programme, value: Money) -> None:
    """Refuse a contract amount above the programme's plausibility bound.

    The rule of ``Policy.max_contract_amount`` (a figure above it is a typing slip more
    often than a contract); the journey applies it to every contract and correction,
    and a journal file checks its rows with it before anything is sent.

    Args:
        programme: The programme whose policy sets the maximum.
        value: The contract's amount, with its currency (the maximum applies in any).

    Raises:
        AmountAboveMaximum: The amount is above the maximum; the message names both.
    """
    maximum = programme.policy.max_contract_amount
    if value.amount > maximum:
        raise AmountAboveMaximum(
            f"contract amount {value} is above the programme's maximum of "
            f"{maximum.normalize():,f} {value.currency} (policy max_contract_amount of "
            f"{programme.id})"
        )


def _correct_contract(
    state: JourneyState, command: CorrectContract, day: date, now: datetime
) -> ContractCorrected:
    contract = _correctable_contract(state, command.contract_id, day)
    changes: dict[str, object] = {}
    value = command.value
    if value is not None and (value.currency, value.amount) != (
        contract.value.currency,
        contract.value.amount,
    ):
        _check_amount(state, value)
        changes |= {"value_before": contract.value, "value_after": value}
    if command.counterpart is not None and command.counterpart != contract.counterpart:
        changes |= {
            "counterpart_before": contract.counterpart,
            "counterpart_after": command.counterpart,
        }
    if command.signed_on is not None and command.signed_on != contract.signed_on:
        if command.signed_on > day:
            raise DateOutOfRange(
                f"contract {contract.contract_id} corrected to be signed on "
                f"{command.signed_on}, after the correction's date ({day})"
            )
        if command.signed_on < state.introduced_on:
            raise DateOutOfRange(
                f"contract {contract.contract_id} corrected to be signed on "
                f"{command.signed_on}, before the firm's introduction on {state.introduced_on}"
            )
        changes |= {"signed_on_before": contract.signed_on, "signed_on_after": command.signed_on}
    meeting_ids = command.meeting_ids
    if meeting_ids is not None and list(meeting_ids) != contract.meeting_ids:
        changes |= {
            "meeting_ids_before": list(contract.meeting_ids),
            "meeting_ids_after": list(meeting_ids),
        }
    if not changes:
        raise CorrectionRuleBroken(
            f"contract {contract.contract_id} already records {contract.value} with "
            f"{contract.counterpart}, signed on {contract.signed_on}"
            + (f", attributed to {', '.join(contract.meeting_ids)}" if contract.meeting_ids else "")
            + ": the correction changes nothing"
        )
    _check_attribution(
        state,
        command.counterpart or contract.counterpart,
        list(meeting_ids if meeting_ids is not None else contract.meeting_ids),
        command.signed_on or contract.signed_on,
    )
    return ContractCorrected.model_validate(
        {
            **_when(state, day, now),
            "contract_id": contract.contract_id,
            "reason": command.reason,
            **changes,
        }
    )


def _void_contract(
    state: JourneyState, command: VoidContract, day: date, now: datetime
) -> ContractVoided:
    contract = _correctable_contract(state, command.contract_id, day)
    return ContractVoided(
        **_when(state, day, now),
        contract_id=contract.contract_id,
        counterpart=contract.counterpart,
        value=contract.value,
        signed_on=contract.signed_on,
        reason=command.reason,
    )


def _correct_meeting_result(
    state: JourneyState, command: CorrectMeetingResult, day: date, now: datetime
) -> MeetingResultCorrected:
    meeting = _meeting(state, command.meeting_id)
    if meeting.outcome is None or meeting.result_on is None:
        raise CorrectionRuleBroken(
            f"meeting {meeting.meeting_id} has no result to correct ({meeting.status}): "
            "record its result instead"
        )
    if command.outcome is meeting.outcome:
        raise CorrectionRuleBroken(
            f"meeting {meeting.meeting_id} already records {meeting.outcome.value} "
            f"(recorded on {meeting.result_on}): the correction changes nothing"
        )
    if day < meeting.result_on:
        raise DateOutOfRange(
            f"correction of meeting {meeting.meeting_id} dated {day}, before its result "
            f"was recorded on {meeting.result_on}"
        )
    if not command.outcome.held:
        attributed = [
            c.contract_id for c in state.contracts_in_force if meeting.meeting_id in c.meeting_ids
        ]
        if attributed:
            raise CorrectionRuleBroken(
                f"meeting {meeting.meeting_id} led to contract {', '.join(attributed)}: it "
                f"cannot become {command.outcome.value.replace('_', ' ')} while a contract "
                "is attributed to it (correct the contract's meetings, or void it, first)"
            )
    if command.outcome is not Outcome.CANCELLED and meeting.scheduled_at is not None:
        held_on = local_date(meeting.scheduled_at, state.tz)
        if meeting.result_on < held_on:
            raise DateOutOfRange(
                f"meeting {meeting.meeting_id}'s result was recorded on {meeting.result_on}, "
                f"before the meeting ({held_on}): it can only be cancelled"
            )
    return MeetingResultCorrected(
        **_when(state, day, now),
        meeting_id=meeting.meeting_id,
        outcome_before=meeting.outcome,
        outcome_after=command.outcome,
        reason=command.reason,
    )


def _correct_visit_attendance(
    state: JourneyState, command: CorrectVisitAttendance, day: date, now: datetime
) -> VisitAttendanceCorrected:
    known = state.visits.get(command.visit)
    recorded = (VisitStatus.ATTENDED, VisitStatus.SKIPPED)
    if known is None or known.status not in recorded or known.recorded_on is None:
        status = known.status.value if known else "not due yet"
        raise CorrectionRuleBroken(
            f"return visit {command.visit} has no attendance recorded to correct ({status})"
        )
    attended = known.status is VisitStatus.ATTENDED
    if command.attended == attended:
        raise CorrectionRuleBroken(
            f"return visit {command.visit} is already recorded as {known.status.value} "
            f"(on {known.recorded_on}): the correction changes nothing"
        )
    if day < known.recorded_on:
        raise DateOutOfRange(
            f"correction of return visit {command.visit} dated {day}, before its attendance "
            f"was recorded on {known.recorded_on}"
        )
    return VisitAttendanceCorrected(
        **_when(state, day, now),
        visit=command.visit,
        due_on=known.due_on,
        attended_before=attended,
        attended_after=command.attended,
        reason=command.reason,
    )


def _visit_on(state: JourneyState, day: date) -> tuple[int, VisitState | None]:
    """The return visit an attendance dated ``day`` is about.

    The first visit open for attendance on ``day`` that is not recorded yet; or a
    recorded one whose window alone holds ``day`` (then also returned).

    Raises:
        VisitRuleBroken: No return visit is open for attendance on ``day``.
    """
    visit = 1
    while True:
        opens, closes = visit_window(state, visit)
        if day < opens:
            raise VisitRuleBroken(
                f"no return visit is open on {day}: visit {visit} falls due on "
                f"{visit_due_on(state, visit)} and opens for attendance on {opens}"
            )
        if day < closes:
            known = state.visits.get(visit)
            if known is None or known.status not in _RECORDED_VISIT:
                return visit, None
            next_opens, _ = visit_window(state, visit + 1)
            if day < next_opens:
                return visit, known
        visit += 1


def _next_contract_id(state: JourneyState) -> str:
    """The id of a contract signed without one: ``c<N>``, N its rank, or the next free."""
    taken = {contract.contract_id for contract in state.contracts}
    number = len(state.contracts) + 1
    while f"c{number}" in taken:
        number += 1
    return f"c{number}"


# ------------------------------------------------------------ records recognised
#
# A command naming a record the journey already has is recognised by the record's
# business identity, never by the command's text or id: the same values are "already
# recorded" (no event), other values are refused (RecordDiffers) with the command that
# corrects the record. Free text (notes, reasons, next steps) is never compared.

_RECORDED_VISIT = (VisitStatus.ATTENDED, VisitStatus.SKIPPED)
_ANY_REASON = "--reason ..."


def _already_recorded(state: JourneyState, command: Command, today: date) -> bool:
    """True when the journey already records the fact ``command`` states.

    Args:
        state: The journey's state, deadlines folded.
        command: A staff command.
        today: The programme's business today (the date of a command without one).

    Raises:
        RecordDiffers: The command names a record the journey has, with other values.
    """
    day = command.occurred_on or today
    match command:
        case RequestMeeting():
            return _request_recorded(state, command)
        case ArrangeMeeting():
            return _arrangement_recorded(state, command)
        case RecordMeetingResult():
            return _result_recorded(state, command)
        case SignContract():
            return _contract_recorded(state, command, day)
        case RecordVisitAttendance():
            return _attendance_recorded(state, command, day)
        case DecideEvaluation():
            return _decision_recorded(state, command, day)
        case Withdraw():
            return state.withdrawn_on == day
        case CompleteNextStep():
            step = state.next_steps.get(command.meeting_id)
            return step is not None and not step.pending
        case AssignAdviser():
            return state.adviser_id == command.adviser_id
    return False


Difference = tuple[str, str, str]
"""A field that differs: its name, the recorded value and the command's value."""


def _differs(
    what: str,
    differences: list[Difference],
    *,
    correction: str | None = None,
    otherwise: str = "",
) -> RecordDiffers:
    """The refusal of a command naming ``what`` with other values than recorded.

    Args:
        what: The record, e.g. ``contract c1 (Apple, 2014-07-15)``.
        differences: Each field that differs (name, recorded value, new value).
        correction: The command that corrects the record, if it can be corrected.
        otherwise: What to do instead (when it cannot be corrected, or in addition).
    """
    recorded = "; ".join(f"{field} {old}" for field, old, _ in differences)
    says = "; ".join(f"{field} {new}" for field, _, new in differences)
    remedies = [f"to change it, `{correction}`"] if correction else []
    remedies += [otherwise] if otherwise else []
    return RecordDiffers(
        f"{what} is recorded with {recorded}, this says {says}: " + "; ".join(remedies),
        fields=tuple(field for field, _, _ in differences),
        correction=correction,
    )


def _same_name(recorded: str, given: str) -> bool:
    """Counterparts are the same whatever their case (Apple, APPLE)."""
    return recorded.strip().casefold() == given.strip().casefold()


def _request_recorded(state: JourneyState, command: RequestMeeting) -> bool:
    meeting = state.meetings.get(command.meeting_id)
    if meeting is None:
        return False
    if _same_name(meeting.counterpart, command.counterpart):
        return True
    raise _differs(
        f"meeting {meeting.meeting_id} (requested on {meeting.requested_on})",
        [("counterpart", meeting.counterpart, command.counterpart)],
        otherwise="a meeting's counterpart is not corrected: request the other meeting "
        "under a meeting id of its own",
    )


def _arrangement_recorded(state: JourneyState, command: ArrangeMeeting) -> bool:
    """Same partner, time and place: recorded.

    Before a result, another arrangement is new (the meeting is rescheduled); after
    it, the arrangement is history and another one differs.
    """
    meeting = state.meetings.get(command.meeting_id)
    if meeting is None or meeting.scheduled_at is None:
        return False
    differences: list[Difference] = []
    if meeting.partner_id != command.partner_id:
        differences.append(("partner", str(meeting.partner_id), command.partner_id))
    if meeting.scheduled_at != command.scheduled_at:
        differences.append(
            ("scheduled_at", meeting.scheduled_at.isoformat(), command.scheduled_at.isoformat())
        )
    if command.place is not None and (meeting.place or "") != command.place:
        differences.append(("place", meeting.place or "(none)", command.place))
    if not differences:
        return True
    if meeting.outcome is None:
        return False
    raise _differs(
        f"meeting {meeting.meeting_id} ({meeting.counterpart})",
        differences,
        otherwise=f"the meeting already has a result ({meeting.outcome.value}, recorded on "
        f"{meeting.result_on}): its arrangement no longer changes",
    )


def _result_recorded(state: JourneyState, command: RecordMeetingResult) -> bool:
    meeting = state.meetings.get(command.meeting_id)
    if meeting is None or meeting.outcome is None:
        return False
    if meeting.outcome is command.outcome:
        step = state.next_steps.get(command.meeting_id)
        if command.next_step_due_on is None:
            return True
        if step is None:
            return False  # the result again, with a next step it lacked: the step is added
        asked = (command.next_step or "next step", command.next_step_due_on)
        if (step.next_step, step.due_on) == asked:
            return True
        raise _differs(
            f"the next step of meeting {meeting.meeting_id} ({meeting.counterpart})",
            [
                (name, old, new)
                for name, old, new in (
                    ("next_step", step.next_step, asked[0]),
                    ("next_step_due_on", str(step.due_on), str(asked[1])),
                )
                if old != new
            ],
            otherwise=(
                f"mark it done with `corridor next-step done {state.firm.id} "
                f"{meeting.meeting_id}`; a meeting has one next step"
                if step.pending
                else f"it was done on {step.done_on}; a meeting has one next step"
            ),
        )
    raise _differs(
        f"the result of meeting {meeting.meeting_id} ({meeting.counterpart}, recorded on "
        f"{meeting.result_on})",
        [("outcome", meeting.outcome.value, command.outcome.value)],
        correction=(
            f"corridor correct meeting {state.firm.id} {meeting.meeting_id} "
            f"{command.outcome.value} {_ANY_REASON}"
        ),
    )


def _money_text(amount: object) -> str:
    return format(amount, "f")


def _contract_differences(
    contract: ContractState, command: SignContract, day: date, *, by_id: bool
) -> tuple[list[Difference], list[str]]:
    """The fields of ``command`` that differ from ``contract``, and the options that set them.

    The options are those of ``corridor correct contract``. The counterpart and the
    signing date are compared only for a contract recognised by its id (else they
    are its key).
    """
    differences: list[Difference] = []
    options: list[str] = []
    if contract.value != command.value:
        field = "currency" if contract.value.amount == command.value.amount else "amount"
        differences.append((field, str(contract.value), str(command.value)))
        options += [
            f"--amount {_money_text(command.value.amount)}",
            f"--currency {command.value.currency}",
        ]
    if by_id and not _same_name(contract.counterpart, command.counterpart):
        differences.append(("counterpart", contract.counterpart, command.counterpart))
        options.append(f"--counterpart {shlex.quote(command.counterpart)}")
    if by_id and contract.signed_on != day:
        differences.append(("signing date", str(contract.signed_on), str(day)))
        options.append(f"--signed-on {day}")
    if sorted(contract.meeting_ids) != sorted(command.meeting_ids):
        differences.append(
            (
                "meetings",
                ", ".join(contract.meeting_ids) or "(none)",
                ", ".join(command.meeting_ids) or "(none)",
            )
        )
        options += [f"--meeting {meeting_id}" for meeting_id in command.meeting_ids]
    return differences, options


def _contract_recorded(state: JourneyState, command: SignContract, day: date) -> bool:
    """A contract is recognised by its id, or without one by its counterpart and date."""
    if command.contract_id is not None:
        candidates = [c for c in state.contracts if c.contract_id == command.contract_id]
    else:
        candidates = [
            c
            for c in state.contracts
            if c.signed_on == day and _same_name(c.counterpart, command.counterpart)
        ]
    if not candidates:
        return False
    by_id = command.contract_id is not None
    found = [(c, *_contract_differences(c, command, day, by_id=by_id)) for c in candidates]
    if any(not differences for _, differences, _ in found):
        return True
    another = (
        "if it is another contract signed that day, give each its own contract id "
        "(--contract-id, or the journal's contract_id column)"
    )
    if len(found) > 1:
        ids = ", ".join(c.contract_id for c, _, _ in found)
        values = ", ".join(str(c.value) for c, _, _ in found)
        raise RecordDiffers(
            f"contracts {ids} ({command.counterpart}, {day}) are recorded at {values}, this "
            f"says {command.value}: {another}; to change one, `corridor correct contract "
            f"{state.firm.id} CONTRACT_ID ... {_ANY_REASON}`",
            fields=("amount",),
        )
    contract, differences, options = found[0]
    correction = " ".join(
        ["corridor correct contract", state.firm.id, contract.contract_id, *options, _ANY_REASON]
    )
    raise _differs(
        f"contract {contract.contract_id} ({contract.counterpart}, {contract.signed_on})",
        differences,
        correction=correction,
        otherwise="" if by_id else another,
    )


def _attendance_recorded(state: JourneyState, command: RecordVisitAttendance, day: date) -> bool:
    """A return visit is recognised by the record's date.

    The visit recorded that day with the same attendance, else the recorded visit
    whose window alone holds that day.
    """
    status = VisitStatus.ATTENDED if command.attended else VisitStatus.SKIPPED
    if any(v.recorded_on == day and v.status is status for v in state.visits.values()):
        return True
    try:
        number, known = _visit_on(state, day)
    except VisitRuleBroken:
        return False
    if known is None:
        return False
    if known.status is status:
        return True
    raise _differs(
        f"return visit {number} (due {known.due_on}, recorded on {known.recorded_on})",
        [("attendance", known.status.value, status.value)],
        correction=f"corridor correct visit {state.firm.id} {number} {status.value} {_ANY_REASON}",
    )


def _decision_recorded(state: JourneyState, command: DecideEvaluation, day: date) -> bool:
    """An evaluation decision is recognised by its cycle.

    The decision recorded on ``day``; else, while no evaluation awaits a decision, the
    decided evaluation whose decision period (from its due date to the next
    evaluation's) holds ``day``.
    """
    decided = sorted(
        (e for e in state.evaluations.values() if e.decision is not None),
        key=lambda e: e.cycle,
    )
    months = state.programme.policy.evaluation_after_months
    found = next((e for e in decided if e.decided_on == day), None)
    if found is None and state.awaiting_decision is None:
        found = next(
            (
                e
                for e in decided
                if e.due_on <= day < add_months(state.introduced_on, months * (e.cycle + 1))
            ),
            None,
        )
    if found is None or found.decision is None:
        return False
    if found.decision is command.decision:
        return True
    raise _differs(
        f"the evaluation of cycle {found.cycle} (decided on {found.decided_on})",
        [("decision", found.decision.value, command.decision.value)],
        otherwise="an evaluation decision is not corrected"
        + (
            f" (to end the renewed journey: `corridor withdraw {state.firm.id}`)"
            if found.decision is Decision.RENEW
            else ""
        ),
    )
