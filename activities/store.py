"""The PostgreSQL event store and its read models (asyncpg).

One append-only ``events`` table holds every journey's stream. Appends name the version
they expect the stream to be at; appending event ids that are already stored is a no-op
(activities are retried), and a different event at a taken version is a concurrency
error. The read models (``journeys``, ``meetings``, ``contracts``, ``return_visits``)
are updated in the same transaction as the append, and can be rebuilt from the events.

An append is one call of the ``corridor_append`` function (migration 4): one round trip,
its own transaction, no lock shared with other streams. Positions follow transaction
ids (``transaction id << POSITION_BITS | rank``), and :meth:`EventStore.read_all` only
returns positions below the oldest transaction still running: every transaction below
it has ended, so a reader that follows ``position`` never skips an event whose
transaction committed late (the classic gap of PostgreSQL event stores), while writers
never wait for each other. (The ``eventsourcing`` library takes an exclusive table lock
instead, which PostgreSQL grants only to users who may also update or delete rows: the
worker's role may not.) A long-running transaction that holds a transaction id delays
readers until it ends, never makes them skip.

Personal fields (``activities.keys.PERSONAL_FIELDS``: the contact's name and e-mail,
notes, next steps) are sealed with the journey's data key before they are written, in
the events and in the ``journeys`` state alike, and opened when read: a reader sees
``[erased]`` once the key was destroyed. Everything the reports need stays in clear.
A store without a keyring writes them in clear (tests of the store alone, tools).

The store folds appended events into the journey's state itself (in place, no copy per
event) and keeps the states it wrote in a small cache, so that the next append of the
same stream need not read the state back.
"""

from __future__ import annotations

import contextlib
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from pydantic import BaseModel, TypeAdapter

from activities.bilan import programme_bilan
from activities.keys import KeyDestroyed, Keyring, has_personal, has_sealed
from activities.migrations import POSITION_BITS, Connection, migrate
from activities.projections import (
    CONTRACT_COLUMNS,
    JOURNEY_COLUMNS,
    MEETING_COLUMNS,
    VISIT_COLUMNS,
    ChangedRows,
    contract_records,
    fold_into,
    journey_record,
    meeting_records,
    visit_records,
)
from domain.bilan import Bilan
from domain.events import AnyEvent, Event, EventEnvelope, FirmEnrolled
from domain.journey import JourneyState
from domain.programme import Programme

_EVENT = TypeAdapter[Event](AnyEvent)

_APPEND = (
    "SELECT o_result, o_version, o_found FROM corridor_append("
    "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
)
_HORIZON = f"(SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint << {POSITION_BITS})"
"""Positions below this belong to transactions that have all ended (committed or not)."""


class Contact(BaseModel):
    """A firm's contact, as the roster gave it (personal data: never logged).

    Attributes:
        name: The contact's name, if known.
        email: The contact's e-mail address, if known.
        language: The language the contact is written to in (``fr`` or ``en``).
    """

    name: str | None = None
    email: str | None = None
    language: str = "fr"


class ConcurrencyError(Exception):
    """The stream is not at the expected version, or an event id is stored elsewhere."""


class ReadModelError(RuntimeError):
    """A stream's ``journeys`` row disagrees with its events (rebuild the read models)."""


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


async def _reset_connection(connection: Connection) -> None:
    """Give a connection back to the pool without a round trip when it is clean.

    asyncpg's default runs ``RESET ALL; UNLISTEN *; ...`` at every release: one more
    round trip per append. The store sets no session state (no ``SET``, ``LISTEN``,
    session lock or cursor outside a transaction); only a transaction left open by an
    error is rolled back.
    """
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


class EventStore:
    """Appends and reads journey streams; maintains the read models.

    Args:
        pool: An asyncpg pool created with ``EventStore.connect`` (it needs the jsonb
            codec).
        keyring: The journeys' data keys, to seal personal fields (None: in clear).
    """

    def __init__(
        self, pool: asyncpg.Pool, *, cached_states: int = 1024, keyring: Keyring | None = None
    ) -> None:
        self.pool = pool
        self.keyring = keyring
        self._states: OrderedDict[str, JourneyState] = OrderedDict()
        self._cached_states = cached_states

    def _seal(self, stream_id: str, text: str) -> str:
        """JSON text with its personal fields sealed with the stream's (loaded) key."""
        if self.keyring is None or not has_personal(text):
            return text
        return json.dumps(self.keyring.seal_fields(stream_id, json.loads(text)))

    def _open(self, stream_id: str, data: Any) -> Any:
        """JSON data with its sealed fields opened (the stream's key loaded first)."""
        if self.keyring is None:
            return data
        return self.keyring.open_fields(stream_id, data)

    async def _load_keys(self, stream_ids: Sequence[str]) -> None:
        if self.keyring is not None:
            await self.keyring.load(stream_ids)

    async def open_fields(self, items: Sequence[tuple[str, Any]]) -> list[Any]:
        """JSON data read from this store, with its sealed personal fields opened.

        Args:
            items: ``(stream_id, data)`` pairs: a stream's data (an event's, a state's)
                as read from a table of this store.

        Returns:
            Each data, in order, its sealed fields opened with its stream's key; a field
            of an erased stream (its key destroyed) reads ``"[erased]"``.

        Raises:
            KeyringError: A key cannot be opened with the configured master keys.
        """
        await self._load_keys(list(dict.fromkeys(stream_id for stream_id, _ in items)))
        return [self._open(stream_id, data) for stream_id, data in items]

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        dsn: str,
        *,
        migrate_schema: bool = True,
        pool_size: int = 8,
        keyring: Keyring | None = None,
    ) -> AsyncIterator[EventStore]:
        """Open a pool on ``dsn`` (and create or migrate the schema), closed on exit.

        Args:
            dsn: A PostgreSQL connection string (``postgresql://...``), for instance the
                worker's role (``activities.migrations.WORKER_ROLE``).
            migrate_schema: Create or migrate the schema first (idempotent). When the
                schema is current this only reads ``schema_migrations``, which the
                worker's role may do.
            pool_size: At most this many connections (appends running at once).
            keyring: The data keys sealing personal fields (None: stored in clear).

        Raises:
            OSError, asyncpg.PostgresError: The server cannot be reached or refuses.
            MigrationError: The schema is not current and ``dsn``'s user may not
                migrate it.
        """
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=pool_size, init=_init_connection, reset=_reset_connection
        )
        try:
            store = cls(pool, keyring=keyring)
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

        One round trip when the stream is new or this store wrote its last events (it
        then holds its state), two otherwise (the state is read from ``journeys``).

        Args:
            stream_id: The stream (a journey's workflow id).
            expected_version: The stream's version before these events (0 for a new
                stream); the events must carry versions ``expected_version + 1`` on.
            envelopes: The events, in order.

        Returns:
            The stream's version after the append and how many events were written
            (0 when these very envelopes were stored already: a retry).

        Raises:
            ConcurrencyError: The stream is at another version, or some of these event
                ids are already stored at other places.
            ValueError: The envelopes do not follow ``expected_version`` in order, or do
                not continue a journey (a stream starts with ``FirmEnrolled``).
            ReadModelError: The stream's ``journeys`` row lags behind its events
                (``rebuild_read_models`` repairs it).
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
        # A cached state is taken out while it is folded in place: an append that fails
        # half-way never leaves a state the database does not hold.
        if self.keyring is not None:
            await self.keyring.key(stream_id, create=True)  # KeyDestroyed once erased
        state = self._states.pop(stream_id, None)
        if state is not None and state.stream_version != expected_version:
            state = None
        if state is None and expected_version > 0:
            raw = await self.pool.fetchval(
                "SELECT state::text FROM journeys WHERE stream_id = $1 AND version = $2",
                stream_id,
                expected_version,
            )
            state = self._state_of(stream_id, raw) if raw is not None else None
        events = [e.event for e in envelopes]
        rows: ChangedRows | None = None
        if state is not None or expected_version == 0:
            state = fold_into(state, events)
            rows = ChangedRows(stream_id, state, events)
            rows.journey = self._seal(stream_id, rows.journey)
        arguments = _append_arguments(
            stream_id, expected_version, envelopes, rows, lambda t: self._seal(stream_id, t)
        )
        try:
            outcome = await self.pool.fetchrow(_APPEND, *arguments)
        except asyncpg.UniqueViolationError:
            # Another transaction stored these versions or ids and committed meanwhile:
            # tell a retry of the same envelopes from a conflict.
            outcome = await self.pool.fetchrow(
                _APPEND,
                *_append_arguments(
                    stream_id, expected_version, envelopes, None, lambda t: self._seal(stream_id, t)
                ),
            )
        assert outcome is not None
        result, version, found = outcome["o_result"], outcome["o_version"], outcome["o_found"]
        if result == "appended":
            assert state is not None
            self._remember(stream_id, state)
            return AppendResult(stream_version=version, appended=len(envelopes))
        if result == "stored":
            return AppendResult(stream_version=version, appended=0)
        if result == "elsewhere":
            raise ConcurrencyError(
                f"stream {stream_id}: {found} of {len(envelopes)} event ids are "
                "already stored at other versions"
            )
        if result == "version":
            raise ConcurrencyError(
                f"stream {stream_id} is at version {version}, expected {expected_version}"
            )
        raise ReadModelError(
            f"stream {stream_id} is at version {expected_version} but its journeys row is at "
            f"version {version}: rebuild the read models (corridor rebuild)"
        )

    def _state_of(self, stream_id: str, raw: str) -> JourneyState:
        """A journey's state from its ``journeys`` row's JSON text, sealed fields opened."""
        if self.keyring is None or not has_sealed(raw):
            return JourneyState.model_validate_json(raw)
        return JourneyState.model_validate(self._open(stream_id, json.loads(raw)))

    def _remember(self, stream_id: str, state: JourneyState) -> None:
        self._states[stream_id] = state
        if len(self._states) > self._cached_states:
            self._states.popitem(last=False)

    async def read_stream(self, stream_id: str, after_version: int = 0) -> list[EventEnvelope]:
        """Read a stream's events in version order, after ``after_version``."""
        rows = await self.pool.fetch(
            "SELECT * FROM events WHERE stream_id = $1 AND stream_version > $2 "
            "ORDER BY stream_version",
            stream_id,
            after_version,
        )
        await self._load_keys([stream_id] if rows else [])
        return [self._envelope(r) for r in rows]

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Read every stream's events in global position order (for catch-up readers).

        Only events of transactions that have all ended are returned (positions below
        the oldest running transaction's), so a reader that goes on from the last
        position it saw never skips an event whose transaction commits late.

        Args:
            after_position: The last position the reader has seen (0 at first).
            limit: At most this many events.
        """
        rows = await self.pool.fetch(
            f"SELECT * FROM events WHERE position > $1 AND position < {_HORIZON} "
            "ORDER BY position LIMIT $2",
            after_position,
            limit,
        )
        await self._load_keys([r["stream_id"] for r in rows])
        return [
            StoredEvent(
                position=r["position"], stored_at=r["stored_at"], envelope=self._envelope(r)
            )
            for r in rows
        ]

    def _envelope(self, row: asyncpg.Record) -> EventEnvelope:
        """An event row as an envelope, its sealed fields opened (keys loaded first)."""
        return _envelope(row, self._open(row["stream_id"], row["data"]))

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version (0 when it has no event)."""
        version: int = await self.pool.fetchval(
            "SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = $1",
            stream_id,
        )
        return version

    async def rebuild_read_models(self, *, chunk: int = 4000) -> int:
        """Rebuild every read model from the events, in one transaction.

        The events are read ``chunk`` at a time in stream order; each stream is folded
        once, in place, and its rows are copied in with ``COPY``. (Reading on a second
        connection and folding in a thread while copying was tried: the fold is the
        bottleneck, and it gained nothing measurable.)

        Appends running meanwhile wait for the rebuild to commit before they write their
        rows (``TRUNCATE`` locks the read models); those rows then carry their own
        events, which the rebuild's snapshot did not see: nothing is lost.

        Args:
            chunk: Events read at a time.

        Returns:
            The number of events replayed.
        """
        self._states.clear()
        count = 0
        programmes: dict[str, Programme] = {}
        if self.keyring is not None:  # every stream's key, created for those stored in clear
            streams = [r[0] for r in await self.pool.fetch("SELECT DISTINCT stream_id FROM events")]
            await self.keyring.load(streams)
            for stream_id in streams:
                with contextlib.suppress(KeyDestroyed):
                    await self.keyring.key(stream_id, create=True)
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute("TRUNCATE journeys, meetings, contracts, return_visits")
            # asyncpg's own jsonb codec (binary, JSON text in and out) for COPY: the
            # state column is copied as the JSON text pydantic writes.
            await connection.reset_type_codec("jsonb", schema="pg_catalog")
            try:
                cursor = await connection.cursor(_REBUILD_READ)  # its snapshot: now
                carried: list[asyncpg.Record] = []
                while rows := await cursor.fetch(chunk):
                    count += len(rows)
                    # The last stream of a chunk may go on in the next one.
                    split = len(rows)
                    while split > 0 and rows[split - 1][0] == rows[-1][0]:
                        split -= 1
                    if split == 0:  # one stream all along: it goes on
                        carried += rows
                        continue
                    complete, carried = carried + rows[:split], rows[split:]
                    await _copy_rows(connection, _rebuilt_rows(complete, programmes, self.keyring))
                if carried:
                    await _copy_rows(connection, _rebuilt_rows(carried, programmes, self.keyring))
            finally:
                await _init_connection(connection)
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
        await self._load_keys([r["stream_id"] for r in rows])
        return {
            r["stream_id"]: JourneyState.model_validate(self._open(r["stream_id"], r["state"]))
            for r in rows
        }

    async def firm_contact(self, stream_id: str) -> Contact | None:
        """The firm's contact, from the stream's ``FirmEnrolled`` event; None: no stream.

        The one place contact details are read from the store (the messages' addresses
        and greetings): personal fields stored encrypted are decrypted here.
        """
        firm = await self.pool.fetchval(
            "SELECT data->'firm' FROM events WHERE stream_id = $1 AND stream_version = 1",
            stream_id,
        )
        if firm is None:
            return None
        await self._load_keys([stream_id])
        firm = self._open(stream_id, firm)  # its key destroyed (erased): "[erased]"
        return Contact(
            name=firm.get("contact_name"),
            email=firm.get("contact_email"),
            language=firm.get("language") or "fr",
        )

    async def command_version(self, stream_id: str, command_id: str) -> int | None:
        """Version of the last event that ``command_id`` caused in the stream, or None."""
        version: int | None = await self.pool.fetchval(
            "SELECT max(stream_version) FROM events "
            "WHERE stream_id = $1 AND metadata->>'command_id' = $2",
            stream_id,
            command_id,
        )
        return version

    async def bilan(
        self,
        programme_id: str,
        mission_id: str | None = None,
        stream_ids: Sequence[str] | None = None,
    ) -> Bilan | None:
        """A programme's bilan computed in SQL from the read models.

        The same figures as ``domain.bilan.compute_bilan`` over the journeys' states
        (see ``activities.bilan.programme_bilan`` for the arguments); None when the
        programme has no journey.
        """
        async with self.pool.acquire() as connection:
            return await programme_bilan(connection, programme_id, mission_id, stream_ids)

    async def programme(self, programme_id: str) -> Programme | None:
        """The programme as its journeys were enrolled in it, or None without journeys."""
        raw = await self.pool.fetchval(
            "SELECT state->'programme' FROM journeys WHERE programme_id = $1 LIMIT 1",
            programme_id,
        )
        return None if raw is None else Programme.model_validate(raw)

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


_COLUMNS = {
    "journeys": JOURNEY_COLUMNS,
    "meetings": MEETING_COLUMNS,
    "contracts": CONTRACT_COLUMNS,
    "return_visits": VISIT_COLUMNS,
}


_REBUILD_READ = (
    "SELECT stream_id, CASE WHEN event_type = 'FirmEnrolled' THEN (data->'programme')::text"
    " END AS programme, (data - 'programme' || jsonb_build_object('type', event_type,"
    " 'occurred_at', occurred_at, 'recorded_at', recorded_at))::text AS event"
    " FROM events ORDER BY stream_id, stream_version"
)
_EVENTS = TypeAdapter(list[AnyEvent])


def _rebuilt_rows(
    rows: Sequence[asyncpg.Record],
    programmes: dict[str, Programme],
    keyring: Keyring | None = None,
) -> dict[str, list[tuple[Any, ...]]]:
    """Fold whole streams' events (rows of ``_REBUILD_READ``) into read-model records.

    Every journey of a programme starts with the same programme in its
    ``FirmEnrolled``: each distinct one is validated once (``programmes`` keeps them by
    their JSON text across chunks) and shared by the journeys' states. The firm of a
    ``FirmEnrolled`` is read with its sealed contact opened (its fields are checked);
    the other events' sealed notes are folded as they are, and the state's personal
    fields sealed again (with ``keyring``'s keys, loaded beforehand).
    """
    tables: dict[str, list[tuple[Any, ...]]] = {table: [] for table in _COLUMNS}
    others = [i for i, row in enumerate(rows) if row[1] is None]
    events: list[Event] = list(
        _EVENTS.validate_json("[" + ",".join(rows[i][2] for i in others) + "]")
    )
    for i, row in enumerate(rows):
        if row[1] is not None:
            programme = programmes.get(row[1])
            if programme is None:
                programme = programmes[row[1]] = Programme.model_validate_json(row[1])
            data = json.loads(row[2])
            if keyring is not None:
                data = keyring.open_fields(row[0], data)
            enrolled = FirmEnrolled.model_validate({**data, "programme": programme})
            events.insert(i, enrolled)
    start = 0
    for end in range(1, len(rows) + 1):
        if end < len(rows) and rows[end][0] == rows[start][0]:
            continue
        stream_id = rows[start][0]
        state = fold_into(None, events[start:end])
        state_json = state.model_dump_json()
        if keyring is not None and has_personal(state_json):
            state_json = json.dumps(keyring.seal_fields(stream_id, json.loads(state_json)))
        tables["journeys"].append(journey_record(stream_id, state, state_json))
        tables["meetings"] += meeting_records(stream_id, state)
        tables["contracts"] += contract_records(stream_id, state)
        tables["return_visits"] += visit_records(stream_id, state)
        start = end
    return tables


async def _copy_rows(connection: Connection, tables: dict[str, list[tuple[Any, ...]]]) -> None:
    for table, records in tables.items():
        if records:
            await connection.copy_records_to_table(table, records=records, columns=_COLUMNS[table])


def _append_arguments(
    stream_id: str,
    expected_version: int,
    envelopes: Sequence[EventEnvelope],
    rows: ChangedRows | None,
    seal: Callable[[str], str],
) -> tuple[Any, ...]:
    """The arguments of ``corridor_append``: the events column by column, then the rows.

    Each event's data goes through ``seal`` (its personal fields sealed).
    """
    ids, types, schemas, data, metadata, occurred, recorded = [], [], [], [], [], [], []
    for envelope in envelopes:
        event = envelope.event
        ids.append(envelope.event_id)
        types.append(event.type)
        schemas.append(event.schema_version)
        data.append(seal(event.model_dump_json(exclude=_ENVELOPE_FIELDS)))
        command_id = envelope.command_id
        metadata.append('{"command_id": ' + json.dumps(command_id) + "}" if command_id else "{}")
        occurred.append(event.occurred_at)
        recorded.append(event.recorded_at)
    return (
        stream_id,
        expected_version,
        ids,
        types,
        schemas,
        data,
        metadata,
        occurred,
        recorded,
        rows.journey if rows else None,
        rows.meetings if rows else None,
        rows.contracts if rows else None,
        rows.visits if rows else None,
    )


_ENVELOPE_FIELDS = {"type", "occurred_at", "recorded_at"}


def _envelope(row: asyncpg.Record, data: dict[str, Any] | None = None) -> EventEnvelope:
    data = dict(row["data"] if data is None else data)
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
