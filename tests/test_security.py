"""Security basics on the real servers: the worker's role, parameterised SQL, quiet logs.

The conftest ``dsn`` is the administrator's (the embedded server's superuser); the
worker's DSN is derived from it for role ``corridor_worker`` (the embedded server trusts
local users). With ``CORRIDOR_TEST_DSN`` pointing to another server, set
``CORRIDOR_TEST_WORKER_DSN`` to the worker role's DSN; the tests that create databases
and roles of their own need the embedded server and are skipped there.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import sys
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
import structlog
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities import migrations
from activities.migrations import (
    MIGRATIONS,
    WORKER_ROLE,
    MigrationError,
    applied_migrations,
    migrate,
    migrate_database,
    role_dsn,
)
from activities.store import EventStore
from bench.trivial import Trivial
from corridor import service
from corridor.logs import CORE_LOGGER, configure_logging, core_logging, redact_secrets, redact_text
from corridor.runtime import run_worker
from corridor.stack import TemporalDevServer
from domain.calendar import ProgrammeClock
from domain.commands import EnrollFirm, RequestMeeting
from domain.events import EventEnvelope
from domain.journey import decide
from domain.programme import Firm
from tests.conftest import MASTER_KEY, make_programme
from workflows.journey import journey_workflow_id

pytestmark = pytest.mark.timeout(120)

LA = ZoneInfo("America/Los_Angeles")
CORRIDOR = os.path.join(os.path.dirname(sys.executable), "corridor")
INTRO = date(2013, 9, 17)
ALL_MIGRATIONS = [number for number, _, _ in MIGRATIONS]
PASSWORD = f"pw-{uuid.uuid4().hex}"  # ignored by the embedded server's trust authentication
CONTACT_NAME = "Jeanne Tremblay-Lévesque"
CONTACT_EMAIL = "jeanne.tremblay@exemple-securite.ca"
EMAIL = re.compile(r"[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)*\.[A-Za-z]{2,}")

embedded_only = pytest.mark.skipif(
    bool(os.environ.get("CORRIDOR_TEST_DSN")),
    reason="creates databases and roles: needs the embedded server's superuser",
)


@pytest.fixture(scope="session")
def worker_dsn(dsn: str) -> str:
    """The worker role's DSN (with a password that trust authentication ignores)."""
    return os.environ.get("CORRIDOR_TEST_WORKER_DSN") or role_dsn(dsn, password=PASSWORD)


@pytest.fixture
async def worker_store(store: EventStore, worker_dsn: str) -> AsyncIterator[EventStore]:
    """An event store connected as the worker's role (``store`` migrated the schema)."""
    async with EventStore.connect(worker_dsn) as opened:
        yield opened


@pytest.fixture
async def as_worker(store: EventStore, worker_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(worker_dsn)
    try:
        yield connection
    finally:
        await connection.close()


def enrolment(programme_id: str, firm_id: str) -> EnrollFirm:
    return EnrollFirm(
        programme=make_programme(programme_id),
        firm=Firm(
            id=firm_id,
            name=f"Firm {firm_id}",
            contact_name=CONTACT_NAME,
            contact_email=CONTACT_EMAIL,
        ),
        mission_id="m1",
        occurred_on=INTRO,
        wants_to_meet=["Apple"],
    )


def enrolled_envelopes(programme_id: str, firm_id: str) -> list[EventEnvelope]:
    now = datetime.combine(INTRO, time(12), tzinfo=LA)
    events = decide(None, enrolment(programme_id, firm_id), now)
    return [
        EventEnvelope(
            event_id=uuid.uuid4(),
            stream_id=journey_workflow_id(programme_id, firm_id),
            stream_version=version,
            event=event,
        )
        for version, event in enumerate(events, start=1)
    ]


def database_dsn(dsn: str, database: str, user: str | None = None) -> str:
    """``dsn`` for another database (and user)."""
    dsn = role_dsn(dsn, user) if user else dsn
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(dsn)._replace(path=f"/{database}"))


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ------------------------------------------------------------- the worker's role


async def test_worker_role_appends_and_reads_events(
    worker_store: EventStore, store: EventStore, programme_id: str
) -> None:
    envelopes = enrolled_envelopes(programme_id, "acme")
    stream_id = envelopes[0].stream_id
    result = await worker_store.append(stream_id, 0, envelopes)
    assert result.appended == len(envelopes)
    # A retried append is a no-op for the worker too.
    assert (await worker_store.append(stream_id, 0, envelopes)).appended == 0

    assert await worker_store.read_stream(stream_id) == envelopes
    assert await store.read_stream(stream_id) == envelopes  # really stored
    assert await worker_store.stream_version(stream_id) == len(envelopes)
    states = await worker_store.journey_states(programme_id)
    assert list(states) == [stream_id]
    user = await worker_store.pool.fetchval("SELECT current_user")
    assert user == WORKER_ROLE


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET event_type = 'Tampered' WHERE false",
        "DELETE FROM events WHERE false",
        "TRUNCATE events",
        "LOCK TABLE events IN EXCLUSIVE MODE",
        "DROP TABLE events",
        "ALTER TABLE events DISABLE TRIGGER events_append_only",
        "INSERT INTO schema_migrations (number, name) VALUES (999, 'sneaky')",
        f"CREATE ROLE {ident('corridor-sneaky')}",
    ],
)
async def test_worker_role_may_not_change_events_or_the_schema(
    as_worker: asyncpg.Connection, statement: str
) -> None:
    transaction = as_worker.transaction()
    await transaction.start()
    try:
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
            await as_worker.execute(statement)
    finally:
        await transaction.rollback()  # nothing may stay, even if a statement got through


async def test_worker_role_may_not_create_tables(as_worker: asyncpg.Connection) -> None:
    if as_worker.get_server_version().major < 15:
        pytest.skip("before PostgreSQL 15 everyone may create tables in schema public")
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
        await as_worker.execute("CREATE TABLE sneaky (x int)")


async def test_worker_role_has_exactly_its_grants(store: EventStore) -> None:
    rows = await store.pool.fetch(
        "SELECT table_name, string_agg(privilege_type, ',' ORDER BY privilege_type) AS rights "
        "FROM information_schema.role_table_grants WHERE grantee = $1 GROUP BY table_name",
        WORKER_ROLE,
    )
    read_model = "DELETE,INSERT,SELECT,TRUNCATE,UPDATE"
    assert {r["table_name"]: r["rights"] for r in rows} == {
        "events": "INSERT,SELECT",
        "journeys": read_model,
        "meetings": read_model,
        "contracts": read_model,
        "return_visits": read_model,
        "schema_migrations": "SELECT",
        "data_keys": "INSERT,SELECT,UPDATE",  # create, re-wrap, destroy; never delete
        "outbox": "INSERT,SELECT,UPDATE",  # messages written, then marked sent
    }
    role = await store.pool.fetchrow(
        "SELECT rolcanlogin, rolinherit, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls "
        "FROM pg_roles WHERE rolname = $1",
        WORKER_ROLE,
    )
    assert role is not None
    assert dict(role) == {
        "rolcanlogin": True,
        "rolinherit": False,
        "rolsuper": False,
        "rolcreaterole": False,
        "rolcreatedb": False,
        "rolbypassrls": False,
    }


async def test_worker_role_rebuilds_the_read_models(
    worker_store: EventStore, store: EventStore, programme_id: str
) -> None:
    envelopes = enrolled_envelopes(programme_id, "rebuilt")
    await worker_store.append(envelopes[0].stream_id, 0, envelopes)
    before = await store.journey_states(programme_id)
    replayed = await worker_store.rebuild_read_models()
    assert replayed >= len(envelopes)
    assert await store.journey_states(programme_id) == before


# ------------------------------------------------------------------ migrations


async def test_migrations_run_twice_are_a_no_op(
    dsn: str, store: EventStore, as_worker: asyncpg.Connection
) -> None:
    assert await migrate_database(dsn) == []
    assert await migrate_database(dsn) == []
    # The worker's role only checks that the schema is current.
    assert await migrate(as_worker) == []
    assert await applied_migrations(as_worker) == set(ALL_MIGRATIONS)


@pytest.fixture
async def scratch(dsn: str) -> AsyncIterator[dict[str, str]]:
    """Names for a database and roles of this test, dropped afterwards."""
    suffix = uuid.uuid4().hex[:8]
    names = {
        "database": f"corridor_sec_{suffix}",
        "owner": f"corridor_owner_{suffix}",
        "worker": f"corridor_worker_{suffix}",
    }
    yield names
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {ident(names['database'])} WITH (FORCE)")
        for role in (names["worker"], names["owner"]):
            await admin.execute(f"DROP ROLE IF EXISTS {ident(role)}")
    finally:
        await admin.close()


@embedded_only
async def test_worker_role_cannot_migrate_a_new_database_and_says_so(
    dsn: str, store: EventStore, scratch: dict[str, str]
) -> None:
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f"CREATE DATABASE {ident(scratch['database'])}")
    finally:
        await admin.close()
    worker_dsn = database_dsn(dsn, scratch["database"], WORKER_ROLE)

    with pytest.raises(MigrationError, match="CORRIDOR_ADMIN_DSN"):
        await migrate_database(worker_dsn)
    with pytest.raises(MigrationError):
        async with EventStore.connect(worker_dsn):
            pass

    admin_dsn = database_dsn(dsn, scratch["database"])
    assert await migrate_database(admin_dsn) == ALL_MIGRATIONS
    assert await migrate_database(admin_dsn) == []
    async with EventStore.connect(worker_dsn) as worker_store:  # checks, migrates nothing
        envelopes = enrolled_envelopes("p-scratch", "acme")
        result = await worker_store.append(envelopes[0].stream_id, 0, envelopes)
        assert result.appended == len(envelopes)


@embedded_only
async def test_owner_without_createrole_skips_the_role_with_a_warning(
    dsn: str,
    store: EventStore,
    scratch: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Managed PostgreSQL: the schema's owner may not create roles; nothing fails."""
    monkeypatch.setattr(migrations, "WORKER_ROLE", scratch["worker"])
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f"CREATE ROLE {ident(scratch['owner'])} LOGIN NOCREATEROLE")
        await admin.execute(
            f"CREATE DATABASE {ident(scratch['database'])} OWNER {ident(scratch['owner'])}"
        )
    finally:
        await admin.close()
    owner_dsn = database_dsn(dsn, scratch["database"], scratch["owner"])

    with caplog.at_level(logging.WARNING, logger="activities.migrations"):
        assert await migrate_database(owner_dsn) == [1, 2, 4, 5, 6, 7]
    warnings = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    assert [w["event"] for w in warnings] == ["migrations.role_skipped"]
    assert "CREATE ROLE" in warnings[0]["reason"]
    # Not recorded: tried again (and skipped again) until someone can create the role.
    assert await migrate_database(owner_dsn) == []

    admin_dsn = database_dsn(dsn, scratch["database"])
    assert await migrate_database(admin_dsn) == [3]
    connection = await asyncpg.connect(admin_dsn)
    try:
        rights = await connection.fetchrow(
            "SELECT has_table_privilege($1, 'events', 'INSERT') AS insert,"
            " has_table_privilege($1, 'events', 'UPDATE') AS update,"
            " has_table_privilege($1, 'journeys', 'TRUNCATE') AS truncate,"
            " has_table_privilege($1, 'data_keys', 'UPDATE') AS keys",
            scratch["worker"],
        )
    finally:
        await connection.close()
    assert rights is not None
    assert dict(rights) == {"insert": True, "update": False, "truncate": True, "keys": True}


def test_role_dsn_keeps_the_server_and_drops_the_credentials() -> None:
    assert (
        role_dsn("postgresql://postgres@/corridor?host=/run/pg&port=5433")
        == "postgresql://corridor_worker@/corridor?host=/run/pg&port=5433"
    )
    assert (
        role_dsn("postgresql://admin:s3cret@db:5432/corridor?sslmode=require&password=x", "w", "p")
        == "postgresql://w:p@db:5432/corridor?sslmode=require"
    )
    with pytest.raises(ValueError):
        role_dsn("host=db user=admin")


# ------------------------------------------------------------------------- logs


def test_redaction_masks_dsn_passwords_and_email_addresses() -> None:
    assert redact_text("postgresql://u:secret@host/db") == "postgresql://u:***@host/db"
    assert "jane.doe@example.com" not in redact_text("contact: jane.doe@example.com")
    assert redact_text("host=db password=secret user=u") == "host=db password=*** user=u"
    # A user name in a URL is not an address.
    assert redact_text("postgresql://corridor_worker@db.example.org/corridor") == (
        "postgresql://corridor_worker@db.example.org/corridor"
    )

    event = redact_secrets(
        None,
        "info",
        {
            "event": "connecting to postgresql://u:secret@host/db",
            "dsn": "postgresql://u:secret@host/db",
            "contact": {"email": "jane.doe@example.com", "api_key": "k-123"},
            "emails": ["jane.doe@example.com"],
            "password": "secret",
            "count": 3,
        },
    )
    rendered = json.dumps(event)
    assert "secret" not in rendered
    assert "jane.doe@example.com" not in rendered
    assert "k-123" not in rendered
    assert event["count"] == 3


def test_redaction_covers_exceptions_and_standard_library_loggers() -> None:
    buffer = io.StringIO()
    configure_logging("INFO", json=True)
    try:
        logging.getLogger().handlers[0].setStream(buffer)  # type: ignore[attr-defined]
        try:
            raise ConnectionError("cannot reach postgresql://u:secret@host/db for jane@example.com")
        except ConnectionError:
            structlog.get_logger("tests.security").exception("connect.failed")
            logging.getLogger("temporalio.worker").exception("activity failed")
        logging.getLogger("temporalio.worker").warning(
            "refused for %s", "jane.doe@example.com", extra={"dsn": "postgres://a:secret@h/d"}
        )
    finally:
        configure_logging("WARNING", json=False)
    output = buffer.getvalue()
    assert output.count("ConnectionError: cannot reach postgresql://u:***@host/db") == 2
    assert "secret" not in output
    assert not EMAIL.search(output), output


async def test_a_real_journey_logs_no_contact_detail_nor_password(
    client: Client, dsn: str, worker_dsn: str, programme_id: str, store: EventStore
) -> None:
    """The worker, run as its role, stores a journey with a contact: the log stays clean."""
    buffer = io.StringIO()
    task_queue = f"corridor-security-{uuid.uuid4()}"
    firm_id = "discrete"
    configure_logging("INFO", json=True)
    stop = asyncio.Event()
    try:
        logging.getLogger().handlers[0].setStream(buffer)  # type: ignore[attr-defined]
        worker = asyncio.create_task(
            run_worker(client, worker_dsn, task_queue, stop, admin_dsn=dsn)
        )
        try:
            command = enrolment(programme_id, firm_id)
            clock = ProgrammeClock(business_origin=datetime.combine(INTRO, time(12), tzinfo=LA))
            enrolled = await service.enroll(client, command, task_queue=task_queue, clock=clock)
            assert enrolled.started
            await _until_answering(client, programme_id, firm_id)
            await service.send(
                client,
                programme_id,
                firm_id,
                RequestMeeting(meeting_id="m-1", counterpart="Apple", occurred_on=INTRO),
            )
            # A refused signal: the journey logs it through workflow.logger.
            handle = service.journey_handle(client, programme_id, firm_id)
            await handle.signal(
                "record_meeting_result",
                {"meeting_id": "nope", "outcome": "promising", "notes": f"ask {CONTACT_EMAIL}"},
            )
            assert await service.sync(client, programme_id, firm_id) is not None
            view = await service.view(client, programme_id, firm_id)
            assert view.refusals, "the signal should have been refused"
        finally:
            stop.set()
            await asyncio.wait_for(worker, 30)
    finally:
        configure_logging("WARNING", json=False)

    stored = await store.read_stream(journey_workflow_id(programme_id, firm_id))
    assert [e.event.type for e in stored][:2] == ["FirmEnrolled", "MeetingRequested"]
    first: Any = stored[0].event
    assert first.firm.contact_email == CONTACT_EMAIL  # the store has it; logs must not

    output = buffer.getvalue()
    for expected in ("worker.started", "store_events.done", "signal refused"):
        assert expected in output, f"{expected!r} not logged:\n{output}"
    assert f'"database_user": "{WORKER_ROLE}"' in output
    assert CONTACT_EMAIL not in output
    assert CONTACT_NAME not in output and "Tremblay" not in output
    assert PASSWORD not in output
    password = urllib.parse.urlsplit(worker_dsn).password
    assert password is None or password not in output
    assert not EMAIL.search(output), EMAIL.findall(output)


async def _until_answering(client: Client, programme_id: str, firm_id: str) -> None:
    """Wait for the journey's first workflow task (an earlier update is refused)."""
    deadline = datetime.now(UTC).timestamp() + 10
    while True:
        try:
            await service.view(client, programme_id, firm_id)
            return
        except (service.Refused, WorkflowQueryFailedError):  # no workflow task yet
            if datetime.now(UTC).timestamp() > deadline:
                raise
            await asyncio.sleep(0.05)


# ------------------------------------------------------------------------- CLI


async def corridor(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run the ``corridor`` console script with only these CORRIDOR_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CORRIDOR_", "TEMPORAL_"))}
    clean["CORRIDOR_MASTER_KEY"] = MASTER_KEY
    process = await asyncio.create_subprocess_exec(
        CORRIDOR,
        *args,
        env=clean | env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_corridor_migrate_uses_the_admin_dsn_and_the_worker_only_checks(
    dsn: str, worker_dsn: str, store: EventStore, temporal_server: TemporalDevServer
) -> None:
    code, out = await corridor({"CORRIDOR_ADMIN_DSN": dsn, "CORRIDOR_DSN": worker_dsn}, "migrate")
    assert (code, out.strip()) == (0, "the schema is current")
    code, out = await corridor({"CORRIDOR_DSN": worker_dsn}, "migrate")
    assert (code, out.strip()) == (0, "the schema is current")
    code, out = await corridor({}, "migrate")
    assert code == 2 and "CORRIDOR_ADMIN_DSN" in out
    # The CLI's own work needs no more than the worker's role.
    code, out = await corridor(
        {"CORRIDOR_DSN": worker_dsn, "TEMPORAL_ADDRESS": temporal_server.address}, "rebuild"
    )
    assert code == 0, out
    assert PASSWORD not in out


async def test_a_programme_id_cannot_widen_a_visibility_query(
    worker_dsn: str, temporal_server: TemporalDevServer
) -> None:
    env = {"CORRIDOR_DSN": worker_dsn, "TEMPORAL_ADDRESS": temporal_server.address}
    code, out = await corridor(
        env, "status", "--programme", "x' OR CorridorFirm != '", "--query", "CorridorContracts > 0"
    )
    assert code == 2, out
    assert "invalid programme id" in out


async def test_the_sdk_cores_own_lines_go_through_structlog(
    temporal_server: TemporalDevServer, capfd: pytest.CaptureFixture[str]
) -> None:
    """The core's lines are rendered (and redacted) like every other one, never written
    straight to standard output, where an unread pipe would block the core's thread."""
    buffer = io.StringIO()
    configure_logging("INFO", json=True)
    try:
        logging.getLogger().handlers[0].setStream(buffer)  # type: ignore[attr-defined]
        runtime = Runtime(telemetry=TelemetryConfig(logging=core_logging("INFO")))
        client = await Client.connect(temporal_server.address, runtime=runtime)
        task_queue = f"core-logs-{uuid.uuid4()}"
        async with Worker(client, task_queue=task_queue, workflows=[Trivial]):
            handle = await client.start_workflow(
                Trivial.run, "core logs", id=task_queue, task_queue=task_queue
            )
            assert await handle.execute_update(Trivial.touch, "polled") >= 0
            await handle.signal(Trivial.finish)
            await handle.result()
        said = "Workflow shutdown is done"  # the core's INFO line at a worker's shutdown
        async with asyncio.timeout(30):  # forwarded lines are buffered a little while
            while said not in buffer.getvalue():  # noqa: ASYNC110 (a plain StringIO)
                await asyncio.sleep(0.1)
    finally:
        configure_logging("WARNING", json=False)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    (done,) = [line for line in lines if said in line["event"]]
    assert done["logger"].startswith(CORE_LOGGER) and done["level"] == "info", done
    assert "temporal_log" not in done
    assert said not in capfd.readouterr().out
