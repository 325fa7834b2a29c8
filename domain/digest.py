"""The adviser's daily digest: what is overdue, due today and due in the next 7 days.

Computed from a journey's state on an office day (``digest_items(state, day)``); the
digest of an adviser gathers the items of every firm they follow. Each item carries the
command that records it, so the digest is a to-do list staff can act on (issue 9).
"""

from __future__ import annotations

from datetime import date, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from domain.calendar import local_date
from domain.deadlines import evaluation_due_on, result_overdue_at, visit_due_on
from domain.state import JourneyState, VisitStatus

DIGEST_DAYS_AHEAD = 7
"""How far ahead the digest looks: items due in the next seven days."""


class Bucket(StrEnum):
    """Where an item stands on the digest's day."""

    OVERDUE = "overdue"
    TODAY = "today"
    SOON = "soon"


class DigestItem(BaseModel):
    """One thing an adviser has to do for a firm.

    Attributes:
        firm_id: The firm.
        firm_name: Its display name.
        bucket: Overdue, due today, or due in the next seven days.
        due_on: When it is (or was) due, local to the programme.
        what: In the domain's words, e.g. "result of meeting mt-1 (Apple)".
        command: The command that records it.
    """

    model_config = ConfigDict(frozen=True)

    firm_id: str
    firm_name: str
    bucket: Bucket
    due_on: date
    what: str
    command: str


def _bucket(due_on: date, day: date) -> Bucket | None:
    if due_on < day:
        return Bucket.OVERDUE
    if due_on == day:
        return Bucket.TODAY
    if due_on <= day + timedelta(days=DIGEST_DAYS_AHEAD):
        return Bucket.SOON
    return None


def digest_items(state: JourneyState, day: date) -> list[DigestItem]:
    """What the firm's adviser has to do on ``day``, ordered by due date.

    Overdue: a meeting result recorded overdue, a next step recorded overdue, a return
    visit fallen due with nothing recorded, an evaluation awaiting its decision. Due
    today or in the next 7 days: a meeting's result (due by the day it would fall
    overdue), a next step, a return visit, the evaluation.

    Args:
        state: The journey's state as it stood on ``day`` (its deadlines folded).
        day: The office's day of the digest.

    Returns:
        The items; none for a journey that is over.
    """
    if state.is_over:
        return []
    firm = state.firm.id
    items: list[tuple[date, str, str]] = []
    for meeting in state.meetings.values():
        if meeting.scheduled_at is None or meeting.outcome is not None:
            continue
        # Its result is due by the day it falls overdue (the policy's days after it).
        due_on = local_date(result_overdue_at(state, meeting.scheduled_at), state.tz)
        held_on = local_date(meeting.scheduled_at, state.tz)
        items.append(
            (
                min(due_on, day - timedelta(days=1)) if meeting.overdue else due_on,
                f"result of meeting {meeting.meeting_id} ({meeting.counterpart}, {held_on})",
                f"corridor meeting result {firm} {meeting.meeting_id} "
                "promising|neutral|not_interested|no_show|cancelled",
            )
        )
    for step in state.next_steps.values():
        if step.pending and (step.overdue or step.due_on >= day):
            items.append(
                (
                    step.due_on,
                    f"next step of meeting {step.meeting_id}: {step.next_step}",
                    f"corridor next-step done {firm} {step.meeting_id}",
                )
            )
    for visit in state.visits.values():
        if visit.status is VisitStatus.DUE:
            items.append(
                (
                    visit.due_on,
                    f"return visit {visit.visit}: attendance not recorded",
                    f"corridor visit {firm} attended|skipped",
                )
            )
    last = max(state.visits, default=0)
    upcoming = last if last and not state.visits[last].fell_due else last + 1
    upcoming_on = visit_due_on(state, upcoming)
    recorded = (VisitStatus.ATTENDED, VisitStatus.SKIPPED)
    known = state.visits.get(upcoming)
    if upcoming_on >= day and (known is None or known.status not in recorded):
        items.append(
            (
                upcoming_on,
                f"return visit {upcoming}",
                f"corridor visit {firm} attended|skipped",
            )
        )
    awaiting = state.awaiting_decision
    if awaiting is not None:
        items.append(
            (
                awaiting.due_on,
                f"evaluation of cycle {awaiting.cycle}: decision awaited",
                f"corridor evaluate {firm} renew|close",
            )
        )
    elif state.cycle not in state.evaluations and evaluation_due_on(state) >= day:
        items.append(
            (
                evaluation_due_on(state),
                f"evaluation of cycle {state.cycle}",
                f"corridor evaluate {firm} renew|close",
            )
        )
    found = []
    for due_on, what, command in items:
        bucket = _bucket(due_on, day)
        if bucket is not None:
            found.append(
                DigestItem(
                    firm_id=firm,
                    firm_name=state.firm.name,
                    bucket=bucket,
                    due_on=due_on,
                    what=what,
                    command=command,
                )
            )
    return sorted(found, key=lambda i: (i.due_on, i.firm_id, i.what))
