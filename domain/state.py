"""The journey's state: the fold of its events.

``evolve(state, event)`` folds one event, ``fold(events)`` a whole stream. States are
immutable values: ``evolve`` returns a new state that shares every part the event did
not change with the state before it (copy on write), and never changes its input. The
rules that decide events are in ``domain.journey``; the journey's calendar (when visits,
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
    AdviserAssigned,
    Assessment,
    ContractCorrected,
    ContractSigned,
    ContractVoided,
    EvaluationCompleted,
    EvaluationDecided,
    Event,
    FirmEnrolled,
    FirmErased,
    FirmWithdrew,
    MeetingArranged,
    MeetingHeld,
    MeetingNotHeld,
    MeetingRequested,
    MeetingResultCorrected,
    MeetingResultOverdue,
    MessageFailed,
    MessageSent,
    MessageSkipped,
    NextStepCompleted,
    NextStepOverdue,
    NextStepScheduled,
    ReturnVisitAttended,
    ReturnVisitDue,
    ReturnVisitMissed,
    ReturnVisitReminderDue,
    ReturnVisitSkipped,
    VisitAttendanceCorrected,
)
from domain.money import RecordedMoney
from domain.programme import ERASED, Firm, Programme


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
    """A meeting as the journey knows it (immutable; ``evolve`` replaces it)."""

    model_config = ConfigDict(frozen=True)

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
    """A signed contract (immutable), as corrected since.

    Attributes:
        voided_on: The business date it was voided (it then counts nowhere), or None.
    """

    model_config = ConfigDict(frozen=True)

    contract_id: str
    counterpart: str
    value: RecordedMoney
    signed_on: date
    meeting_ids: list[str] = Field(default_factory=list)
    voided_on: date | None = None


class VisitState(BaseModel):
    """One return visit (number 1 is six months after the introduction); immutable.

    Attributes:
        fell_due: True once its due date has passed (it may be recorded earlier,
            from its reminder on).
    """

    model_config = ConfigDict(frozen=True)

    visit: int
    due_on: date
    status: VisitStatus = VisitStatus.UPCOMING
    fell_due: bool = False
    recorded_on: date | None = None
    mission_id: str | None = None


class NextStepState(BaseModel):
    """A meeting result's next step with a due date (immutable).

    Attributes:
        meeting_id: The meeting whose result agreed it.
        next_step: What was agreed.
        due_on: When it is due (local to the programme).
        done_on: When staff marked it done, or None.
        overdue: True once it was recorded overdue (the day after ``due_on``).
    """

    model_config = ConfigDict(frozen=True)

    meeting_id: str
    next_step: str
    due_on: date
    done_on: date | None = None
    overdue: bool = False

    @property
    def pending(self) -> bool:
        """Not marked done yet."""
        return self.done_on is None

    @property
    def status(self) -> str:
        """``done YYYY-MM-DD``, ``overdue`` or ``pending``, as status lines show it."""
        if self.done_on is not None:
            return f"done {self.done_on}"
        return "overdue" if self.overdue else "pending"


class EvaluationState(BaseModel):
    """The evaluation of one cycle (immutable)."""

    model_config = ConfigDict(frozen=True)

    cycle: int
    due_on: date
    assessment: Assessment
    decision: Decision | None = None
    decided_on: date | None = None


class JourneyState(BaseModel):
    """The fold of a journey's events; an immutable value.

    Its containers (``meetings``, ``contracts``, ``visits``, ``evaluations``) may be
    shared with the states before and after it: never change them in place.

    Attributes:
        stream_version: Number of events folded so far.
        cycle: Current cycle, 1 for the first two years.
        visits: Return visits by number, once reminded or due.
        evaluations: Evaluations by cycle, once completed.
        next_steps: Next steps with a due date, by meeting id.
        assigned_adviser: The adviser the firm was reassigned to, if it was.
        messages_sent: Messages that went out for this journey.
        messages_skipped: Messages not sent because their occasion had passed
            (``MessageSkipped``: a journey enrolled after the fact, a long outage).
        messages_failed: Messages that can never be sent (``MessageFailed``).
        last_message_failure: Why the latest failed message failed, in plain words.
        erased_on: The day the firm's personal data was erased (``FirmErased``): the
            journey has ended, its stage and figures stay as they were.
    """

    model_config = ConfigDict(frozen=True)

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
    next_steps: dict[str, NextStepState] = Field(default_factory=dict)
    assigned_adviser: str | None = None
    messages_sent: int = 0
    messages_skipped: int = 0
    messages_failed: int = 0
    last_message_failure: str | None = None
    erased_on: date | None = None
    last_event_type: str | None = None
    last_event_summary: str | None = None
    last_event_at: AwareDatetime | None = None

    @property
    def tz(self) -> str:
        """The programme's time zone."""
        return self.programme.timezone

    @property
    def adviser_id(self) -> str | None:
        """The staff id of the firm's adviser, None when the programme names nobody.

        The adviser it was reassigned to, else the roster's, else the programme's default.
        """
        return self.assigned_adviser or self.firm.adviser or self.programme.default_adviser

    @property
    def firm_label(self) -> str:
        """The firm's name for reports: marked ``[erased]`` once its data was erased."""
        return f"{self.firm.name} {ERASED}" if self.erased_on else self.firm.name

    @property
    def is_over(self) -> bool:
        """True once the firm withdrew or the journey was closed."""
        return self.withdrawn_on is not None or self.closed_on is not None

    @property
    def contracts_in_force(self) -> list[ContractState]:
        """The contracts not voided: those every count and figure is made of."""
        return [c for c in self.contracts if c.voided_on is None]

    def contract(self, contract_id: str) -> ContractState | None:
        """The contract with this id (voided or not), or None."""
        return next((c for c in self.contracts if c.contract_id == contract_id), None)

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
        if self.contracts_in_force:
            return Stage.CONTRACTED
        if self.meetings:
            return Stage.MEETINGS
        return Stage.INTRODUCED

    def assessment(self) -> Assessment:
        """Compute the firm's assessment from everything recorded so far."""
        outcomes = Counter(m.outcome.value for m in self.meetings.values() if m.outcome)
        contracts = self.contracts_in_force
        values: dict[str, Decimal] = {}
        for contract in contracts:
            currency = contract.value.currency
            values[currency] = values.get(currency, Decimal(0)) + contract.value.amount
        first = min((c.signed_on for c in contracts), default=None)
        statuses = Counter(v.status for v in self.visits.values())
        return Assessment(
            meetings_requested=len(self.meetings),
            meetings_held=sum(1 for m in self.meetings.values() if m.outcome and m.outcome.held),
            outcomes=dict(sorted(outcomes.items())),
            contracts=len(contracts),
            value_by_currency=dict(sorted(values.items())),
            days_to_first_contract=(first - self.introduced_on).days if first else None,
            visits_attended=statuses[VisitStatus.ATTENDED],
            visits_skipped=statuses[VisitStatus.SKIPPED],
            visits_missed=statuses[VisitStatus.MISSED],
        )


# ------------------------------------------------------------------------- evolve
#
# Each rule returns the fields of the state that the event changes. A changed
# container is a new container (the old one stays as the older states see it); a
# changed item is a copy made with ``model_copy(update=...)``.

Changes = dict[str, object]


def _meeting_changed(state: JourneyState, meeting_id: str, **fields: object) -> Changes:
    meeting = state.meetings[meeting_id].model_copy(update=fields)
    return {"meetings": {**state.meetings, meeting_id: meeting}}


def _visit_changed(
    state: JourneyState,
    event: ReturnVisitDue | ReturnVisitAttended | ReturnVisitSkipped,
    **fields: object,
) -> Changes:
    """The visit of ``event`` (created if it was not known yet) with ``fields`` changed."""
    known = state.visits.get(event.visit) or VisitState(visit=event.visit, due_on=event.due_on)
    return {"visits": {**state.visits, event.visit: known.model_copy(update=fields)}}


@singledispatch
def _apply(event: Event, state: JourneyState) -> Changes:
    raise TypeError(f"no rule to fold {type(event).__name__}")


@_apply.register
def _(event: MeetingRequested, state: JourneyState) -> Changes:
    meeting = MeetingState(
        meeting_id=event.meeting_id,
        counterpart=event.counterpart,
        requested_on=local_date(event.occurred_at, state.tz),
    )
    return {"meetings": {**state.meetings, event.meeting_id: meeting}}


@_apply.register
def _(event: MeetingArranged, state: JourneyState) -> Changes:
    return _meeting_changed(
        state,
        event.meeting_id,
        partner_id=event.partner_id,
        arranged_on=local_date(event.occurred_at, state.tz),
        scheduled_at=event.scheduled_at,
        place=event.place,
        overdue=False,
    )


@_apply.register(MeetingHeld)
@_apply.register(MeetingNotHeld)
def _(event: MeetingHeld | MeetingNotHeld, state: JourneyState) -> Changes:
    return _meeting_changed(
        state,
        event.meeting_id,
        outcome=event.outcome,
        result_on=local_date(event.occurred_at, state.tz),
        notes=event.notes,
        overdue=False,
    )


@_apply.register
def _(event: MeetingResultOverdue, state: JourneyState) -> Changes:
    return _meeting_changed(state, event.meeting_id, overdue=True)


@_apply.register
def _(event: ContractSigned, state: JourneyState) -> Changes:
    contract = ContractState(
        contract_id=event.contract_id,
        counterpart=event.counterpart,
        value=event.value,
        signed_on=local_date(event.occurred_at, state.tz),
        meeting_ids=list(event.meeting_ids),
    )
    return {"contracts": [*state.contracts, contract]}


@_apply.register
def _(event: ReturnVisitReminderDue, state: JourneyState) -> Changes:
    if event.visit in state.visits:
        return {}
    visit = VisitState(visit=event.visit, due_on=event.due_on)
    return {"visits": {**state.visits, event.visit: visit}}


@_apply.register
def _(event: ReturnVisitDue, state: JourneyState) -> Changes:
    known = state.visits.get(event.visit)
    status = VisitStatus.DUE if known is None else known.status
    if status is VisitStatus.UPCOMING:
        status = VisitStatus.DUE
    return _visit_changed(state, event, fell_due=True, status=status)


@_apply.register
def _(event: ReturnVisitAttended, state: JourneyState) -> Changes:
    return _visit_changed(
        state,
        event,
        status=VisitStatus.ATTENDED,
        recorded_on=local_date(event.occurred_at, state.tz),
        mission_id=event.mission_id,
    )


@_apply.register
def _(event: ReturnVisitSkipped, state: JourneyState) -> Changes:
    return _visit_changed(
        state,
        event,
        status=VisitStatus.SKIPPED,
        recorded_on=local_date(event.occurred_at, state.tz),
        mission_id=event.mission_id,
    )


@_apply.register
def _(event: ReturnVisitMissed, state: JourneyState) -> Changes:
    missed = state.visits[event.visit].model_copy(update={"status": VisitStatus.MISSED})
    return {"visits": {**state.visits, event.visit: missed}}


@_apply.register
def _(event: EvaluationCompleted, state: JourneyState) -> Changes:
    evaluation = EvaluationState(
        cycle=event.cycle, due_on=event.due_on, assessment=event.assessment
    )
    return {"evaluations": {**state.evaluations, event.cycle: evaluation}}


@_apply.register
def _(event: EvaluationDecided, state: JourneyState) -> Changes:
    decided_on = local_date(event.occurred_at, state.tz)
    evaluation = state.evaluations[event.cycle].model_copy(
        update={"decision": event.decision, "decided_on": decided_on}
    )
    changes: Changes = {"evaluations": {**state.evaluations, event.cycle: evaluation}}
    if event.decision is Decision.RENEW:
        changes["cycle"] = event.cycle + 1
    else:
        changes["closed_on"] = decided_on
    return changes


@_apply.register
def _(event: FirmWithdrew, state: JourneyState) -> Changes:
    return {"withdrawn_on": local_date(event.occurred_at, state.tz)}


def _next_step_changed(state: JourneyState, meeting_id: str, **fields: object) -> Changes:
    step = state.next_steps[meeting_id].model_copy(update=fields)
    return {"next_steps": {**state.next_steps, meeting_id: step}}


@_apply.register
def _(event: NextStepScheduled, state: JourneyState) -> Changes:
    step = NextStepState(
        meeting_id=event.meeting_id, next_step=event.next_step, due_on=event.due_on
    )
    return {"next_steps": {**state.next_steps, event.meeting_id: step}}


@_apply.register
def _(event: NextStepCompleted, state: JourneyState) -> Changes:
    return _next_step_changed(
        state, event.meeting_id, done_on=local_date(event.occurred_at, state.tz)
    )


@_apply.register
def _(event: NextStepOverdue, state: JourneyState) -> Changes:
    return _next_step_changed(state, event.meeting_id, overdue=True)


@_apply.register
def _(event: AdviserAssigned, state: JourneyState) -> Changes:
    return {"assigned_adviser": event.adviser_id}


@_apply.register
def _(event: MessageSent, state: JourneyState) -> Changes:
    return {"messages_sent": state.messages_sent + 1}


@_apply.register
def _(event: MessageSkipped, state: JourneyState) -> Changes:
    return {"messages_skipped": state.messages_skipped + 1}


@_apply.register
def _(event: MessageFailed, state: JourneyState) -> Changes:
    return {"messages_failed": state.messages_failed + 1, "last_message_failure": event.reason}


@_apply.register
def _(event: FirmErased, state: JourneyState) -> Changes:
    # What the state held of people goes; the figures stay.
    firm = state.firm.model_copy(update={"contact_name": None, "contact_email": None})
    meetings = {
        key: meeting.model_copy(update={"notes": ""}) if meeting.notes else meeting
        for key, meeting in state.meetings.items()
    }
    next_steps = {
        key: step.model_copy(update={"next_step": ERASED})
        for key, step in state.next_steps.items()
    }
    erased_on = local_date(event.occurred_at, state.tz)
    return {"firm": firm, "meetings": meetings, "next_steps": next_steps, "erased_on": erased_on}


# Corrections: the state shows the latest values; the corrected events stay in the stream.


def _contract_changed(state: JourneyState, contract_id: str, **fields: object) -> Changes:
    contracts = [
        c.model_copy(update=fields) if c.contract_id == contract_id else c for c in state.contracts
    ]
    return {"contracts": contracts}


@_apply.register
def _(event: ContractCorrected, state: JourneyState) -> Changes:
    fields: dict[str, object] = {}
    if event.value_after is not None:
        fields["value"] = event.value_after
    if event.counterpart_after is not None:
        fields["counterpart"] = event.counterpart_after
    if event.signed_on_after is not None:
        fields["signed_on"] = event.signed_on_after
    if event.meeting_ids_after is not None:
        fields["meeting_ids"] = list(event.meeting_ids_after)
    return _contract_changed(state, event.contract_id, **fields)


@_apply.register
def _(event: ContractVoided, state: JourneyState) -> Changes:
    return _contract_changed(
        state, event.contract_id, voided_on=local_date(event.occurred_at, state.tz)
    )


@_apply.register
def _(event: MeetingResultCorrected, state: JourneyState) -> Changes:
    return _meeting_changed(state, event.meeting_id, outcome=event.outcome_after)


@_apply.register
def _(event: VisitAttendanceCorrected, state: JourneyState) -> Changes:
    status = VisitStatus.ATTENDED if event.attended_after else VisitStatus.SKIPPED
    visit = state.visits[event.visit].model_copy(update={"status": status})
    return {"visits": {**state.visits, event.visit: visit}}


def evolve(state: JourneyState | None, event: Event) -> JourneyState:
    """Fold one event into the journey's state.

    Copy on write: the new state shares with ``state`` every meeting, contract, visit
    and evaluation the event leaves alone; ``state`` itself is never changed.

    Args:
        state: The state before the event; None before the stream's first event.
        event: The event to fold.

    Returns:
        A new state.

    Raises:
        ValueError: If the first event is not ``FirmEnrolled`` or a later one is.
    """
    if state is None:
        if not isinstance(event, FirmEnrolled):
            raise ValueError(f"a journey starts with FirmEnrolled, not {type(event).__name__}")
        state = JourneyState(
            programme=event.programme,
            firm=event.firm,
            mission_id=event.mission_id,
            introduced_on=event.introduced_on,
            wants_to_meet=list(event.wants_to_meet),
        )
        changes: Changes = {}
    elif isinstance(event, FirmEnrolled):
        raise ValueError("FirmEnrolled can only start a journey")
    else:
        changes = _apply(event, state)
    return state.model_copy(
        update={
            **changes,
            "stream_version": state.stream_version + 1,
            "last_event_type": type(event).__name__,
            "last_event_summary": event.summary(),
            "last_event_at": event.occurred_at,
        }
    )


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
