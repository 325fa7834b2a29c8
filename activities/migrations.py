"""Schema of the event store and read models, created and migrated by the code.

Each migration runs once, in order, inside a transaction, under an advisory lock so that
several workers starting together do not race. Running ``migrate`` again is a no-op.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
"""A plain connection or one borrowed from a pool."""

MIGRATIONS: list[tuple[int, str, str]] = [
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
]


async def migrate(connection: Connection) -> list[int]:
    """Apply the migrations not applied yet, in order.

    Args:
        connection: A connection with rights to create tables.

    Returns:
        The numbers of the migrations applied now (empty when the schema was current).
    """
    applied_now: list[int] = []
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext('corridor-migrations'))")
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " number integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["number"] for r in await connection.fetch("SELECT number FROM schema_migrations")}
        for number, name, sql in MIGRATIONS:
            if number in done:
                continue
            await connection.execute(sql)
            await connection.execute(
                "INSERT INTO schema_migrations (number, name) VALUES ($1, $2)", number, name
            )
            applied_now.append(number)
    return applied_now
