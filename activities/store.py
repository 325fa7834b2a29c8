"""The PostgreSQL event store and its read models (asyncpg).

One append-only ``events`` table holds every journey's stream. Appends name the version
they expect the stream to be at; appending event ids that are already stored is a no-op
(activities are retried), and a different event at a taken version is a concurrency
error. The read models (``journeys``, ``meetings``, ``contracts``, ``return_visits``)
are updated in the same transaction as the append, and can be rebuilt from the events.

Writers take one transaction-level advisory lock (:data:`APPEND_LOCK`) for the length
of an append: appends are serialised and positions become visible in order, so a reader
that follows ``position`` never skips an event whose transaction committed late (the
classic gap of PostgreSQL event stores; the ``eventsourcing`` library takes an exclusive
table lock instead, which PostgreSQL grants only to users who may also update or delete
rows: the worker's role may not). Every writer must therefore append through
:meth:`EventStore.append`; a rebuild of the read models takes the same lock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from pydantic import BaseModel, TypeAdapter

from activities.migrations import Connection, migrate
from activities.projections import project_states
from domain.events import AnyEvent, Event, EventEnvelope
from domain.journey import JourneyState, evolve

_EVENT = TypeAdapter[Event](AnyEvent)

APPEND_LOCK = "SELECT pg_advisory_xact_lock(hashtext('corridor-events-append'))"
"""Serialises appends (and rebuilds) until the end of the transaction that takes it."""


class ConcurrencyError(Exception):
    """The stream is not at the expected version, or an event id is stored elsewhere."""


class AppendResult(BaseModel):
    """What an append did.

    Attributes:
        stream_version: The stream's version after the append.
        appended: Number of events written (0 when they were all already stored).
    """

    stream_version: int
    appended: int


class StoredEvent(BaseModel):
    """An event as read back from the store, with its global position."""

    position: int
    stored_at: datetime
    envelope: EventEnvelope


async def _init_connection(connection: Connection) -> None:
    await connection.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
    )


class EventStore:
    """Appends and reads journey streams; maintains the read models.

    Args:
        pool: An asyncpg pool created with ``EventStore.connect`` (it needs the jsonb
            codec).
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    @asynccontextmanager
    async def connect(cls, dsn: str, *, migrate_schema: bool = True) -> AsyncIterator[EventStore]:
        """Open a pool on ``dsn`` (and create or migrate the schema), closed on exit.

        Args:
            dsn: A PostgreSQL connection string (``postgresql://...``), for instance the
                worker's role (``activities.migrations.WORKER_ROLE``).
            migrate_schema: Create or migrate the schema first (idempotent). When the
                schema is current this only reads ``schema_migrations``, which the
                worker's role may do.

        Raises:
            OSError, asyncpg.PostgresError: The server cannot be reached or refuses.
            MigrationError: The schema is not current and ``dsn``'s user may not
                migrate it.
        """
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=8, init=_init_connection)
        try:
            store = cls(pool)
            if migrate_schema:
                async with pool.acquire() as connection:
                    await migrate(connection)
            yield store
        finally:
            await pool.close()

    async def append(
        self, stream_id: str, expected_version: int, envelopes: Sequence[EventEnvelope]
    ) -> AppendResult:
        """Append events to a stream, expecting it to be at ``expected_version``.

        Args:
            stream_id: The stream (a journey's workflow id).
            expected_version: The stream's version before these events (0 for a new
                stream); the events must carry versions ``expected_version + 1`` on.
            envelopes: The events, in order.

        Returns:
            The stream's version after the append and how many events were written.

        Raises:
            ConcurrencyError: The stream is at another version, or some of these event
                ids are already stored at other places.
            ValueError: The envelopes do not follow ``expected_version`` in order.
        """
        if not envelopes:
            return AppendResult(stream_version=expected_version, appended=0)
        for offset, envelope in enumerate(envelopes, start=1):
            if envelope.stream_id != stream_id or envelope.stream_version != (
                expected_version + offset
            ):
                raise ValueError(
                    f"event {envelope.event_id} is {envelope.stream_id}@"
                    f"{envelope.stream_version}, expected {stream_id}@{expected_version + offset}"
                )
        ids = [e.event_id for e in envelopes]
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(APPEND_LOCK)
            stored = await connection.fetch(
                "SELECT event_id, stream_id, stream_version FROM events "
                "WHERE event_id = ANY($1::uuid[])",
                ids,
            )
            if stored:
                places = {(r["event_id"], r["stream_id"], r["stream_version"]) for r in stored}
                wanted = {(e.event_id, e.stream_id, e.stream_version) for e in envelopes}
                if places == wanted:
                    return AppendResult(
                        stream_version=envelopes[-1].stream_version, appended=0
                    )
                raise ConcurrencyError(
                    f"stream {stream_id}: {len(stored)} of {len(envelopes)} event ids are "
                    "already stored at other versions"
                )
            current = await connection.fetchval(
                "SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = $1",
                stream_id,
            )
            if current != expected_version:
                raise ConcurrencyError(
                    f"stream {stream_id} is at version {current}, expected {expected_version}"
                )
            await connection.executemany(
                "INSERT INTO events (stream_id, stream_version, event_id, event_type, "
                "schema_version, data, metadata, occurred_at, recorded_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                [_row(e) for e in envelopes],
            )
            await self._project(connection, stream_id, envelopes)
        return AppendResult(stream_version=envelopes[-1].stream_version, appended=len(envelopes))

    async def _project(
        self, connection: Connection, stream_id: str, envelopes: Sequence[EventEnvelope]
    ) -> None:
        """Fold new events into the stream's read-model rows (same transaction)."""
        raw = await connection.fetchval(
            "SELECT state FROM journeys WHERE stream_id = $1 FOR UPDATE", stream_id
        )
        state = JourneyState.model_validate(raw) if raw is not None else None
        for envelope in envelopes:
            state = evolve(state, envelope.event)
        assert state is not None
        await project_states(connection, {stream_id: state})

    async def read_stream(self, stream_id: str, after_version: int = 0) -> list[EventEnvelope]:
        """Read a stream's events in version order, after ``after_version``."""
        rows = await self.pool.fetch(
            "SELECT * FROM events WHERE stream_id = $1 AND stream_version > $2 "
            "ORDER BY stream_version",
            stream_id,
            after_version,
        )
        return [_envelope(r) for r in rows]

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Read every stream's events in global position order (for catch-up readers)."""
        rows = await self.pool.fetch(
            "SELECT * FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            after_position,
            limit,
        )
        return [
            StoredEvent(position=r["position"], stored_at=r["stored_at"], envelope=_envelope(r))
            for r in rows
        ]

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version (0 when it has no event)."""
        version: int = await self.pool.fetchval(
            "SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = $1",
            stream_id,
        )
        return version

    async def rebuild_read_models(self) -> int:
        """Rebuild every read model from the events, in one transaction.

        Returns:
            The number of events replayed.
        """
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(APPEND_LOCK)  # no append while the rows are rebuilt
            await connection.execute(
                "TRUNCATE journeys, meetings, contracts, return_visits"
            )
            states: dict[str, JourneyState] = {}
            count = 0
            async for row in connection.cursor("SELECT * FROM events ORDER BY position"):
                envelope = _envelope(row)
                states[envelope.stream_id] = evolve(
                    states.get(envelope.stream_id), envelope.event
                )
                count += 1
            await project_states(connection, states)
        return count

    async def journey_states(
        self, programme_id: str | None = None, firm_id: str | None = None
    ) -> dict[str, JourneyState]:
        """Journey states from the journeys read model, by stream id."""
        rows = await self.pool.fetch(
            "SELECT stream_id, state FROM journeys "
            "WHERE ($1::text IS NULL OR programme_id = $1) AND ($2::text IS NULL OR firm_id = $2) "
            "ORDER BY introduced_on, firm_id",
            programme_id,
            firm_id,
        )
        return {r["stream_id"]: JourneyState.model_validate(r["state"]) for r in rows}

    async def command_version(self, stream_id: str, command_id: str) -> int | None:
        """Version of the last event that ``command_id`` caused in the stream, or None."""
        version: int | None = await self.pool.fetchval(
            "SELECT max(stream_version) FROM events "
            "WHERE stream_id = $1 AND metadata->>'command_id' = $2",
            stream_id,
            command_id,
        )
        return version

    async def programmes(self) -> list[dict[str, Any]]:
        """Programmes that have journeys, with their names and journey counts."""
        rows = await self.pool.fetch(
            "SELECT programme_id, min(state->'programme'->>'name') AS name, count(*) AS journeys "
            "FROM journeys GROUP BY programme_id ORDER BY programme_id"
        )
        return [dict(r) for r in rows]

    async def journey_summaries(
        self, programme_id: str, firm_id: str | None = None
    ) -> list[dict[str, Any]]:
        """One line per journey of a programme from the journeys read model (status).

        Args:
            programme_id: The programme.
            firm_id: Only this firm's journey (None: every journey).

        Returns:
            Rows with ``stream_id``, ``firm_id``, ``stage``, ``cycle``, ``last_event_at``
            (aware), ``last_event_summary``, ``next_deadline`` (text) and ``timezone``
            (the programme's), ordered by introduction date then firm.
        """
        rows = await self.pool.fetch(
            "SELECT stream_id, firm_id, stage, cycle, last_event_at, last_event_summary, "
            "next_deadline, state->'programme'->>'timezone' AS timezone "
            "FROM journeys WHERE programme_id = $1 AND ($2::text IS NULL OR firm_id = $2) "
            "ORDER BY introduced_on, firm_id",
            programme_id,
            firm_id,
        )
        return [dict(r) for r in rows]


def _row(envelope: EventEnvelope) -> tuple[Any, ...]:
    event = envelope.event
    data = event.model_dump(mode="json", exclude={"type", "occurred_at", "recorded_at"})
    metadata = {"command_id": envelope.command_id} if envelope.command_id else {}
    return (
        envelope.stream_id,
        envelope.stream_version,
        envelope.event_id,
        event.type,
        event.schema_version,
        data,
        metadata,
        event.occurred_at,
        event.recorded_at,
    )


def _envelope(row: asyncpg.Record) -> EventEnvelope:
    data = dict(row["data"])
    data.update(
        type=row["event_type"], occurred_at=row["occurred_at"], recorded_at=row["recorded_at"]
    )
    return EventEnvelope(
        event_id=row["event_id"] if isinstance(row["event_id"], UUID) else UUID(row["event_id"]),
        stream_id=row["stream_id"],
        stream_version=row["stream_version"],
        command_id=(row["metadata"] or {}).get("command_id"),
        event=_EVENT.validate_python(data),
    )
