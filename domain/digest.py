"""The adviser's daily digest: what is overdue, due today and due in the next 7 days.

Computed from a journey's state on an office day (``digest_items(state, day)``); the
digest of an adviser gathers the items of every firm they follow. Each item carries the
command that records it, so the digest is a to-do list staff can act on (issue 9).

The firm's messages that can never be sent (the outbox's failed messages: a message
that could not be built, or that the SMTP server refused for good) are items too,
overdue, each with its reason in plain words (``failed_message_items``), in the first
digest after they failed.
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


class FailedMessage(BaseModel):
    """A message about a firm that can never be sent, as the outbox records it.

    Attributes:
        firm_id: The firm.
        kind: What it says (``domain.messages.MessageKind``'s value).
        recipient: ``contact`` or ``staff:<id>``.
        failed_on: Its business date, local to the programme.
        reason: Why it failed, in plain words (never an address).
    """

    model_config = ConfigDict(frozen=True)

    firm_id: str
    kind: str
    recipient: str
    failed_on: date
    reason: str


_MESSAGES = {
    "visit_reminder": "the return-visit reminder",
    "result_overdue": "the notice of a meeting result overdue",
    "next_step_overdue": "the notice of a next step overdue",
    "visit_missed": "the notice of a return visit missed",
    "evaluation_due": "the notice of the evaluation due",
}


def failures_since(day: date) -> date:
    """The first day whose failed messages the digest of ``day`` lists.

    The previous working day (Friday for a Monday): each failure is listed once, in the
    first digest after its day (failures of a weekend in Monday's).
    """
    since = day - timedelta(days=1)
    while since.weekday() >= 5:
        since -= timedelta(days=1)
    return since


def failed_message_items(
    state: JourneyState, failures: list[FailedMessage], day: date
) -> list[DigestItem]:
    """The firm's messages that failed since the previous digest, as overdue items.

    Args:
        state: The journey's state on ``day``.
        failures: Failed messages (any firm's; only this firm's count), from the outbox.
        day: The office's day of the digest.

    Returns:
        One item per message that failed from :func:`failures_since` up to the day
        before ``day``, with its reason; none for a firm whose data was erased.
    """
    if state.erased_on is not None:
        return []
    since = failures_since(day)
    firm = state.firm.id
    items = []
    for failure in failures:
        if failure.firm_id != firm or not since <= failure.failed_on < day:
            continue
        what = _MESSAGES.get(failure.kind, failure.kind.replace("_", " "))
        who = (
            "the firm's contact"
            if failure.recipient == "contact"
            else failure.recipient.replace("staff:", "adviser ")
        )
        items.append(
            DigestItem(
                firm_id=firm,
                firm_name=state.firm.name,
                bucket=Bucket.OVERDUE,
                due_on=failure.failed_on,
                what=f"message not sent: {what} to {who}: {failure.reason}",
                command=f"corridor mail --failed --firm {firm}",
            )
        )
    return sorted(items, key=lambda i: (i.due_on, i.what))


class CatchUpSummary(BaseModel):
    """What journeys enrolled after the fact did not tell, for one adviser's digest.

    A backfill records years of deadlines in minutes; their messages' windows had
    closed, so none was sent (``MessageSkipped``). The adviser hears of it once, at the
    top of the next digest, instead of in thousands of messages; what is still open is
    in the digest's items.

    Attributes:
        firms: The adviser's firms whose journeys skipped messages since the previous
            digest.
        skipped: Messages not sent, by kind (``domain.messages.MessageKind`` values).
    """

    model_config = ConfigDict(frozen=True)

    firms: int
    skipped: dict[str, int]

    @property
    def messages(self) -> int:
        """How many messages were not sent, all kinds together."""
        return sum(self.skipped.values())


def catch_up_summary(
    states: list[JourneyState], skipped: dict[str, dict[str, int]]
) -> CatchUpSummary | None:
    """The summary of the journeys that caught up, among one adviser's firms.

    Args:
        states: The adviser's journeys.
        skipped: Messages skipped since the previous digest (:func:`failures_since` up
            to the day before), by stream id, then by kind.

    Returns:
        The summary, or None when none of these journeys skipped anything.
    """
    totals: dict[str, int] = {}
    firms = 0
    for state in states:
        kinds = skipped.get(f"journey/{state.programme.id}/{state.firm.id}")
        if not kinds:
            continue
        firms += 1
        for kind, count in kinds.items():
            totals[kind] = totals.get(kind, 0) + count
    if not firms:
        return None
    return CatchUpSummary(firms=firms, skipped=dict(sorted(totals.items())))
