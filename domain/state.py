"""The journey's state: the fold of its events.

``evolve(state, event)`` folds one event, ``fold(events)`` a whole stream. The rules
that decide events are in ``domain.journey``; the journey's calendar (when visits,
reminders, overdue results and evaluations fall due) in ``domain.deadlines``.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from decimal import Decimal
from enum import StrEnum
from functools import singledispatch

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from domain.calendar import local_date
from domain.commands import Decision, Outcome
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
