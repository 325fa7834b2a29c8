"""Schema of the event store and read models, created and migrated by the code.

Each migration runs once, in order, inside a transaction, under an advisory lock so that
several workers starting together do not race. Running ``migrate`` again is a no-op: when
every migration is recorded it only reads ``schema_migrations``, so a user without the
right to create anything (the worker's role, below) can call it to check the schema.

Migration 3 creates the login role :data:`WORKER_ROLE` (if it is missing) and grants it
what a worker needs and nothing more: it may read and append events but never update,
delete or truncate them (the append-only trigger stays as a second line of defence);
it may rewrite the read models, which are derived data. A migration that adds a table
must grant the worker's role its rights on it too.

Migration 4 lets appends run side by side: an event's position becomes its transaction's
id shifted by :data:`POSITION_BITS` plus its rank in that transaction (no more identity
sequence, no more global lock), and one PL/pgSQL function, ``corridor_append``, checks a
retry and the expected version, stores the events and upserts the read-model rows they
change in one round trip. On a database of the previous version it keeps every stored
event and its position.

Migration 6 adds the outbox of messages (issue 9); the worker's role may insert, read
and update its rows (a message's state), never delete them.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeAlias

import asyncpg
import structlog

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
"""A plain connection or one borrowed from a pool."""

Step: TypeAlias = "str | Callable[[Connection], Awaitable[bool]]"
"""A migration's body: SQL, or a coroutine that returns False when it had to skip."""

log = structlog.get_logger(__name__)

WORKER_ROLE = "corridor_worker"
"""The PostgreSQL role the worker connects as: append and read events, rewrite the read
models, read ``schema_migrations``; no DDL, no UPDATE, DELETE or TRUNCATE on events."""

READ_MODELS = ("journeys", "meetings", "contracts", "return_visits")
"""The read-model tables, rebuilt from the events (``EventStore.rebuild_read_models``)."""


class MigrationError(RuntimeError):
    """The schema is not current and this connection's user may not migrate it."""


def _ident(name: str) -> str:
    """Quote an identifier that comes from this module's constants (never from data)."""
    return '"' + name.replace('"', '""') + '"'


async def _worker_role(connection: Connection) -> bool:
    """Create :data:`WORKER_ROLE` if missing, then grant it its rights (idempotent).

    Returns:
        False, after a warning, when the role is missing and this user may not create
        roles (managed PostgreSQL without CREATEROLE): the migration is then not
        recorded, and runs again at the next ``migrate``, once someone has created it.
    """
    role = _ident(WORKER_ROLE)
    exists = await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", WORKER_ROLE)
    if not exists:
        try:
            async with connection.transaction():  # a savepoint: a failure leaves ours usable
                await connection.execute(f"CREATE ROLE {role} LOGIN NOINHERIT")
            log.info("migrations.role_created", role=WORKER_ROLE)
        except asyncpg.DuplicateObjectError:
            pass  # created meanwhile, by the migration of another database of the cluster
        except asyncpg.InsufficientPrivilegeError:
            user = await connection.fetchval("SELECT current_user")
            log.warning(
                "migrations.role_skipped",
                role=WORKER_ROLE,
                user=user,
                reason=(
                    f"user {user} may not create roles (no CREATEROLE): the worker's role "
                    f"{WORKER_ROLE} was not created and has no grants. Have an administrator "
                    f"run CREATE ROLE {WORKER_ROLE} LOGIN NOINHERIT PASSWORD '...'; the next "
                    "migration grants it its rights. Until then the worker runs as this user."
                ),
            )
            return False
    tables = ", ".join(READ_MODELS)
    await connection.execute(
        f"""
        REVOKE UPDATE, DELETE, TRUNCATE ON events FROM {role};
        GRANT SELECT, INSERT ON events TO {role};
        GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {tables} TO {role};
        GRANT SELECT ON schema_migrations TO {role};
        """
    )
    if await connection.fetchval("SELECT to_regclass('outbox')") is not None:
        await connection.execute(f"GRANT SELECT, INSERT, UPDATE ON outbox TO {role}")
    if await connection.fetchval("SELECT to_regclass('data_keys')") is not None:
        await connection.execute(f"GRANT SELECT, INSERT, UPDATE ON data_keys TO {role}")
    # The identity sequence's name, as the catalog quotes it (not needed by INSERT on
    # PostgreSQL 10+, which draws identity values without checking; granted for clarity).
    sequence = await connection.fetchval("SELECT pg_get_serial_sequence('events', 'position')")
    if sequence is not None:
        await connection.execute(f"GRANT USAGE ON SEQUENCE {sequence} TO {role}")
    if not await connection.fetchval(
        "SELECT has_schema_privilege($1, current_schema(), 'USAGE')", WORKER_ROLE
    ):
        schema = await connection.fetchval("SELECT quote_ident(current_schema())")
        await connection.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
    return True


POSITION_BITS = 24
"""An event's position is its transaction's id shifted left by this many bits, plus its
rank among the events that transaction appended (up to 2**24 - 1 per transaction)."""

_APPEND_WITHOUT_LOCK = f"""
    -- Positions follow transaction ids: transaction_id << {POSITION_BITS} | rank. Every
    -- transaction whose id is below the oldest one still running has ended, so a reader
    -- returning only positions below that watermark never skips an event whose
    -- transaction commits late, and writers never wait for each other. Events stored
    -- before this migration keep their (smaller) positions.
    ALTER TABLE events ALTER COLUMN position DROP IDENTITY IF EXISTS;
    DO $$
    BEGIN
        IF (SELECT coalesce(max(position), 0) FROM events)
                >= (pg_current_xact_id()::text::bigint << {POSITION_BITS}) THEN
            RAISE EXCEPTION 'events.position already runs past the transaction-id positions';
        END IF;
    END $$;

    CREATE FUNCTION corridor_append(
        p_stream text, p_expected integer, p_ids uuid[], p_types text[], p_schemas integer[],
        p_data text[], p_metadata text[], p_occurred timestamptz[], p_recorded timestamptz[],
        p_journey text, p_meetings text, p_contracts text, p_visits text,
        OUT o_result text, OUT o_version integer, OUT o_found integer
    ) LANGUAGE plpgsql
    -- Its plans are cached per connection, often while the table is still small, where
    -- a sequential scan is cheapest; every statement here has an index to use as the
    -- table grows.
    SET enable_seqscan = off
    AS $fn$
    -- One round trip per append: the retry check, the expected version, the events and
    -- the read-model rows they change (given as JSON by the caller, which folds them).
    -- o_result: 'appended'; 'stored' (these ids are already stored at these places:
    -- a retry); 'elsewhere' (o_found of them are stored at other places); 'version'
    -- (the stream is at o_version); 'read_model' (its journeys row is at o_version, not
    -- at the expected version: rebuild the read models).
    DECLARE
        v_count integer := cardinality(p_ids);
        v_placed integer;
        v_base bigint;
    BEGIN
        SELECT count(*), count(*) FILTER (
                   WHERE e.stream_id = p_stream AND e.stream_version = p_expected + u.n)
          INTO o_found, v_placed
          FROM unnest(p_ids) WITH ORDINALITY AS u(id, n)
          JOIN events e ON e.event_id = u.id;
        IF o_found > 0 THEN
            o_result := CASE WHEN v_placed = v_count THEN 'stored' ELSE 'elsewhere' END;
            o_version := p_expected + v_count;
            RETURN;
        END IF;
        SELECT coalesce(max(e.stream_version), 0) INTO o_version
          FROM events e WHERE e.stream_id = p_stream;
        IF o_version <> p_expected THEN
            o_result := 'version';
            RETURN;
        END IF;
        IF p_journey IS NULL THEN
            SELECT j.version INTO o_version FROM journeys j WHERE j.stream_id = p_stream;
            o_result := 'read_model';
            RETURN;
        END IF;
        v_base := pg_current_xact_id()::text::bigint << {POSITION_BITS};
        SELECT coalesce(max(e.position), v_base) INTO v_base FROM events e
         WHERE e.position > v_base AND e.position < v_base + (1::bigint << {POSITION_BITS});
        INSERT INTO events (position, stream_id, stream_version, event_id, event_type,
                            schema_version, data, metadata, occurred_at, recorded_at)
        SELECT v_base + u.n, p_stream, p_expected + u.n, u.id, u.t, u.s, u.d::jsonb,
               u.m::jsonb, u.o, u.r
          FROM unnest(p_ids, p_types, p_schemas, p_data, p_metadata, p_occurred, p_recorded)
               WITH ORDINALITY AS u(id, t, s, d, m, o, r, n);

        INSERT INTO journeys SELECT * FROM jsonb_populate_record(NULL::journeys, p_journey::jsonb)
        ON CONFLICT (stream_id) DO UPDATE SET
            firm_name = EXCLUDED.firm_name, stage = EXCLUDED.stage, cycle = EXCLUDED.cycle,
            version = EXCLUDED.version, last_event_type = EXCLUDED.last_event_type,
            last_event_summary = EXCLUDED.last_event_summary,
            last_event_at = EXCLUDED.last_event_at,
            next_deadline_at = EXCLUDED.next_deadline_at,
            next_deadline_kind = EXCLUDED.next_deadline_kind,
            next_deadline = EXCLUDED.next_deadline, state = EXCLUDED.state;
        IF p_meetings IS NOT NULL THEN
            INSERT INTO meetings
            SELECT * FROM jsonb_populate_recordset(NULL::meetings, p_meetings::jsonb)
            ON CONFLICT (stream_id, meeting_id) DO UPDATE SET
                counterpart = EXCLUDED.counterpart, partner_id = EXCLUDED.partner_id,
                scheduled_at = EXCLUDED.scheduled_at, status = EXCLUDED.status,
                outcome = EXCLUDED.outcome, result_on = EXCLUDED.result_on,
                overdue = EXCLUDED.overdue;
        END IF;
        IF p_contracts IS NOT NULL THEN
            INSERT INTO contracts
            SELECT * FROM jsonb_populate_recordset(NULL::contracts, p_contracts::jsonb)
            ON CONFLICT (stream_id, contract_id) DO UPDATE SET
                counterpart = EXCLUDED.counterpart, amount = EXCLUDED.amount,
                currency = EXCLUDED.currency, signed_on = EXCLUDED.signed_on,
                meeting_ids = EXCLUDED.meeting_ids;
        END IF;
        IF p_visits IS NOT NULL THEN
            INSERT INTO return_visits
            SELECT * FROM jsonb_populate_recordset(NULL::return_visits, p_visits::jsonb)
            ON CONFLICT (stream_id, visit) DO UPDATE SET
                due_on = EXCLUDED.due_on, status = EXCLUDED.status,
                recorded_on = EXCLUDED.recorded_on, mission_id = EXCLUDED.mission_id;
        END IF;
        o_result := 'appended';
        o_version := p_expected + v_count;
        o_found := 0;
    END $fn$;

    -- No query reads events by type; every append paid for this index.
    DROP INDEX IF EXISTS events_type_idx;
    -- The read models are derived data written together by one function and emptied
    -- together by a rebuild: their foreign keys only cost a trigger per row.
    ALTER TABLE meetings DROP CONSTRAINT IF EXISTS meetings_stream_id_fkey;
    ALTER TABLE contracts DROP CONSTRAINT IF EXISTS contracts_stream_id_fkey;
    ALTER TABLE return_visits DROP CONSTRAINT IF EXISTS return_visits_stream_id_fkey;
    -- A journey's row (its state, programme included, is a few kilobytes) stays in
    -- the table, uncompressed: no TOAST work at every append and rebuild.
    ALTER TABLE journeys SET (toast_tuple_target = 8160);
"""


def _append_function(text: str) -> str:
    """The ``corridor_append`` function of migration 4, as ``CREATE OR REPLACE``."""
    start = text.index("CREATE FUNCTION corridor_append(")
    end = text.index("END $fn$;", start) + len("END $fn$;")
    return "CREATE OR REPLACE" + text[start + len("CREATE") : end]


_VOIDED_CONTRACTS = """
    -- A voided contract stays in the read model, marked: it counts nowhere.
    ALTER TABLE contracts ADD COLUMN voided_on date;
""" + _append_function(_APPEND_WITHOUT_LOCK).replace(
    "meeting_ids = EXCLUDED.meeting_ids;",
    "meeting_ids = EXCLUDED.meeting_ids, voided_on = EXCLUDED.voided_on;",
)


_OUTBOX_TABLE = """
    -- Messages (issue 9): one row per message, its id derived from the event that caused
    -- it and its recipient; the whole message as sent (addresses and body: personal data
    -- kept here, never in Temporal's histories). 'pending' once written, 'sending' while
    -- an attempt talks to the SMTP server (attempts counts them), 'sent' once the server
    -- accepted it, 'refused' when it refused it for good.
    CREATE TABLE IF NOT EXISTS outbox (
        message_id     uuid PRIMARY KEY,
        kind           text        NOT NULL,
        programme_id   text        NOT NULL,
        firm_id        text,
        stream_id      text,
        cause          text        NOT NULL,
        recipient      text        NOT NULL,
        to_address     text        NOT NULL,
        business_date  date        NOT NULL,
        subject        text        NOT NULL,
        message        bytea       NOT NULL,
        state          text        NOT NULL DEFAULT 'pending'
                       CHECK (state IN ('pending', 'sending', 'sent', 'refused')),
        attempts       integer     NOT NULL DEFAULT 0,
        created_at     timestamptz NOT NULL DEFAULT now(),
        sent_at        timestamptz,
        last_error     text
    );
    CREATE INDEX IF NOT EXISTS outbox_programme_idx ON outbox (programme_id, business_date);
"""


async def _outbox(connection: Connection) -> bool:
    """Migration 6: the outbox, and the worker's role's rights on it (if it exists)."""
    await connection.execute(_OUTBOX_TABLE)
    if await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", WORKER_ROLE):
        await connection.execute(
            f"GRANT SELECT, INSERT, UPDATE ON outbox TO {_ident(WORKER_ROLE)}"
        )
    return True


async def _data_keys(connection: Connection) -> bool:
    """Migration 7: the wrapped data keys (``activities.keys``), granted to the worker.

    The worker's role reads them, creates a journey's key at its first payload, re-wraps
    them (``corridor keys rotate``) and destroys one (``corridor forget``): a destroyed
    key's row stays, without its wrapped key, saying when and why.
    """
    await connection.execute(
        """
        CREATE TABLE data_keys (
            key_id            text PRIMARY KEY,
            wrapped           bytea,
            master_key_id     text,
            created_at        timestamptz NOT NULL DEFAULT now(),
            rewrapped_at      timestamptz,
            destroyed_at      timestamptz,
            destroyed_reason  text,
            CHECK ((destroyed_at IS NULL) = (wrapped IS NOT NULL AND master_key_id IS NOT NULL))
        );
        """
    )
    if await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", WORKER_ROLE):
        await connection.execute(
            f"GRANT SELECT, INSERT, UPDATE ON data_keys TO {_ident(WORKER_ROLE)}"
        )
    return True


MIGRATIONS: list[tuple[int, str, Step]] = [
    (
        1,
        "event store",
        """
        CREATE TABLE events (
            position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            stream_id       text        NOT NULL,
            stream_version  integer     NOT NULL CHECK (stream_version >= 1),
            event_id        uuid        NOT NULL UNIQUE,
            event_type      text        NOT NULL,
            schema_version  integer     NOT NULL,
            data            jsonb       NOT NULL,
            metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
            occurred_at     timestamptz NOT NULL,
            recorded_at     timestamptz NOT NULL,
            stored_at       timestamptz NOT NULL DEFAULT now(),
            UNIQUE (stream_id, stream_version)
        );
        CREATE INDEX events_type_idx ON events (event_type);

        CREATE FUNCTION events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the events table is append-only (% refused)', TG_OP;
        END $$;
        CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
            FOR EACH ROW EXECUTE FUNCTION events_are_append_only();
        CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
            FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only();
        """,
    ),
    (
        2,
        "read models",
        """
        CREATE TABLE journeys (
            stream_id           text PRIMARY KEY,
            programme_id        text        NOT NULL,
            firm_id             text        NOT NULL,
            firm_name           text        NOT NULL,
            mission_id          text        NOT NULL,
            introduced_on       date        NOT NULL,
            stage               text        NOT NULL,
            cycle               integer     NOT NULL,
            version             integer     NOT NULL,
            last_event_type     text,
            last_event_summary  text,
            last_event_at       timestamptz,
            next_deadline_at    timestamptz,
            next_deadline_kind  text,
            next_deadline       text,
            state               jsonb       NOT NULL,
            UNIQUE (programme_id, firm_id)
        );
        CREATE TABLE meetings (
            stream_id     text NOT NULL REFERENCES journeys (stream_id) ON DELETE CASCADE,
            meeting_id    text NOT NULL,
            programme_id  text NOT NULL,
            firm_id       text NOT NULL,
            counterpart   text NOT NULL,
            requested_on  date NOT NULL,
            partner_id    text,
            scheduled_at  timestamptz,
            status        text NOT NULL,
            outcome       text,
            result_on     date,
            overdue       boolean NOT NULL,
            PRIMARY KEY (stream_id, meeting_id)
        );
        CREATE TABLE contracts (
            stream_id     text NOT NULL REFERENCES journeys (stream_id) ON DELETE CASCADE,
            contract_id   text NOT NULL,
            programme_id  text NOT NULL,
            firm_id       text NOT NULL,
            counterpart   text NOT NULL,
            amount        numeric NOT NULL,
            currency      char(3) NOT NULL,
            signed_on     date NOT NULL,
            meeting_ids   text[] NOT NULL,
            PRIMARY KEY (stream_id, contract_id)
        );
        CREATE TABLE return_visits (
            stream_id     text NOT NULL REFERENCES journeys (stream_id) ON DELETE CASCADE,
            visit         integer NOT NULL,
            programme_id  text NOT NULL,
            firm_id       text NOT NULL,
            due_on        date NOT NULL,
            status        text NOT NULL,
            recorded_on   date,
            mission_id    text,
            PRIMARY KEY (stream_id, visit)
        );
        """,
    ),
    (3, "worker role", _worker_role),
    (4, "appends without a global lock", _APPEND_WITHOUT_LOCK),
    (5, "voided contracts", _VOIDED_CONTRACTS),
    (6, "outbox", _outbox),
    (7, "data keys", _data_keys),
]


async def applied_migrations(connection: Connection) -> set[int]:
    """The numbers of the migrations recorded in ``schema_migrations`` (none if absent)."""
    if await connection.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return set()
    return {r["number"] for r in await connection.fetch("SELECT number FROM schema_migrations")}


async def migrate(connection: Connection) -> list[int]:
    """Apply the migrations not applied yet, in order.

    When the schema is current this only reads ``schema_migrations``: the worker's role
    calls it to check the schema it is about to use.

    Args:
        connection: A connection with rights to create tables (and, for the worker's
            role, roles) when the schema is not current.

    Returns:
        The numbers of the migrations applied now (empty when the schema was current).

    Raises:
        MigrationError: The schema is not current and this user may not migrate it.
    """
    try:
        done = await applied_migrations(connection)
        if all(number in done for number, _, _ in MIGRATIONS):
            return []
        return await _apply(connection)
    except asyncpg.InsufficientPrivilegeError as error:
        user = await connection.fetchval("SELECT current_user")
        raise MigrationError(
            f"the database schema is not current and user {user} may not migrate it "
            f"({error}); set CORRIDOR_ADMIN_DSN to the DSN of the schema's owner"
        ) from error


async def _apply(connection: Connection) -> list[int]:
    applied_now: list[int] = []
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext('corridor-migrations'))")
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " number integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = await applied_migrations(connection)
        for number, name, step in MIGRATIONS:
            if number in done:
                continue
            if isinstance(step, str):
                await connection.execute(step)
            elif not await step(connection):
                continue
            await connection.execute(
                "INSERT INTO schema_migrations (number, name) VALUES ($1, $2)", number, name
            )
            applied_now.append(number)
    return applied_now


async def migrate_database(dsn: str) -> list[int]:
    """Connect to ``dsn`` (an administrator's: the schema's owner), migrate, disconnect.

    Returns:
        The numbers of the migrations applied now.

    Raises:
        OSError, asyncpg.PostgresError: The server cannot be reached or refuses.
        MigrationError: This user may not migrate the schema.
    """
    connection = await asyncpg.connect(dsn)
    try:
        return await migrate(connection)
    finally:
        await connection.close()


def role_dsn(dsn: str, role: str = WORKER_ROLE, password: str | None = None) -> str:
    """The same URL DSN (host, port, database, options) for another user.

    The user and password of ``dsn`` (in its user part or its query) are dropped. The
    embedded PostgreSQL trusts local users, so ``role_dsn(admin_dsn)`` is the worker's.

    Args:
        dsn: A URL DSN, ``postgresql://user:pass@host:port/db?options``.
        role: The user to connect as.
        password: Its password, if it needs one.

    Raises:
        ValueError: ``dsn`` is not a URL (``key=value`` DSNs are not supported).
    """
    parts = urllib.parse.urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("expected a postgresql:// DSN")
    hostport = parts.netloc.rpartition("@")[2]
    user = urllib.parse.quote(role, safe="")
    if password is not None:
        user += ":" + urllib.parse.quote(password, safe="")
    query = [
        (key, value)
        for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if key not in ("user", "password")
    ]
    return urllib.parse.urlunsplit(
        parts._replace(
            netloc=f"{user}@{hostport}", query=urllib.parse.urlencode(query, safe="/")
        )
    )
