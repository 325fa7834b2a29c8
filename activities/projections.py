"""Projections: the read models that reports query, derived from journey states.

Each journey's rows are written from the fold of its events (``domain.journey.evolve``),
so the read models can never disagree with the domain's own view of a journey.
"""

from __future__ import annotations

from collections.abc import Mapping

from activities.migrations import Connection
from domain.journey import JourneyState, next_deadline


async def project_states(
    connection: Connection, states: Mapping[str, JourneyState]
) -> None:
    """Write the read-model rows of the given journeys, replacing their previous rows.

    Args:
        connection: A connection inside the caller's transaction.
        states: Journey states by stream id.
    """
    if not states:
        return
    journeys, meetings, contracts, visits = [], [], [], []
    for stream_id, state in states.items():
        deadline = next_deadline(state)
        programme, firm = state.programme.id, state.firm.id
        journeys.append(
            (
                stream_id,
                programme,
                firm,
                state.firm.name,
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
                state.model_dump(mode="json"),
            )
        )
        meetings += [
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
            for m in state.meetings.values()
        ]
        contracts += [
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
            )
            for c in state.contracts_in_force  # a voided contract counts nowhere
        ]
        visits += [
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
            for v in state.visits.values()
        ]
    ids = list(states)
    for table in ("meetings", "contracts", "return_visits"):
        await connection.execute(f"DELETE FROM {table} WHERE stream_id = ANY($1::text[])", ids)
    await connection.executemany(
        "INSERT INTO journeys VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
        " $14, $15, $16) ON CONFLICT (stream_id) DO UPDATE SET"
        " firm_name = EXCLUDED.firm_name, stage = EXCLUDED.stage, cycle = EXCLUDED.cycle,"
        " version = EXCLUDED.version, last_event_type = EXCLUDED.last_event_type,"
        " last_event_summary = EXCLUDED.last_event_summary,"
        " last_event_at = EXCLUDED.last_event_at, next_deadline_at = EXCLUDED.next_deadline_at,"
        " next_deadline_kind = EXCLUDED.next_deadline_kind,"
        " next_deadline = EXCLUDED.next_deadline, state = EXCLUDED.state",
        journeys,
    )
    await connection.executemany(
        "INSERT INTO meetings VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)", meetings
    )
    await connection.executemany(
        "INSERT INTO contracts VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", contracts
    )
    await connection.executemany(
        "INSERT INTO return_visits VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", visits
    )
