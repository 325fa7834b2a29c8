"""The firm's journey: its state, the rules that decide events, and its deadlines.

Read top to bottom as the BRIEF's journey: introduction, meetings, contracts, return
visits every six months, the two-year evaluation, withdrawal. Three pure functions do
all the work:

- ``decide(state, command, now) -> events`` applies the rules or raises a
  ``DomainError`` naming the broken rule;
- ``evolve(state, event) -> state`` folds one event into the state;
- ``due_events(state, now) -> events`` produces what the journey's own timers add
  (reminders, visits falling due or missed, overdue results, evaluations), in order.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import singledispatch

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from domain.calendar import add_months, local_date, start_of_day, zone
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
from domain.errors import (
    AlreadyEnrolled,
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
    Assessment,
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
    ReturnVisitAttended,
    ReturnVisitDue,
    ReturnVisitMissed,
    ReturnVisitReminderSent,
    ReturnVisitSkipped,
)
from domain.money import Money
from domain.programme import Firm, Programme

# --------------------------------------------------------------------------- state


class Stage(StrEnum):
    """Where a journey stands."""

    INTRODUCED = "introduced"
    MEETINGS = "meetings"
    CONTRACTED = "contracted"
    AWAITING_DECISION = "awaiting_decision"
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"


class VisitStatus(StrEnum):
    """Status of one return visit."""

    UPCOMING = "upcoming"
    DUE = "due"
    ATTENDED = "attended"
    SKIPPED = "skipped"
    MISSED = "missed"


class MeetingState(BaseModel):
    """A meeting as the journey knows it."""

    meeting_id: str
    counterpart: str
    requested_on: date
    partner_id: str | None = None
    arranged_on: date | None = None
    scheduled_at: AwareDatetime | None = None
    place: str | None = None
    outcome: Outcome | None = None
    result_on: date | None = None
    overdue: bool = False
    notes: str = ""

    @property
    def status(self) -> str:
        """requested, arranged, overdue, or the outcome once recorded."""
        if self.outcome is not None:
            return self.outcome.value
        if self.overdue:
            return "overdue"
        return "arranged" if self.scheduled_at is not None else "requested"


class ContractState(BaseModel):
    """A signed contract."""

    contract_id: str
    counterpart: str
    value: Money
    signed_on: date
    meeting_ids: list[str] = Field(default_factory=list)


class VisitState(BaseModel):
    """One return visit (number 1 is six months after the introduction).

    Attributes:
        fell_due: True once its due date has passed (it may be recorded earlier,
            from its reminder on).
    """

    visit: int
    due_on: date
    status: VisitStatus = VisitStatus.UPCOMING
    fell_due: bool = False
    recorded_on: date | None = None
    mission_id: str | None = None


class EvaluationState(BaseModel):
    """The evaluation of one cycle."""

    cycle: int
    due_on: date
    assessment: Assessment
    decision: Decision | None = None
    decided_on: date | None = None


class JourneyState(BaseModel):
    """The fold of a journey's events.

    Attributes:
        stream_version: Number of events folded so far.
        cycle: Current cycle, 1 for the first two years.
        visits: Return visits by number, once reminded or due.
        evaluations: Evaluations by cycle, once completed.
    """

    model_config = ConfigDict(validate_assignment=False)

    stream_version: int = 0
    programme: Programme
    firm: Firm
    mission_id: str
    introduced_on: date
    wants_to_meet: list[str] = Field(default_factory=list)
    cycle: int = 1
    meetings: dict[str, MeetingState] = Field(default_factory=dict)
    contracts: list[ContractState] = Field(default_factory=list)
    visits: dict[int, VisitState] = Field(default_factory=dict)
    evaluations: dict[int, EvaluationState] = Field(default_factory=dict)
    withdrawn_on: date | None = None
    closed_on: date | None = None
    last_event_type: str | None = None
    last_event_summary: str | None = None
    last_event_at: AwareDatetime | None = None

    @property
    def tz(self) -> str:
        """The programme's time zone."""
        return self.programme.timezone

    @property
    def is_over(self) -> bool:
        """True once the firm withdrew or the journey was closed."""
        return self.withdrawn_on is not None or self.closed_on is not None

    @property
    def cycle_started_on(self) -> date:
        """First day of the current cycle (cycles are anchored on the introduction)."""
        months = self.programme.policy.evaluation_after_months * (self.cycle - 1)
        return add_months(self.introduced_on, months)

    @property
    def awaiting_decision(self) -> EvaluationState | None:
        """The completed evaluation of the current cycle still waiting for a decision."""
        evaluation = self.evaluations.get(self.cycle)
        if evaluation is not None and evaluation.decision is None:
            return evaluation
        return None

    @property
    def stage(self) -> Stage:
        """Where the journey stands."""
        if self.withdrawn_on is not None:
            return Stage.WITHDRAWN
        if self.closed_on is not None:
            return Stage.CLOSED
        if self.awaiting_decision is not None:
            return Stage.AWAITING_DECISION
        if self.contracts:
            return Stage.CONTRACTED
        if self.meetings:
            return Stage.MEETINGS
        return Stage.INTRODUCED

    def visit_due_on(self, visit: int) -> date:
        """Due date of return visit number ``visit`` (every N months after introduction)."""
        return add_months(
            self.introduced_on, self.programme.policy.return_visit_every_months * visit
        )

    def assessment(self) -> Assessment:
        """Compute the firm's assessment from everything recorded so far."""
        outcomes = Counter(m.outcome.value for m in self.meetings.values() if m.outcome)
        values: dict[str, Decimal] = {}
        for contract in self.contracts:
            currency = contract.value.currency
            values[currency] = values.get(currency, Decimal(0)) + contract.value.amount
        first = min((c.signed_on for c in self.contracts), default=None)
        statuses = Counter(v.status for v in self.visits.values())
        return Assessment(
            meetings_requested=len(self.meetings),
            meetings_held=sum(1 for m in self.meetings.values() if m.outcome and m.outcome.held),
            outcomes=dict(sorted(outcomes.items())),
            contracts=len(self.contracts),
            value_by_currency=dict(sorted(values.items())),
            days_to_first_contract=(first - self.introduced_on).days if first else None,
            visits_attended=statuses[VisitStatus.ATTENDED],
            visits_skipped=statuses[VisitStatus.SKIPPED],
            visits_missed=statuses[VisitStatus.MISSED],
        )


# ------------------------------------------------------------------------- evolve


@singledispatch
def _apply(event: Event, state: JourneyState) -> None:
    raise TypeError(f"no rule to fold {type(event).__name__}")


@_apply.register
def _(event: MeetingRequested, state: JourneyState) -> None:
    state.meetings[event.meeting_id] = MeetingState(
        meeting_id=event.meeting_id,
        counterpart=event.counterpart,
        requested_on=local_date(event.occurred_at, state.tz),
    )


@_apply.register
def _(event: MeetingArranged, state: JourneyState) -> None:
    meeting = state.meetings[event.meeting_id]
    meeting.partner_id = event.partner_id
    meeting.arranged_on = local_date(event.occurred_at, state.tz)
    meeting.scheduled_at = event.scheduled_at
    meeting.place = event.place
    meeting.overdue = False


@_apply.register
def _(event: MeetingHeld, state: JourneyState) -> None:
    meeting = state.meetings[event.meeting_id]
    meeting.outcome = event.outcome
    meeting.result_on = local_date(event.occurred_at, state.tz)
    meeting.notes = event.notes
    meeting.overdue = False


@_apply.register
def _(event: MeetingNotHeld, state: JourneyState) -> None:
    meeting = state.meetings[event.meeting_id]
    meeting.outcome = event.outcome
    meeting.result_on = local_date(event.occurred_at, state.tz)
    meeting.notes = event.notes
    meeting.overdue = False


@_apply.register
def _(event: MeetingResultOverdue, state: JourneyState) -> None:
    state.meetings[event.meeting_id].overdue = True


@_apply.register
def _(event: ContractSigned, state: JourneyState) -> None:
    state.contracts.append(
        ContractState(
            contract_id=event.contract_id,
            counterpart=event.counterpart,
            value=event.value,
            signed_on=local_date(event.occurred_at, state.tz),
            meeting_ids=list(event.meeting_ids),
        )
    )


@_apply.register
def _(event: ReturnVisitReminderSent, state: JourneyState) -> None:
    state.visits.setdefault(event.visit, VisitState(visit=event.visit, due_on=event.due_on))


@_apply.register
def _(event: ReturnVisitDue, state: JourneyState) -> None:
    visit = state.visits.setdefault(event.visit, VisitState(visit=event.visit, due_on=event.due_on))
    visit.fell_due = True
    if visit.status is VisitStatus.UPCOMING:
        visit.status = VisitStatus.DUE


def _record_visit(
    state: JourneyState, event: ReturnVisitAttended | ReturnVisitSkipped, status: VisitStatus
) -> None:
    visit = state.visits.setdefault(event.visit, VisitState(visit=event.visit, due_on=event.due_on))
    visit.status = status
    visit.recorded_on = local_date(event.occurred_at, state.tz)
    visit.mission_id = event.mission_id


@_apply.register
def _(event: ReturnVisitAttended, state: JourneyState) -> None:
    _record_visit(state, event, VisitStatus.ATTENDED)


@_apply.register
def _(event: ReturnVisitSkipped, state: JourneyState) -> None:
    _record_visit(state, event, VisitStatus.SKIPPED)


@_apply.register
def _(event: ReturnVisitMissed, state: JourneyState) -> None:
    state.visits[event.visit].status = VisitStatus.MISSED


@_apply.register
def _(event: EvaluationCompleted, state: JourneyState) -> None:
    state.evaluations[event.cycle] = EvaluationState(
        cycle=event.cycle, due_on=event.due_on, assessment=event.assessment
    )


@_apply.register
def _(event: EvaluationDecided, state: JourneyState) -> None:
    evaluation = state.evaluations[event.cycle]
    evaluation.decision = event.decision
    evaluation.decided_on = local_date(event.occurred_at, state.tz)
    if event.decision is Decision.RENEW:
        state.cycle = event.cycle + 1
    else:
        state.closed_on = evaluation.decided_on


@_apply.register
def _(event: FirmWithdrew, state: JourneyState) -> None:
    state.withdrawn_on = local_date(event.occurred_at, state.tz)


def evolve(state: JourneyState | None, event: Event) -> JourneyState:
    """Fold one event into the journey's state.

    Args:
        state: The state before the event; None before the stream's first event.
        event: The event to fold.

    Returns:
        A new state; ``state`` itself is left unchanged.

    Raises:
        ValueError: If the first event is not ``FirmEnrolled`` or a later one is.
    """
    if state is None:
        if not isinstance(event, FirmEnrolled):
            raise ValueError(f"a journey starts with FirmEnrolled, not {type(event).__name__}")
        new = JourneyState(
            programme=event.programme,
            firm=event.firm,
            mission_id=event.mission_id,
            introduced_on=event.introduced_on,
            wants_to_meet=list(event.wants_to_meet),
        )
    elif isinstance(event, FirmEnrolled):
        raise ValueError("FirmEnrolled can only start a journey")
    else:
        new = state.model_copy(deep=True)
        _apply(event, new)
    new.stream_version += 1
    new.last_event_type = type(event).__name__
    new.last_event_summary = event.summary()
    new.last_event_at = event.occurred_at
    return new


def fold(events: list[Event]) -> JourneyState:
    """Fold a whole stream of events into a state.

    Raises:
        ValueError: If the stream is empty or does not start with ``FirmEnrolled``.
    """
    state: JourneyState | None = None
    for event in events:
        state = evolve(state, event)
    if state is None:
        raise ValueError("an empty stream has no journey")
    return state


# ------------------------------------------------------------------------- decide


def decide(state: JourneyState | None, command: Command, now: datetime) -> list[Event]:
    """Apply the journey's rules to a command.

    Args:
        state: The journey's state; None for a firm not enrolled yet.
        command: The command to decide.
        now: The business instant (aware) at which the command is decided; the
            journey's own deadlines up to ``now`` must already be folded into ``state``
            (see ``due_events``).

    Returns:
        The events the command causes (never empty).

    Raises:
        DomainError: The command breaks a rule; nothing is changed.
    """
    if isinstance(command, EnrollFirm):
        return [_enroll(state, command, now)]
    if state is None:
        raise UnknownReference("the firm is not enrolled in this programme")
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
    if day < state.cycle_started_on:
        raise DateOutOfRange(
            f"date {day} falls in a closed cycle: cycle {state.cycle} began on "
            f"{state.cycle_started_on}"
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
    return ContractSigned(
        **_when(state, day, now),
        contract_id=f"c{len(state.contracts) + 1}",
        counterpart=command.counterpart,
        value=command.value,
        meeting_ids=list(command.meeting_ids),
        notes=command.notes,
    )


def _visit_window(state: JourneyState, visit: int) -> tuple[date, date]:
    """Dates during which attendance of ``visit`` may be recorded.

    From its reminder until the next visit falls due (exclusive).
    """
    opens = state.visit_due_on(visit) - timedelta(
        days=state.programme.policy.visit_reminder_days_before
    )
    return opens, state.visit_due_on(visit + 1)


def _record_visit_attendance(
    state: JourneyState, command: RecordVisitAttendance, day: date, now: datetime
) -> ReturnVisitAttended | ReturnVisitSkipped:
    if command.mission_id is not None:
        state.programme.mission(command.mission_id)
    visit = 1
    while True:
        opens, closes = _visit_window(state, visit)
        if day < opens:
            raise VisitRuleBroken(
                f"no return visit is open on {day}: visit {visit} falls due on "
                f"{state.visit_due_on(visit)} and opens for attendance on {opens}"
            )
        if day < closes:
            known = state.visits.get(visit)
            if known is None or known.status not in (VisitStatus.ATTENDED, VisitStatus.SKIPPED):
                break
            next_opens, _ = _visit_window(state, visit + 1)
            if day < next_opens:
                raise VisitRuleBroken(
                    f"return visit {visit} (due {known.due_on}) was already recorded as "
                    f"{known.status.value} on {known.recorded_on}"
                )
        visit += 1
    if command.mission_id is not None:
        mission = state.programme.mission(command.mission_id)
        opens, closes = _visit_window(state, visit)
        if mission.ends_on < opens or mission.starts_on >= closes:
            raise VisitRuleBroken(
                f"mission {mission.id} ({mission.starts_on} to {mission.ends_on}) is not the "
                f"mission of return visit {visit}, open from {opens} to "
                f"{closes - timedelta(days=1)}"
            )
    fields = {
        **_when(state, day, now),
        "visit": visit,
        "due_on": state.visit_due_on(visit),
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


# ---------------------------------------------------------------------- deadlines


class DeadlineKind(StrEnum):
    """What falls due at a deadline. The order breaks ties between equal instants."""

    RETURN_VISIT_DUE = "return_visit_due"
    VISIT_REMINDER = "visit_reminder"
    RESULT_OVERDUE = "result_overdue"
    EVALUATION_DUE = "evaluation_due"


_TIE_ORDER = list(DeadlineKind)


class Deadline(BaseModel):
    """The next thing the journey's own timers will record.

    Attributes:
        at: Business instant (aware) when it falls due.
        kind: What falls due.
        subject: Visit number, meeting id or cycle it concerns.
        description: In the domain's words, e.g. "return visit 2 due 2014-09-17".
    """

    model_config = ConfigDict(frozen=True)

    at: AwareDatetime
    kind: DeadlineKind
    subject: str
    description: str


def evaluation_due_on(state: JourneyState) -> date:
    """Due date of the current cycle's evaluation (N months after the cycle began)."""
    return add_months(
        state.introduced_on, state.programme.policy.evaluation_after_months * state.cycle
    )


def next_deadline(state: JourneyState) -> Deadline | None:
    """Return the journey's earliest pending deadline, or None once it is over."""
    if state.is_over:
        return None
    policy = state.programme.policy
    candidates: list[Deadline] = []
    visit = max(state.visits, default=0)
    if visit == 0 or state.visits[visit].fell_due:
        visit += 1
    due_on = state.visit_due_on(visit)
    if visit in state.visits or policy.visit_reminder_days_before == 0:
        candidates.append(
            Deadline(
                at=start_of_day(due_on, state.tz),
                kind=DeadlineKind.RETURN_VISIT_DUE,
                subject=str(visit),
                description=f"return visit {visit} due {due_on}",
            )
        )
    else:
        remind_on = due_on - timedelta(days=policy.visit_reminder_days_before)
        candidates.append(
            Deadline(
                at=start_of_day(remind_on, state.tz),
                kind=DeadlineKind.VISIT_REMINDER,
                subject=str(visit),
                description=f"reminder of return visit {visit} (due {due_on}) on {remind_on}",
            )
        )
    for meeting in state.meetings.values():
        if meeting.scheduled_at is not None and meeting.outcome is None and not meeting.overdue:
            # N calendar days later on the programme's wall clock, whatever the offset
            # the meeting's time was given with.
            local = meeting.scheduled_at.astimezone(zone(state.tz))
            at = local + timedelta(days=policy.result_overdue_after_days)
            candidates.append(
                Deadline(
                    at=at,
                    kind=DeadlineKind.RESULT_OVERDUE,
                    subject=meeting.meeting_id,
                    description=(
                        f"result of meeting {meeting.meeting_id} overdue "
                        f"{local_date(at, state.tz)}"
                    ),
                )
            )
    if state.cycle not in state.evaluations:
        due = evaluation_due_on(state)
        candidates.append(
            Deadline(
                at=start_of_day(due, state.tz),
                kind=DeadlineKind.EVALUATION_DUE,
                subject=str(state.cycle),
                description=f"evaluation of cycle {state.cycle} due {due}",
            )
        )
    return min(candidates, key=lambda d: (d.at, _TIE_ORDER.index(d.kind), d.subject))


def _fire(state: JourneyState, deadline: Deadline, now: datetime) -> list[Event]:
    """The events recorded when ``deadline`` falls due."""
    when: dict[str, datetime] = {"occurred_at": deadline.at, "recorded_at": now}
    match deadline.kind:
        case DeadlineKind.VISIT_REMINDER:
            visit = int(deadline.subject)
            return [ReturnVisitReminderSent(**when, visit=visit, due_on=state.visit_due_on(visit))]
        case DeadlineKind.RETURN_VISIT_DUE:
            visit = int(deadline.subject)
            events: list[Event] = []
            previous = state.visits.get(visit - 1)
            if previous is not None and previous.status is VisitStatus.DUE:
                events.append(
                    ReturnVisitMissed(**when, visit=previous.visit, due_on=previous.due_on)
                )
            events.append(ReturnVisitDue(**when, visit=visit, due_on=state.visit_due_on(visit)))
            return events
        case DeadlineKind.RESULT_OVERDUE:
            meeting = state.meetings[deadline.subject]
            assert meeting.scheduled_at is not None
            return [
                MeetingResultOverdue(
                    **when, meeting_id=meeting.meeting_id, scheduled_at=meeting.scheduled_at
                )
            ]
        case DeadlineKind.EVALUATION_DUE:
            return [
                EvaluationCompleted(
                    **when,
                    cycle=state.cycle,
                    due_on=local_date(deadline.at, state.tz),
                    assessment=state.assessment(),
                )
            ]
    raise AssertionError(deadline.kind)


def due_events(state: JourneyState, now: datetime) -> tuple[JourneyState, list[Event]]:
    """Fire, in order, every deadline of the journey that falls due up to ``now``.

    A firm enrolled after the fact catches up at once: every past deadline fires, in
    calendar order, each seeing the state the earlier ones left.

    Args:
        state: The journey's state.
        now: The business instant (aware) up to which deadlines fall due.

    Returns:
        The state with the events folded in, and the events.
    """
    events: list[Event] = []
    while (deadline := next_deadline(state)) is not None and deadline.at <= now:
        for event in _fire(state, deadline, now):
            state = evolve(state, event)
            events.append(event)
    return state, events

