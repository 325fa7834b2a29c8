"""Projections: the read models that reports query, derived from journey states.

Each journey's rows are written from the fold of its events (``domain.journey``'s rules),
so the read models can never disagree with the domain's own view of a journey. An append
rewrites the journey's ``journeys`` row and upserts only the ``meetings``, ``contracts``
and ``return_visits`` rows its events touch (events never remove one); a rebuild folds
every stream once and copies the rows in with ``COPY``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from domain.deadlines import next_deadline
from domain.events import Event, FirmEnrolled
from domain.state import JourneyState, evolve

JOURNEY_COLUMNS = (
    "stream_id",
    "programme_id",
    "firm_id",
    "firm_name",
    "mission_id",
    "introduced_on",
    "stage",
    "cycle",
    "version",
    "last_event_type",
    "last_event_summary",
    "last_event_at",
    "next_deadline_at",
    "next_deadline_kind",
    "next_deadline",
    "state",
)
MEETING_COLUMNS = (
    "stream_id",
    "meeting_id",
    "programme_id",
    "firm_id",
    "counterpart",
    "requested_on",
    "partner_id",
    "scheduled_at",
    "status",
    "outcome",
    "result_on",
    "overdue",
)
CONTRACT_COLUMNS = (
    "stream_id",
    "contract_id",
    "programme_id",
    "firm_id",
    "counterpart",
    "amount",
    "currency",
    "signed_on",
    "meeting_ids",
    "voided_on",
)
VISIT_COLUMNS = (
    "stream_id",
    "visit",
    "programme_id",
    "firm_id",
    "due_on",
    "status",
    "recorded_on",
    "mission_id",
)


def fold_into(state: JourneyState | None, events: Sequence[Event]) -> JourneyState:
    """Fold a run of a stream's events into a state, as ``evolve`` does one by one.

    ``evolve`` copies on write (an event copies only what it changes), so folding many
    events costs little more than applying them.

    Args:
        state: The state before the events; None before the stream's first event.
        events: The events, in stream order.

    Returns:
        The state after the events.

    Raises:
        ValueError: The stream is empty, its first event is not ``FirmEnrolled``, or a
            later one is.
    """
    if not events and state is None:
        raise ValueError("an empty stream has no journey")
    for event in events:
        state = evolve(state, event)
    assert state is not None
    return state


def journey_record(stream_id: str, state: JourneyState, state_json: str) -> tuple[Any, ...]:
    """The ``journeys`` row of a journey, columns in :data:`JOURNEY_COLUMNS` order.

    Args:
        stream_id: The journey's stream.
        state: Its state.
        state_json: ``state`` as JSON text (``state.model_dump_json()``).
    """
    deadline = next_deadline(state)
    return (
        stream_id,
        state.programme.id,
        state.firm.id,
        state.firm_label,
        state.mission_id,
        state.introduced_on,
        state.stage.value,
        state.cycle,
        state.stream_version,
        state.last_event_type,
        state.last_event_summary,
        state.last_event_at,
        deadline.at if deadline else None,
        deadline.kind.value if deadline else None,
        deadline.description if deadline else None,
        state_json,
    )


def meeting_records(
    stream_id: str, state: JourneyState, meeting_ids: Iterable[str] | None = None
) -> list[tuple[Any, ...]]:
    """``meetings`` rows of a journey (all, or those of ``meeting_ids``)."""
    programme, firm = state.programme.id, state.firm.id
    meetings = (
        state.meetings.values()
        if meeting_ids is None
        else [state.meetings[m] for m in meeting_ids if m in state.meetings]
    )
    return [
        (
            stream_id,
            m.meeting_id,
            programme,
            firm,
            m.counterpart,
            m.requested_on,
            m.partner_id,
            m.scheduled_at,
            m.status,
            m.outcome.value if m.outcome else None,
            m.result_on,
            m.overdue,
        )
        for m in meetings
    ]


def contract_records(
    stream_id: str, state: JourneyState, contract_ids: Iterable[str] | None = None
) -> list[tuple[Any, ...]]:
    """``contracts`` rows of a journey (all, or those of ``contract_ids``)."""
    programme, firm = state.programme.id, state.firm.id
    wanted = None if contract_ids is None else set(contract_ids)
    return [
        (
            stream_id,
            c.contract_id,
            programme,
            firm,
            c.counterpart,
            c.value.amount,
            c.value.currency,
            c.signed_on,
            c.meeting_ids,
            c.voided_on,
        )
        for c in state.contracts
        if wanted is None or c.contract_id in wanted
    ]


def visit_records(
    stream_id: str, state: JourneyState, visits: Iterable[int] | None = None
) -> list[tuple[Any, ...]]:
    """``return_visits`` rows of a journey (all, or those numbered in ``visits``)."""
    programme, firm = state.programme.id, state.firm.id
    chosen = (
        state.visits.values()
        if visits is None
        else [state.visits[v] for v in visits if v in state.visits]
    )
    return [
        (
            stream_id,
            v.visit,
            programme,
            firm,
            v.due_on,
            v.status.value,
            v.recorded_on,
            v.mission_id,
        )
        for v in chosen
    ]


class ChangedRows:
    """The read-model rows an append changes, as JSON text for ``corridor_append``.

    Attributes:
        journey: The journey's ``journeys`` row (a JSON object).
        meetings, contracts, visits: The rows the events touch (JSON arrays), or None.
    """

    __slots__ = ("contracts", "journey", "meetings", "visits")

    def __init__(self, stream_id: str, state: JourneyState, events: Sequence[Event]) -> None:
        meeting_ids: dict[str, None] = {}
        contract_ids: set[str] = set()
        visits: dict[int, None] = {}
        for event in events:
            fields = event.__dict__  # pydantic keeps a model's fields there
            if "meeting_id" in fields:
                meeting_ids[fields["meeting_id"]] = None
            elif "contract_id" in fields:
                contract_ids.add(fields["contract_id"])
            elif "visit" in fields:
                visits[fields["visit"]] = None
        if isinstance(events[0], FirmEnrolled):  # a stream's start: every row it has
            self.meetings = _json_rows(MEETING_COLUMNS, meeting_records(stream_id, state))
            self.contracts = _json_rows(CONTRACT_COLUMNS, contract_records(stream_id, state))
            self.visits = _json_rows(VISIT_COLUMNS, visit_records(stream_id, state))
        else:
            self.meetings = _json_rows(
                MEETING_COLUMNS, meeting_records(stream_id, state, meeting_ids)
            )
            self.contracts = _json_rows(
                CONTRACT_COLUMNS, contract_records(stream_id, state, contract_ids)
            )
            self.visits = _json_rows(VISIT_COLUMNS, visit_records(stream_id, state, visits))
        record = journey_record(stream_id, state, "")
        row = dict(zip(JOURNEY_COLUMNS[:-1], record[:-1], strict=True))
        self.journey = _dumps(row)[:-1] + ', "state": ' + state.model_dump_json() + "}"


def _json_value(value: Any) -> Any:
    """Dates and instants as ISO 8601, amounts as exact decimal text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not a read-model value")


_dumps = json.JSONEncoder(default=_json_value).encode


def _json_rows(columns: Sequence[str], records: list[tuple[Any, ...]]) -> str | None:
    if not records:
        return None
    return _dumps([dict(zip(columns, r, strict=True)) for r in records])
