"""The journey's timeline: every event with who recorded it and what it changed.

One fold, used by everything that shows a journey's history: the workflow's
``timeline`` query and its Web UI details ("Recent events"), and ``corridor timeline``
(which folds the whole stream from the event store). Each entry gives the event's
business time, its recorded time, its author (``corridor`` for what the journey's own
timers record), the journey's stage before and after it, and for corrections the value
before and after.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from pydantic import BaseModel, Field

from domain.calendar import local_date
from domain.events import (
    ContractCorrected,
    ContractVoided,
    Event,
    MeetingResultCorrected,
    VisitAttendanceCorrected,
)
from domain.money import RecordedMoney
from domain.state import JourneyState, Stage, evolve

JOURNEY_AUTHOR = "corridor"
"""The author shown for events the journey's own timers record (``recorded_by`` None)."""


class Change(BaseModel):
    """One value a correction changed.

    Attributes:
        subject: The record, e.g. ``contract c1``, ``meeting m-1``, ``return visit 2``.
        field: What changed, e.g. ``value``, ``outcome``, ``attendance``.
        before: The value recorded before, in words.
        after: The value recorded after, in words.
    """

    subject: str
    field: str
    before: str
    after: str

    def __str__(self) -> str:
        return f"{self.subject} {self.field}: {self.before} → {self.after}"


class TimelineEntry(BaseModel):
    """One line of a journey's timeline.

    The fields after ``summary`` are None in entries carried by journeys that ran
    before they existed.

    Attributes:
        version: The event's version in the journey's stream.
        type: The event's type, e.g. ``ContractCorrected``.
        occurred_at: Business instant of the fact (aware, UTC).
        summary: The event in the domain's words.
        recorded_at: Business instant the journey recorded it (aware, UTC).
        recorded_by: Who recorded it; ``corridor`` for the journey's own timers.
        stage_before: The journey's stage before the event (None before enrolment).
        stage_after: The journey's stage after it.
        changes: For corrections, each value before and after.
    """

    version: int
    type: str
    occurred_at: datetime
    summary: str
    recorded_at: datetime | None = None
    recorded_by: str | None = None
    stage_before: Stage | None = None
    stage_after: Stage | None = None
    changes: list[Change] = Field(default_factory=list)

    def line(self, timezone: str) -> str:
        """The entry in one line, dates local to ``timezone`` (the programme's).

        E.g. ``2014-07-20 contract c1 corrected (value): typo; contract c1 value:
        USD 2,001.00 → USD 2,002.00; by alice``. The stage is named when it changed.
        """
        parts = [f"{local_date(self.occurred_at, timezone)} {self.summary}"]
        parts += [str(change) for change in self.changes]
        if self.stage_after is not None and self.stage_before != self.stage_after:
            before = self.stage_before.value.replace("_", " ") if self.stage_before else "—"
            parts.append(f"stage {before} → {self.stage_after.value.replace('_', ' ')}")
        if self.recorded_by is not None:
            parts.append(f"by {self.recorded_by}")
        return "; ".join(parts)


def _money(value: RecordedMoney) -> str:
    return str(value)


def _meetings(ids: list[str]) -> str:
    return ", ".join(ids) if ids else "none"


def changes(event: Event) -> list[Change]:
    """The values a correction changed, before and after (none for other events)."""
    if isinstance(event, ContractCorrected):
        subject = f"contract {event.contract_id}"
        found: list[Change] = []
        if event.value_before is not None and event.value_after is not None:
            found.append(
                Change(
                    subject=subject,
                    field="value",
                    before=_money(event.value_before),
                    after=_money(event.value_after),
                )
            )
        if event.counterpart_before is not None and event.counterpart_after is not None:
            found.append(
                Change(
                    subject=subject,
                    field="counterpart",
                    before=event.counterpart_before,
                    after=event.counterpart_after,
                )
            )
        if event.signed_on_before is not None and event.signed_on_after is not None:
            found.append(
                Change(
                    subject=subject,
                    field="signed on",
                    before=_day(event.signed_on_before),
                    after=_day(event.signed_on_after),
                )
            )
        if event.meeting_ids_before is not None and event.meeting_ids_after is not None:
            found.append(
                Change(
                    subject=subject,
                    field="meetings",
                    before=_meetings(event.meeting_ids_before),
                    after=_meetings(event.meeting_ids_after),
                )
            )
        return found
    if isinstance(event, ContractVoided):
        return [
            Change(
                subject=f"contract {event.contract_id}",
                field="status",
                before=f"in force ({event.value} with {event.counterpart}, "
                f"signed on {event.signed_on})",
                after="voided",
            )
        ]
    if isinstance(event, MeetingResultCorrected):
        return [
            Change(
                subject=f"meeting {event.meeting_id}",
                field="outcome",
                before=event.outcome_before.value,
                after=event.outcome_after.value,
            )
        ]
    if isinstance(event, VisitAttendanceCorrected):
        return [
            Change(
                subject=f"return visit {event.visit}",
                field="attendance",
                before="attended" if event.attended_before else "skipped",
                after="attended" if event.attended_after else "skipped",
            )
        ]
    return []


def _day(value: date) -> str:
    return value.isoformat()


def entry(event: Event, before: JourneyState | None, after: JourneyState) -> TimelineEntry:
    """The timeline entry of one event, given the journey's state before and after it.

    Args:
        event: The event, already folded into ``after``.
        before: The state before it (None for ``FirmEnrolled``).
        after: The state after it (``evolve(before, event)``); its ``stream_version``
            is the event's version.
    """
    return TimelineEntry(
        version=after.stream_version,
        type=type(event).__name__,
        occurred_at=event.occurred_at,
        summary=event.summary(),
        recorded_at=event.recorded_at,
        recorded_by=event.recorded_by or JOURNEY_AUTHOR,
        stage_before=before.stage if before is not None else None,
        stage_after=after.stage,
        changes=changes(event),
    )


def timeline(events: Iterable[Event]) -> list[TimelineEntry]:
    """Fold a whole stream, from ``FirmEnrolled`` on, into its timeline.

    Raises:
        ValueError: The stream does not start with ``FirmEnrolled`` (``evolve``'s rule).
    """
    entries: list[TimelineEntry] = []
    state: JourneyState | None = None
    for event in events:
        after = evolve(state, event)
        entries.append(entry(event, state, after))
        state = after
    return entries


__all__ = ["JOURNEY_AUTHOR", "Change", "TimelineEntry", "changes", "entry", "timeline"]
