"""The firm's journey: the rules that decide what a command records.

Read top to bottom as the BRIEF's journey: introduction, meetings, contracts, return
visits every six months, the two-year evaluation, withdrawal. The journey is three
pure functions, in three modules:

- ``decide(state, command, now) -> events`` (here) applies the rules or raises a
  ``DomainError`` naming the broken rule;
- ``evolve(state, event) -> state`` (``domain.state``) folds one event into the state;
- ``due_events(state, now) -> (state, events)`` (``domain.deadlines``) produces what
  the journey's own timers add (reminders, visits falling due or missed, overdue
  results, evaluations), in order.

The names of ``domain.state`` and ``domain.deadlines`` that callers used to import from
here are re-exported (``__all__``).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from domain.calendar import local_date, start_of_day
from domain.commands import (
    ArrangeMeeting,
    Command,
    DecideEvaluation,
    EnrollFirm,
    Outcome,
    RecordMeetingResult,
    RecordVisitAttendance,
    RequestMeeting,
    SignContract,
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
    DateOutOfRange,
    DomainError,
    EvaluationRuleBroken,
    JourneyOver,
    MeetingRuleBroken,
    UnknownReference,
    VisitRuleBroken,
)
from domain.events import (
    ContractSigned,
    EvaluationDecided,
    Event,
    FirmEnrolled,
    FirmWithdrew,
    MeetingArranged,
    MeetingHeld,
    MeetingNotHeld,
    MeetingRequested,
    ReturnVisitAttended,
    ReturnVisitSkipped,
)
from domain.state import JourneyState, MeetingState, Stage, VisitStatus, evolve, fold

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
    """Apply the journey's rules to a command.

    Args:
        state: The journey's state; None for a firm not enrolled yet.
        command: The command to decide.
        now: The business instant (aware) at which the command is decided; the
            journey's own deadlines up to ``now`` must already be folded into ``state``
            (``state, _ = due_events(state, now)``): the rules see what the calendar
            recorded before the command.

    Returns:
        The events the command causes (never empty).

    Raises:
        DomainError: The command breaks a rule; nothing is changed.
        DeadlinesNotFolded: A programming error: a deadline of the journey up to
            ``now`` is not folded into ``state``.
    """
    if isinstance(command, EnrollFirm):
        return [_enroll(state, command, now)]
    if state is None:
        raise UnknownReference("the firm is not enrolled in this programme")
    require_deadlines_folded(state, now)
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
            return [_record_result(state, command, day, now)]
        case SignContract():
            return [_sign_contract(state, command, day, now)]
        case RecordVisitAttendance():
            return [_record_visit_attendance(state, command, day, now)]
        case DecideEvaluation():
            return [_decide_evaluation(state, command, day, now)]
        case Withdraw():
            return [FirmWithdrew(**_when(state, day, now), reason=command.reason)]
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


def _sign_contract(
    state: JourneyState, command: SignContract, day: date, now: datetime
) -> ContractSigned:
    for meeting_id in command.meeting_ids:
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
        if meeting.counterpart.casefold() != command.counterpart.casefold():
            raise ContractRuleBroken(
                f"contract with {command.counterpart!r} attributed to meeting {meeting_id}, "
                f"which was with {meeting.counterpart!r}"
            )
        held_on = local_date(meeting.scheduled_at, state.tz) if meeting.scheduled_at else None
        if held_on is not None and day < held_on:
            raise DateOutOfRange(
                f"contract dated {day}, before meeting {meeting_id} was held ({held_on})"
            )
    maximum = state.programme.policy.max_contract_amount
    if command.value.amount > maximum:
        raise AmountAboveMaximum(
            f"contract amount {command.value} is above the programme's maximum of "
            f"{maximum.normalize():,f} {command.value.currency} (policy max_contract_amount of "
            f"{state.programme.id})"
        )
    return ContractSigned(
        **_when(state, day, now),
        contract_id=f"c{len(state.contracts) + 1}",
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
            if known is None or known.status not in (VisitStatus.ATTENDED, VisitStatus.SKIPPED):
                break
            next_opens, _ = visit_window(state, visit + 1)
            if day < next_opens:
                raise VisitRuleBroken(
                    f"return visit {visit} (due {known.due_on}) was already recorded as "
                    f"{known.status.value} on {known.recorded_on}"
                )
        visit += 1
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
