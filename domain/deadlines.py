"""The journey's calendar: when its visits, reminders, results and evaluations fall due.

Every date here is computed from the introduction and the programme's policy, in the
programme's calendar (``domain.calendar``): return visit N falls due N x 6 months after
the introduction, its reminder 30 days before, a meeting's result is overdue 7 days
after it, a next step not marked done the day after its due date, a cycle's evaluation
24 months after the cycle began (BRIEF, "Time"; the figures are the default policy).

``next_deadline(state)`` is the journey's earliest pending deadline; ``due_events(state,
now)`` fires, in order, every deadline up to ``now`` and folds the events it records.
``domain.journey.decide`` decides on a state with these events folded in, and checks it
(``require_deadlines_folded``).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict

from domain.calendar import add_months, local_date, start_of_day, zone
from domain.events import (
    EvaluationCompleted,
    Event,
    MeetingResultOverdue,
    NextStepOverdue,
    ReturnVisitDue,
    ReturnVisitMissed,
    ReturnVisitReminderDue,
)
from domain.state import JourneyState, VisitStatus, evolve

# ---------------------------------------------------------------------- the calendar


def visit_due_on(state: JourneyState, visit: int) -> date:
    """Due date of return visit number ``visit`` (every N months after introduction)."""
    return add_months(state.introduced_on, state.programme.policy.return_visit_every_months * visit)


def visit_reminder_on(state: JourneyState, visit: int) -> date:
    """Date the firm is reminded of return visit ``visit`` (N days before it is due)."""
    days = state.programme.policy.visit_reminder_days_before
    return visit_due_on(state, visit) - timedelta(days=days)


def visit_window(state: JourneyState, visit: int) -> tuple[date, date]:
    """Dates during which attendance of ``visit`` may be recorded.

    From its reminder until the next visit falls due (exclusive).
    """
    return visit_reminder_on(state, visit), visit_due_on(state, visit + 1)


def result_overdue_at(state: JourneyState, scheduled_at: datetime) -> datetime:
    """Instant (aware) at which the result of a meeting held at ``scheduled_at`` is overdue.

    N calendar days later on the programme's wall clock, whatever the offset the
    meeting's time was given with.
    """
    local = scheduled_at.astimezone(zone(state.tz))
    return local + timedelta(days=state.programme.policy.result_overdue_after_days)


def next_step_overdue_on(due_on: date) -> date:
    """The day a next step due on ``due_on`` and not done is recorded overdue: the next."""
    return due_on + timedelta(days=1)


def cycle_started_on(state: JourneyState) -> date:
    """First day of the current cycle (cycles are anchored on the introduction)."""
    months = state.programme.policy.evaluation_after_months * (state.cycle - 1)
    return add_months(state.introduced_on, months)


def evaluation_due_on(state: JourneyState) -> date:
    """Due date of the current cycle's evaluation (N months after the cycle began)."""
    return add_months(
        state.introduced_on, state.programme.policy.evaluation_after_months * state.cycle
    )


# ---------------------------------------------------------------------- deadlines


class DeadlinesNotFolded(AssertionError):
    """A programming error: a command was decided on a state that lags behind ``now``.

    Not a ``DomainError``: no command is at fault, the caller forgot to fold
    ``due_events(state, now)`` first. In a workflow it fails the workflow task (retried
    once the code is fixed) instead of refusing the command.
    """


class DeadlineKind(StrEnum):
    """What falls due at a deadline. The order breaks ties between equal instants."""

    RETURN_VISIT_DUE = "return_visit_due"
    VISIT_REMINDER = "visit_reminder"
    RESULT_OVERDUE = "result_overdue"
    EVALUATION_DUE = "evaluation_due"
    NEXT_STEP_OVERDUE = "next_step_overdue"


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


def next_deadline(state: JourneyState) -> Deadline | None:
    """Return the journey's earliest pending deadline, or None once it is over.

    A state never changes, so the next deadline of the latest states is remembered
    (the workflow asks for it several times per command).
    """
    cached = _DEADLINES.get(id(state))
    if cached is not None and cached[0] is state:
        return cached[1]
    found = _next_deadline(state)
    if len(_DEADLINES) >= _DEADLINES_KEPT:
        _DEADLINES.clear()
    _DEADLINES[id(state)] = (state, found)
    return found


_DEADLINES: dict[int, tuple[JourneyState, Deadline | None]] = {}
"""Next deadline of recent states, by the state's id (the state is kept: its id stays its own)."""
_DEADLINES_KEPT = 256


def _next_deadline(state: JourneyState) -> Deadline | None:
    if state.is_over or state.erased_on is not None:
        return None
    policy = state.programme.policy
    candidates: list[Deadline] = []
    visit = max(state.visits, default=0)
    if visit == 0 or state.visits[visit].fell_due:
        visit += 1
    due_on = visit_due_on(state, visit)
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
        remind_on = visit_reminder_on(state, visit)
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
            at = result_overdue_at(state, meeting.scheduled_at)
            candidates.append(
                Deadline(
                    at=at,
                    kind=DeadlineKind.RESULT_OVERDUE,
                    subject=meeting.meeting_id,
                    description=(
                        f"result of meeting {meeting.meeting_id} overdue {local_date(at, state.tz)}"
                    ),
                )
            )
    for step in state.next_steps.values():
        if step.pending and not step.overdue:
            late_on = next_step_overdue_on(step.due_on)
            candidates.append(
                Deadline(
                    at=start_of_day(late_on, state.tz),
                    kind=DeadlineKind.NEXT_STEP_OVERDUE,
                    subject=step.meeting_id,
                    description=(
                        f"next step of meeting {step.meeting_id} (due {step.due_on}) "
                        f"overdue {late_on}"
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
            return [ReturnVisitReminderDue(**when, visit=visit, due_on=visit_due_on(state, visit))]
        case DeadlineKind.RETURN_VISIT_DUE:
            visit = int(deadline.subject)
            events: list[Event] = []
            previous = state.visits.get(visit - 1)
            if previous is not None and previous.status is VisitStatus.DUE:
                events.append(
                    ReturnVisitMissed(**when, visit=previous.visit, due_on=previous.due_on)
                )
            events.append(ReturnVisitDue(**when, visit=visit, due_on=visit_due_on(state, visit)))
            return events
        case DeadlineKind.RESULT_OVERDUE:
            meeting = state.meetings[deadline.subject]
            assert meeting.scheduled_at is not None
            return [
                MeetingResultOverdue(
                    **when, meeting_id=meeting.meeting_id, scheduled_at=meeting.scheduled_at
                )
            ]
        case DeadlineKind.NEXT_STEP_OVERDUE:
            step = state.next_steps[deadline.subject]
            return [
                NextStepOverdue(
                    **when, meeting_id=step.meeting_id, next_step=step.next_step, due_on=step.due_on
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


def require_deadlines_folded(state: JourneyState, now: datetime) -> None:
    """Check that every deadline of the journey up to ``now`` is folded into ``state``.

    Args:
        state: The journey's state.
        now: The business instant (aware) at which a command is decided.

    Raises:
        DeadlinesNotFolded: A deadline falls due at or before ``now`` and is still
            pending (fold ``due_events(state, now)`` first).
    """
    deadline = next_deadline(state)
    if deadline is not None and deadline.at <= now:
        raise DeadlinesNotFolded(
            f"decided at {now.isoformat()} on a state at stream version "
            f"{state.stream_version} whose deadline '{deadline.description}' "
            f"({deadline.at.isoformat()}) has fallen due: fold due_events(state, now) first"
        )
